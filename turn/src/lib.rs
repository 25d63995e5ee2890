//! STUN and TURN for perigee's edges (RFC 8489, RFC 8656): the message codec, the peer
//! policy that keeps the relay off the edge's own networks, ephemeral credentials shared
//! with the control plane, and the server over UDP, TCP and TLS.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod allocation;
pub mod auth;
pub mod binding;
pub mod fuzzing;
pub mod policy;
pub mod server;
pub mod stream;

pub use allocation::Transport;
/// The STUN codec lives in `relay-core` (clients use it too).
pub use relay_core::stun;
pub use server::{TurnConfig, TurnMetrics, TurnServer};
