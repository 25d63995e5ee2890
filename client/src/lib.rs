//! The client side of perigee's data path, for the CLI and anything else that reaches
//! workspaces (an editor plugin, the dashboard's helper): the session and the REST client
//! ([`session`], [`api`]), tickets and their cache ([`ticket`]), the entry edge's choice
//! ([`regions`]), dialing an edge through proxies ([`dial`]), the envproxy/WebRTC race and
//! port forwarding ([`tunnel`]), end-to-end sessions with the agent ([`e2e_stream`]) and the
//! resumable SSH stream ([`resume`]).
//!
//! One entry point opens a tunnel: [`connect`]`(workspace, port, options)` gives a
//! [`Tunnel`] to splice with local streams.
#![forbid(unsafe_code)]

pub mod api;
pub mod dial;
pub mod e2e_stream;
pub mod known;
pub mod regions;
pub mod resume;
pub mod session;
pub mod ticket;
pub mod tunnel;
pub mod webrtc;

pub use tunnel::{connect, Options, Tunnel};
pub use webrtc::PathChoice;
