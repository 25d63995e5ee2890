//! Relays a tunnel's WebSocket frames to and from an agent-link stream without assembling
//! messages (see `relay_core::wsframe`): client payload is unmasked and forwarded chunk by
//! chunk as it arrives, and each chunk from the workspace becomes one binary frame.
//! An idle tunnel holds no buffer. An empty binary frame is a half-close; a Close frame from
//! the client ends both directions.

use std::io;

use bytes::BytesMut;
use relay_core::splice::BUF_SIZE;
use relay_core::wsframe::{self, Header, Opcode, MAX_HEADER_LEN};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::sync::Mutex;

use crate::links::{LinkRecv, LinkSend};
use crate::{EdgeMetrics, Side};

/// Why a relay ended early, by the side that failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RelayError {
    /// The client broke the WebSocket protocol (unmasked or text frames, a stream cut inside
    /// a frame).
    #[error("client protocol: {0}")]
    ClientProtocol(#[source] io::Error),
    /// The client's connection failed.
    #[error("client connection: {0}")]
    Client(#[source] io::Error),
    /// The agent link's stream failed.
    #[error("agent link: {0}")]
    Link(#[source] io::Error),
}

impl RelayError {
    /// The side blamed.
    pub(crate) fn side(&self) -> Side {
        match self {
            Self::ClientProtocol(_) | Self::Client(_) => Side::Client,
            Self::Link(_) => Side::Link,
        }
    }

    /// An error on the client's side: a protocol violation or a failed connection.
    fn client(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof => Self::ClientProtocol(e),
            _ => Self::Client(e),
        }
    }
}

/// How the client side ended.
enum UpEnd {
    /// Empty binary frame, or the connection ended at a frame boundary.
    Eof,
    /// A Close frame: stop both directions.
    Close,
}

fn protocol(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Runs the relay until both directions end, the client closes, or either side fails.
pub(crate) async fn relay<S>(
    io: S,
    tx: LinkSend,
    rx: LinkRecv,
    m: &EdgeMetrics,
) -> Result<(), RelayError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (rd, wr) = tokio::io::split(io);
    let wr = Mutex::new(wr);
    let up = client_to_workspace(rd, tx, &wr, m);
    let down = workspace_to_client(rx, &wr, m);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    while !(up_done && down_done) {
        tokio::select! {
            r = &mut up, if !up_done => match r? {
                UpEnd::Eof => up_done = true,
                UpEnd::Close => break,
            },
            r = &mut down, if !down_done => {
                r?;
                down_done = true;
            }
        }
    }
    let mut w = wr.lock().await;
    // Close with status 1000 (normal closure).
    let _ = w.write_all(&[0x88, 0x02, 0x03, 0xe8]).await;
    let _ = w.shutdown().await;
    Ok(())
}

/// Reads one frame header; `None` when the connection ends cleanly before a frame.
async fn read_header<R: AsyncRead + Unpin>(rd: &mut R) -> io::Result<Option<Header>> {
    let mut buf = [0u8; MAX_HEADER_LEN];
    match rd.read_exact(&mut buf[..2]).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let ext = match buf[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let need = 2 + ext + if buf[1] & 0x80 != 0 { 4 } else { 0 };
    rd.read_exact(&mut buf[2..need]).await?;
    match Header::decode(&buf[..need]) {
        Ok(Some((h, _))) => Ok(Some(h)),
        Ok(None) => Err(protocol("truncated WebSocket header")),
        Err(e) => Err(protocol(e.to_string())),
    }
}

async fn client_to_workspace<R, W>(
    mut rd: R,
    mut tx: LinkSend,
    wr: &Mutex<W>,
    m: &EdgeMetrics,
) -> Result<UpEnd, RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    loop {
        let Some(h) = read_header(&mut rd).await.map_err(RelayError::client)? else {
            tx.finish();
            return Ok(UpEnd::Eof);
        };
        let Some(mask) = h.mask else {
            return Err(RelayError::ClientProtocol(protocol(
                "client WebSocket frames must be masked",
            )));
        };
        match h.opcode {
            Opcode::Binary if h.len == 0 && h.fin => {
                tx.finish();
                return Ok(UpEnd::Eof);
            }
            Opcode::Binary | Opcode::Continuation => {
                let (mut left, mut offset) = (h.len, 0u64);
                while left > 0 {
                    let want = left.min(BUF_SIZE as u64) as usize;
                    let mut buf = BytesMut::with_capacity(want);
                    let n = (&mut rd)
                        .take(want as u64)
                        .read_buf(&mut buf)
                        .await
                        .map_err(RelayError::client)?;
                    if n == 0 {
                        return Err(RelayError::ClientProtocol(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "tunnel ended inside a frame",
                        )));
                    }
                    wsframe::unmask(&mut buf, mask, offset);
                    offset += n as u64;
                    left -= n as u64;
                    m.bytes_to_workspace.inc_by(n as u64);
                    // Keep small reads small: the link may hold the chunk until it is acked.
                    let chunk = if n < 4096 {
                        bytes::Bytes::copy_from_slice(&buf)
                    } else {
                        buf.freeze()
                    };
                    tx.write(chunk).await.map_err(RelayError::Link)?;
                }
            }
            Opcode::Text => {
                return Err(RelayError::ClientProtocol(protocol(
                    "text message on a tunnel (binary only)",
                )))
            }
            Opcode::Close => {
                tx.finish();
                return Ok(UpEnd::Close);
            }
            Opcode::Ping | Opcode::Pong => {
                let mut payload = [0u8; 125];
                let len = h.len as usize;
                rd.read_exact(&mut payload[..len])
                    .await
                    .map_err(RelayError::client)?;
                if h.opcode == Opcode::Ping {
                    wsframe::unmask(&mut payload[..len], mask, 0);
                    let mut frame = Vec::with_capacity(2 + len);
                    Header::encode_server(Opcode::Pong, len, &mut frame);
                    frame.extend_from_slice(&payload[..len]);
                    let mut w = wr.lock().await;
                    w.write_all(&frame).await.map_err(RelayError::client)?;
                    w.flush().await.map_err(RelayError::client)?;
                }
            }
        }
    }
}

async fn workspace_to_client<W>(
    mut rx: LinkRecv,
    wr: &Mutex<W>,
    m: &EdgeMetrics,
) -> Result<(), RelayError>
where
    W: AsyncWrite + Unpin,
{
    while let Some(chunk) = rx.read().await.map_err(RelayError::Link)? {
        m.bytes_to_client.inc_by(chunk.len() as u64);
        // Header and payload in one write, so TLS seals one record rather than two.
        let mut frame = Vec::with_capacity(chunk.len() + 10);
        Header::encode_server(Opcode::Binary, chunk.len(), &mut frame);
        frame.extend_from_slice(&chunk);
        let mut w = wr.lock().await;
        w.write_all(&frame).await.map_err(RelayError::client)?;
        w.flush().await.map_err(RelayError::client)?;
    }
    let mut w = wr.lock().await;
    w.write_all(&[0x82, 0x00])
        .await
        .map_err(RelayError::client)?;
    w.flush().await.map_err(RelayError::client)
}

#[cfg(test)]
#[path = "wsrelay_tests.rs"]
mod tests;
