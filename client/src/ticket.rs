//! Connection tickets as the CLI keeps them: the ICE servers they carry, whether WebRTC may
//! carry their streams, and the copy on disk.

/// Why streams stay on envproxy for a provider with end-to-end encryption.
pub const WHY_E2E: &str =
    "end-to-end encryption is on and WebRTC's DTLS keys are not pinned to the agent yet";
/// Why streams stay on envproxy for a provider with Networking v2 off.
pub const WHY_V2_OFF: &str = "Networking v2 is off for the provider";

#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Ticket {
    pub ticket: String,
    pub expires_at: u64,
    pub edge_url: String,
    pub home_edge: String,
    pub workspace_id: String,
    /// The agent's end-to-end key, when the provider encrypts tunnels end to end.
    #[serde(default)]
    pub e2e_fingerprint: Option<String>,
    /// STUN/TURN servers when the provider has Networking v2 on (empty: envproxy only).
    #[serde(default)]
    pub ice_servers: Vec<EdgeIce>,
}

/// A ticket's ICE server entry: the TURN server of one edge.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct EdgeIce {
    #[serde(flatten)]
    pub server: perigee_webrtc::IceServer,
    #[serde(default)]
    pub edge: String,
}

impl Ticket {
    /// The TURN server of the edge the client entered through, so relayed bytes stay in
    /// its region; the home edge's when the entry edge runs none; any one otherwise.
    pub fn ice_for(&self, entry: &str) -> Vec<perigee_webrtc::IceServer> {
        let pick = |name: &str| {
            self.ice_servers
                .iter()
                .find(|i| i.edge == name)
                .map(|i| i.server.clone())
        };
        pick(entry)
            .or_else(|| pick(&self.home_edge))
            .or_else(|| self.ice_servers.first().map(|i| i.server.clone()))
            .into_iter()
            .collect()
    }

    /// Why streams stay on envproxy, when WebRTC may not carry them: the provider asks for
    /// end-to-end encryption, whose pinned key WebRTC's DTLS does not use yet, or has
    /// Networking v2 off (the ticket carries no ICE servers).
    pub fn no_webrtc_reason(&self) -> Option<&'static str> {
        if self.e2e_fingerprint.is_some() {
            Some(WHY_E2E)
        } else if self.ice_servers.is_empty() {
            Some(WHY_V2_OFF)
        } else {
            None
        }
    }

    /// WebRTC may carry streams.
    pub fn webrtc_allowed(&self) -> bool {
        self.no_webrtc_reason().is_none()
    }
}

/// Tickets kept on disk (mode 0600, next to the session) so that each `perigee tunnel`
/// (one process per ssh connection) need not ask the control plane, and tunnels still open
/// while it is unreachable. Keyed by deployment, workspace and port; pruned when expired.
pub mod ticket_cache {
    use std::collections::BTreeMap;

    use super::Ticket;

    fn path() -> Option<std::path::PathBuf> {
        crate::session::config_dir()
            .ok()
            .map(|d| d.join("tickets.json"))
    }

    fn key(deployment: &str, workspace: &str, port: u16) -> String {
        format!("{deployment} {workspace} {port}")
    }

    fn load() -> BTreeMap<String, Ticket> {
        path()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn get(deployment: &str, workspace: &str, port: u16, min_expiry: u64) -> Option<Ticket> {
        load()
            .remove(&key(deployment, workspace, port))
            .filter(|t| t.expires_at > min_expiry)
    }

    pub fn remove(deployment: &str, workspace: &str, port: u16) {
        let mut all = load();
        if all.remove(&key(deployment, workspace, port)).is_some() {
            if let (Some(p), Ok(bytes)) = (path(), serde_json::to_vec(&all)) {
                let _ = relay_core::tls::write_private(&p, &bytes);
            }
        }
    }

    pub fn put(deployment: &str, workspace: &str, port: u16, t: &Ticket) {
        let now = relay_core::unix_now();
        let mut all = load();
        all.retain(|_, t| t.expires_at > now);
        all.insert(key(deployment, workspace, port), t.clone());
        if let (Some(p), Ok(bytes)) = (path(), serde_json::to_vec(&all)) {
            if let Some(dir) = p.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = relay_core::tls::write_private(&p, &bytes);
        }
    }
}
