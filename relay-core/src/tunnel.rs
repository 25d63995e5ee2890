//! The tunnel endpoint's contract between clients and edges: its path and headers (the
//! frames are WebSocket binary messages, `wsframe`; an empty one is a half-close).

/// Path of the tunnel endpoint.
pub const PATH: &str = "/api/v2/tunnel";
/// Header naming the workspace port.
pub const PORT_HEADER: &str = "perigee-port";
/// Optional header naming the workspace id the client means; refused when the ticket is for
/// another workspace.
pub const WORKSPACE_HEADER: &str = "perigee-workspace";
/// Header asking for a signaling stream (value `1`).
pub const SIGNAL_HEADER: &str = "perigee-signal";

/// Response header naming the edge that accepted the tunnel.
pub const EDGE_HEADER: &str = "perigee-edge";
/// Response header telling how the edge reaches the agent: `local` (the agent's link is on
/// this edge) or `mesh:HOME` (forwarded over the mesh to the home edge HOME).
pub const PATH_HEADER: &str = "perigee-path";
