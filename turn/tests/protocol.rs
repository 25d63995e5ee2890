//! The server's refusals, driven by a small client built on the crate's own codec: quotas,
//! stale nonces, wrong integrity, unknown attributes, mismatches, the bandwidth limit, and
//! relaying both ways over Send/Data and ChannelData.
#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::UdpSocket;
use turn::auth::{ephemeral_password, ephemeral_username, long_term_key};
use turn::policy::PeerPolicy;
use turn::stun::{self, attr, error_code, method, Builder, Class, Message};
use turn::{TurnConfig, TurnMetrics, TurnServer};

const SECRET: &[u8] = b"s3cret";

async fn server(max_per_user: usize, max_total: usize, bandwidth: u64) -> SocketAddr {
    let registry = prometheus::Registry::new();
    let s = TurnServer::new(
        TurnConfig {
            realm: "perigee".into(),
            secret: SECRET.to_vec(),
            relay_ips: vec![IpAddr::from([127, 0, 0, 1])],
            policy: PeerPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
            max_allocations: max_total,
            max_per_user,
            bandwidth,
        },
        TurnMetrics::new(&registry).unwrap(),
    );
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(s.serve(sock, std::future::pending()));
    addr
}

struct Client {
    sock: UdpSocket,
    server: SocketAddr,
    username: String,
    key: [u8; 16],
    nonce: String,
}

fn txid() -> [u8; 12] {
    relay_core::token::random_bytes::<12>()
}

async fn recv(sock: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0u8; 70_000];
    let n = tokio::time::timeout(Duration::from_secs(5), sock.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    buf.truncate(n);
    buf
}

impl Client {
    /// Connects and learns the realm's nonce from a 401 challenge.
    async fn new(server: SocketAddr, user: &str, expiry: u64) -> Self {
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.connect(server).await.unwrap();
        let mut b = Builder::new(method::ALLOCATE, Class::Request, &txid());
        b.add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        sock.send(&b.finish(None, true)).await.unwrap();
        let m = Message::decode(&recv(&sock).await).unwrap();
        assert_eq!(error_code(&m).unwrap().0, 401);
        let nonce = m.text(attr::NONCE).unwrap().unwrap().to_owned();
        let username = ephemeral_username(expiry, user);
        let key = long_term_key(&username, "perigee", &ephemeral_password(SECRET, &username));
        Self {
            sock,
            server,
            username,
            key,
            nonce,
        }
    }

    fn auth(&self, b: &mut Builder) {
        b.add(attr::USERNAME, self.username.as_bytes())
            .add(attr::REALM, b"perigee")
            .add(attr::NONCE, self.nonce.as_bytes());
    }

    async fn request(&self, m: u16, add: impl FnOnce(&mut Builder)) -> Message {
        let mut b = Builder::new(m, Class::Request, &txid());
        add(&mut b);
        self.auth(&mut b);
        self.sock
            .send(&b.finish(Some(&self.key), false))
            .await
            .unwrap();
        Message::decode(&recv(&self.sock).await).unwrap()
    }

    async fn allocate(&self) -> Message {
        self.request(method::ALLOCATE, |b| {
            b.add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        })
        .await
    }
}

fn code(m: &Message) -> u16 {
    match m.class {
        Class::Success => 200,
        _ => error_code(m).map(|(c, _)| c).unwrap_or(0),
    }
}

fn far_future() -> u64 {
    relay_core::unix_now() + 3600
}

