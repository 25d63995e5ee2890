//! The agent's end of an HTTP/2 link over an in-memory transport (a `tokio::io::duplex`
//! pair): this test plays the edge (an HTTP/2 client opening streams) and the workspace (a
//! loopback TCP server), and shows relaying, half-close, backpressure towards a workspace
//! that does not read, and an edge that vanishes mid-stream.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper_util::rt::{TokioExecutor, TokioIo};
use relay_core::splice::ChannelBody;
use relay_core::wire;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::serve::Streams;

/// The edge's side of a link served by the agent over memory.
struct Edge {
    sender: hyper::client::conn::http2::SendRequest<ChannelBody>,
    agent: tokio::task::JoinHandle<Result<(), crate::LinkError>>,
    conn: tokio::task::JoinHandle<()>,
    active: Arc<AtomicUsize>,
}

async fn link() -> Edge {
    let (edge_io, agent_io) = tokio::io::duplex(256 * 1024);
    let streams = Arc::new(Streams::new(None, None).await.unwrap());
    let active = Arc::new(AtomicUsize::new(0));
    let agent = tokio::spawn(super::serve(
        TokioIo::new(agent_io),
        active.clone(),
        streams,
    ));
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(relay_core::link::STREAM_WINDOW)
        .handshake(TokioIo::new(edge_io))
        .await
        .unwrap();
    let conn = tokio::spawn(async move {
        let _ = conn.await;
    });
    Edge {
        sender,
        agent,
        conn,
        active,
    }
}

impl Edge {
    /// Opens a stream to the workspace's `port`: the sender of its body and the answer.
    async fn open(
        &mut self,
        port: u16,
    ) -> (mpsc::Sender<Bytes>, http::Response<hyper::body::Incoming>) {
        let (tx, body) = ChannelBody::new();
        let req = http::Request::post("http://agent/")
            .header(wire::H2_PORT_HEADER, port.to_string())
            .body(body)
            .unwrap();
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        (tx, resp)
    }
}

async fn collect(resp: http::Response<hyper::body::Incoming>) -> Vec<u8> {
    resp.into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec()
}

#[tokio::test]
async fn relays_both_ways_and_a_half_close_reaches_the_workspace() {
    // The workspace reads to end of stream, then answers with what it counted: it can only
    // answer once the edge's half-close (end of the request body) reached it as EOF, and its
    // answer must still travel back on the half-open stream.
    let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = ws.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut s, _) = ws.accept().await.unwrap();
        let mut n = 0usize;
        let mut sum = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let k = s.read(&mut buf).await.unwrap();
            if k == 0 {
                break;
            }
            n += k;
            sum += buf[..k].iter().map(|b| u64::from(*b)).sum::<u64>();
        }
        s.write_all(format!("{n} {sum}").as_bytes()).await.unwrap();
        s.shutdown().await.unwrap();
    });
    let mut edge = link().await;
    let (tx, resp) = edge.open(port).await;
    assert_eq!(resp.status(), 200);
    let data: Vec<u8> = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let expected_sum: u64 = data.iter().map(|b| u64::from(*b)).sum();
    for chunk in data.chunks(100_000) {
        tx.send(Bytes::copy_from_slice(chunk)).await.unwrap();
    }
    drop(tx); // half-close: end of the request body
    let got = tokio::time::timeout(Duration::from_secs(20), collect(resp))
        .await
        .expect("the workspace's answer");
    assert_eq!(
        String::from_utf8(got).unwrap(),
        format!("{} {expected_sum}", data.len())
    );
    // Both directions done: the stream no longer counts as open on the link.
    tokio::time::timeout(Duration::from_secs(5), async {
        while edge.active.load(Ordering::Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the stream is closed on the agent");
}

#[tokio::test]
async fn a_workspace_that_does_not_read_holds_the_edge_back() {
    // The workspace accepts and never reads: what the agent takes from the edge must stay
    // bounded by the stream's flow-control window and the socket buffers, not grow with what
    // the edge offers.
    let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = ws.local_addr().unwrap().port();
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let (s, _) = ws.accept().await.unwrap();
        let _ = held_rx.await; // keeps the socket open, unread
        drop(s);
    });
    let mut edge = link().await;
    let (tx, resp) = edge.open(port).await;
    assert_eq!(resp.status(), 200);
    let offered = 256 * 1024 * 1024usize;
    let chunk = Bytes::from(vec![7u8; 256 * 1024]);
    let mut taken = 0usize;
    while taken < offered {
        match tokio::time::timeout(Duration::from_millis(1500), tx.send(chunk.clone())).await {
            Ok(Ok(())) => taken += chunk.len(),
            Ok(Err(_)) => panic!("the stream closed"),
            Err(_) => break, // the edge is held back
        }
    }
    let bound = relay_core::link::STREAM_WINDOW as usize + 32 * 1024 * 1024;
    assert!(
        taken < bound,
        "the agent took {taken} bytes from the edge for a workspace that reads nothing"
    );
    let _ = held_tx.send(());
}

#[tokio::test]
async fn an_edge_that_vanishes_mid_stream_closes_the_workspace_connection() {
    let ws = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = ws.local_addr().unwrap().port();
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let workspace = tokio::spawn(async move {
        let (mut s, _) = ws.accept().await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        let _ = seen_tx.send(());
        // The edge is gone from here on: the agent must close this connection.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    });
    let mut edge = link().await;
    let (tx, resp) = edge.open(port).await;
    assert_eq!(resp.status(), 200);
    tx.send(Bytes::from_static(b"hello")).await.unwrap();
    seen_rx.await.unwrap();
    // The edge vanishes: its connection task and the transport end without a goodbye.
    edge.conn.abort();
    drop(edge.sender);
    drop(tx);
    drop(resp);
    tokio::time::timeout(Duration::from_secs(10), workspace)
        .await
        .expect("the workspace connection was closed")
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), edge.agent)
        .await
        .expect("the agent's link ended");
    assert!(ended.is_ok());
}

#[tokio::test]
async fn a_stream_to_a_port_nothing_listens_on_is_refused_with_its_status() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut edge = link().await;
    let (_tx, resp) = edge.open(port).await;
    assert_eq!(resp.status(), http::StatusCode::BAD_GATEWAY);
    let code = resp.headers()["perigee-status"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(code, (wire::StatusCode::ConnectRefused as u8).to_string());
    let body = String::from_utf8(collect(resp).await).unwrap();
    assert!(body.contains("nothing is listening"), "{body}");
}
