//! An edge joining two link streams, as it does between the mesh and an agent link
//! (`pump_pair`), over in-memory HTTP/2 links: bytes both ways, a half-close carried across,
//! and a far side that vanishes mid-stream ending the join with an error.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;

use super::pump_pair;
use crate::test_links::{link_stream, next_chunk};

#[tokio::test]
async fn a_joined_pair_carries_both_ways_and_passes_a_half_close_on() {
    // `a` plays the mesh peer, `b` the agent: the edge joins them.
    let (a_send, a_recv, mut a_far, _a_srv) = link_stream().await;
    let (b_send, b_recv, mut b_far, _b_srv) = link_stream().await;
    let join = tokio::spawn(pump_pair((a_recv, b_send), (b_recv, a_send)));

    a_far
        .to_edge
        .send(Bytes::from_static(b"from the mesh"))
        .await
        .unwrap();
    let got = next_chunk(&mut b_far.from_edge).await;
    assert_eq!(&got[..], b"from the mesh");
    b_far
        .to_edge
        .send(Bytes::from_static(b"from the agent"))
        .await
        .unwrap();
    let got = next_chunk(&mut a_far.from_edge).await;
    assert_eq!(&got[..], b"from the agent");

    // The mesh side half-closes: the agent side sees the end, and can still answer.
    drop(a_far.to_edge);
    let rest = tokio::time::timeout(Duration::from_secs(5), b_far.from_edge.collect())
        .await
        .expect("the half-close crossed the edge")
        .unwrap()
        .to_bytes();
    assert!(rest.is_empty());
    b_far
        .to_edge
        .send(Bytes::from_static(b"last words"))
        .await
        .unwrap();
    drop(b_far.to_edge);
    let tail = tokio::time::timeout(Duration::from_secs(5), a_far.from_edge.collect())
        .await
        .expect("the answer and the end came back")
        .unwrap()
        .to_bytes();
    assert_eq!(&tail[..], b"last words");
    tokio::time::timeout(Duration::from_secs(5), join)
        .await
        .expect("the join ends with both directions")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_side_that_vanishes_ends_the_join_with_an_error() {
    let (a_send, a_recv, a_far, _a_srv) = link_stream().await;
    let (b_send, b_recv, b_far, b_srv) = link_stream().await;
    let join = tokio::spawn(pump_pair((a_recv, b_send), (b_recv, a_send)));
    a_far
        .to_edge
        .send(Bytes::from_static(b"hello"))
        .await
        .unwrap();
    // The agent's link disappears without a goodbye.
    b_srv.abort();
    drop(b_far);
    let ended = tokio::time::timeout(Duration::from_secs(10), join)
        .await
        .expect("the join ended when a side vanished")
        .unwrap();
    assert!(
        ended.is_err(),
        "a vanished side is an error, not a clean end"
    );
    drop(a_far);
}
