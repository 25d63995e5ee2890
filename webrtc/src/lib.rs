//! WebRTC peers for Networking v2: str0m (sans I/O) with one tokio driver, used by the CLI
//! (offerer) and the agent (answerer). Only the roles that speak WebRTC depend on this crate,
//! so the control plane, the TURN server, Kubernetes and SSH never compile str0m.
//!
//! A peer gathers host candidates on every IPv4 interface address, a server-reflexive one
//! per STUN server and a relayed one from its own TURN client
//! ([`relay_core::rtc::turn_client`]); signaling ([`signal`], a codec in `relay-core` so the
//! edges can carry it without WebRTC) travels through the edges. Data channels are reliable
//! and ordered, one per TCP stream, with credit-based flow control so a slow reader never
//! makes the other side buffer without bound.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod driver;
mod gather;
mod peer;
mod stream;

pub use driver::CONNECT_TIMEOUT;
pub use peer::{Incoming, Peer, PeerConfig, Role};
pub use relay_core::rtc::signal::{self, IceServer, Signal};
pub use relay_core::rtc::turn_client;

use std::net::SocketAddr;

/// Where a connected peer's data goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathInfo {
    /// Through a TURN relay (ours or the other side's).
    pub relayed: bool,
    /// Our address on the selected pair (the relayed address when we relay).
    pub local: SocketAddr,
    /// The other side's address on the selected pair.
    pub remote: SocketAddr,
    /// Our TURN server, when we relay.
    pub turn: Option<SocketAddr>,
}

impl PathInfo {
    /// `direct` or `relay`.
    pub fn kind(&self) -> &'static str {
        if self.relayed {
            "relay"
        } else {
            "direct"
        }
    }
}

impl std::fmt::Display for PathInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.turn {
            Some(t) => write!(
                f,
                "relay via TURN {t} (relayed {} <-> {})",
                self.local, self.remote
            ),
            None if self.relayed => write!(
                f,
                "relay via the other side's TURN ({} <-> {})",
                self.local, self.remote
            ),
            None => write!(f, "direct ({} <-> {})", self.local, self.remote),
        }
    }
}

/// A peer connection's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerState {
    /// Gathering, signaling, checking.
    Connecting,
    /// The data channels' association is up.
    Connected(PathInfo),
    /// Gave up (the reason).
    Failed(String),
}

/// Starts two peers in this process whose signaling goes through channels: for tests and
/// benchmarks. Returns the offerer, the answerer and the streams the offerer opens.
pub async fn in_process_pair(
    offerer: PeerConfig,
    answerer: PeerConfig,
) -> std::io::Result<(Peer, Peer, tokio::sync::mpsc::UnboundedReceiver<Incoming>)> {
    use tokio::sync::mpsc;
    let (o_out, o_out_rx) = mpsc::unbounded_channel::<Signal>();
    let (a_out, a_out_rx) = mpsc::unbounded_channel::<Signal>();
    let (o_in_tx, o_in) = mpsc::channel(64);
    let (a_in_tx, a_in) = mpsc::channel(64);
    for (mut rx, tx) in [(o_out_rx, a_in_tx), (a_out_rx, o_in_tx)] {
        tokio::spawn(async move {
            while let Some(s) = rx.recv().await {
                if tx.send(s).await.is_err() {
                    break;
                }
            }
        });
    }
    let (a, incoming) = Peer::start(answerer, a_out, a_in).await?;
    let (o, _) = Peer::start(offerer, o_out, o_in).await?;
    Ok((o, a, incoming))
}
