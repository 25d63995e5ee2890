//! The edge's tunnel relay over in-memory transports: the client's WebSocket is one end of
//! a `tokio::io::duplex` pair, the agent link is HTTP/2 over another (this test serves it,
//! playing the agent and the workspace). Shown: relaying with half-close each way,
//! backpressure towards a workspace that does not read, and a link or a client that
//! vanishes mid-stream.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use relay_core::wsframe::{self, Header, Opcode};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};

use super::relay;
use crate::test_links::{link_stream, next_chunk};
use crate::EdgeMetrics;

fn metrics() -> EdgeMetrics {
    EdgeMetrics::register(&prometheus::Registry::new()).unwrap()
}

/// A masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x1f, 0x2e, 0x3d, 0x4c];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n < 65536 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    let mut p = payload.to_vec();
    wsframe::unmask(&mut p, mask, 0);
    out.extend_from_slice(&p);
    out
}

/// Reads one server frame: opcode and payload; `None` at end of stream.
async fn read_frame(c: &mut DuplexStream) -> Option<(Opcode, Vec<u8>)> {
    let mut head = vec![0u8; 2];
    c.read_exact(&mut head).await.ok()?;
    let ext = match head[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    let mut more = vec![0u8; ext];
    c.read_exact(&mut more).await.ok()?;
    head.extend_from_slice(&more);
    let (h, _) = Header::decode(&head).unwrap().unwrap();
    assert!(h.mask.is_none(), "server frames are not masked");
    let mut payload = vec![0u8; h.len as usize];
    c.read_exact(&mut payload).await.ok()?;
    Some((h.opcode, payload))
}

async fn body_to_end(b: &mut Incoming) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(f) = b.frame().await {
        if let Ok(d) = f.unwrap().into_data() {
            out.extend_from_slice(&d);
        }
    }
    out
}

#[tokio::test]
async fn relays_both_ways_with_a_half_close_each_way() {
    let (tx, rx, mut ws, _server) = link_stream().await;
    let (mut client, edge_side) = tokio::io::duplex(64 * 1024);
    let m = metrics();
    let relay = tokio::spawn(async move { relay(edge_side, tx, rx, &m).await });

    // The client sends 1 MiB in frames of several sizes, then half-closes (empty frame).
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i % 253) as u8).collect();
    let writer = {
        let data = data.clone();
        tokio::spawn(async move {
            let mut at = 0;
            for size in [1usize, 100, 70_000, 300_000].iter().cycle() {
                if at >= data.len() {
                    break;
                }
                let end = (at + size).min(data.len());
                client
                    .write_all(&client_frame(0x2, &data[at..end]))
                    .await
                    .unwrap();
                at = end;
            }
            client.write_all(&client_frame(0x2, &[])).await.unwrap();
            client
        })
    };
    // The workspace gets every byte, then the end of the stream…
    let got = tokio::time::timeout(Duration::from_secs(20), body_to_end(&mut ws.from_edge))
        .await
        .expect("the half-close reached the workspace");
    assert_eq!(got.len(), data.len());
    assert!(
        got == data,
        "the workspace got other bytes than the client sent"
    );
    // …and still answers on the half-open stream, then ends its side.
    ws.to_edge
        .send(Bytes::from_static(b"answer"))
        .await
        .unwrap();
    drop(ws.to_edge);
    let mut client = writer.await.unwrap();
    let mut answer = Vec::new();
    loop {
        let (op, p) = read_frame(&mut client).await.expect("a frame");
        match op {
            Opcode::Binary if p.is_empty() => break, // the workspace's half-close
            Opcode::Binary => answer.extend_from_slice(&p),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(answer, b"answer");
    let (op, p) = read_frame(&mut client).await.expect("the close frame");
    assert_eq!((op, p), (Opcode::Close, vec![0x03, 0xe8]));
    tokio::time::timeout(Duration::from_secs(5), relay)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_workspace_that_does_not_read_holds_the_client_back() {
    let (tx, rx, ws, _server) = link_stream().await;
    let (mut client, edge_side) = tokio::io::duplex(64 * 1024);
    let m = metrics();
    let _relay = tokio::spawn(async move { relay(edge_side, tx, rx, &m).await });
    // The workspace never reads `ws.from_edge`: the client must be held back once the
    // stream's window and a few chunks are in flight, whatever it offers.
    let frame = client_frame(0x2, &vec![9u8; 64 * 1024]);
    let offered = 256 * 1024 * 1024usize;
    let mut written = 0usize;
    while written < offered {
        match tokio::time::timeout(Duration::from_millis(1500), client.write_all(&frame)).await {
            Ok(Ok(())) => written += frame.len(),
            Ok(Err(e)) => panic!("the tunnel closed: {e}"),
            Err(_) => break,
        }
    }
    let bound = relay_core::link::STREAM_WINDOW as usize + 2 * 1024 * 1024;
    assert!(
        written < bound,
        "the edge took {written} bytes from a client whose workspace reads nothing"
    );
    drop(ws);
}

#[tokio::test]
async fn a_link_that_vanishes_mid_stream_ends_the_tunnel() {
    let (tx, rx, mut ws, server) = link_stream().await;
    let (mut client, edge_side) = tokio::io::duplex(64 * 1024);
    let m = metrics();
    let relay = tokio::spawn(async move { relay(edge_side, tx, rx, &m).await });
    client
        .write_all(&client_frame(0x2, b"hello"))
        .await
        .unwrap();
    let first = next_chunk(&mut ws.from_edge).await;
    assert_eq!(&first[..], b"hello");
    // The agent's side of the link disappears without a goodbye.
    server.abort();
    drop(ws);
    let ended = tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .expect("the relay ended when the link vanished")
        .unwrap();
    assert!(
        ended.is_err(),
        "a vanished link is an error, not a clean end"
    );
    // The client learns it: its stream ends (no hang).
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest))
        .await
        .expect("the client's tunnel closed")
        .unwrap();
}

#[tokio::test]
async fn a_client_that_vanishes_mid_stream_ends_the_workspace_stream() {
    let (tx, rx, mut ws, _server) = link_stream().await;
    let (mut client, edge_side) = tokio::io::duplex(64 * 1024);
    let m = metrics();
    let relay = tokio::spawn(async move { relay(edge_side, tx, rx, &m).await });
    // Half a frame, then the client is gone.
    let frame = client_frame(0x2, &[5u8; 1000]);
    client.write_all(&frame[..500]).await.unwrap();
    drop(client);
    let ended = tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .expect("the relay ended when the client vanished")
        .unwrap();
    let e = ended.expect_err("a tunnel cut inside a frame is an error");
    // Blamed on the client (it broke off inside a frame), not on the link.
    assert!(matches!(e, super::RelayError::ClientProtocol(_)), "{e}");
    assert_eq!(e.side(), crate::Side::Client);
    // The workspace's stream ends too (reset or end), rather than waiting forever.
    tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(f) = ws.from_edge.frame().await {
            if f.is_err() {
                break;
            }
        }
    })
    .await
    .expect("the workspace's stream ended");
}
