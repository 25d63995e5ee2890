//! Test support: agent-link streams over memory (HTTP/2 on a `tokio::io::duplex` pair), the
//! test playing the far end.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use relay_core::splice::ChannelBody;
use tokio::sync::mpsc;

use crate::links::{LinkRecv, LinkSend};

/// One stream as the workspace sees it: what the edge sends, and where to answer.
pub(crate) struct WsStream {
    pub(crate) from_edge: Incoming,
    pub(crate) to_edge: mpsc::Sender<Bytes>,
}

/// An in-memory HTTP/2 link: the edge's halves of one stream, the workspace's, and the
/// link's server task (abort it to make the link vanish).
pub(crate) async fn link_stream() -> (LinkSend, LinkRecv, WsStream, tokio::task::JoinHandle<()>) {
    let (edge_io, agent_io) = tokio::io::duplex(256 * 1024);
    let (streams_tx, mut streams_rx) = mpsc::unbounded_channel::<WsStream>();
    let server = tokio::spawn(async move {
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let streams_tx = streams_tx.clone();
            async move {
                let (to_edge, body) = ChannelBody::new();
                let _ = streams_tx.send(WsStream {
                    from_edge: req.into_body(),
                    to_edge,
                });
                Ok::<_, Infallible>(http::Response::new(body))
            }
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .initial_stream_window_size(relay_core::link::STREAM_WINDOW)
            .serve_connection(TokioIo::new(agent_io), svc)
            .await;
    });
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(relay_core::link::STREAM_WINDOW)
        .handshake(TokioIo::new(edge_io))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let (tx, body) = ChannelBody::new();
    sender.ready().await.unwrap();
    let resp = sender
        .send_request(http::Request::post("http://agent/").body(body).unwrap())
        .await
        .unwrap();
    let ws = streams_rx.recv().await.unwrap();
    (LinkSend::H2(tx), LinkRecv::H2(resp.into_body()), ws, server)
}

/// The next data chunk of a link stream's body (test: it must come).
pub(crate) async fn next_chunk(body: &mut Incoming) -> Bytes {
    use http_body_util::BodyExt as _;
    body.frame().await.unwrap().unwrap().into_data().unwrap()
}
