//! The HTTP/2 agent link, for networks that block UDP (see `satellite::h2link` for the roles).

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use relay_core::splice::ChannelBody;
use relay_core::token::Secret;
use relay_core::wire::{self, StatusCode};
use tokio::io::AsyncWriteExt as _;
use tracing::debug;

use crate::{LinkError, Target};

fn other(e: impl std::fmt::Display) -> LinkError {
    LinkError::Other(e.to_string())
}

/// Dials the edge over TCP (TLS for https), upgrades, and returns the raw connection.
pub(crate) async fn connect(
    target: &Target,
    roots: &Arc<rustls::RootCertStore>,
    token: &Secret,
) -> Result<hyper::upgrade::Upgraded, LinkError> {
    let tcp = tokio::net::TcpStream::connect(target.addr)
        .await
        .map_err(other)?;
    let _ = tcp.set_nodelay(true);
    if target.tls {
        let tls =
            relay_core::tls::client_config((**roots).clone(), &[b"http/1.1"]).map_err(other)?;
        let name = rustls::pki_types::ServerName::try_from(target.host.clone()).map_err(other)?;
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
            .connect(name, tcp)
            .await
            .map_err(other)?;
        upgrade(TokioIo::new(stream), target, token).await
    } else {
        upgrade(TokioIo::new(tcp), target, token).await
    }
}

async fn upgrade<T>(
    io: T,
    target: &Target,
    token: &Secret,
) -> Result<hyper::upgrade::Upgraded, LinkError>
where
    T: hyper::rt::Read + hyper::rt::Write + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(other)?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    let req = http::Request::get("/api/v2/agent/link")
        .header(
            http::header::HOST,
            format!("{}:{}", target.host, target.port),
        )
        .header(http::header::CONNECTION, "upgrade")
        .header(http::header::UPGRADE, wire::H2_UPGRADE_TOKEN)
        .header(
            http::header::AUTHORIZATION,
            format!("Bearer {}", token.expose()),
        )
        .body(Empty::<Bytes>::new())
        .map_err(other)?;
    let resp = sender.send_request(req).await.map_err(other)?;
    if resp.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), 4096)
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = format!("{status}: {}", String::from_utf8_lossy(&body));
        return Err(if status == http::StatusCode::UNAUTHORIZED {
            LinkError::Unauthorized(msg)
        } else {
            LinkError::Other(msg)
        });
    }
    hyper::upgrade::on(resp).await.map_err(other)
}

/// Serves the edge's streams as the HTTP/2 server until the link closes.
/// `active` counts the streams open on this link.
pub(crate) async fn serve<I>(
    conn: I,
    active: Arc<AtomicUsize>,
    streams: Arc<crate::serve::Streams>,
) -> Result<(), LinkError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(relay_core::link::STREAM_WINDOW)
        .initial_connection_window_size(relay_core::link::CONN_WINDOW)
        .max_frame_size(256 * 1024)
        .max_concurrent_streams(relay_core::link::MAX_STREAMS)
        .timer(TokioTimer::new())
        .keep_alive_interval(std::time::Duration::from_secs(10))
        .keep_alive_timeout(std::time::Duration::from_secs(20))
        .serve_connection(
            conn,
            hyper::service::service_fn(move |req| stream(req, active.clone(), streams.clone())),
        )
        .await
        .map_err(other)
}

type Body = BoxBody<Bytes, Infallible>;

fn refuse(code: StatusCode, message: String) -> http::Response<Body> {
    let mut resp = http::Response::new(Full::new(Bytes::from(message)).boxed());
    *resp.status_mut() = http::StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert(
        "perigee-status",
        http::HeaderValue::from(u16::from(code as u8)),
    );
    resp
}

/// Counts a stream as open until both of its directions are done.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn stream(
    req: http::Request<Incoming>,
    active: Arc<AtomicUsize>,
    streams: Arc<crate::serve::Streams>,
) -> Result<http::Response<Body>, Infallible> {
    let port = req
        .headers()
        .get(wire::H2_PORT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok());
    let Some(port) = port else {
        return Ok(refuse(StatusCode::BadFrame, "missing perigee-port".into()));
    };
    let e2e = req
        .headers()
        .get(wire::H2_E2E_HEADER)
        .is_some_and(|v| v == "1");
    let signal = req
        .headers()
        .get(wire::H2_SIGNAL_HEADER)
        .is_some_and(|v| v == "1");
    let opened = streams.open(port, e2e, signal).await;
    let tcp = match opened {
        Ok(s) => s,
        Err((code, message)) => return Ok(refuse(code, message)),
    };
    let (mut rd, mut wr) = tcp.into_split();
    let mut body = req.into_body();
    active.fetch_add(1, Ordering::Relaxed);
    let open = Arc::new(Open(active));
    let open2 = open.clone();
    tokio::spawn(async move {
        let _open = open;
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data() {
                        if wr.write_all(&data).await.is_err() {
                            return;
                        }
                    }
                }
                Err(e) => {
                    debug!(error = %e, "edge stream body failed");
                    return;
                }
            }
        }
        let _ = wr.shutdown().await;
    });
    let (tx, resp_body) = ChannelBody::new();
    tokio::spawn(async move {
        let _open = open2;
        while let Ok(Some(chunk)) = crate::port::read_chunk(&mut rd).await {
            if tx.send(chunk).await.is_err() {
                break;
            }
        }
    });
    Ok(http::Response::new(resp_body.boxed()))
}

#[cfg(test)]
#[path = "h2_tests.rs"]
mod tests;
