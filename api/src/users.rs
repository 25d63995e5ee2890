//! The caller's own things: API tokens (`/api/v2/users/me/tokens`) and SSH keys
//! (`/api/v2/users/me/ssh-keys`).

use serde::{Deserialize, Serialize};

/// `POST /api/v2/users/me/tokens`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenRequest {
    /// A name for the token (1-64 characters).
    #[cfg_attr(feature = "schema", schemars(length(min = 1, max = 64)))]
    pub name: String,
}

/// A new API token (shown once; stored hashed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct NewToken {
    /// The token.
    pub token: String,
}

/// An API token as its holder sees it (never the secret or its hash).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ApiToken {
    /// Id (what `perigee tokens rm` takes).
    pub id: String,
    /// Name given at creation.
    pub name: String,
    /// Unix seconds.
    pub created_at: i64,
}

/// A token in the caller's list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TokenView {
    /// The token.
    #[serde(flatten)]
    pub token: ApiToken,
    /// The token this request was made with.
    pub current: bool,
}

/// `DELETE /api/v2/users/me/tokens/{id}`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Revoked {
    /// The token's id.
    pub revoked: String,
}

/// `POST /api/v2/users/me/ssh-keys`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AddKey {
    /// An OpenSSH public key line.
    pub public_key: String,
}

/// The answer: the key's fingerprint, and whether it was new.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct KeyAdded {
    /// `SHA256:…`, as OpenSSH prints it.
    pub fingerprint: String,
    /// `false` when the caller had the key already.
    pub created: bool,
}

/// One of a user's SSH public keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SshKey {
    /// `SHA256:…`.
    pub fingerprint: String,
    /// `TYPE BASE64`.
    pub public_key: String,
    /// Unix seconds.
    pub created_at: i64,
}
