//! WebRTC peers relaying through this crate's TURN server: the offerer offers only its
//! relayed candidate (`relay_only`), so every byte goes client → TURN → answerer; and a
//! server whose policy refuses the answerer's address leaves the peers unconnected.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use perigee_webrtc::{IceServer, Peer, PeerConfig, Role};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// ICE's give-up time here: loopback pairs connect in milliseconds, and the refused-peer test
/// waits for exactly this (10 s in production).
const TIMEOUT: Duration = Duration::from_secs(3);
use turn::auth::{ephemeral_password, ephemeral_username};
use turn::policy::PeerPolicy;
use turn::{TurnConfig, TurnMetrics, TurnServer};

const SECRET: &[u8] = b"webrtc-secret";

async fn server(allow: &[&str]) -> (SocketAddr, TurnServer) {
    let registry = prometheus::Registry::new();
    let s = TurnServer::new(
        TurnConfig {
            realm: "perigee".into(),
            secret: SECRET.to_vec(),
            relay_ips: vec![IpAddr::from([127, 0, 0, 1])],
            policy: PeerPolicy::new(allow.iter().map(|a| a.parse().unwrap()).collect()),
            max_allocations: 10,
            max_per_user: 4,
            bandwidth: 0,
        },
        TurnMetrics::new(&registry).unwrap(),
    );
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(s.clone().serve(sock, std::future::pending()));
    (addr, s)
}

fn ice(addr: SocketAddr) -> Vec<IceServer> {
    let username = ephemeral_username(relay_core::unix_now() + 600, "user-1");
    vec![IceServer {
        urls: vec![format!("stun:{addr}"), format!("turn:{addr}?transport=udp")],
        credential: ephemeral_password(SECRET, &username),
        username,
    }]
}

async fn relayed_pair(
    turn: SocketAddr,
) -> (
    Peer,
    Peer,
    mpsc::UnboundedReceiver<perigee_webrtc::Incoming>,
) {
    let answerer = PeerConfig {
        role: Role::Answerer,
        ice_servers: vec![],
        peer_ice_servers: vec![],
        relay_only: false,
        connect_timeout: TIMEOUT,
    };
    let offerer = PeerConfig {
        role: Role::Offerer,
        ice_servers: ice(turn),
        peer_ice_servers: vec![],
        relay_only: true,
        connect_timeout: TIMEOUT,
    };
    perigee_webrtc::in_process_pair(offerer, answerer)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_relay_a_stream_through_the_turn_server() {
    let (turn, server) = server(&["127.0.0.0/8"]).await;
    let (o, _a, mut incoming) = relayed_pair(turn).await;
    tokio::spawn(async move {
        while let Some(i) = incoming.recv().await {
            let (mut r, mut w) = tokio::io::split(i.stream);
            let _ = tokio::io::copy(&mut r, &mut w).await;
            let _ = w.shutdown().await;
        }
    });
    let path = tokio::time::timeout(Duration::from_secs(15), o.connected())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(server.allocations(), 1);
    let s = o.open("tcp:relay").await.unwrap();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = tokio::io::split(s);
    let d2 = data.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&d2).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut back))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert!(back == data, "{} of {} bytes back", back.len(), data.len());
    // The data went through the relay (the state reflects the data's pair).
    let relayed = match o.state() {
        perigee_webrtc::PeerState::Connected(p) => p,
        other => panic!("{other:?} (first path {path})"),
    };
    assert!(relayed.relayed, "{relayed}");
    assert_eq!(relayed.turn, Some(turn), "{relayed}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_that_refuses_the_peer_leaves_no_path() {
    // Default policy: loopback peers are refused, so the relayed pair never works.
    let (turn, _server) = server(&[]).await;
    let (o, _a, _incoming) = relayed_pair(turn).await;
    let r = tokio::time::timeout(Duration::from_secs(20), o.connected())
        .await
        .unwrap();
    assert!(
        r.is_err(),
        "connected through a relay whose policy refuses the peer: {r:?}"
    );
}
