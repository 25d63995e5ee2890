//! A satellite serves the control plane's API and pages at its own URL: every request the
//! edge does not answer itself is forwarded to the control plane, so users of a region need
//! only the satellite's URL.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::response::{IntoResponse as _, Response};

use crate::error_response;

/// Largest request or response body forwarded (API calls and pages are small).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// Headers that belong to one connection and are never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Where and how to forward.
#[derive(Clone)]
pub struct Forwarder {
    /// The control plane's URL, without a trailing slash.
    pub primary_url: String,
    /// This satellite's name (sent as `Perigee-Satellite`).
    pub satellite: String,
    /// HTTP client trusting the control plane's certificate.
    pub client: reqwest::Client,
}

impl Forwarder {
    /// A router whose every route forwards to the control plane.
    pub fn router(self) -> axum::Router {
        axum::Router::new().fallback(forward).with_state(self)
    }
}

async fn forward(State(f): State<Forwarder>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let url = format!("{}{path}", f.primary_url);
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(
                http::StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("request body over {} MiB", MAX_BODY >> 20),
            )
        }
    };
    let mut out = f
        .client
        .request(parts.method.clone(), &url)
        .timeout(Duration::from_secs(30))
        .body(body);
    for (k, v) in &parts.headers {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            out = out.header(k, v);
        }
    }
    if let Some(peer) = parts.extensions.get::<crate::PeerAddr>() {
        out = out.header("x-forwarded-for", peer.0.ip().to_string());
    }
    if let Some(host) = parts.headers.get(http::header::HOST) {
        out = out.header("x-forwarded-host", host);
    }
    out = out.header("perigee-satellite", &f.satellite);
    let resp = match out.send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, %url, "control plane unreachable");
            return error_response(
                http::StatusCode::BAD_GATEWAY,
                "control_plane_unreachable",
                format!(
                    "this satellite cannot reach the control plane ({}); tunnels with valid tickets keep working",
                    f.primary_url
                ),
            );
        }
    };
    let status = resp.status();
    let mut headers = http::HeaderMap::new();
    for (k, v) in resp.headers() {
        if !HOP_BY_HOP.contains(&k.as_str()) {
            headers.append(k.clone(), v.clone());
        }
    }
    let mut resp = resp;
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) if body.len() + c.len() <= MAX_BODY => body.extend_from_slice(&c),
            Ok(Some(_)) => {
                return error_response(
                    http::StatusCode::BAD_GATEWAY,
                    "too_large",
                    "the control plane's answer is too large to forward",
                )
            }
            Ok(None) => break,
            Err(e) => {
                return error_response(
                    http::StatusCode::BAD_GATEWAY,
                    "control_plane_unreachable",
                    format!("reading the control plane's answer: {e}"),
                )
            }
        }
    }
    (status, headers, body).into_response()
}
