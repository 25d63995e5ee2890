//! Two WebRTC peers in one process on loopback: signaling through channels, a stream each
//! way, data intact, half-close honoured, flow control holding a slow reader.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use perigee_webrtc::{self as rtc, Peer, PeerConfig, Role, Signal};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::mpsc;

async fn pair(
    offerer: PeerConfig,
    answerer: PeerConfig,
) -> (Peer, Peer, mpsc::UnboundedReceiver<rtc::Incoming>) {
    rtc::in_process_pair(offerer, answerer).await.unwrap()
}

pub fn cfg(role: Role) -> PeerConfig {
    PeerConfig {
        role,
        ice_servers: vec![],
        peer_ice_servers: vec![],
        relay_only: false,
        connect_timeout: perigee_webrtc::CONNECT_TIMEOUT,
    }
}

fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Echoes every incoming stream.
pub fn echo(mut incoming: mpsc::UnboundedReceiver<rtc::Incoming>) {
    tokio::spawn(async move {
        while let Some(i) = incoming.recv().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(i.stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_peers_on_loopback_echo_8_mb_per_stream_on_three_streams() {
    let (o, a, incoming) = pair(cfg(Role::Offerer), cfg(Role::Answerer)).await;
    echo(incoming);
    let path = tokio::time::timeout(Duration::from_secs(15), o.connected())
        .await
        .unwrap()
        .unwrap();
    assert!(!path.relayed, "{path}");
    a.connected().await.unwrap();
    let mut tasks = Vec::new();
    for k in 0..3u64 {
        let s = o.open(&format!("tcp:{k}")).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let data = pseudo_random(k + 1, 8 << 20);
            let (mut r, mut w) = tokio::io::split(s);
            let d2 = data.clone();
            let writer = tokio::spawn(async move {
                w.write_all(&d2).await.unwrap();
                w.shutdown().await.unwrap();
            });
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.unwrap();
            writer.await.unwrap();
            assert!(
                back == data,
                "stream {k}: {} of {} bytes back",
                back.len(),
                data.len()
            );
        }));
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(matches!(o.state(), rtc::PeerState::Connected(_)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_does_not_read_holds_the_sender_at_the_window() {
    let (o, _a, mut incoming) = pair(cfg(Role::Offerer), cfg(Role::Answerer)).await;
    o.connected().await.unwrap();
    let s = o.open("tcp:slow").await.unwrap();
    let held = tokio::spawn(async move { incoming.recv().await.unwrap() });
    let (_r, mut w) = tokio::io::split(s);
    // Write until the sender blocks: about the window plus both pipes, never unbounded.
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0usize;
    while let Ok(r) = tokio::time::timeout(Duration::from_millis(500), w.write_all(&chunk)).await {
        r.unwrap();
        sent += chunk.len();
        assert!(sent < 64 << 20, "the sender was never held back");
    }
    assert!(sent >= 4 << 20, "held back too early: {sent} bytes");
    // The reader reads: everything that was sent arrives.
    let incoming = held.await.unwrap();
    let (mut r, _w) = tokio::io::split(incoming.stream);
    let mut buf = vec![0u8; sent];
    tokio::time::timeout(Duration::from_secs(20), r.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf.iter().all(|&b| b == 7));
}

#[tokio::test]
async fn a_bad_offer_is_refused_with_an_error_signal() {
    let (a_out, mut a_out_rx) = mpsc::unbounded_channel::<Signal>();
    let (a_in_tx, a_in) = mpsc::channel(8);
    let (a, _incoming) = Peer::start(cfg(Role::Answerer), a_out, a_in).await.unwrap();
    a_in_tx
        .send(Signal::Offer {
            sdp: "v=0 not an offer".into(),
            ice_servers: vec![],
        })
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), a_out_rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(reply, Signal::Error { ref message } if message.contains("bad offer")),
        "{reply:?}"
    );
    assert!(a.connected().await.unwrap_err().contains("bad offer"));
}
