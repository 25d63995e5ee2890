//! The QUIC agent link.

use std::sync::Arc;

use relay_core::token::Secret;
use relay_core::wire::{self, Frame, StatusCode};
use tracing::{debug, Instrument as _};

use crate::{LinkError, Target};

fn other(e: impl std::fmt::Display) -> LinkError {
    LinkError::Other(e.to_string())
}

/// Resolves once a QUIC handshake with the edge succeeds (checked every `every`) and no
/// stream is open on the current link.
pub(crate) async fn wait_until_usable(
    target: &Target,
    roots: &Arc<rustls::RootCertStore>,
    every: std::time::Duration,
    timeout: std::time::Duration,
    active: &std::sync::atomic::AtomicUsize,
) {
    loop {
        tokio::time::sleep(every).await;
        let probe = async {
            let (ep, conn) = dial(target, roots).await?;
            conn.close(0u32.into(), b"probe");
            ep.wait_idle().await;
            Ok::<_, LinkError>(())
        };
        if matches!(tokio::time::timeout(timeout, probe).await, Ok(Ok(()))) {
            while active.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                tokio::time::sleep(every).await;
            }
            return;
        }
    }
}

/// Completes a QUIC handshake with the edge (the endpoint lives as long as the connection).
async fn dial(
    target: &Target,
    roots: &Arc<rustls::RootCertStore>,
) -> Result<(quinn::Endpoint, quinn::Connection), LinkError> {
    let ep = endpoint(target, roots)?;
    let conn = ep
        .connect(target.addr, &target.host)
        .map_err(other)?
        .await
        .map_err(other)?;
    Ok((ep, conn))
}

/// A client endpoint with the link's TLS, transport settings and socket buffers.
fn endpoint(
    target: &Target,
    roots: &Arc<rustls::RootCertStore>,
) -> Result<quinn::Endpoint, LinkError> {
    let tls =
        relay_core::tls::client_config((**roots).clone(), &[wire::LINK_ALPN]).map_err(other)?;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(other)?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    cfg.transport_config(Arc::new(relay_core::link::quic_transport()));
    let bind: std::net::SocketAddr = if target.addr.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .map_err(other)?;
    let socket = std::net::UdpSocket::bind(bind).map_err(other)?;
    relay_core::link::tune_udp_socket(&socket);
    let mut endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
    .map_err(other)?;
    endpoint.set_default_client_config(cfg);
    Ok(endpoint)
}

/// Dials the edge and presents the token.
pub(crate) async fn connect(
    target: &Target,
    roots: &Arc<rustls::RootCertStore>,
    token: &Secret,
) -> Result<quinn::Connection, LinkError> {
    let (_endpoint, conn) = dial(target, roots).await?;
    let (mut send, mut recv) = conn.open_bi().await.map_err(other)?;
    send.write_all(
        &Frame::Hello {
            token: token.expose().to_owned(),
        }
        .to_bytes(),
    )
    .await
    .map_err(other)?;
    let _ = send.finish();
    match wire::read_frame(&mut recv).await.map_err(other)? {
        Frame::Status {
            code: StatusCode::Ok,
            ..
        } => Ok(conn),
        Frame::Status {
            code: StatusCode::Unauthorized,
            message,
        } => Err(LinkError::Unauthorized(message)),
        other_frame => Err(LinkError::Other(format!(
            "unexpected answer to HELLO: {other_frame:?}"
        ))),
    }
}

/// Serves streams until the link closes.
pub(crate) async fn serve(
    conn: quinn::Connection,
    streams: Arc<crate::serve::Streams>,
) -> Result<(), LinkError> {
    loop {
        let (send, recv) = match conn.accept_bi().await {
            Ok(pair) => pair,
            Err(quinn::ConnectionError::ApplicationClosed(c)) => {
                return Err(LinkError::Other(format!("edge closed the link: {c}")))
            }
            Err(e) => return Err(other(e)),
        };
        tokio::spawn(stream(send, recv, streams.clone()));
    }
}

async fn stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    streams: Arc<crate::serve::Streams>,
) {
    let (port, session_id, e2e, signal) = match wire::read_frame(&mut recv).await {
        Ok(Frame::Open {
            port,
            session_id,
            e2e,
            signal,
        }) => (port, session_id, e2e, signal),
        Ok(f) => {
            let msg = format!("expected OPEN, got {f:?}");
            let _ = send
                .write_all(
                    &Frame::Status {
                        code: StatusCode::BadFrame,
                        message: msg,
                    }
                    .to_bytes(),
                )
                .await;
            let _ = send.finish();
            return;
        }
        Err(e) => {
            let _ = send
                .write_all(
                    &Frame::Status {
                        code: StatusCode::BadFrame,
                        message: e.to_string(),
                    }
                    .to_bytes(),
                )
                .await;
            let _ = send.finish();
            return;
        }
    };
    let span = tracing::debug_span!("stream", stream = session_id, port, path = "envproxy");
    async move {
        let opened = streams.open(port, e2e, signal).await;
        let tcp = match opened {
            Ok(s) => s,
            Err((code, message)) => {
                let _ = send
                    .write_all(&Frame::Status { code, message }.to_bytes())
                    .await;
                let _ = send.finish();
                return;
            }
        };
        if send
            .write_all(
                &Frame::Status {
                    code: StatusCode::Ok,
                    message: String::new(),
                }
                .to_bytes(),
            )
            .await
            .is_err()
        {
            return;
        }
        let (mut rd, mut wr) = tcp.into_split();
        let up = async {
            // Workspace → edge: hand owned chunks to quinn (no copy into a send buffer).
            while let Some(chunk) = crate::port::read_chunk(&mut rd).await? {
                send.write_chunk(chunk)
                    .await
                    .map_err(std::io::Error::other)?;
            }
            let _ = send.finish();
            std::io::Result::Ok(())
        };
        let down = async {
            // Edge → workspace: quinn's own buffers, written straight to the socket.
            use tokio::io::AsyncWriteExt as _;
            while let Some(c) = recv
                .read_chunk(relay_core::splice::BUF_SIZE, true)
                .await
                .map_err(std::io::Error::other)?
            {
                wr.write_all(&c.bytes).await?;
            }
            wr.shutdown().await
        };
        match tokio::try_join!(up, down) {
            Ok(_) => debug!("stream done"),
            Err(e) => debug!(error = %e, "stream ended with error"),
        }
    }
    .instrument(span)
    .await
}
