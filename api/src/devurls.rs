//! Dev URLs (`/api/v2/urls`, `/api/v2/workspaces/{name}/urls…`).

use serde::{Deserialize, Serialize};

/// Who may open a dev URL, from narrowest to widest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Access {
    /// The workspace's owner.
    Private,
    /// Members of the workspace's organization.
    Org,
    /// Any signed-in user.
    Authed,
    /// Anyone.
    Public,
}

impl Access {
    /// The level's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Private => "private",
            Access::Org => "org",
            Access::Authed => "authed",
            Access::Public => "public",
        }
    }

    /// Parses a level's name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "private" => Access::Private,
            "org" => Access::Org,
            "authed" => Access::Authed,
            "public" => Access::Public,
            _ => return None,
        })
    }
}

/// A shared dev URL as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DevUrl {
    /// Workspace name.
    pub workspace: String,
    /// Port inside the workspace.
    pub port: u16,
    /// The port speaks HTTPS.
    pub https: bool,
    /// Name of a named URL.
    pub name: Option<String>,
    /// Who may open it.
    pub access: Access,
    /// Its address on the control plane's edge, when the deployment serves dev URLs.
    pub url: Option<String>,
}

/// `POST /api/v2/workspaces/{name}/urls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ShareRequest {
    /// The workspace port.
    #[cfg_attr(feature = "schema", schemars(range(min = 1, max = 65535)))]
    pub port: u16,
    #[serde(default)]
    /// The port speaks HTTPS.
    pub https: bool,
    #[serde(default)]
    /// A name for a named URL.
    pub name: Option<String>,
    #[serde(default)]
    /// Who may open it [default: private].
    pub access: Option<String>,
}

/// `DELETE /api/v2/workspaces/{name}/urls/{port}`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Unshared {
    /// The port, private again.
    pub deleted: u16,
}
