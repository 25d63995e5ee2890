//! TURN over TCP and TLS (RFC 8656 §3.1, §12.5): clients whose networks block UDP reach
//! the relay on a TCP port, or on TLS where the edge owns 443. Messages follow one another
//! on the stream (ChannelData padded to four bytes); the allocation belongs to the
//! connection and ends with it. Relayed addresses stay UDP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{debug, Instrument};

use crate::allocation::{Client, Reply, Transport};
use crate::server::DEFAULT_LIFETIME;
use crate::stun;
use crate::TurnServer;

/// A connection must finish its TLS handshake and send its first message within this.
pub const FIRST_MESSAGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection without an allocation closes after this long without a message.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections beyond the allocation quota by this many are closed at once (room for the
/// ones that only ask for Binding or are about to allocate).
pub const EXTRA_CONNECTIONS: usize = 256;
/// Messages queued for one connection's writer before relaying waits for it.
const WRITE_QUEUE: usize = 256;

impl TurnServer {
    /// Serves STUN and TURN on a bound TCP listener until `shutdown` resolves; with `tls`,
    /// each connection is a TLS session first. Connections end with the shutdown.
    pub async fn serve_tcp(
        self,
        listener: TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let transport = if tls.is_some() {
            Transport::Tls
        } else {
            Transport::Tcp
        };
        let open = Arc::new(AtomicUsize::new(0));
        let limit = self.max_allocations() + EXTRA_CONNECTIONS;
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, addr) = tokio::select! {
                r = relay_core::accept::next(&listener, "turn") => match r {
                    Some(x) => x,
                    None => continue,
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                _ = &mut shutdown => break,
            };
            if open.load(Ordering::Relaxed) >= limit {
                self.refuse("connections");
                continue;
            }
            let client = Client { transport, addr };
            let server = self.clone();
            let tls = tls.clone();
            let guard = Open::new(open.clone());
            let span = tracing::debug_span!("turn_conn", client = %addr, transport = ?transport);
            conns.spawn(
                async move {
                    let _guard = guard;
                    match tls {
                        None => connection(server, tcp, client).await,
                        Some(acceptor) => {
                            match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, acceptor.accept(tcp))
                                .await
                            {
                                Ok(Ok(s)) => connection(server, s, client).await,
                                Ok(Err(e)) => {
                                    debug!(error = %e, "turn tls handshake");
                                    server.refuse("tls");
                                }
                                Err(_) => server.refuse("tls"),
                            }
                        }
                    }
                }
                .instrument(span),
            );
        }
        conns.abort_all();
    }
}

impl TurnServer {
    /// Serves one connection accepted elsewhere (an edge's HTTP port that found a STUN
    /// message first) until it closes; its allocation ends with it.
    pub async fn serve_connection<S>(self, stream: S, peer: std::net::SocketAddr, tls: bool)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let transport = if tls { Transport::Tls } else { Transport::Tcp };
        connection(
            self,
            stream,
            Client {
                transport,
                addr: peer,
            },
        )
        .await;
    }
}

/// Counts a connection while it lives.
struct Open(Arc<AtomicUsize>);

impl Open {
    fn new(n: Arc<AtomicUsize>) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Self(n)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Reads framed messages from one connection and answers on it; a writer task owns the
/// write half so relayed data and answers never interleave mid-message.
async fn connection<S>(server: TurnServer, stream: S, client: Client)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(WRITE_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    let reply = Reply::Stream(tx.clone());
    let mut buf = vec![0u8; stun::MAX_STREAM_FRAME_LEN];
    // The idle limit only changes with control messages (an Allocate, a Refresh), so the
    // allocation table is consulted then and not for every relayed frame.
    let mut wait = FIRST_MESSAGE_TIMEOUT;
    loop {
        match read_frame(&mut rd, &mut buf, wait).await {
            Ok(Some(n)) => {
                let pkt = &buf[..n];
                if stun::is_channel_data(pkt) {
                    server.channel_data(client, pkt).await;
                    continue;
                }
                if let Some(answer) = server.handle(client, pkt, &reply) {
                    if tx.send(answer).await.is_err() {
                        break;
                    }
                }
                wait = if server.allocation_of(client) {
                    // A client refreshes well within its allocation's lifetime.
                    DEFAULT_LIFETIME * 2
                } else {
                    IDLE_TIMEOUT
                };
            }
            Ok(None) => break,
            Err(why) => {
                debug!(why, "turn connection closed");
                server.refuse(why);
                break;
            }
        }
    }
    server.end(client);
    drop((reply, tx));
    let _ = writer.await;
}

/// One frame into `buf`: `Ok(None)` at a clean end of stream, `Err(reason)` for a frame
/// that is not STUN or ChannelData, too long, cut short, or late.
async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut [u8],
    wait: Duration,
) -> Result<Option<usize>, &'static str> {
    let mut header = [0u8; 4];
    match tokio::time::timeout(wait, rd.read_exact(&mut header)).await {
        Err(_) => return Err("idle"),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Ok(Err(_)) => return Err("io"),
        Ok(Ok(_)) => {}
    }
    let n = stun::stream_frame_len(header).map_err(|_| "malformed")?;
    let frame = buf.get_mut(..n).ok_or("malformed")?;
    frame[..4].copy_from_slice(&header);
    match tokio::time::timeout(FIRST_MESSAGE_TIMEOUT, rd.read_exact(&mut frame[4..])).await {
        Ok(Ok(_)) => Ok(Some(n)),
        Ok(Err(_)) => Err("io"),
        Err(_) => Err("idle"),
    }
}
