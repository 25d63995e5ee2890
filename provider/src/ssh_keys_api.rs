//! Users' SSH public keys: uploaded by `perigee config-ssh`, listed and removed by their
//! owner, and handed to a workspace's agent (agent token) for its SSH server. A removed key
//! is gone from the next agent fetch.

use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
use base64::Engine as _;
use perigee_api::users::{AddKey, KeyAdded, SshKey};
use sqlx::Row as _;

use crate::request::{bearer, Body, Caller};
use crate::{ApiError, ControlPlane};

/// Longest public key line accepted (an RSA-16384 key fits).
pub const MAX_KEY_LEN: usize = 8 * 1024;
/// Keys per user.
pub const MAX_KEYS: i64 = 50;

const TYPES: &[&str] = &[
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// A public key in `authorized_keys` form, checked: `TYPE BASE64` (the comment dropped) and
/// its OpenSSH fingerprint (`SHA256:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// `TYPE BASE64`.
    pub line: String,
    /// `SHA256:` and the unpadded base64 of the key blob's SHA-256.
    pub fingerprint: String,
}

/// Parses one `authorized_keys`-style line (`TYPE BASE64 [COMMENT]`); the blob must name
/// the same type it is listed under.
pub fn parse_public_key(line: &str) -> Result<PublicKey, String> {
    if line.len() > MAX_KEY_LEN {
        return Err(format!("public_key: longer than {MAX_KEY_LEN} bytes"));
    }
    let mut words = line.split_whitespace();
    let (Some(kind), Some(b64)) = (words.next(), words.next()) else {
        return Err(
            "public_key: expected `TYPE BASE64 [COMMENT]`, e.g. the contents of id_ed25519.pub"
                .into(),
        );
    };
    if !TYPES.contains(&kind) {
        return Err(format!(
            "public_key: type {kind:?} is not accepted (one of {})",
            TYPES.join(", ")
        ));
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "public_key: the key is not valid base64".to_owned())?;
    let named = blob
        .get(..4)
        .map(|l| u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)
        .and_then(|n| blob.get(4..4 + n));
    if named != Some(kind.as_bytes()) {
        return Err(format!("public_key: the key data is not a {kind} key"));
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, &blob);
    Ok(PublicKey {
        line: format!("{kind} {b64}"),
        fingerprint: format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_ref())
        ),
    })
}

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/api/v2/users/me/ssh-keys", get(list_keys).post(add_key))
        .route(
            "/api/v2/users/me/ssh-keys/{fingerprint}",
            delete(remove_key),
        )
        .route("/api/v2/workspaceagent/authorized-keys", get(agent_keys))
        .with_state(cp)
}

async fn keys_of(cp: &ControlPlane, user_id: &str) -> Result<Vec<SshKey>, ApiError> {
    keys_where(cp, "k.user_id = $1", user_id).await
}

/// Keys of the users `filter` (over `ssh_keys k` joined with `users u`, `$1` bound to
/// `arg`) selects, oldest first.
async fn keys_where(cp: &ControlPlane, filter: &str, arg: &str) -> Result<Vec<SshKey>, ApiError> {
    let rows = sqlx::query(&format!(
        "SELECT k.fingerprint, k.public_key, k.created_at FROM ssh_keys k JOIN users u ON u.id = k.user_id \
         WHERE {filter} ORDER BY k.created_at, k.fingerprint"
    ))
    .bind(arg)
    .fetch_all(&cp.store.pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(SshKey {
                fingerprint: r.try_get(0)?,
                public_key: r.try_get(1)?,
                created_at: r.try_get(2)?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()
        .map_err(Into::into)
}

async fn list_keys(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
) -> Result<Json<Vec<SshKey>>, ApiError> {
    Ok(Json(keys_of(&cp, &user.id).await?))
}

/// Adds a key; adding one already there is not an error (`created: false`).
async fn add_key(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Body(req): Body<AddKey>,
) -> Result<Json<KeyAdded>, ApiError> {
    let key = parse_public_key(&req.public_key).map_err(ApiError::bad_request)?;
    let have = keys_of(&cp, &user.id).await?;
    if have.iter().any(|k| k.fingerprint == key.fingerprint) {
        return Ok(Json(KeyAdded {
            fingerprint: key.fingerprint,
            created: false,
        }));
    }
    if have.len() as i64 >= MAX_KEYS {
        return Err(ApiError::conflict(format!(
            "you have {MAX_KEYS} SSH keys already: remove one first (DELETE /api/v2/users/me/ssh-keys/FINGERPRINT)"
        )));
    }
    // A concurrent add of the same key loses the race quietly.
    sqlx::query(
        "INSERT INTO ssh_keys (user_id, fingerprint, public_key, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(&user.id)
    .bind(&key.fingerprint)
    .bind(&key.line)
    .bind(crate::store::now())
    .execute(&cp.store.pool)
    .await?;
    Ok(Json(KeyAdded {
        fingerprint: key.fingerprint,
        created: true,
    }))
}

async fn remove_key(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Path(fingerprint): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let r = sqlx::query("DELETE FROM ssh_keys WHERE user_id = $1 AND fingerprint = $2")
        .bind(&user.id)
        .bind(&fingerprint)
        .execute(&cp.store.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found(format!(
            "no SSH key {fingerprint:?} (see GET /api/v2/users/me/ssh-keys)"
        )));
    }
    Ok(Json(serde_json::json!({ "deleted": fingerprint })))
}

/// The keys of the workspace owner (and of site admins, when the deployment lets admins into
/// other users' workspaces), for the agent holding `Authorization: Bearer AGENT-TOKEN`.
async fn agent_keys(
    State(cp): State<ControlPlane>,
    headers: http::HeaderMap,
) -> Result<Json<Vec<SshKey>>, ApiError> {
    let token = bearer(&headers)
        .ok_or_else(|| ApiError::unauthorized("missing agent token (Authorization: Bearer)"))?;
    let ws = cp
        .store
        .workspace_by_agent_token(token.trim())
        .await?
        .ok_or_else(|| ApiError::unauthorized("agent token not accepted"))?;
    let filter = if cp.admin_workspace_access {
        "k.user_id = $1 OR u.role = 'admin'"
    } else {
        "k.user_id = $1"
    };
    Ok(Json(keys_where(&cp, filter, &ws.owner_id).await?))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_fingerprinted_like_openssh() {
        // `ssh-keygen -lf` prints SHA256:L1MVe6EwpsWuhJUKkzSYxi/d3wbk0fZD0eQeBbnS+d8 for it.
        let line = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBoqkV/VDjWGuI0d+O5qaq+KRVNMbnA6E4avl5SXqiLR ada@laptop";
        let k = parse_public_key(line).unwrap();
        assert_eq!(
            k.line,
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBoqkV/VDjWGuI0d+O5qaq+KRVNMbnA6E4avl5SXqiLR"
        );
        assert_eq!(
            k.fingerprint,
            "SHA256:L1MVe6EwpsWuhJUKkzSYxi/d3wbk0fZD0eQeBbnS+d8"
        );
        for bad in [
            "",
            "ssh-ed25519",
            "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
            "ssh-ed25519 !!!",
            // An RSA blob listed as ed25519.
            "ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAAgQC",
        ] {
            assert!(parse_public_key(bad).is_err(), "{bad:?}");
        }
        assert!(parse_public_key(&"a".repeat(MAX_KEY_LEN + 1)).is_err());
    }
}
