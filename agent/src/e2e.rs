//! Terminating end-to-end encrypted streams (see `relay_core::e2e`).
//!
//! The stream pumps work on loopback TCP sockets (they read only when data is ready, so an
//! idle stream holds no buffer). An end-to-end stream therefore goes through a loopback hop
//! ([`Hop`]): the agent connects the workspace port first (so errors are reported exactly as
//! for plain streams), then the hop completes the inner TLS session and copies plaintext to
//! the port.

use std::sync::Arc;

use tokio::net::TcpStream;

use crate::hop::Hop;

/// Starts the terminator with the agent's inner-session identity.
pub(crate) async fn terminator(
    server: Arc<rustls::ServerConfig>,
) -> std::io::Result<Hop<TcpStream>> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    Hop::start("end-to-end terminator", move |mut port: TcpStream, sock| {
        let acceptor = acceptor.clone();
        async move {
            let mut tls = acceptor.accept(sock).await?;
            tokio::io::copy_bidirectional(&mut tls, &mut port).await?;
            Ok(())
        }
    })
    .await
}
