//! Edge metrics, registered in a caller's registry (never global).

use axum::extract::State;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::Edge;

/// Why the edge refused or cut a request; the `reason` label of `perigee_edge_drops_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Malformed request or frame from a client or agent.
    BadRequest,
    /// Ticket missing, malformed, forged or for another workspace/port.
    BadTicket,
    /// Ticket past its expiry.
    ExpiredTicket,
    /// No agent connected for the workspace.
    NoAgent,
    /// Nothing listens on the workspace port.
    PortRefused,
    /// The agent link failed while opening or carrying a stream.
    LinkError,
    /// An agent presented a token that was not accepted.
    AgentAuth,
    /// Another edge failed the mesh handshake (unknown name, bad MAC, malformed hello).
    MeshAuth,
    /// The mesh link to the workspace's home edge failed or is not configured.
    MeshError,
}

/// Which party a drop is blamed on: the `side` label of `perigee_edge_drops_total`, so a
/// client sending garbage is never counted against the link or the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client (a tunnel, a browser, an API caller).
    Client,
    /// The workspace: its agent or its ports.
    Workspace,
    /// The transport between edge and agent or between edges (agent link, mesh).
    Link,
    /// This edge itself.
    Internal,
}

impl Side {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Workspace => "workspace",
            Self::Link => "link",
            Self::Internal => "internal",
        }
    }
}

impl DropReason {
    /// The side a drop for this reason is usually blamed on ([`EdgeMetrics::drop_on`] says
    /// otherwise where the request came from elsewhere, e.g. a malformed frame from an agent).
    pub fn side(self) -> Side {
        match self {
            Self::BadRequest | Self::BadTicket | Self::ExpiredTicket => Side::Client,
            Self::NoAgent | Self::PortRefused | Self::AgentAuth => Side::Workspace,
            Self::LinkError | Self::MeshAuth | Self::MeshError => Side::Link,
        }
    }

    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::BadTicket => "bad_ticket",
            Self::ExpiredTicket => "expired_ticket",
            Self::NoAgent => "no_agent",
            Self::PortRefused => "port_refused",
            Self::LinkError => "link_error",
            Self::AgentAuth => "agent_auth",
            Self::MeshAuth => "mesh_auth",
            Self::MeshError => "mesh_error",
        }
    }
}

