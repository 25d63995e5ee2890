//! Terminating end-to-end encrypted streams (see `relay_core::e2e`).
//!
//! The stream pumps work on loopback TCP sockets (they read only when data is ready, so an
//! idle stream holds no buffer). An end-to-end stream therefore goes through a loopback hop:
//! the agent connects the workspace port first (so errors are reported exactly as for plain
//! streams), then connects to its own terminator and sends the id of that port connection;
//! the terminator completes the inner TLS session and copies plaintext to the port.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use relay_core::wire::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

struct Terminator {
    addr: SocketAddr,
    pending: Mutex<HashMap<u64, TcpStream>>,
}

static TERMINATOR: OnceLock<Arc<Terminator>> = OnceLock::new();

/// Starts the terminator with the agent's inner-session identity; streams marked end-to-end
/// are refused until it runs.
pub async fn start(server: Arc<rustls::ServerConfig>) -> std::io::Result<()> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let t = Arc::new(Terminator {
        addr: listener.local_addr()?,
        pending: Mutex::new(HashMap::new()),
    });
    if TERMINATOR.set(t.clone()).is_err() {
        return Ok(());
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let (t, acceptor) = (t.clone(), acceptor.clone());
            tokio::spawn(async move {
                if let Err(e) = terminate(&t, &acceptor, sock).await {
                    debug!(error = %e, "end-to-end stream ended");
                }
            });
        }
    });
    Ok(())
}

async fn terminate(
    t: &Terminator,
    acceptor: &tokio_rustls::TlsAcceptor,
    mut sock: TcpStream,
) -> std::io::Result<()> {
    let id = sock.read_u64().await?;
    let port = t
        .pending
        .lock()
        .ok()
        .and_then(|mut p| p.remove(&id))
        .ok_or_else(|| std::io::Error::other("unknown end-to-end stream id"))?;
    let mut tls = acceptor.accept(sock).await?;
    let mut port = port;
    tokio::io::copy_bidirectional(&mut tls, &mut port).await?;
    Ok(())
}

/// Connects a stream to `127.0.0.1:port`; for an end-to-end stream, to the terminator in
/// front of that connection.
pub(crate) async fn connect(port: u16, e2e: bool) -> Result<TcpStream, (StatusCode, String)> {
    let tcp = crate::serve::connect_port(port).await?;
    if !e2e {
        return Ok(tcp);
    }
    let Some(t) = TERMINATOR.get() else {
        return Err((
            StatusCode::ConnectFailed,
            "this agent has no end-to-end key yet".into(),
        ));
    };
    let id = relay_core::token::random_u64();
    if let Ok(mut p) = t.pending.lock() {
        p.insert(id, tcp);
    }
    let fail = |e: std::io::Error| {
        if let Ok(mut p) = t.pending.lock() {
            p.remove(&id);
        }
        (
            StatusCode::ConnectFailed,
            format!("end-to-end terminator: {e}"),
        )
    };
    let mut front = TcpStream::connect(t.addr).await.map_err(fail)?;
    let _ = front.set_nodelay(true);
    front.write_u64(id).await.map_err(fail)?;
    Ok(front)
}
