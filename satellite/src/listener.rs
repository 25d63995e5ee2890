//! The HTTP(S) accept loop shared by every role that listens on TCP.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tower::ServiceExt as _;
use tracing::{debug, warn};

/// The client address of a request, inserted as a request extension.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on a bound listener (TLS when `tls` is given) until `shutdown` resolves.
/// Connections already accepted keep running; HTTP/1.1 upgrades (tunnels) are supported.
pub async fn serve_http(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    router: axum::Router,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .initial_stream_window_size(relay_core::link::STREAM_WINDOW)
        .initial_connection_window_size(relay_core::link::CONN_WINDOW);
    tokio::pin!(shutdown);
    loop {
        let (sock, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = sock.set_nodelay(true);
        let router = router.clone();
        let acceptor = acceptor.clone();
        let builder = builder.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr(addr));
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let result = match acceptor {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(sock)).await {
                        Ok(Ok(tls)) => {
                            builder
                                .serve_connection_with_upgrades(TokioIo::new(tls), svc)
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
                    builder
                        .serve_connection_with_upgrades(TokioIo::new(sock), svc)
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
    /// Starts serving `router` on `tcp` (TLS when `tls` is given) and `edge`'s QUIC links on
    /// `endpoint`.
    pub fn start(
        edge: crate::Edge,
        tcp: TcpListener,
        tls: Option<Arc<rustls::ServerConfig>>,
        router: axum::Router,
        endpoint: quinn::Endpoint,
    ) -> Self {
        let (stop, rx) = tokio::sync::watch::channel(false);
        let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let http = tokio::spawn(serve_http(tcp, tls, router, wait(rx.clone())));
        let quic = tokio::spawn(crate::quic::serve(edge, endpoint, wait(rx)));
        Self { stop, http, quic }
    }

    /// Stops accepting and waits for the accept loops to end.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = tokio::join!(self.http, self.quic);
    }
}
