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
use relay_core::devurl::Target;
use tracing::{debug, Instrument as _};

use crate::links::OpenError;
use crate::Edge;

pub use relay_core::devurl::Decision as Resolution;

/// Decides who may open which dev URL (the control plane's sharing rules), and signs
/// browsers in.
pub trait DevUrlResolver: Send + Sync + 'static {
    /// The decision for `target`, seen by the signed-in user `viewer` (user id), if any.
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        target: &'a Target,
        viewer: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Resolution> + Send + 'a>>;

    /// Redeems a one-time sign-in code for `host`: the user id, once.
    fn redeem<'a>(
        &'a self,
        code: &'a str,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;

    /// The control plane's sign-in page (`https://…/login`).
    fn sign_in_url(&self) -> String;
}

/// How long a dev URL sign-in lasts.
const SESSION_SECS: u64 = 24 * 3600;

/// The edge's dev URL settings.
pub(crate) struct DevUrls {
    base: String,
    resolver: Arc<dyn DevUrlResolver>,
    scheme: &'static str,
    pool: DashMap<(String, u16, bool), Vec<SendRequest<Body>>>,
    cookie_key: Vec<u8>,
    /// Recent decisions by host and viewer: a page load is dozens of requests, and asking
    /// the control plane for each cost most of the throughput (DECISIONS.md).
    decisions: DashMap<(String, Option<String>), (Instant, Resolution)>,
}

/// How long a sharing decision is reused: a changed level applies within this.
const DECISION_TTL: std::time::Duration = std::time::Duration::from_secs(2);
/// Most cached decisions (the cache is emptied beyond).
const MAX_DECISIONS: usize = 10_000;

/// Idle kept-alive connections kept per workspace port.
const MAX_IDLE_PER_PORT: usize = 128;

impl DevUrls {
    pub(crate) fn new(
        wildcard: &str,
        scheme: &'static str,
        resolver: Arc<dyn DevUrlResolver>,
        cookie_key: &[u8],
    ) -> Self {
        Self {
            base: relay_core::devurl::base(wildcard),
            resolver,
            scheme,
            pool: DashMap::new(),
            cookie_key: cookie_key.to_vec(),
            decisions: DashMap::new(),
        }
    }

    pub(crate) fn forget_decisions(&self) {
        self.decisions.clear();
    }

    /// The control plane's decision, reused for [`DECISION_TTL`].
    async fn decide(&self, host: &str, target: &Target, viewer: Option<String>) -> Resolution {
        let key = (host.to_owned(), viewer);
        if let Some(hit) = self.decisions.get(&key) {
            if hit.0.elapsed() < DECISION_TTL {
                return hit.1.clone();
            }
        }
        let r = self.resolver.resolve(host, target, key.1.as_deref()).await;
        if matches!(r, Resolution::Unavailable(_)) {
            return r;
        }
        if self.decisions.len() >= MAX_DECISIONS {
            self.decisions.clear();
        }
        self.decisions.insert(key, (Instant::now(), r.clone()));
        r
    }

    /// The session cookie's name: `__Host-` on HTTPS (the browser then insists on Secure,
    /// Path=/ and no Domain).
    fn cookie_name(&self) -> &'static str {
        if self.scheme == "https" {
            "__Host-perigee-devurl"
        } else {
            "perigee-devurl"
        }
    }

    /// The signed-in user, from this host's session cookie.
    fn viewer(&self, headers: &http::HeaderMap, host: &str) -> Option<String> {
        let name = self.cookie_name();
        relay_core::cookies::cookies(headers)
            .filter(|(k, _)| *k == name)
            .find_map(|(_, v)| {
                relay_core::devurl::cookie_user(&self.cookie_key, v, host, relay_core::unix_now())
            })
    }
}

/// The `Cookie` headers without the edge's own cookie (the workspace never sees it).
fn strip_session_cookie(headers: &mut http::HeaderMap, name: &str) {
    let kept: Vec<String> = relay_core::cookies::cookies(headers)
        .filter(|(k, _)| *k != name)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    headers.remove(http::header::COOKIE);
    if !kept.is_empty() {
        if let Ok(v) = http::HeaderValue::from_str(&kept.join("; ")) {
            headers.insert(http::header::COOKIE, v);
        }
    }
}

fn redirect(location: &str) -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = http::StatusCode::SEE_OTHER;
    if let Ok(v) = http::HeaderValue::from_str(location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

/// Characters escaped in a URL placed in a query value: all but unreserved ones.
const QUERY_VALUE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn query_param<'a>(query: &'a str, key: &str) -> Option<std::borrow::Cow<'a, str>> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| percent_encoding::percent_decode_str(v).decode_utf8_lossy())
    })
}

