//! The str0m-free half of Networking v2: the signaling codec ([`signal`]) the edges carry
//! and the peers speak, and the TURN client ([`turn_client`]) a peer gathers its relayed
//! candidate with. The peers themselves live in the `perigee-webrtc` crate.

pub mod signal;
pub mod turn_client;

pub use signal::{IceServer, Signal};
