//! Where the edge's streams go (one [`Streams`] per running agent).

use relay_core::wire::StatusCode;
use tokio::net::TcpStream;

/// Where the edge's streams go: workspace ports on loopback (port 22 to the agent's SSH
/// server when it runs one), through the end-to-end terminator when asked, and signaling
/// streams to the WebRTC answerer. One per running agent; nothing of it is process-wide,
/// so several agents can share a process (tests do).
pub(crate) struct Streams {
    ssh: Option<u16>,
    e2e: Option<crate::hop::Hop<TcpStream>>,
    rtc: tokio::sync::OnceCell<crate::hop::Hop<u16>>,
}

impl Streams {
    /// Streams for an agent with its SSH server on `ssh` and end-to-end identity `e2e`.
    pub(crate) async fn new(
        ssh: Option<u16>,
        e2e: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> std::io::Result<Self> {
        let e2e = match e2e {
            Some(server) => Some(crate::e2e::terminator(server).await?),
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
        let tcp = crate::port::connect(port, self.ssh).await?;
        if signal {
            drop(tcp);
            let answerer = self
                .rtc
                .get_or_try_init(|| crate::rtc::answerer(self.ssh))
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
