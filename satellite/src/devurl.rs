//! Dev URLs on the edge: requests whose `Host` is under the edge's dev URL base go to a
//! workspace port through the agent link, everything else to the API router.
//!
//! Routing reads the `Host` (HTTP/1) or `:authority` (HTTP/2) alone; `X-Forwarded-*` and
//! `Forwarded` from the client are dropped and set again by the edge. Who may open a URL is
//! the resolver's decision (the control plane's sharing rules). Connections to the workspace
//! are HTTP/1.1 over link streams, kept alive and reused per workspace port; upgrades
//! (WebSocket) are relayed; bodies stream both ways. Each response carries `Server-Timing`
//! with the edge's leg (opening or reusing the stream) and the workspace's (request sent →
//! response headers).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use dashmap::DashMap;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use relay_core::devurl::{HostError, Target};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tracing::{debug, Instrument as _};

use crate::links::OpenError;
use crate::Edge;

pub use relay_core::devurl::Decision as Resolution;

/// Decides who may open which dev URL (the control plane's sharing rules).
pub trait DevUrlResolver: Send + Sync + 'static {
    /// The decision for `target`, seen by the signed-in user `viewer` (user id), if any.
    fn resolve<'a>(
        &'a self,
        target: &'a Target,
        viewer: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Resolution> + Send + 'a>>;
}

/// The edge's dev URL settings.
pub(crate) struct DevUrls {
    base: String,
    resolver: Arc<dyn DevUrlResolver>,
    scheme: &'static str,
    pool: DashMap<(String, u16), Vec<SendRequest<Body>>>,
}

/// Idle kept-alive connections kept per workspace port.
const MAX_IDLE_PER_PORT: usize = 8;
/// Buffer between a link stream and the HTTP/1 connection on it.
const PIPE_BUF: usize = 128 * 1024;

impl DevUrls {
    pub(crate) fn new(
        wildcard: &str,
        scheme: &'static str,
        resolver: Arc<dyn DevUrlResolver>,
    ) -> Self {
        Self {
            base: relay_core::devurl::base(wildcard),
            resolver,
            scheme,
            pool: DashMap::new(),
        }
    }
}

/// Middleware: dev URL hosts are served here, other requests go on to the router.
pub(crate) async fn dispatch(State(edge): State<Edge>, req: Request, next: Next) -> Response {
    let Some(devurls) = edge.devurls() else {
        return next.run(req).await;
    };
    let raw = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        });
    let Some(host) = raw.as_deref().and_then(relay_core::devurl::host_of) else {
        return next.run(req).await;
    };
    match relay_core::devurl::parse(&host, &devurls.base) {
        Ok(None) => next.run(req).await,
        Err(e) => page(
            match e {
                HostError::TooLong | HostError::Malformed(_) | HostError::PortOutOfRange => {
                    http::StatusCode::BAD_REQUEST
                }
            },
            "Not a dev URL",
            &format!(
                "{e}. Dev URLs look like PORT--WORKSPACE--USER.{}",
                devurls.base
            ),
        ),
        Ok(Some(target)) => {
            let span = tracing::info_span!("devurl", %host);
            serve(&edge, &devurls, target, host, req)
                .instrument(span)
                .await
        }
    }
}

async fn serve(
    edge: &Edge,
    devurls: &Arc<DevUrls>,
    target: Target,
    host: String,
    mut req: Request,
) -> Response {
    let start = Instant::now();
    let (workspace_id, port, https) = match devurls.resolver.resolve(&target, None).await {
        Resolution::Allow {
            workspace_id,
            port,
            https,
        } => (workspace_id, port, https),
        Resolution::SignIn => {
            return page(
                http::StatusCode::UNAUTHORIZED,
                "Sign-in required",
                "This dev URL is not public. Browser sign-in for dev URLs is not available yet; its owner can share it with `perigee urls create WORKSPACE PORT --access public`.",
            )
        }
        Resolution::Deny(why) => return page(http::StatusCode::FORBIDDEN, "Not allowed", &why),
        Resolution::NotFound => {
            return page(
                http::StatusCode::NOT_FOUND,
                "No such dev URL",
                "No dev URL at this address.",
            )
        }
    };
    if https {
        return page(
            http::StatusCode::NOT_IMPLEMENTED,
            "HTTPS workspace ports",
            "Dev URLs to ports that speak HTTPS (PORTs--…) are not served yet; use the plain port.",
        );
    }
    let key = (workspace_id.clone(), port);
    let sender = match take_ready(devurls, &key) {
        Some(s) => s,
        None => match connect(edge, &workspace_id, port).await {
            Ok(s) => s,
            Err(resp) => return resp,
        },
    };
    let edge_ms = start.elapsed().as_secs_f64() * 1e3;
    let upgrade = req.headers().contains_key(http::header::UPGRADE);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let peer = req
        .extensions()
        .get::<crate::listener::PeerAddr>()
        .map(|p| p.0.ip().to_string());
    let Some(out) = forward_request(req, &host, devurls.scheme, peer.as_deref(), upgrade) else {
        return page(
            http::StatusCode::BAD_REQUEST,
            "Bad request",
            "the request target is not a valid path",
        );
    };
    let mut sender = sender;
    let sent = Instant::now();
    let mut resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => {
            debug!(error = %e, "workspace request failed");
            return page(
                http::StatusCode::BAD_GATEWAY,
                "The workspace did not answer",
                &format!("The server on port {port} closed the connection: {e}"),
            );
        }
    };
    let ws_ms = sent.elapsed().as_secs_f64() * 1e3;
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client) = client_upgrade {
            let server = hyper::upgrade::on(&mut resp);
            tokio::spawn(
                async move {
                    let (Ok(c), Ok(s)) = (client.await, server.await) else {
                        return;
                    };
                    let _ =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(s))
                            .await;
                }
                .in_current_span(),
            );
        }
    } else {
        put_back(devurls, key, sender);
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(
        &mut parts.headers,
        parts.status == http::StatusCode::SWITCHING_PROTOCOLS,
    );
    if let Ok(v) = http::HeaderValue::from_str(&format!(
        "edge;desc=\"{}\";dur={edge_ms:.1}, workspace;desc=\"port {port}\";dur={ws_ms:.1}",
        edge.name()
    )) {
        parts.headers.append("server-timing", v);
    }
    Response::from_parts(parts, Body::new(body))
}