/// `r` setting the session cookie (no `Domain`: this host only).
fn set_cookie(mut r: Response, name: &str, value: &str, max_age: u64, secure: bool) -> Response {
    use relay_core::cookies::{Attributes, SameSite};
    relay_core::cookies::add(
        r.headers_mut(),
        name,
        value,
        Attributes {
            path: "/",
            max_age: std::time::Duration::from_secs(max_age),
            same_site: SameSite::Lax,
            secure,
        },
    );
    r
}

/// The edge's own paths on a dev URL host: sign-in landing and sign-out.
async fn own_path(devurls: &DevUrls, host: &str, path: &str, query: &str) -> Option<Response> {
    if !path.starts_with("/.perigee/") {
        return None;
    }
    let name = devurls.cookie_name();
    let secure = devurls.scheme == "https";
    Some(match path {
        "/.perigee/auth" => {
            let code = query_param(query, "code").unwrap_or_default();
            let next = query_param(query, "next").unwrap_or_default();
            // Only a path on this host: never `//elsewhere` or `/\elsewhere`.
            let next = if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
                next.into_owned()
            } else {
                "/".to_owned()
            };
            if code.is_empty() || code.len() > 128 {
                return Some(page(
                    http::StatusCode::BAD_REQUEST,
                    "Sign-in failed",
                    "The sign-in link is malformed.",
                ));
            }
            match devurls.resolver.redeem(&code, host).await {
                Some(user) => {
                    let exp = relay_core::unix_now() + SESSION_SECS;
                    let value =
                        relay_core::devurl::cookie_value(&devurls.cookie_key, &user, host, exp);
                    set_cookie(redirect(&next), name, &value, SESSION_SECS, secure)
                }
                None => page(
                    http::StatusCode::BAD_REQUEST,
                    "Sign-in failed",
                    "The sign-in link has expired or was used already. Open the dev URL again.",
                ),
            }
        }
        "/.perigee/signout" => {
            let r = page(
                http::StatusCode::OK,
                "Signed out",
                "You are signed out of this dev URL.",
            );
            set_cookie(r, name, "", 0, secure)
        }
        _ => page(
            http::StatusCode::NOT_FOUND,
            "Not found",
            "No such perigee page.",
        ),
    })
}

