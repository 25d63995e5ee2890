//! Agent links: one per connected workspace agent, carrying one stream per tunnel.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use relay_core::splice::ChannelBody;
use relay_core::wire::{self, Frame, StatusCode};
use tokio::sync::mpsc;

/// How an agent link is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// QUIC over UDP.
    Quic,
    /// HTTP/2 over an upgraded TLS/TCP connection (UDP blocked).
    H2,
}

impl Transport {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Quic => "quic",
            Self::H2 => "h2",
        }
    }
}

/// Summary of a connected agent.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    /// Transport in use.
    pub transport: Transport,
    /// How long the link has been up.
    pub uptime: Duration,
}

pub(crate) enum LinkConn {
    Quic(quinn::Connection),
    H2(hyper::client::conn::http2::SendRequest<ChannelBody>),
}

/// A connected agent.
pub struct AgentLink {
    id: u64,
    workspace_id: String,
    workspace_name: String,
    since: Instant,
    conn: LinkConn,
    closed: tokio::sync::watch::Sender<bool>,
}

/// Why a stream could not be opened to the workspace.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The agent connected, but nothing listens on the port.
    #[error("nothing is listening on port {0} in the workspace")]
    Refused(u16),
    /// The agent could not connect for another reason.
    #[error("the agent could not connect to port {port}: {message}")]
    Failed {
        /// Port.
        port: u16,
        /// Agent's explanation.
        message: String,
    },
    /// The link failed.
    #[error("agent link failed: {0}")]
    Link(#[from] LinkFault),
    /// The agent did not answer in time.
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
}

impl OpenError {
    /// The side blamed: the workspace for its ports, the link for the rest.
    pub fn side(&self) -> crate::Side {
        match self {
            Self::Refused(_) | Self::Failed { .. } => crate::Side::Workspace,
            Self::Link(_) | Self::Timeout(_) => crate::Side::Link,
        }
    }
}

