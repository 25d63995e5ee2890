//! Connecting a stream to a workspace port.

use std::time::Duration;

use relay_core::wire::StatusCode;
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `127.0.0.1:port`, mapping failures to a link status and a message.
pub(crate) async fn connect_port(port: u16) -> Result<TcpStream, (StatusCode, String)> {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err((
            StatusCode::ConnectRefused,
            format!("nothing is listening on port {port}"),
        )),
        Ok(Err(e)) => Err((
            StatusCode::ConnectFailed,
            format!("connect to port {port}: {e}"),
        )),
        Err(_) => Err((
            StatusCode::ConnectFailed,
            format!("connect to port {port} timed out"),
        )),
    }
}

/// Reads one chunk when the socket has data, allocating only then: an idle stream holds no
/// buffer (the idle-memory target is 10 KB per connection for edge and agent together).
/// Returns `None` at end of stream.
pub(crate) async fn read_chunk(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
) -> std::io::Result<Option<bytes::Bytes>> {
    loop {
        rd.readable().await?;
        let mut buf = bytes::BytesMut::with_capacity(relay_core::splice::BUF_SIZE);
        match rd.try_read_buf(&mut buf) {
            Ok(0) => return Ok(None),
            // Small reads are copied out so the 64 KiB allocation is not kept alive by a few
            // bytes waiting in the peer's send queue.
            Ok(n) if n < 4096 => return Ok(Some(bytes::Bytes::copy_from_slice(&buf[..n]))),
            Ok(_) => return Ok(Some(buf.freeze())),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
}
