//! The HTTP(S) accept loop shared by every role that listens on TCP. STUN/TURN may share
//! the port: a connection whose first byte has its two high bits clear is a STUN message
//! (RFC 8489 §5), which no HTTP request or HTTP/2 preface starts with, so networks that only
//! let 443 out still reach the relay.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tracing::debug;

/// A byte stream handed over by the listener.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Serves a STUN connection found on the HTTP port: the stream (its first byte put back),
/// the client's address, and whether it came over TLS.
pub type StunHandler = Arc<
    dyn Fn(Box<dyn Io>, SocketAddr, bool) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync,
>;

/// ALPN protocol of TURN over TLS (RFC 7443), offered next to `h2` and `http/1.1` when the
/// port serves STUN too.
pub const STUN_ALPN: &[u8] = b"stun.turn";

/// A stream with one byte read ahead and put back.
struct Rewind<S> {
    first: Option<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if buf.remaining() > 0 {
            if let Some(b) = self.first.take() {
                buf.put_slice(&[b]);
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Without a STUN handler, the stream itself; with one, reads the first byte and either
/// hands a STUN connection over (`None`) or returns the stream with the byte put back.
async fn sniff<S: Io>(
    mut s: S,
    addr: SocketAddr,
    tls: bool,
    stun: Option<&StunHandler>,
) -> Option<Rewind<S>> {
    let Some(stun) = stun else {
        return Some(Rewind {
            first: None,
            inner: s,
        });
    };
    let mut b = [0u8; 1];
    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, s.read_exact(&mut b)).await {
        Ok(Ok(_)) => {}
        _ => return None,
    }
    let s = Rewind {
        first: Some(b[0]),
        inner: s,
    };
    if b[0] >> 6 == 0 {
        stun(Box::new(s), addr, tls).await;
        return None;
    }
    Some(s)
}

/// The client address of a request, inserted as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The HTTP listener's limits on clients that have not sent a request yet.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// How long a client has to send a request's head (hyper counts from when the connection
    /// is ready for one, so an idle keep-alive connection is closed after this too; the
    /// default 15 s stays clear of the 10 s heartbeats that reuse one).
    pub header_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(15),
        }
    }
}

/// The rustls configuration of an edge's HTTPS listener (`None`: plain HTTP), offering TURN
/// over TLS's ALPN when `stun` is served on the same port.
pub fn https_config(
    identity: &relay_core::tls::Identity,
    tls_on: bool,
    stun: bool,
) -> Result<Option<Arc<rustls::ServerConfig>>, relay_core::tls::TlsError> {
    let alpn: &[&[u8]] = if stun {
        &[b"h2", b"http/1.1", STUN_ALPN]
    } else {
        &[b"h2", b"http/1.1"]
    };
    Ok(if tls_on {
        Some(Arc::new(relay_core::tls::server_config(identity, alpn)?))
    } else {
        None
    })
}

/// Binds TCP and UDP on the same port (retrying other ports when port 0 was asked for): an
/// edge's HTTPS and its QUIC endpoint.
pub async fn bind_pair(addr: SocketAddr) -> std::io::Result<(TcpListener, std::net::UdpSocket)> {
    let mut last_err = None;
    for _ in 0..20 {
        let tcp = TcpListener::bind(addr)
            .await
            .map_err(|e| std::io::Error::new(e.kind(), format!("binding TCP {addr}: {e}")))?;
        let bound = tcp.local_addr()?;
        match std::net::UdpSocket::bind(bound) {
            Ok(udp) => return Ok((tcp, udp)),
            Err(e) if addr.port() == 0 => last_err = Some(e),
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("binding UDP {bound} for QUIC: {e}"),
                ))
            }
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("no free port pair")))
}

/// TURN connections found on the edge's own port (by their first byte or ALPN) go to `server`.
pub fn stun_handler(server: turn::TurnServer) -> StunHandler {
    Arc::new(move |io, addr, tls| Box::pin(server.clone().serve_connection(io, addr, tls)))
}

/// Serves `router` on a bound listener (TLS when `tls` is given) until `shutdown` resolves.
/// Connections already accepted keep running; HTTP/1.1 upgrades (tunnels) are supported.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    stun: Option<StunHandler>,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(relay_core::link::STREAM_WINDOW)
        .initial_connection_window_size(relay_core::link::CONN_WINDOW);
    // A client that trickles its request head (slowloris) is cut after the header timeout; a
    // head over hyper's 400 KB buffer gets 431.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(settings.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let (sock, addr) = tokio::select! {
            r = relay_core::accept::next(&listener, "http") => match r {
                Some(pair) => pair,
                None => continue,
            },
            _ = &mut shutdown => break,
        };
        let router = router.clone();
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        let stun = stun.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr(addr));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let result = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(tls)) => {
                            let Some(io) = sniff(tls, addr, true, stun.as_ref()).await else {
                                return;
                            };
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(io), svc)
                                .await
                        }
                        Ok(Err(e)) => {
                            debug!(client.addr = %addr, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => {
                    let Some(io) = sniff(sock, addr, false, stun.as_ref()).await else {
                        return;
                    };
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(io), svc)
                        .await
                }
            };
            if let Err(e) = result {
                debug!(client.addr = %addr, error = %e, "connection ended with error");
            }
        });
    }
}

/// An edge serving on its TCP listener (HTTP(S)) and its QUIC endpoint, until [`stop`].
///
/// [`stop`]: Serving::stop
pub struct Serving {
    stop: tokio::sync::watch::Sender<bool>,
    http: tokio::task::JoinHandle<()>,
    quic: tokio::task::JoinHandle<()>,
}

impl Serving {
    /// Starts serving `router` on `tcp` (TLS when `tls` is given; STUN connections go to
    /// `stun`) and `edge`'s QUIC links on `endpoint`.
    pub fn start(
        edge: crate::Edge,
        tcp: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        router: axum::Router,
        stun: Option<StunHandler>,
        endpoint: quinn::Endpoint,
        settings: HttpSettings,
    ) -> Self {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let http = tokio::spawn(serve_http(
            tcp,
            tls,
            router,
            stun,
            settings,
            wait(rx.clone()),
        ));
        let quic = tokio::spawn(crate::quic::serve(edge, endpoint, wait(rx)));
        Self { stop, http, quic }
    }

    /// Stops accepting and waits for the accept loops to end.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::join!(self.http, self.quic);
    }
}