/// How a link (agent link or mesh) failed while opening a stream.
#[derive(Debug, thiserror::Error)]
pub enum LinkFault {
    /// The QUIC connection is gone.
    #[error("QUIC connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Writing the stream's opening frame failed.
    #[error("QUIC stream: {0}")]
    Write(#[from] quinn::WriteError),
    /// The answer frame could not be read.
    #[error("answer: {0}")]
    Read(#[from] wire::ReadFrameError),
    /// The HTTP/2 link failed.
    #[error("HTTP/2: {0}")]
    H2(#[from] hyper::Error),
    /// The stream request could not be made.
    #[error("request: {0}")]
    Request(#[from] http::Error),
    /// The far side answered something else than the protocol allows.
    #[error("unexpected answer: {0}")]
    Unexpected(String),
    /// Reaching the home edge over the mesh failed.
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshError),
    /// The home edge refused with a status other than the port's.
    #[error("home edge {home}: {message}")]
    HomeRefused {
        /// The home edge.
        home: String,
        /// Its message.
        message: String,
    },
}

const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

static NEXT_LINK_ID: AtomicU64 = AtomicU64::new(1);

impl AgentLink {
    pub(crate) fn new(workspace_id: String, workspace_name: String, conn: LinkConn) -> Self {
        Self {
            id: NEXT_LINK_ID.fetch_add(1, Ordering::Relaxed),
            workspace_id,
            workspace_name,
            since: Instant::now(),
            conn,
            closed: tokio::sync::watch::channel(false).0,
        }
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Workspace id.
    pub fn workspace_id(&self) -> &str {
        &self.workspace_id
    }

    /// Workspace name.
    pub fn workspace_name(&self) -> &str {
        &self.workspace_name
    }

    /// Transport in use.
    pub fn transport(&self) -> Transport {
        match self.conn {
            LinkConn::Quic(_) => Transport::Quic,
            LinkConn::H2(_) => Transport::H2,
        }
    }

    /// Summary for status displays.
    pub fn info(&self) -> LinkInfo {
        LinkInfo {
            transport: self.transport(),
            uptime: self.since.elapsed(),
        }
    }

    /// Closes the link; the agent will reconnect unless its token was revoked.
    pub fn close(&self, reason: &str) {
        if let LinkConn::Quic(c) = &self.conn {
            c.close(1u32.into(), reason.as_bytes());
        }
        self.closed.send_replace(true);
    }

    /// Resolves when [`close`](Self::close) is called.
    pub(crate) async fn closed(&self) {
        let mut rx = self.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Opens a stream to `127.0.0.1:port` in the workspace (`e2e`: the stream carries an
    /// end-to-end encrypted session the agent terminates; `signal`: the stream carries WebRTC
    /// signaling for a peer connection whose data channels reach the port).
    pub async fn open(
        &self,
        port: u16,
        session_id: u64,
        e2e: bool,
        signal: bool,
    ) -> Result<(LinkSend, LinkRecv), OpenError> {
        match tokio::time::timeout(OPEN_TIMEOUT, self.open_inner(port, session_id, e2e, signal))
            .await
        {
            Ok(r) => r,
            Err(_) => Err(OpenError::Timeout(OPEN_TIMEOUT)),
        }
    }

    async fn open_inner(
        &self,
        port: u16,
        session_id: u64,
        e2e: bool,
        signal: bool,
    ) -> Result<(LinkSend, LinkRecv), OpenError> {
        match &self.conn {
            LinkConn::Quic(conn) => {
                let (mut send, mut recv) = conn.open_bi().await.map_err(LinkFault::from)?;
                let open = Frame::Open {
                    port,
                    session_id,
                    e2e,
                    signal,
                };
                send.write_all(&open.to_bytes())
                    .await
                    .map_err(LinkFault::from)?;
                match wire::read_frame(&mut recv).await.map_err(LinkFault::from)? {
                    Frame::Status {
                        code: StatusCode::Ok,
                        ..
                    } => Ok((LinkSend::Quic(send), LinkRecv::Quic(recv))),
                    Frame::Status { code, message } => Err(status_error(port, code, message)),
                    other => Err(LinkFault::Unexpected(format!("{other:?}")).into()),
                }
            }
            LinkConn::H2(sender) => {
                let mut sender = sender.clone();
                let (tx, body) = ChannelBody::new();
                let mut req = http::Request::post("/stream")
                    .header(wire::H2_PORT_HEADER, port)
                    .header(wire::H2_SESSION_HEADER, session_id);
                if e2e {
                    req = req.header(wire::H2_E2E_HEADER, "1");
                }
                if signal {
                    req = req.header(wire::H2_SIGNAL_HEADER, "1");
                }
                let req = req.body(body).map_err(LinkFault::from)?;
                sender.ready().await.map_err(LinkFault::from)?;
                let resp = sender.send_request(req).await.map_err(LinkFault::from)?;
                if resp.status() == http::StatusCode::OK {
                    return Ok((LinkSend::H2(tx), LinkRecv::H2(resp.into_body())));
                }
                let code = resp
                    .headers()
                    .get("perigee-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u8>().ok())
                    .unwrap_or(StatusCode::ConnectFailed as u8);
                let limited = http_body_util::Limited::new(resp.into_body(), wire::MAX_MESSAGE_LEN);
                let message = match limited.collect().await {
                    Ok(b) => String::from_utf8_lossy(&b.to_bytes()).into_owned(),
                    Err(_) => String::new(),
                };
                let code = if code == StatusCode::ConnectRefused as u8 {
                    StatusCode::ConnectRefused
                } else {
                    StatusCode::ConnectFailed
                };
                Err(status_error(port, code, message))
            }
        }
    }
}

fn status_error(port: u16, code: StatusCode, message: String) -> OpenError {
    match code {
        StatusCode::ConnectRefused => OpenError::Refused(port),
        _ => OpenError::Failed { port, message },
    }
}

/// The edge's sending half of a link stream.
pub enum LinkSend {
    /// QUIC stream.
    Quic(quinn::SendStream),
    /// HTTP/2 request body.
    H2(mpsc::Sender<Bytes>),
}

impl LinkSend {
    /// Sends bytes toward the workspace.
    pub async fn write(&mut self, b: Bytes) -> std::io::Result<()> {
        match self {
            Self::Quic(s) => s.write_chunk(b).await.map_err(std::io::Error::other),
            Self::H2(tx) => tx.send(b).await.map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "agent stream closed")
            }),
        }
    }

    /// Signals end of data toward the workspace (half-close).
    pub fn finish(self) {
        match self {
            Self::Quic(mut s) => {
                let _ = s.finish();
            }
            Self::H2(tx) => drop(tx),
        }
    }
}

/// The edge's receiving half of a link stream.
pub enum LinkRecv {
    /// QUIC stream.
    Quic(quinn::RecvStream),
    /// HTTP/2 response body.
    H2(hyper::body::Incoming),
}

impl LinkRecv {
    /// Receives the next chunk from the workspace; `None` at end of data.
    pub async fn read(&mut self) -> std::io::Result<Option<Bytes>> {
        match self {
            Self::Quic(r) => match r.read_chunk(relay_core::splice::BUF_SIZE, true).await {
                Ok(Some(c)) => Ok(Some(c.bytes)),
                Ok(None) => Ok(None),
                Err(e) => Err(std::io::Error::other(e)),
            },
            Self::H2(body) => loop {
                match body.frame().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(std::io::Error::other(e)),
                    Some(Ok(f)) => {
                        if let Ok(data) = f.into_data() {
                            if !data.is_empty() {
                                return Ok(Some(data));
                            }
                        }
                    }
                }
            },
        }
    }
}

/// Copies one direction until its end, then half-closes the destination.
async fn pump(mut from: LinkRecv, mut to: LinkSend) -> std::io::Result<()> {
    while let Some(b) = from.read().await? {
        to.write(b).await?;
    }
    to.finish();
    Ok(())
}

/// Joins two link streams (an edge forwarding between the mesh and an agent link): each
/// `(from, to)` pair is copied until its end; returns when both directions are done.
pub(crate) async fn pump_pair(
    a: (LinkRecv, LinkSend),
    b: (LinkRecv, LinkSend),
) -> std::io::Result<()> {
    tokio::try_join!(pump(a.0, a.1), pump(b.0, b.1)).map(|_| ())
}

#[cfg(test)]
#[path = "links_tests.rs"]
mod tests;
