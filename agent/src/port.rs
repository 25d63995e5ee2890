//! Workspace ports on loopback: connecting one, and reading it without holding a buffer
//! while idle.

use std::time::Duration;

use relay_core::wire::StatusCode;
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Connects to `127.0.0.1:port` (port 22: the agent's SSH server on `ssh` when it runs
/// one), mapping failures to a link status and a message.
pub(crate) async fn connect(
    port: u16,
    ssh: Option<u16>,
) -> Result<TcpStream, (StatusCode, String)> {
    let asked = port;
    let port = match (port, ssh.as_ref()) {
        (22, Some(p)) => *p,
        // The SSH server's own loopback port is reached only as port 22, so the control
        // plane's rule for port 22 (a provider's "external SSH off") cannot be bypassed by
        // a ticket naming the loopback port.
        (p, Some(ssh)) if p == *ssh => {
            return Err((
                StatusCode::ConnectFailed,
                format!("port {p} is the agent's SSH server, reached only as port 22"),
            ))
        }
        _ => port,
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(("127.0.0.1", port))).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err((
            StatusCode::ConnectRefused,
            format!("nothing is listening on port {asked}"),
        )),
        Ok(Err(e)) => Err((
            StatusCode::ConnectFailed,
            format!("connect to port {asked}: {e}"),
        )),
        Err(_) => Err((
            StatusCode::ConnectFailed,
            format!("connect to port {asked} timed out"),
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
