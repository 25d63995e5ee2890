//! Runs a TURN server on 127.0.0.1:PORT for manual tests:
//! `cargo run -p turn --example serve -- PORT SECRET [ALLOW_CIDR...]`.
#![allow(clippy::unwrap_used)]

use turn::policy::PeerPolicy;
use turn::{TurnConfig, TurnMetrics, TurnServer};

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().collect();
    let port: u16 = args.get(1).and_then(|p| p.parse().ok()).unwrap_or(3478);
    let secret = args.get(2).cloned().unwrap_or_else(|| "secret".into());
    let allow = args.iter().skip(3).map(|a| a.parse().unwrap()).collect();
    let registry = prometheus::Registry::new();
    let server = TurnServer::new(
        TurnConfig {
            realm: "perigee".into(),
            secret: secret.into_bytes(),
            relay_ips: vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()],
            policy: PeerPolicy::new(allow),
            max_allocations: 1000,
            max_per_user: 100,
            bandwidth: 0,
        },
        TurnMetrics::new(&registry).unwrap(),
    );
    let sock = tokio::net::UdpSocket::bind(("127.0.0.1", port))
        .await
        .unwrap();
    println!("turn ready on {}", sock.local_addr().unwrap());
    server.serve(sock, std::future::pending()).await;
}
