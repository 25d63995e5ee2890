//! Client tunnels: `GET /api/v2/tunnel` upgraded to a WebSocket, spliced to an agent-link stream.
//!
//! Request headers: `Perigee-Ticket` (a connection ticket, never in the URL) and
//! `Perigee-Port` (the workspace port). The edge checks the ticket offline, opens the link
//! stream and waits for the agent to connect the port *before* answering `101`, so a client
//! learns "nothing listens on that port" as a clear HTTP error rather than a dead socket.
//! On the WebSocket, binary messages carry bytes; an empty binary message is a half-close.
//!
//! With `Perigee-Signal: 1` the stream carries WebRTC signaling (Networking v2) instead of
//! the port's bytes: the agent answers the client's offer and its data channels reach the
//! same port, so the ticket is checked exactly as for a stream to that port. Edges only
//! splice the bytes (over the mesh to the agent's home edge when needed): a signaling
//! session belongs to the one user, workspace and port of its ticket.

use std::time::Instant;

use axum::extract::{Request, State};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use relay_core::ticket::TicketError;
use tracing::{debug, Instrument as _};

use crate::links::OpenError;
use crate::{error_response, DropReason, Edge, PeerAddr};

pub use relay_core::tunnel::{
    EDGE_HEADER, PATH, PATH_HEADER, PORT_HEADER, SIGNAL_HEADER, WORKSPACE_HEADER,
};

