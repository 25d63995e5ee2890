//! Terminating end-to-end encrypted streams (see `relay_core::e2e`).
//!
//! The stream pumps work on loopback TCP sockets (they read only when data is ready, so an
//! idle stream holds no buffer). An end-to-end stream therefore goes through a loopback hop:
//! the agent connects the workspace port first (so errors are reported exactly as for plain
//! streams), then connects to its own terminator and sends the id of that port connection;
//! the terminator completes the inner TLS session and copies plaintext to the port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use relay_core::wire::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

type Pending = Arc<Mutex<HashMap<u64, TcpStream>>>;

/// The agent's end of end-to-end streams: a loopback listener completing inner TLS
/// sessions with the agent's identity. Its accept loop ends when the terminator is dropped.
pub(crate) struct Terminator {
    addr: SocketAddr,
    pending: Pending,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Terminator {
    /// Starts a terminator with the agent's inner-session identity.
    pub(crate) async fn start(server: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let pending: Pending = Arc::default();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let waiting = pending.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let (waiting, acceptor) = (waiting.clone(), acceptor.clone());
                tokio::spawn(async move {
                    if let Err(e) = terminate(&waiting, &acceptor, sock).await {
                        debug!(error = %e, "end-to-end stream ended");
                    }
                });
            }
        });
        Ok(Self {
            addr,
            pending,
            accept,
        })
    }

    /// Puts the terminator in front of `tcp` (a connected workspace port): the stream to
    /// splice with the edge.
    pub(crate) async fn front(&self, tcp: TcpStream) -> Result<TcpStream, (StatusCode, String)> {
        let id = relay_core::token::random_u64();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, tcp);
        }
        let fail = |e: std::io::Error| {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
            (
                StatusCode::ConnectFailed,
                format!("end-to-end terminator: {e}"),
            )
        };
        let mut front = TcpStream::connect(self.addr).await.map_err(fail)?;
        let _ = front.set_nodelay(true);
        front.write_u64(id).await.map_err(fail)?;
        Ok(front)
    }
}

async fn terminate(
    pending: &Pending,
    acceptor: &tokio_rustls::TlsAcceptor,
    mut sock: TcpStream,
) -> std::io::Result<()> {
    let id = sock.read_u64().await?;
    let port = pending
        .lock()
        .ok()
        .and_then(|mut p| p.remove(&id))
        .ok_or_else(|| std::io::Error::other("unknown end-to-end stream id"))?;
    let mut tls = acceptor.accept(sock).await?;
    let mut port = port;
    tokio::io::copy_bidirectional(&mut tls, &mut port).await?;
    Ok(())
}
