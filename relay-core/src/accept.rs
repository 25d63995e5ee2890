//! The accept step every TCP server here shares.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The next connection, with Nagle off. An accept error (out of file descriptors and the
/// like) is logged and answered with a 50 ms pause instead of a spin; `None` then, so the
/// caller's loop can look at its shutdown signal again.
pub async fn next(listener: &TcpListener, what: &str) -> Option<(TcpStream, SocketAddr)> {
    match listener.accept().await {
        Ok((tcp, addr)) => {
            let _ = tcp.set_nodelay(true);
            Some((tcp, addr))
        }
        Err(e) => {
            tracing::warn!(error = %e, server = what, "accept failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}
