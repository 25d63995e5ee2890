//! Shared constants for moving bytes between sockets and streams.
//!
//! Tunnel convention: an empty binary WebSocket message means "no more data in this
//! direction" (TCP half-close), since WebSocket has no half-close of its own; a `Close`
//! frame ends both directions.

/// Read buffer size for every splice loop. 64 KiB keeps syscalls per byte low and matches the
/// largest TLS/QUIC write that still coalesces into GSO batches.
pub const BUF_SIZE: usize = 64 * 1024;

/// Largest WebSocket message a tunnel client accepts (the edge sends at most one link
/// chunk per frame; an HTTP/2 link can deliver up to 256 KiB at once).
pub const MAX_WS_MESSAGE: usize = 1024 * 1024;

use bytes::Bytes;
use tokio::sync::mpsc;

/// A request/response body fed from a bounded channel: the sender waits when the peer's flow
/// control window is full (backpressure). Dropping the sender ends the body.
pub struct ChannelBody {
    rx: mpsc::Receiver<Bytes>,
}

impl ChannelBody {
    /// A body and the sender that feeds it.
    pub fn new() -> (mpsc::Sender<Bytes>, Self) {
        let (tx, rx) = mpsc::channel(4);
        (tx, Self { rx })
    }
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.rx
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}
