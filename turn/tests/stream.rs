//! TURN over TCP with the crate's own codec: framing on the stream, ChannelData padded to
//! four bytes both ways, the allocation ending with its connection, and a frame that is
//! not STUN closing the connection.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use turn::auth::{ephemeral_password, ephemeral_username, long_term_key};
use turn::policy::PeerPolicy;
use turn::stun::{self, attr, error_code, method, Builder, Class, Message};
use turn::{TurnConfig, TurnMetrics, TurnServer};

const SECRET: &[u8] = b"s3cret";

async fn server() -> (SocketAddr, TurnServer, prometheus::Registry) {
    let registry = prometheus::Registry::new();
    let s = TurnServer::new(
        TurnConfig {
            realm: "perigee".into(),
            secret: SECRET.to_vec(),
            relay_ips: vec![IpAddr::from([127, 0, 0, 1])],
            policy: PeerPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
            max_allocations: 10,
            max_per_user: 10,
            bandwidth: 0,
        },
        TurnMetrics::new(&registry).unwrap(),
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(s.clone().serve_tcp(l, None, std::future::pending()));
    (addr, s, registry)
}

async fn read_frame(tcp: &mut TcpStream) -> Vec<u8> {
    let mut h = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut h))
        .await
        .expect("a frame")
        .unwrap();
    let n = stun::stream_frame_len(h).unwrap();
    let mut f = vec![0u8; n];
    f[..4].copy_from_slice(&h);
    tcp.read_exact(&mut f[4..]).await.unwrap();
    f
}

struct Auth {
    username: String,
    key: [u8; 16],
    nonce: String,
}

async fn request(
    tcp: &mut TcpStream,
    a: Option<&Auth>,
    m: u16,
    add: impl FnOnce(&mut Builder),
) -> Message {
    let mut b = Builder::new(m, Class::Request, &relay_core::token::random_bytes::<12>());
    add(&mut b);
    let key = a.map(|a| {
        b.add(attr::USERNAME, a.username.as_bytes())
            .add(attr::REALM, b"perigee")
            .add(attr::NONCE, a.nonce.as_bytes());
        a.key
    });
    tcp.write_all(&b.finish(key.as_ref().map(|k| &k[..]), false))
        .await
        .unwrap();
    Message::decode(&read_frame(tcp).await).unwrap()
}

async fn allocate(tcp: &mut TcpStream) -> (Auth, SocketAddr) {
    let transport = |b: &mut Builder| {
        b.add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    };
    let m = request(tcp, None, method::ALLOCATE, transport).await;
    assert_eq!(error_code(&m).unwrap().0, 401);
    let username = ephemeral_username(relay_core::unix_now() + 600, "ada");
    let auth = Auth {
        key: long_term_key(&username, "perigee", &ephemeral_password(SECRET, &username)),
        nonce: m.text(attr::NONCE).unwrap().unwrap().to_owned(),
        username,
    };
    let m = request(tcp, Some(&auth), method::ALLOCATE, transport).await;
    assert_eq!(m.class, Class::Success, "{:?}", error_code(&m));
    let relay = m.xor_addresses(attr::XOR_RELAYED_ADDRESS).unwrap()[0];
    (auth, relay)
}

/// Waits (bounded) until the server holds `n` allocations.
async fn allocations_become(s: &TurnServer, n: usize) {
    let until = Instant::now() + Duration::from_secs(5);
    while s.allocations() != n {
        assert!(
            Instant::now() < until,
            "{} allocations, expected {n}",
            s.allocations()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn channel_data_is_padded_both_ways_and_the_allocation_ends_with_the_connection() {
    let (addr, server, _) = server().await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let (auth, relay) = allocate(&mut tcp).await;
    assert_eq!(server.allocations(), 1);
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();
    let m = request(&mut tcp, Some(&auth), method::CHANNEL_BIND, |b| {
        b.add(attr::CHANNEL_NUMBER, &[0x40, 0x01, 0, 0])
            .add_xor_address(attr::XOR_PEER_ADDRESS, peer_addr);
    })
    .await;
    assert_eq!(m.class, Class::Success, "{:?}", error_code(&m));
    // Odd lengths, so the padding matters; two frames in one write.
    let mut out = Vec::new();
    stun::encode_channel_data(0x4001, b"hello", &mut out);
    stun::encode_channel_data(0x4001, b"world!!", &mut out);
    assert_eq!(out.len(), 12 + 12);
    tcp.write_all(&out).await.unwrap();
    let mut buf = [0u8; 64];
    for want in [&b"hello"[..], b"world!!"] {
        let (n, from) = tokio::time::timeout(Duration::from_secs(5), peer.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((&buf[..n], from), (want, relay));
    }
    peer.send_to(b"abc", relay).await.unwrap();
    let f = read_frame(&mut tcp).await;
    assert_eq!(f.len(), 8, "ChannelData padded to four bytes on a stream");
    assert_eq!(
        stun::decode_channel_data(&f).unwrap(),
        (0x4001, &b"abc"[..])
    );
    drop(tcp);
    allocations_become(&server, 0).await;
}

#[tokio::test]
async fn a_frame_that_is_not_stun_closes_the_connection() {
    let (addr, server, registry) = server().await;
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    let _ = allocate(&mut tcp).await;
    // Neither STUN (first bits 00) nor ChannelData (01).
    tcp.write_all(b"\xff\xff\x00\x00garbage!").await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest))
        .await
        .expect("the server closes")
        .unwrap_or(0);
    assert_eq!(n, 0, "nothing answered to garbage");
    allocations_become(&server, 0).await;
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(text.contains("reason=\"malformed\""), "{text}");
}