/// Middleware: dev URL hosts are served here, other requests go on to the router.
pub(crate) async fn dispatch(State(edge): State<Edge>, req: Request, next: Next) -> Response {
    let Some(devurls) = edge.devurls() else {
        return next.run(req).await;
    };
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .and_then(relay_core::devurl::host_of);
    let Some(host) = host else {
        return next.run(req).await;
    };
    match relay_core::devurl::parse(&host, &devurls.base) {
        Ok(None) => next.run(req).await,
        Err(e) => page(
            http::StatusCode::BAD_REQUEST,
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
    let (path, query) = (
        req.uri().path().to_owned(),
        req.uri().query().unwrap_or("").to_owned(),
    );
    if let Some(r) = own_path(devurls, &host, &path, &query).await {
        return r;
    }
    let viewer = devurls.viewer(req.headers(), &host);
    let (workspace_id, port, https, home, ticket) = match devurls.decide(&host, &target, viewer).await {
        Resolution::Allow {
            workspace_id,
            port,
            https,
            home,
            ticket,
        } => (workspace_id, port, https, home, ticket),
        Resolution::SignIn => {
            let here = format!(
                "{}://{}{}",
                devurls.scheme,
                req.headers()
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .or_else(|| req.uri().authority().map(|a| a.as_str()))
                    .unwrap_or(&host),
                req.uri().path_and_query().map_or("/", |p| p.as_str())
            );
            return redirect(&format!(
                "{}?redirect={}",
                devurls.resolver.sign_in_url(),
                percent_encoding::utf8_percent_encode(&here, QUERY_VALUE)
            ));
        }
        Resolution::Deny(why) => return page(http::StatusCode::FORBIDDEN, "Not allowed", &why),
        Resolution::Unavailable(why) => {
            return page(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "Cannot decide right now",
                &format!("The control plane could not be asked who may open this URL ({why}). Try again in a moment."),
            )
        }
        Resolution::NotFound => {
            return page(
                http::StatusCode::NOT_FOUND,
                "No such dev URL",
                "No dev URL at this address.",
            )
        }
    };
    // A port reached as HTTPS and as plain HTTP are different connections.
    let key = (workspace_id.clone(), port, https);
    let sender = match take_ready(devurls, &key) {
        Some(s) => s,
        None => match connect(edge, &workspace_id, port, https, &home, &ticket).await {
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
    strip_session_cookie(req.headers_mut(), devurls.cookie_name());
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

fn take_ready(devurls: &DevUrls, key: &(String, u16, bool)) -> Option<SendRequest<Body>> {
    let mut idle = devurls.pool.get_mut(key)?;
    idle.retain(|s| !s.is_closed());
    let i = idle.iter().position(SendRequest::is_ready)?;
    Some(idle.swap_remove(i))
}

fn put_back(devurls: &DevUrls, key: (String, u16, bool), sender: SendRequest<Body>) {
    let mut idle = devurls.pool.entry(key).or_default();
    idle.retain(|s| !s.is_closed());
    if idle.len() < MAX_IDLE_PER_PORT {
        idle.push(sender);
    }
}

/// Opens a stream to the port (over this edge's agent link, or over the mesh to the agent's
/// home edge with the decision's ticket) and an HTTP/1.1 connection on it.
async fn connect(
    edge: &Edge,
    workspace_id: &str,
    port: u16,
    https: bool,
    home: &str,
    ticket: &str,
) -> Result<SendRequest<Body>, Response> {
    let session = relay_core::token::random_u64();
    let home = if home.is_empty() {
        relay_core::mesh::PRIMARY_EDGE
    } else {
        home
    };
    let link = edge.agent(workspace_id);
    let route = match &link {
        Some(_) => None,
        None => edge.route_without_link(workspace_id, home).await,
    };
    let opened = match link {
        Some(link) => {
            edge.metrics()
                .devurl_connections
                .with_label_values(&["envproxy"])
                .inc();
            link.open(port, session, false, false).await
        }
        None if route.is_some() && !ticket.is_empty() => {
            edge.metrics()
                .devurl_connections
                .with_label_values(&["mesh_out"])
                .inc();
            let to = route.as_deref().unwrap_or(home);
            edge.mesh_open(to, ticket, port, session, false).await
        }
        None => {
            return Err(page(
                http::StatusCode::BAD_GATEWAY,
                "The workspace is not running",
                "Its agent is not connected (the workspace is stopped or starting).",
            ))
        }
    };
    let (send, recv) = match opened {
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
    let ours = crate::linkio::LinkIo::new(send, recv);
    let unreachable = |e: &dyn std::fmt::Display| {
        page(
            http::StatusCode::BAD_GATEWAY,
            "The workspace could not be reached",
            &e.to_string(),
        )
    };
    if !https {
        return http1(ours).await.map_err(|e| unreachable(&e));
    }
    // The workspace's own server, on its loopback, usually with a self-signed certificate:
    // TLS here is what the port speaks, not what authenticates it (the agent link does).
    let name = rustls::pki_types::ServerName::try_from("localhost")
        .map_err(|e| unreachable(&e))?
        .to_owned();
    let tls = tokio_rustls::TlsConnector::from(workspace_tls().map_err(|e| unreachable(&e))?)
        .connect(name, ours)
        .await
        .map_err(|e| unreachable(&format!("TLS to port {port}: {e}")))?;
    http1(tls).await.map_err(|e| unreachable(&e))
}

/// An HTTP/1.1 connection on `io`, driven by its own task (upgrades allowed).
async fn http1<I>(io: I) -> Result<SendRequest<Body>, hyper::Error>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
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

/// TLS to a workspace port: any certificate (see [`AnyCert`]), signatures still checked.
fn workspace_tls() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    static CFG: std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, rustls::Error>> =
        std::sync::OnceLock::new();
    CFG.get_or_init(|| any_cert_config(b"http/1.1").map(Arc::new))
        .clone()
}

/// A client configuration accepting any server certificate (handshake signatures still
/// checked), offering `alpn`: for peers authenticated some other way.
pub(crate) fn any_cert_config(alpn: &[u8]) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = relay_core::tls::provider();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(cfg)
}

/// Accepts the workspace server's certificate, whoever signed it (dev servers' are
/// self-signed), while still checking the handshake signature against it.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

/// The error pages' style.
const PAGE_STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;color:#222}h1{font-size:1.4em}code{background:#eee;padding:0 .2em}";

/// A small HTML error page (the status says what happened; the text says what to do).
pub(crate) fn page(status: http::StatusCode, title: &str, text: &str) -> Response {
    // maud escapes every value it interpolates: nothing a request carries (a host, a path,
    // a workspace's error text) can become markup.
    let html = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { (title) }
                style { (maud::PreEscaped(PAGE_STYLE)) }
            }
            body {
                h1 { (title) }
                p { (text) }
                p { small { "perigee · " (status.as_u16()) } }
            }
        }
    };
    let mut r = Response::new(Body::from(Bytes::from(html.into_string())));
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use http_body_util::BodyExt as _;

    #[tokio::test]
    async fn an_error_page_shows_hostile_text_as_text() {
        // What a request or a workspace controls (a host, an error message) lands in the edge's
        // error pages: another origin must not get markup into the edge's own page.
        let r = super::page(
            http::StatusCode::BAD_GATEWAY,
            "<script>alert(1)</script>",
            "port 80 said: <img src=x onerror=alert(2)> & \"quoted\"",
        );
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        assert!(html.contains("&amp; &quot;quoted&quot;"), "{html}");
    }
}
