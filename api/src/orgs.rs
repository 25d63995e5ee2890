//! Organizations and users (`/api/v2/orgs…`, `/api/v2/users…`).

use serde::{Deserialize, Serialize};

use crate::workspaces::User;

/// An organization.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Org {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
}

/// An organization in `GET /api/v2/orgs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct OrgView {
    /// The organization.
    #[serde(flatten)]
    pub org: Org,
    /// Its members.
    pub members: i64,
    /// Its workspaces.
    pub workspaces: i64,
}

/// `POST /api/v2/orgs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateOrg {
    /// Its name (a DNS label).
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::label_schema"))]
    pub name: String,
}

/// `POST /api/v2/orgs/{name}/members`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AddMember {
    /// The user to add.
    pub username: String,
}

/// The answer: who joined which organization.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MemberAdded {
    /// The organization.
    pub org: String,
    /// The user.
    pub member: String,
}

/// A user with the organizations they belong to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserView {
    /// The user.
    #[serde(flatten)]
    pub user: User,
    /// Names of their organizations.
    pub orgs: Vec<String>,
}

fn member() -> String {
    "member".into()
}

/// `POST /api/v2/users` (admins).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateUser {
    /// Login name (a DNS label).
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::label_schema"))]
    pub username: String,
    /// Site role [default: member].
    #[serde(default = "member")]
    pub role: String,
    /// Organizations to join.
    #[serde(default)]
    pub orgs: Vec<String>,
    /// E-mail address (templates in provider settings use it).
    #[serde(default)]
    pub email: Option<String>,
}

/// The answer: the user and their first API token (shown once).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserCreated {
    /// The user.
    pub user: User,
    /// The organizations they joined.
    pub orgs: Vec<String>,
    /// Their first API token.
    pub token: String,
}

/// `PUT /api/v2/users/me/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PasswordRequest {
    /// The new password.
    #[cfg_attr(feature = "schema", schemars(length(min = 10, max = 1024)))]
    pub password: String,
}

/// The answer: whose password was set.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct PasswordSet {
    /// The user name.
    pub updated: String,
}
