//! Agent-link settings both ends must agree on (each end advertises its own receive
//! windows, so a mismatch silently caps throughput in one direction).

use std::time::Duration;

/// Flow-control window per stream (QUIC and HTTP/2): enough for one stream to fill a fast
/// path at loopback round-trip times.
pub const STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Flow-control window per link.
pub const CONN_WINDOW: u32 = 32 * 1024 * 1024;
/// Most concurrent tunnel streams on one link.
pub const MAX_STREAMS: u32 = 16_384;
/// Keep-alive interval: short enough to keep NAT bindings open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// A link silent for this long is dead.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);

/// Exit code of an agent whose workspace is gone (its directory removed, or its token
/// refused by the edge twice in a row): its supervisor does not start it again.
pub const EXIT_WORKSPACE_GONE: i32 = 3;
/// Consecutive refusals of the agent's token after which the workspace counts as gone. A
/// refusal is the control plane's answer ("no such agent token"); an edge that cannot ask
/// the control plane answers "unavailable" instead, which never ends an agent.
pub const REFUSALS_UNTIL_GONE: u32 = 2;

/// Socket buffer size asked for on link UDP sockets. The kernel default (~208 KiB) overflows
/// when a receiver is descheduled for a moment: measured here, 1% of datagrams were dropped
/// on loopback (`RcvbufErrors`), and each loss halves QUIC's congestion window. The kernel
/// caps the request at `net.core.rmem_max`/`wmem_max`.
pub const UDP_BUFFER: usize = 8 * 1024 * 1024;

/// Enlarges a link UDP socket's buffers (best effort: a smaller cap is not an error).
pub fn tune_udp_socket(socket: &std::net::UdpSocket) {
    let s = socket2::SockRef::from(socket);
    let _ = s.set_recv_buffer_size(UDP_BUFFER);
    let _ = s.set_send_buffer_size(UDP_BUFFER);
}

/// The QUIC transport settings of an agent link (same on edge and agent).
pub fn quic_transport() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(MAX_STREAMS));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    t.stream_receive_window(quinn::VarInt::from_u32(STREAM_WINDOW));
    t.receive_window(quinn::VarInt::from_u32(CONN_WINDOW));
    t.send_window(u64::from(CONN_WINDOW));
    t.keep_alive_interval(Some(KEEP_ALIVE));
    if let Ok(idle) = quinn::IdleTimeout::try_from(IDLE_TIMEOUT) {
        t.max_idle_timeout(Some(idle));
    }
    t
}