/// Every metric the edge exports, prefixed `perigee_edge_`.
#[derive(Clone)]
pub struct EdgeMetrics {
    /// Bytes carried from clients to workspaces.
    pub bytes_to_workspace: IntCounter,
    /// Bytes carried from workspaces to clients.
    pub bytes_to_client: IntCounter,
    /// Streams opened, by path.
    pub streams_total: IntCounterVec,
    /// Signaling streams opened, by path (`envproxy`, `mesh_out`, `mesh_in`).
    pub signal_streams_total: IntCounterVec,
    /// Streams open now.
    pub streams_open: IntGauge,
    /// Agent links open now, by transport.
    pub links_open: IntGaugeVec,
    /// Agent-link handshake duration (transport + authentication), by transport.
    pub link_handshake_seconds: HistogramVec,
    /// Time from a tunnel request to the agent's answer that the port is connected.
    pub stream_setup_seconds: Histogram,
    /// Refused or cut requests, by reason and side.
    pub drops: IntCounterVec,
    /// Mesh links to and from other edges open now, by direction (`out` dialed, `in` accepted).
    pub mesh_links_open: IntGaugeVec,
    /// Round trip of each dialed mesh link, by peer edge.
    pub mesh_rtt_seconds: GaugeVec,
    /// Connections opened to workspace ports for dev URLs, by path (`envproxy`: this
    /// edge's agent link, `mesh_out`: over the mesh to the agent's home edge).
    pub devurl_connections: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

impl EdgeMetrics {
    /// Creates and registers the metrics.
    pub fn register(r: &Registry) -> Result<Self, prometheus::Error> {
        let bytes = IntCounterVec::new(
            Opts::new("perigee_edge_bytes_total", "Bytes carried through tunnels"),
            &["direction"],
        )?;
        r.register(Box::new(bytes.clone()))?;
        let signal_streams_total = IntCounterVec::new(
            Opts::new(
                "perigee_edge_signal_streams_total",
                "WebRTC signaling streams opened (Networking v2), by path",
            ),
            &["path"],
        )?;
        r.register(Box::new(signal_streams_total.clone()))?;
        let streams_total = IntCounterVec::new(
            Opts::new("perigee_edge_streams_total", "Tunnel streams opened"),
            &["path"],
        )?;
        r.register(Box::new(streams_total.clone()))?;
        let streams_open = IntGauge::new("perigee_edge_streams_open", "Tunnel streams open now")?;
        r.register(Box::new(streams_open.clone()))?;
        let links_open = IntGaugeVec::new(
            Opts::new("perigee_edge_agent_links_open", "Agent links open now"),
            &["transport"],
        )?;
        r.register(Box::new(links_open.clone()))?;
        let link_handshake_seconds = HistogramVec::new(
            HistogramOpts::new(
                "perigee_edge_link_handshake_seconds",
                "Agent link handshake duration",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["transport"],
        )?;
        r.register(Box::new(link_handshake_seconds.clone()))?;
        let stream_setup_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "perigee_edge_stream_setup_seconds",
                "Tunnel request to workspace port connected",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        r.register(Box::new(stream_setup_seconds.clone()))?;
        let drops = IntCounterVec::new(
            Opts::new(
                "perigee_edge_drops_total",
                "Requests refused or cut, by reason and by the side blamed",
            ),
            &["reason", "side"],
        )?;
        r.register(Box::new(drops.clone()))?;
        let mesh_links_open = IntGaugeVec::new(
            Opts::new(
                "perigee_edge_mesh_links_open",
                "Mesh links to other edges open now",
            ),
            &["direction"],
        )?;
        r.register(Box::new(mesh_links_open.clone()))?;
        let mesh_rtt_seconds = GaugeVec::new(
            Opts::new(
                "perigee_edge_mesh_rtt_seconds",
                "Round trip of the mesh link to another edge",
            ),
            &["peer"],
        )?;
        r.register(Box::new(mesh_rtt_seconds.clone()))?;
        let devurl_connections = IntCounterVec::new(
            Opts::new(
                "perigee_edge_devurl_connections_total",
                "Connections opened to workspace ports for dev URLs, by path",
            ),
            &["path"],
        )?;
        r.register(Box::new(devurl_connections.clone()))?;
        Ok(Self {
            bytes_to_workspace: bytes.with_label_values(&["to_workspace"]),
            bytes_to_client: bytes.with_label_values(&["to_client"]),
            streams_total,
            signal_streams_total,
            streams_open,
            links_open,
            link_handshake_seconds,
            stream_setup_seconds,
            drops,
            mesh_links_open,
            mesh_rtt_seconds,
            devurl_connections,
        })
    }

    /// Counts a stream opened on `path`: a data stream, or a signaling stream.
    pub fn stream_opened(&self, path: &str, signal: bool) {
        let c = if signal {
            &self.signal_streams_total
        } else {
            &self.streams_total
        };
        c.with_label_values(&[path]).inc();
    }

    /// Counts one drop, blamed on the reason's usual side.
    pub fn drop(&self, reason: DropReason) {
        self.drop_on(reason, reason.side());
    }

    /// Counts one drop blamed on `side`.
    pub fn drop_on(&self, reason: DropReason, side: Side) {
        self.drops
            .with_label_values(&[reason.as_str(), side.as_str()])
            .inc();
    }
}

/// `GET /metrics`: the Prometheus text format.
pub(crate) async fn serve(State(edge): State<Edge>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let mut out = String::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode_utf8(&edge.registry().gather(), &mut out) {
        return (http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], out).into_response()
}
