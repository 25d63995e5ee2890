//! Connecting a stream to a workspace port.

use std::time::Duration;

use relay_core::wire::StatusCode;
use tokio::net::TcpStream;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the edge's streams go: workspace ports on loopback (port 22 to the agent's SSH
/// server when it runs one), through the end-to-end terminator when asked, and signaling
/// streams to the WebRTC answerer. One per running agent; nothing of it is process-wide,
/// so several agents can share a process (tests do).
pub(crate) struct Streams {
    ssh: Option<u16>,
    e2e: Option<crate::e2e::Terminator>,
    rtc: tokio::sync::OnceCell<crate::rtc::Answerer>,
}

impl Streams {
    /// Streams for an agent with its SSH server on `ssh` and end-to-end identity `e2e`.
    pub(crate) async fn new(
        ssh: Option<u16>,
        e2e: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        let e2e = match e2e {
            Some(server) => Some(crate::e2e::Terminator::start(server).await?),
            None => None,
        };
        Ok(Self {
            ssh,
            e2e,
            rtc: tokio::sync::OnceCell::new(),
        })
    }

    /// Opens what a stream for `port` connects to.
    pub(crate) async fn open(
        &self,
        port: u16,
        e2e: bool,
        signal: bool,
    ) -> Result<TcpStream, (StatusCode, String)> {
        let tcp = connect_port(port, self.ssh).await?;
        if signal {
            drop(tcp);
            let answerer = self
                .rtc
                .get_or_try_init(|| crate::rtc::Answerer::start(self.ssh))
                .await
                .map_err(|e| (StatusCode::ConnectFailed, format!("WebRTC answerer: {e}")))?;
            return answerer.front(port).await;
        }
        if !e2e {
            return Ok(tcp);
        }
        match &self.e2e {
            Some(t) => t.front(tcp).await,
            None => Err((
                StatusCode::ConnectFailed,
                "this agent has no end-to-end key".into(),
            )),
        }
    }
}

/// Connects to `127.0.0.1:port` (port 22: the agent's SSH server on `ssh` when it runs
/// one), mapping failures to a link status and a message.
pub(crate) async fn connect_port(
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
