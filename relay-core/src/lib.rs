//! The data path's pieces, free of I/O where possible.
//!
//! * [`wire`]: the agent-link frames (hello, stream open, status) — one module owns the format.
//! * [`ticket`]: Ed25519 connection tickets, signed by the control plane, verified offline by edges.
//! * [`token`]: API and agent tokens: generation and the hash we store.
//! * [`tls`]: rustls configurations and the self-signed CA kept in a data directory.
//! * [`mesh`]: authentication of the QUIC links between edges.
//! * [`stun`]: the STUN/TURN message codec (RFC 8489, RFC 8656), for the edges' server and
//!   the peers' TURN client.
//! * [`rtc`]: the signaling codec of Networking v2 and the TURN client (the peers, on str0m,
//!   are the `perigee-webrtc` crate).
//! * [`cookies`]: reading `Cookie` and writing `Set-Cookie` (the `cookie` crate), one place.
//! * [`devurl`]: dev URL host names (`PORT--WORKSPACE--USER.HOST`), parsed the same on every edge.
//! * [`resume`]: resumable byte streams, so an SSH session outlives a dropped tunnel.
//! * [`splice`]: copy buffer sizes and small helpers shared by edge, agent and CLI.
//! * [`tunnel`]: the tunnel endpoint's path and headers.
//!
//! This crate never imports the other perigee crates.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod accept;
pub mod backoff;
pub mod cookies;
pub mod devurl;
pub mod e2e;
#[doc(hidden)]
pub mod fuzzing;
pub mod link;
pub mod mesh;
pub mod resume;
pub mod rtc;
pub mod splice;
pub mod stun;
pub mod ticket;
pub mod tls;
pub mod token;
pub mod tunnel;
pub mod turn_creds;
pub mod wire;
pub mod wsframe;

/// Unix time in seconds, from the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Creates `dir` (and its parents) and makes it private to its owner (0700): a role's data
/// directory holds keys.
pub fn create_private_dir(dir: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let with = |what: &str, e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("{what} {}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| with("creating data directory", e))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| with("securing", e))
}
