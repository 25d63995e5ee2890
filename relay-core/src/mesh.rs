//! Authentication of mesh links between edges.
//!
//! Every registered edge receives the deployment's mesh keys from the control plane. A
//! dialing edge proves it holds one by sending, in its `MESH_HELLO`, an HMAC-SHA256 under the
//! key of its name and of 32 bytes exported from the QUIC connection's TLS session
//! (RFC 5705 exporter, label [`EXPORTER_LABEL`]). The MAC is bound to that one connection, so
//! a recorded hello is useless on any other. The accepting edge also checks the name against
//! the edges the control plane lists, so a removed satellite is refused by name too.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::hmac;

use crate::wire::MESH_MAC_LEN;

/// Mesh names of control-plane replicas start with this (`replica:NAME`); they dial each
/// other without trusting certificates and both prove the mesh key instead.
pub const REPLICA_PREFIX: &str = "replica:";

/// TLS exporter label for the mesh hello.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-perigee-mesh-hello";
/// Length of a mesh key.
pub const KEY_LEN: usize = 32;

/// One mesh key, as the control plane hands it out.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MeshKey {
    /// Key id.
    pub id: String,
    /// The secret, base64 (standard alphabet).
    pub secret: String,
}

impl std::fmt::Debug for MeshKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshKey")
            .field("id", &self.id)
            .field("secret", &"***")
            .finish()
    }
}

impl MeshKey {
    /// A fresh random key.
    pub fn generate() -> Self {
        Self {
            id: crate::token::random_id(),
            secret: B64.encode(crate::token::random_bytes::<KEY_LEN>()),
        }
    }

    fn hmac_key(&self) -> Option<hmac::Key> {
        let raw = B64.decode(&self.secret).ok()?;
        (raw.len() == KEY_LEN).then(|| hmac::Key::new(hmac::HMAC_SHA256, &raw))
    }

    /// The MAC an edge named `edge` sends on a connection whose exporter gave `exported`.
    /// `None` when the key is malformed.
    pub fn mac(&self, edge: &str, exported: &[u8]) -> Option<[u8; MESH_MAC_LEN]> {
        let key = self.hmac_key()?;
        let tag = hmac::sign(&key, &message(edge, exported));
        let mut out = [0u8; MESH_MAC_LEN];
        out.copy_from_slice(tag.as_ref());
        Some(out)
    }
}

fn message(edge: &str, exported: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(edge.len() + 1 + exported.len());
    m.extend_from_slice(edge.as_bytes());
    m.push(0);
    m.extend_from_slice(exported);
    m
}

/// Whether `mac` was made with any of `keys` (constant-time comparison per key).
pub fn verify(keys: &[MeshKey], edge: &str, exported: &[u8], mac: &[u8]) -> bool {
    let msg = message(edge, exported);
    keys.iter()
        .filter_map(MeshKey::hmac_key)
        .any(|k| hmac::verify(&k, &msg, mac).is_ok())
}

/// Name of the control plane's built-in edge.
pub const PRIMARY_EDGE: &str = "primary";

/// What the control plane tells an edge when it registers and on every heartbeat: the keys
/// it must trust and the other edges it may forward to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EdgeConfig {
    /// This edge's name.
    pub edge: String,
    /// This edge's region.
    pub region: String,
    /// Ed25519 public keys that sign connection tickets (base64, standard alphabet): the
    /// current key and retired keys whose tickets may still be valid.
    pub ticket_keys: Vec<String>,
    /// Mesh keys: the first is the one to dial with; all are accepted.
    pub mesh_keys: Vec<MeshKey>,
    /// Every edge of the deployment (this one included).
    pub edges: Vec<EdgeEntry>,
    /// The control plane's version.
    pub control_plane_version: String,
    /// Secret of the TURN servers' ephemeral credentials (coturn's `static-auth-secret`),
    /// so that every edge's TURN accepts the credentials in connection tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_secret: Option<String>,
    /// Ids of API tokens revoked while tickets issued to them may still be valid: edges
    /// refuse those tickets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked_tokens: Vec<String>,
    /// Key this edge signs its dev URL session cookies with (base64; each edge has its own,
    /// since a cookie only ever goes back to the host that set it). Only for edges with a
    /// dev URL host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devurl_cookie_key: Option<String>,
}

/// One edge of the deployment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct EdgeEntry {
    /// Unique name (`primary` for the control plane's built-in edge).
    pub name: String,
    /// Region label shown to users.
    pub region: String,
    /// URL users (and other edges: TCP and UDP on the same port) reach it at.
    pub access_url: String,
    /// Wildcard host of its dev URLs, e.g. `*.eu.example.com`.
    #[serde(default)]
    pub devurl_host: Option<String>,
    /// Its STUN/TURN server: `stun:`, `turn:` and `turns:` URLs (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turn_urls: Vec<String>,
}

impl EdgeConfig {
    /// The ticket-verifying keys, decoded; malformed entries are skipped.
    pub fn ticket_public_keys(&self) -> Vec<Vec<u8>> {
        self.ticket_keys
            .iter()
            .filter_map(|k| B64.decode(k).ok())
            .collect()
    }
}

/// Encodes a ticket public key for [`EdgeConfig::ticket_keys`].
pub fn encode_public_key(key: &[u8]) -> String {
    B64.encode(key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_verifies_only_with_its_key_name_and_connection() {
        let k = MeshKey::generate();
        let other = MeshKey::generate();
        let exp = [5u8; 32];
        let mac = k.mac("eu", &exp).unwrap();
        assert!(verify(&[other.clone(), k.clone()], "eu", &exp, &mac));
        assert!(!verify(&[other], "eu", &exp, &mac));
        assert!(!verify(std::slice::from_ref(&k), "us", &exp, &mac));
        assert!(!verify(std::slice::from_ref(&k), "eu", &[6u8; 32], &mac));
        let bad = MeshKey {
            id: "x".into(),
            secret: "not base64!".into(),
        };
        assert!(bad.mac("eu", &exp).is_none());
        assert!(!verify(&[bad], "eu", &exp, &mac));
        assert!(!format!("{k:?}").contains(&k.secret));
    }
}
