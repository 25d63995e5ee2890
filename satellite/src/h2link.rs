//! The HTTP/2 fallback of agent links, for networks that block UDP.
//!
//! The agent dials the edge over TCP (TLS when the edge has it) and sends
//! `GET /api/v2/agent/link` with `Upgrade: perigee-link-h2` and `Authorization: Bearer
//! <agent token>`. After `101 Switching Protocols` the roles swap: the edge is the HTTP/2
//! *client* on that connection and the agent the server, so the edge opens one HTTP/2 stream
//! per tunnel (`POST /stream`, headers `perigee-port`, `perigee-session`) with HTTP/2's own
//! per-stream and per-connection flow control.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::response::Response;
use hyper_util::rt::TokioExecutor;
use tracing::{warn, Instrument as _};

use crate::links::LinkConn;
use crate::{error_response, DropReason, Edge};

/// Path of the upgrade request.
pub const PATH: &str = "/api/v2/agent/link";

pub(crate) async fn handle(State(edge): State<Edge>, mut req: Request) -> Response {
    let start = Instant::now();
    let (upgrade_ok, token) = {
        let upgrade_ok = req
            .headers()
            .get(http::header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case(relay_core::wire::H2_UPGRADE_TOKEN));
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        (upgrade_ok, token)
    };
    if !upgrade_ok {
        edge.metrics().drop(DropReason::BadRequest);
        return error_response(
            http::StatusCode::BAD_REQUEST,
            "bad_request",
            format!("expected `Upgrade: {}`", relay_core::wire::H2_UPGRADE_TOKEN),
        );
    }
    let Some(token) = token else {
        edge.metrics().drop(DropReason::AgentAuth);
        return error_response(
            http::StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing agent token",
        );
    };
    let identity = match edge.authenticator().authenticate(&token).await {
        Ok(id) => id,
        Err(e) => {
            edge.metrics().drop(DropReason::AgentAuth);
            return error_response(
                http::StatusCode::UNAUTHORIZED,
                "unauthorized",
                e.to_string(),
            );
        }
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let span =
        tracing::info_span!("agent_link", workspace = %identity.workspace_name, transport = "h2");
    tokio::spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(u) => u,
                Err(e) => {
                    warn!(error = %e, "agent link upgrade failed");
                    return;
                }
            };
            let handshake = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .initial_stream_window_size(relay_core::link::STREAM_WINDOW)
                .initial_connection_window_size(relay_core::link::CONN_WINDOW)
                .max_frame_size(256 * 1024)
                .keep_alive_interval(std::time::Duration::from_secs(10))
                .keep_alive_timeout(std::time::Duration::from_secs(20))
                .timer(hyper_util::rt::TokioTimer::new())
                .handshake(upgraded)
                .await;
            let (sender, conn) = match handshake {
                Ok(pair) => pair,
                Err(e) => {
                    warn!(error = %e, "HTTP/2 handshake with agent failed");
                    return;
                }
            };
            let ended = async move {
                match conn.await {
                    Ok(()) => "closed".to_owned(),
                    Err(e) => e.to_string(),
                }
            };
            edge.hold_link(&identity, LinkConn::H2(sender), start, ended)
                .await;
        }
        .instrument(span),
    );
    Response::builder()
        .status(http::StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "upgrade")
        .header(http::header::UPGRADE, relay_core::wire::H2_UPGRADE_TOKEN)
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}