fn take_ready(devurls: &DevUrls, key: &(String, u16)) -> Option<SendRequest<Body>> {
    let mut idle = devurls.pool.get_mut(key)?;
    idle.retain(|s| !s.is_closed());
    let i = idle.iter().position(SendRequest::is_ready)?;
    Some(idle.swap_remove(i))
}

fn put_back(devurls: &DevUrls, key: (String, u16), sender: SendRequest<Body>) {
    let mut idle = devurls.pool.entry(key).or_default();
    idle.retain(|s| !s.is_closed());
    if idle.len() < MAX_IDLE_PER_PORT {
        idle.push(sender);
    }
}

/// Opens a link stream to the port and an HTTP/1.1 connection on it.
async fn connect(
    edge: &Edge,
    workspace_id: &str,
    port: u16,
) -> Result<SendRequest<Body>, Response> {
    let Some(link) = edge.agent(workspace_id) else {
        return Err(page(
            http::StatusCode::BAD_GATEWAY,
            "The workspace is not running",
            "Its agent is not connected to this edge (the workspace is stopped, starting, or homed on another edge).",
        ));
    };
    let session = relay_core::token::random_u64();
    let (mut send, mut recv) = match link.open(port, session, false, false).await {
        Ok(pair) => pair,
        Err(OpenError::Refused(p)) => {
            return Err(page(
                http::StatusCode::BAD_GATEWAY,
                "Nothing is listening",
                &format!("Nothing in the workspace listens on port {p}. Start your server there, then reload."),
            ))
        }
        Err(e) => {
            return Err(page(
                http::StatusCode::BAD_GATEWAY,
                "The workspace could not be reached",
                &e.to_string(),
            ))
        }
    };
    let (ours, theirs) = tokio::io::duplex(PIPE_BUF);
    let (mut rd, mut wr) = tokio::io::split(theirs);
    tokio::spawn(async move {
        while let Ok(Some(chunk)) = recv.read().await {
            if wr.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    tokio::spawn(async move {
        let mut buf = bytes::BytesMut::with_capacity(relay_core::splice::BUF_SIZE);
        loop {
            buf.reserve(relay_core::splice::BUF_SIZE);
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if send.write(buf.split().freeze()).await.is_err() {
                        return;
                    }
                }
            }
        }
        send.finish();
    });
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(ours))
        .await
        .map_err(|e| {
            page(
                http::StatusCode::BAD_GATEWAY,
                "The workspace could not be reached",
                &e.to_string(),
            )
        })?;
    tokio::spawn(
        async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!(error = %e, "workspace connection ended");
            }
        }
        .in_current_span(),
    );
    Ok(sender)
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

fn strip_hop_by_hop(h: &mut http::HeaderMap, upgrade: bool) {
    // Headers the `Connection` header names are hop-by-hop too.
    let named: Vec<String> = h
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty() && s != "upgrade")
        .collect();
    for n in named {
        h.remove(n.as_str());
    }
    for n in HOP_BY_HOP {
        h.remove(*n);
    }
    if upgrade {
        h.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("upgrade"),
        );
    } else {
        h.remove(http::header::UPGRADE);
    }
}

/// The request as the workspace sees it: origin-form URI, the dev URL host, the edge's own
/// `X-Forwarded-*` (the client's dropped), no hop-by-hop headers.
fn forward_request(
    req: Request,
    host: &str,
    scheme: &str,
    peer: Option<&str>,
    upgrade: bool,
) -> Option<http::Request<Body>> {
    let (mut parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = path.parse().ok()?;
    parts.version = http::Version::HTTP_11;
    strip_hop_by_hop(&mut parts.headers, upgrade);
    let forwarded: Vec<http::HeaderName> = parts
        .headers
        .keys()
        .filter(|k| {
            k.as_str().starts_with("x-forwarded-") || *k == "forwarded" || *k == "x-real-ip"
        })
        .cloned()
        .collect();
    for k in forwarded {
        parts.headers.remove(k);
    }
    let set = |h: &mut http::HeaderMap, k: &'static str, v: &str| {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    };
    set(&mut parts.headers, "host", host);
    set(&mut parts.headers, "x-forwarded-host", host);
    set(&mut parts.headers, "x-forwarded-proto", scheme);
    if let Some(ip) = peer {
        set(&mut parts.headers, "x-forwarded-for", ip);
    }
    Some(http::Request::from_parts(parts, body))
}

/// A small HTML error page (the status says what happened; the text says what to do).
pub(crate) fn page(status: http::StatusCode, title: &str, text: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>{t}</title>\
         <style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}}h1{{font-size:1.4em}}code{{background:#eee;padding:0 .2em}}</style></head>\
         <body><h1>{t}</h1><p>{x}</p><p><small>perigee · {s}</small></p></body></html>",
        t = esc(title),
        x = esc(text),
        s = status.as_u16()
    );
    let mut r = Response::new(Body::from(Bytes::from(html)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}
