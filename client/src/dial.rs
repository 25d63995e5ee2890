//! Opening a tunnel WebSocket to an edge: TCP (through an HTTP CONNECT proxy when
//! `HTTPS_PROXY`/`HTTP_PROXY` say so), TLS, upgrade with the ticket in a header.

use std::sync::Arc;

use anyhow::Context as _;
use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Ws = WebSocketStream<Box<dyn Io>>;

#[derive(Debug, Clone)]
pub struct Target {
    tls: bool,
    host: String,
    port: u16,
}

impl Target {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let uri: http::Uri = url.parse().with_context(|| format!("edge URL {url:?}"))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => anyhow::bail!("edge URL {url:?} must be http:// or https://"),
        };
        let host = uri
            .host()
            .context("edge URL has no host")?
            .trim_matches(['[', ']'])
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Self { tls, host, port })
    }

    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The proxy to use for `t`, from the usual environment variables.
fn proxy_for(t: &Target) -> Option<String> {
    let get = |k: &str| {
        std::env::var(k)
            .ok()
            .or_else(|| std::env::var(k.to_lowercase()).ok())
            .filter(|v| !v.is_empty())
    };
    let proxy = if t.tls {
        get("HTTPS_PROXY").or_else(|| get("ALL_PROXY"))
    } else {
        get("HTTP_PROXY").or_else(|| get("ALL_PROXY"))
    }?;
    if let Some(no) = get("NO_PROXY") {
        for rule in no.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let rule = rule.trim_start_matches('.');
            if rule == "*" || t.host == rule || t.host.ends_with(&format!(".{rule}")) {
                return None;
            }
        }
    }
    Some(proxy)
}

async fn connect_tcp(t: &Target) -> anyhow::Result<TcpStream> {
    let Some(proxy) = proxy_for(t) else {
        let s = TcpStream::connect((t.host.as_str(), t.port))
            .await
            .with_context(|| format!("connecting to {}", t.authority()))?;
        let _ = s.set_nodelay(true);
        return Ok(s);
    };
    let p = Target::parse(&proxy)
        .or_else(|_| Target::parse(&format!("http://{proxy}")))
        .with_context(|| format!("proxy {proxy:?}"))?;
    let mut s = TcpStream::connect((p.host.as_str(), p.port))
        .await
        .with_context(|| format!("connecting to proxy {}", p.authority()))?;
    let _ = s.set_nodelay(true);
    let req = format!(
        "CONNECT {a} HTTP/1.1\r\nHost: {a}\r\n\r\n",
        a = t.authority()
    );
    s.write_all(req.as_bytes()).await?;
    // Read the proxy's answer byte by byte up to the blank line, so no tunnel bytes are lost.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        anyhow::ensure!(head.len() < 8192, "proxy answer to CONNECT is too long");
        let b = s
            .read_u8()
            .await
            .context("proxy closed the connection during CONNECT")?;
        head.push(b);
    }
    let status_line = String::from_utf8_lossy(&head)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let ok = status_line
        .split_whitespace()
        .nth(1)
        .is_some_and(|c| c.starts_with('2'));
    anyhow::ensure!(
        ok,
        "proxy {} refused CONNECT {}: {status_line}",
        p.authority(),
        t.authority()
    );
    Ok(s)
}

/// The edge answered the tunnel request with an HTTP error: another edge would answer the
/// same (bad ticket, closed port), so the CLI does not try elsewhere.
#[derive(Debug)]
pub struct Refused {
    pub message: String,
    /// The edge's stable error code (`mesh_error` means another edge may do better).
    pub code: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

/// An open tunnel and how the edge reaches the workspace.
pub struct Opened {
    pub ws: Ws,
    /// The edge that accepted the tunnel.
    pub edge: String,
    /// `local` or `mesh:HOME`.
    pub path: String,
}

/// Opens a tunnel to `port` of the workspace named by `ticket`.
pub async fn open(
    edge_url: &str,
    ticket: &str,
    workspace_id: &str,
    port: u16,
    signal: bool,
    tls: &Arc<rustls::ClientConfig>,
) -> anyhow::Result<Opened> {
    let t = Target::parse(edge_url)?;
    let tcp = connect_tcp(&t).await?;
    let io: Box<dyn Io> = if t.tls {
        let name = rustls::pki_types::ServerName::try_from(t.host.clone())?;
        let s = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .with_context(|| {
                format!(
                    "TLS with {} (self-signed server? set PERIGEE_CA_CERT)",
                    t.authority()
                )
            })?;
        Box::new(s)
    } else {
        Box::new(tcp)
    };
    let scheme = if t.tls { "wss" } else { "ws" };
    let mut req = format!("{scheme}://{}{}", t.authority(), relay_core::tunnel::PATH)
        .into_client_request()?;
    req.headers_mut()
        .insert(relay_core::ticket::HEADER, ticket.parse()?);
    req.headers_mut()
        .insert(relay_core::tunnel::PORT_HEADER, port.into());
    req.headers_mut()
        .insert(relay_core::tunnel::WORKSPACE_HEADER, workspace_id.parse()?);
    if signal {
        req.headers_mut().insert(
            relay_core::tunnel::SIGNAL_HEADER,
            http::HeaderValue::from_static("1"),
        );
    }
    match tokio_tungstenite::client_async_with_config(req, io, Some(ws_config())).await {
        Ok((ws, resp)) => {
            let h = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_owned()
            };
            Ok(Opened {
                ws,
                edge: h(relay_core::tunnel::EDGE_HEADER),
                path: h(relay_core::tunnel::PATH_HEADER),
            })
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            let body = resp.body().as_deref().unwrap_or_default();
            let answer = serde_json::from_slice::<perigee_api::workspaces::ErrorBody>(body).ok();
            let msg = answer
                .as_ref()
                .map(|a| a.error.clone())
                .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
            let code = answer.and_then(|a| a.code).unwrap_or_default();
            Err(Refused {
                message: format!("{msg} (HTTP {})", resp.status().as_u16()),
                code,
            }
            .into())
        }
        Err(e) => Err(e).context("opening the tunnel"),
    }
}

/// WebSocket limits for tunnels (the edge sends at most one link chunk per frame).
fn ws_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    let max = relay_core::splice::MAX_WS_MESSAGE;
    tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// Moves bytes between a tunnel and a local reader/writer until both directions end.
/// An empty binary message is a half-close (see `relay_core::splice`).
pub async fn splice<R, W>(ws: Ws, mut rd: R, mut wr: W) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    let up = async {
        let mut buf = BytesMut::with_capacity(relay_core::splice::BUF_SIZE);
        loop {
            buf.reserve(relay_core::splice::BUF_SIZE);
            let n = rd.read_buf(&mut buf).await?;
            if n == 0 {
                sink.send(Message::Binary(Bytes::new())).await?;
                return anyhow::Ok(sink);
            }
            sink.send(Message::Binary(buf.split().freeze())).await?;
        }
    };
    let down = async {
        loop {
            match stream.next().await {
                Some(Ok(Message::Binary(b))) if b.is_empty() => break,
                Some(Ok(Message::Binary(b))) => {
                    wr.write_all(&b).await?;
                    wr.flush().await?;
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow::Error::from(e).context("edge connection")),
            }
        }
        wr.shutdown().await?;
        anyhow::Ok(())
    };
    let (mut sink, ()) = tokio::try_join!(up, down)?;
    let _ = sink.send(Message::Close(None)).await;
    Ok(())
}
