//! The QUIC side of agent links: endpoint construction and the accept loop.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_core::tls::Identity;
use relay_core::wire::{self, Frame, StatusCode};
use tracing::{warn, Instrument as _};

use crate::links::LinkConn;
use crate::{DropReason, Edge};

const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// A server endpoint on a bound UDP socket, presenting `identity` with the link ALPN.
pub fn endpoint(
    socket: std::net::UdpSocket,
    identity: &Identity,
) -> anyhow::Result<quinn::Endpoint> {
    relay_core::link::tune_udp_socket(&socket);
    let tls = relay_core::tls::server_config(identity, &[wire::LINK_ALPN, wire::MESH_ALPN])?;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut cfg = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    cfg.transport_config(Arc::new(relay_core::link::quic_transport()));
    let ep = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(cfg),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok(ep)
}

/// Accepts agent links on `endpoint` until `shutdown` resolves.
pub async fn serve(edge: Edge, endpoint: quinn::Endpoint, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                let edge = edge.clone();
                let span = tracing::info_span!("agent_link", client.addr = %incoming.remote_address(), transport = "quic");
                tokio::spawn(async move { accept(edge, incoming).await }.instrument(span));
            }
            _ = &mut shutdown => break,
        }
    }
    endpoint.close(0u32.into(), b"edge shutting down");
}

async fn accept(edge: Edge, incoming: quinn::Incoming) {
    let start = Instant::now();
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            warn!(error = %e, "QUIC handshake failed");
            return;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() == Some(wire::MESH_ALPN) {
        crate::mesh::serve_peer(edge, conn).await;
        return;
    }
    let identity = match tokio::time::timeout(HELLO_TIMEOUT, hello(&edge, &conn)).await {
        Ok(Ok(id)) => id,
        Ok(Err(reason)) => {
            warn!(%reason, "agent link refused");
            conn.close(2u32.into(), reason.to_string().as_bytes());
            return;
        }
        Err(_) => {
            edge.metrics().drop(DropReason::BadRequest);
            conn.close(2u32.into(), b"no hello in time");
            return;
        }
    };
    let closed = conn.clone();
    let ended = async move { closed.closed().await.to_string() };
    edge.hold_link(&identity, LinkConn::Quic(conn), start, ended)
        .await;
}

/// Why an agent link was refused at its HELLO.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HelloRefused {
    /// The connection failed before or during the hello.
    #[error("connection: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// Answering failed.
    #[error("answering: {0}")]
    Write(#[from] quinn::WriteError),
    /// The first frame was not a hello.
    #[error("expected HELLO, got {0}")]
    NotHello(String),
    /// The hello could not be read.
    #[error("{0}")]
    Read(#[from] wire::ReadFrameError),
    /// The token was not accepted.
    #[error("{0}")]
    Auth(#[from] crate::AuthError),
}

/// Reads the agent's HELLO on the first bi-stream and answers it.
async fn hello(
    edge: &Edge,
    conn: &quinn::Connection,
) -> Result<crate::AgentIdentity, HelloRefused> {
    let (mut send, mut recv) = conn.accept_bi().await?;
    let reply = |code, message: &str| {
        Frame::Status {
            code,
            message: message.to_owned(),
        }
        .to_bytes()
    };
    let token = match wire::read_frame(&mut recv).await {
        Ok(Frame::Hello { token }) => token,
        Ok(other) => {
            edge.metrics().drop(DropReason::BadRequest);
            let _ = send
                .write_all(&reply(StatusCode::BadFrame, "expected HELLO"))
                .await;
            return Err(HelloRefused::NotHello(format!("{other:?}")));
        }
        Err(e) => {
            edge.metrics().drop(DropReason::BadRequest);
            let _ = send
                .write_all(&reply(StatusCode::BadFrame, &e.to_string()))
                .await;
            let _ = send.finish();
            let _ = send.stopped().await;
            return Err(e.into());
        }
    };
    match edge.authenticator().authenticate(&token).await {
        Ok(id) => {
            send.write_all(&reply(StatusCode::Ok, "")).await?;
            let _ = send.finish();
            Ok(id)
        }
        Err(e) => {
            edge.metrics().drop(DropReason::AgentAuth);
            let _ = send
                .write_all(&reply(StatusCode::Unauthorized, &e.to_string()))
                .await;
            let _ = send.finish();
            let _ = send.stopped().await;
            Err(e.into())
        }
    }
}