#[tokio::test]
async fn quotas_and_credential_refusals() {
    let addr = server(2, 3, 0).await;
    let a1 = Client::new(addr, "ada", far_future()).await;
    let a2 = Client::new(addr, "ada", far_future()).await;
    let a3 = Client::new(addr, "ada", far_future()).await;
    assert_eq!(code(&a1.allocate().await), 200);
    assert_eq!(code(&a2.allocate().await), 200);
    assert_eq!(code(&a3.allocate().await), 486, "per-user quota");
    let b1 = Client::new(addr, "bob", far_future()).await;
    let b2 = Client::new(addr, "bob", far_future()).await;
    assert_eq!(code(&b1.allocate().await), 200);
    assert_eq!(code(&b2.allocate().await), 508, "total capacity");
    // A second Allocate with another transaction on the same 5-tuple.
    assert_eq!(code(&a1.allocate().await), 437);
    // Refresh to zero frees the slot.
    let r = a1
        .request(method::REFRESH, |b| {
            b.add(attr::LIFETIME, &0u32.to_be_bytes());
        })
        .await;
    assert_eq!(code(&r), 200);
    assert_eq!(code(&b2.allocate().await), 200);

    // Expired credentials, a wrong key, a stale nonce, an unknown attribute.
    let old = Client::new(addr, "cy", 1).await;
    assert_eq!(code(&old.allocate().await), 401);
    let mut wrong = Client::new(addr, "cy", far_future()).await;
    wrong.key = [0; 16];
    assert_eq!(code(&wrong.allocate().await), 401);
    let mut stale = Client::new(addr, "cy", far_future()).await;
    stale.nonce = format!("{:016x}{}", 1, "0".repeat(16));
    assert_eq!(code(&stale.allocate().await), 438);
    let odd = Client::new(addr, "cy", far_future()).await;
    let m = odd
        .request(method::ALLOCATE, |b| {
            b.add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
                .add(0x0031, b"?");
        })
        .await;
    assert_eq!(code(&m), 420);
    assert_eq!(m.get(attr::UNKNOWN_ATTRIBUTES), Some(&[0x00, 0x31][..]));
    let tcp = odd
        .request(method::ALLOCATE, |b| {
            b.add(attr::REQUESTED_TRANSPORT, &[6, 0, 0, 0]);
        })
        .await;
    assert_eq!(code(&tcp), 442);
    // An oversized attribute (USERNAME over 763 bytes) is a malformed request.
    let mut b = Builder::new(method::ALLOCATE, Class::Request, &txid());
    b.add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
        .add(attr::USERNAME, &[b'u'; 800])
        .add(attr::REALM, b"perigee")
        .add(attr::NONCE, odd.nonce.as_bytes());
    odd.sock
        .send(&b.finish(Some(&odd.key), false))
        .await
        .unwrap();
    let m = Message::decode(&recv(&odd.sock).await).unwrap();
    assert_eq!(code(&m), 400);
    // Responses to authenticated requests carry integrity under the user's key (a slot is
    // freed first: the deployment is full).
    let r = a2
        .request(method::REFRESH, |b| {
            b.add(attr::LIFETIME, &0u32.to_be_bytes());
        })
        .await;
    assert_eq!(code(&r), 200);
    let raw = {
        let mut b = Builder::new(method::ALLOCATE, Class::Request, &txid());
        b.add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
        odd.auth(&mut b);
        odd.sock
            .send(&b.finish(Some(&odd.key), false))
            .await
            .unwrap();
        recv(&odd.sock).await
    };
    let m = Message::decode(&raw).unwrap();
    assert_eq!(code(&m), 200);
    assert!(m.check_integrity(&raw, &odd.key));
    let _ = odd.server;
}

#[tokio::test]
async fn relays_both_ways_and_enforces_the_bandwidth_limit() {
    let addr = server(10, 10, 20_000).await;
    let c = Client::new(addr, "ada", far_future()).await;
    let m = c.allocate().await;
    assert_eq!(code(&m), 200);
    let relayed = m.xor_addresses(attr::XOR_RELAYED_ADDRESS).unwrap()[0];
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let peer_addr = peer.local_addr().unwrap();

    // No permission yet: a Send is dropped and the peer's packets are not relayed.
    let send = |data: &[u8]| {
        let mut b = Builder::new(method::SEND, Class::Indication, &txid());
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer_addr)
            .add(attr::DATA, data);
        b.finish(None, false)
    };
    c.sock.send(&send(b"early")).await.unwrap();
    let got =
        tokio::time::timeout(Duration::from_millis(200), peer.recv_from(&mut [0u8; 64])).await;
    assert!(got.is_err(), "relayed without a permission");

    let p = c
        .request(method::CREATE_PERMISSION, |b| {
            b.add_xor_address(attr::XOR_PEER_ADDRESS, peer_addr);
        })
        .await;
    assert_eq!(code(&p), 200);
    c.sock.send(&send(b"hello peer")).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = peer.recv_from(&mut buf).await.unwrap();
    assert_eq!((&buf[..n], from), (&b"hello peer"[..], relayed));
    peer.send_to(b"hello client", relayed).await.unwrap();
    let d = Message::decode(&recv(&c.sock).await).unwrap();
    assert_eq!((d.method, d.class), (method::DATA, Class::Indication));
    assert_eq!(d.get(attr::DATA), Some(&b"hello client"[..]));
    assert_eq!(
        d.xor_addresses(attr::XOR_PEER_ADDRESS).unwrap(),
        vec![peer_addr]
    );

    // A channel: ChannelData both ways.
    let cb = c
        .request(method::CHANNEL_BIND, |b| {
            b.add(attr::CHANNEL_NUMBER, &[0x40, 0x01, 0, 0])
                .add_xor_address(attr::XOR_PEER_ADDRESS, peer_addr);
        })
        .await;
    assert_eq!(code(&cb), 200);
    let mut cd = Vec::new();
    stun::encode_channel_data(0x4001, b"on channel", &mut cd);
    c.sock.send(&cd).await.unwrap();
    let (n, _) = peer.recv_from(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"on channel");
    peer.send_to(b"back on channel", relayed).await.unwrap();
    let back = recv(&c.sock).await;
    assert_eq!(
        stun::decode_channel_data(&back).unwrap(),
        (0x4001, &b"back on channel"[..])
    );

    // 20 kB/s: a burst of 100 kB gets through only in part.
    let chunk = vec![7u8; 1000];
    let mut cd = Vec::new();
    stun::encode_channel_data(0x4001, &chunk, &mut cd);
    for _ in 0..100 {
        c.sock.send(&cd).await.unwrap();
    }
    let mut received = 0;
    while let Ok(Ok((n, _))) =
        tokio::time::timeout(Duration::from_millis(300), peer.recv_from(&mut buf)).await
    {
        received += n;
    }
    assert!(
        received > 0 && received <= 40_000,
        "received {received} bytes"
    );
}