pub(crate) async fn handle(State(edge): State<Edge>, mut req: Request) -> Response {
    let start = Instant::now();
    let m = edge.metrics();
    let peer = req
        .extensions()
        .get::<PeerAddr>()
        .map(|p| p.0.to_string())
        .unwrap_or_default();
    // Copy what we need out of the request now: the body type is not `Sync`, so no borrow of
    // the request may live across an await.
    let (key, port, ticket, workspace, signal) = {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
        let is_ws = header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let key = header("sec-websocket-key")
            .filter(|_| is_ws)
            .map(str::to_owned);
        let port = header(PORT_HEADER)
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|p| *p != 0);
        let workspace = header(WORKSPACE_HEADER).map(str::to_owned);
        (
            key,
            port,
            header(relay_core::ticket::HEADER).map(str::to_owned),
            workspace,
            header(SIGNAL_HEADER) == Some("1"),
        )
    };
    let Some(key) = key else {
        m.drop(DropReason::BadRequest);
        return error_response(
            http::StatusCode::BAD_REQUEST,
            "bad_request",
            "expected a WebSocket upgrade (Upgrade: websocket, Sec-WebSocket-Key)",
        );
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let Some(port) = port else {
        m.drop(DropReason::BadRequest);
        return error_response(
            http::StatusCode::BAD_REQUEST,
            "bad_request",
            "missing or invalid Perigee-Port header (1-65535)",
        );
    };
    let Some(ticket) = ticket else {
        m.drop(DropReason::BadTicket);
        return error_response(
            http::StatusCode::UNAUTHORIZED,
            "bad_ticket",
            "missing Perigee-Ticket header",
        );
    };
    let claims =
        match edge
            .verifier()
            .verify(&ticket, workspace.as_deref(), port, relay_core::unix_now())
        {
            Ok(c) => c,
            Err(e) => {
                let (reason, code) = match e {
                    TicketError::Expired(_) => (DropReason::ExpiredTicket, "expired_ticket"),
                    TicketError::Revoked => (DropReason::BadTicket, "revoked_ticket"),
                    _ => (DropReason::BadTicket, "bad_ticket"),
                };
                m.drop(reason);
                let status = if matches!(
                    e,
                    TicketError::PortNotGranted(_) | TicketError::WrongWorkspace
                ) {
                    http::StatusCode::FORBIDDEN
                } else {
                    http::StatusCode::UNAUTHORIZED
                };
                return error_response(status, code, e.to_string());
            }
        };
    let session_id = relay_core::token::random_u64();
    let link = edge.agent(&claims.ws);
    // The agent is here, or on its home edge (reached over the mesh), or nowhere.
    let home = if claims.home.is_empty() {
        relay_core::mesh::PRIMARY_EDGE
    } else {
        claims.home.as_str()
    };
    let route = match &link {
        Some(_) => None,
        None => edge.route_without_link(&claims.ws, home).await,
    };
    let path = match (&link, &route) {
        (Some(_), _) => "envproxy",
        (None, Some(_)) => "mesh_out",
        (None, None) => {
            m.drop(DropReason::NoAgent);
            return error_response(
                http::StatusCode::NOT_FOUND,
                "no_agent",
                "the workspace's agent is not connected (the workspace is stopped, deleted, or its agent is restarting)",
            );
        }
    };
    let workspace_name = link
        .as_ref()
        .map(|l| l.workspace_name().to_owned())
        .unwrap_or_else(|| claims.ws.clone());
    let kind = if signal { "signal" } else { "bytes" };
    let span = tracing::info_span!("stream", workspace = %workspace_name, session.id = %claims.sid, stream = session_id, port, path, kind, home, client.addr = %peer);
    let opened = match &link {
        Some(link) => {
            link.open(port, session_id, claims.e2e && !signal, signal)
                .instrument(span.clone())
                .await
        }
        None => {
            edge.mesh_open(
                route.as_deref().unwrap_or(home),
                &ticket,
                port,
                session_id,
                signal,
            )
            .instrument(span.clone())
            .await
        }
    };
    let (tx, rx) = match opened {
        Ok(pair) => pair,
        Err(e) => {
            let (status, reason, code) = match e {
                OpenError::Refused(_) => (
                    http::StatusCode::BAD_GATEWAY,
                    DropReason::PortRefused,
                    "port_refused",
                ),
                OpenError::Failed { .. } => (
                    http::StatusCode::BAD_GATEWAY,
                    DropReason::PortRefused,
                    "port_failed",
                ),
                OpenError::Link(_) | OpenError::Timeout(_) if path == "mesh_out" => (
                    http::StatusCode::BAD_GATEWAY,
                    DropReason::MeshError,
                    "mesh_error",
                ),
                OpenError::Link(_) | OpenError::Timeout(_) => (
                    http::StatusCode::SERVICE_UNAVAILABLE,
                    DropReason::LinkError,
                    "link_error",
                ),
            };
            m.drop(reason);
            return error_response(status, code, e.to_string());
        }
    };
    m.stream_setup_seconds
        .observe(start.elapsed().as_secs_f64());
    m.stream_opened(path, signal);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let metrics = m.clone();
    tokio::spawn(
        async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            metrics.streams_open.inc();
            let result = crate::wsrelay::relay(TokioIo::new(upgraded), tx, rx, &metrics).await;
            metrics.streams_open.dec();
            if let Err(e) = result {
                // Blamed where it failed: a client breaking the protocol is a bad request
                // of the client's, not a link error.
                let reason = match e {
                    crate::wsrelay::RelayError::ClientProtocol(_) => DropReason::BadRequest,
                    _ => DropReason::LinkError,
                };
                metrics.drop_on(reason, e.side());
                debug!(error = %e, side = e.side().as_str(), "stream ended with error");
            }
        }
        .instrument(span),
    );
    Response::builder()
        .status(http::StatusCode::SWITCHING_PROTOCOLS)
        .header(http::header::CONNECTION, "upgrade")
        .header(http::header::UPGRADE, "websocket")
        .header("sec-websocket-accept", accept)
        .header(EDGE_HEADER, edge.name())
        .header(
            PATH_HEADER,
            if path == "mesh_out" {
                format!("mesh:{}", route.as_deref().unwrap_or(home))
            } else {
                "local".to_owned()
            },
        )
        .body(axum::body::Body::empty())
        .unwrap_or_default()
}
