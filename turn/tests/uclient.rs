//! coturn's own client, `turnutils_uclient` (Debian's `coturn` package), against our server:
//! ephemeral credentials in coturn's REST form, allocations, permissions, channels and
//! relaying between two clients; and 403 for peers in refused ranges.
#![allow(clippy::unwrap_used)]

use std::net::IpAddr;
use std::process::Command;

use turn::policy::{Cidr, PeerPolicy};
use turn::{TurnConfig, TurnMetrics, TurnServer};

const SECRET: &str = "shared-with-the-control-plane";

fn uclient() -> String {
    for p in ["/usr/bin/turnutils_uclient", "turnutils_uclient"] {
        if Command::new(p).arg("-h").output().is_ok() {
            return p.to_owned();
        }
    }
    panic!("turnutils_uclient not found: `.ci/run` installs Debian's coturn package");
}

/// The server on UDP and TCP (one port number, as coturn) and TLS (another).
struct Ports {
    udp_tcp: u16,
    tls: u16,
}

async fn start(
    allow: Vec<Cidr>,
) -> (
    Ports,
    TurnServer,
    prometheus::Registry,
    tokio::sync::watch::Sender<()>,
) {
    let registry = prometheus::Registry::new();
    let server = TurnServer::new(
        TurnConfig {
            realm: "perigee".into(),
            secret: SECRET.as_bytes().to_vec(),
            relay_ips: vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ],
            policy: PeerPolicy::new(allow),
            max_allocations: 100,
            max_per_user: 10,
            bandwidth: 0,
        },
        TurnMetrics::new(&registry).unwrap(),
    );
    let (sock, tcp) = udp_and_tcp_on_one_port().await;
    let tls = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ports = Ports {
        udp_tcp: sock.local_addr().unwrap().port(),
        tls: tls.local_addr().unwrap().port(),
    };
    let dir = std::env::temp_dir().join(format!(
        "perigee-turn-tls-{}",
        relay_core::token::random_id()
    ));
    let ca = relay_core::tls::LocalCa::load_or_create(&dir).unwrap();
    let id = ca.issue(&["127.0.0.1".to_owned()]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
        relay_core::tls::server_config(&id, &[]).unwrap(),
    ));
    let (tx, rx) = tokio::sync::watch::channel(());
    let stop = |mut rx: tokio::sync::watch::Receiver<()>| async move {
        let _ = rx.changed().await;
    };
    tokio::spawn(server.clone().serve(sock, stop(rx.clone())));
    tokio::spawn(server.clone().serve_tcp(tcp, None, stop(rx.clone())));
    tokio::spawn(server.clone().serve_tcp(tls, Some(acceptor), stop(rx)));
    (ports, server, registry, tx)
}

/// turnutils_uclient's `-t` uses the same port number as UDP, as coturn does.
async fn udp_and_tcp_on_one_port() -> (tokio::net::UdpSocket, tokio::net::TcpListener) {
    for _ in 0..50 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = tokio::net::TcpListener::bind(udp.local_addr().unwrap()).await {
            return (udp, tcp);
        }
    }
    panic!("no port free for both UDP and TCP");
}

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(uclient()).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn uclient_run(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&args)
    })
    .await
    .unwrap()
}

fn args(port: u16, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    a.extend(["-p".to_owned(), port.to_string(), "127.0.0.1".to_owned()]);
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coturn_client_relays_through_our_server() {
    // The two clients relay to each other's relayed addresses on loopback, which the
    // default policy refuses: this deployment allows loopback explicitly.
    let (ports, server, registry, _stop) = start(vec!["127.0.0.0/8".parse().unwrap()]).await;
    // The five ways run at once (each uclient paces its own messages, so one after the other
    // the test mostly waited), each as its own user so the per-user quota holds for each.
    let mut runs = Vec::new();
    for (how, extra, port, user) in [
        ("channels", vec![], ports.udp_tcp, "ada"),
        ("send indications", vec!["-s"], ports.udp_tcp, "bob"),
        ("channels over TCP", vec!["-t"], ports.udp_tcp, "cyd"),
        (
            "send indications over TCP",
            vec!["-t", "-s"],
            ports.udp_tcp,
            "dee",
        ),
        ("channels over TLS", vec!["-t", "-S"], ports.tls, "eve"),
    ] {
        let mut a = vec![
            "-y", "-c", "-m", "2", "-n", "40", "-l", "400", "-W", SECRET, "-u", user,
        ];
        a.extend(extra);
        runs.push((how, tokio::spawn(uclient_run(args(port, &a)))));
    }
    for (how, run) in runs {
        let (ok, out) = run.await.unwrap();
        assert!(ok, "{how}: {out}");
        let (sent, received) = testkit::uclient_totals(&out).unwrap_or_default();
        assert!(sent > 0 && sent == received, "{how}: {out}");
        assert!(out.contains("Total lost packets 0 ("), "{how}: {out}");
    }
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("perigee_turn_relayed_bytes_total{direction=\"to_peer\"}"),
        "{text}"
    );
    // Two clients per run; an allocation over UDP stays until refreshed to zero or
    // expired, one over TCP or TLS ends with its connection.
    assert!(
        (1..=20).contains(&server.allocations()),
        "{}",
        server.allocations()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_peers_get_403_and_bad_credentials_get_nothing() {
    for peer in [
        "127.0.0.1",
        "0.0.0.0",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "100.64.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "240.0.0.1",
        "192.0.2.1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "::1",
        "::",
        "fe80::1",
        "fd00::1",
        "64:ff9b::7f00:1",
        "2001:db8::1",
    ] {
        // A server per peer: a refused client leaves its allocation until it expires, and
        // a later client given the same UDP port by the kernel would meet it (441/437).
        let (ports, _server, registry, _stop) = start(Vec::new()).await;
        let (_, out) = uclient_run(args(
            ports.udp_tcp,
            &["-c", "-n", "1", "-e", peer, "-W", SECRET, "-u", "ada"],
        ))
        .await;
        assert!(out.contains("error 403 (Forbidden)"), "{peer}: {out}");
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .unwrap();
        assert!(text.contains("reason=\"forbidden_peer\""), "{peer}: {text}");
    }
    let (ports, _server, registry, _stop) = start(Vec::new()).await;
    let port = ports.udp_tcp;
    // Wrong password, and credentials past their expiry: no allocation.
    for (user, pass) in [("99999999999:ada", "wrong"), ("1:ada", "")] {
        let pass = if pass.is_empty() {
            turn::auth::ephemeral_password(SECRET.as_bytes(), user)
        } else {
            pass.to_owned()
        };
        let (ok, out) = uclient_run(args(
            port,
            &["-c", "-n", "1", "-e", "8.8.8.8", "-u", user, "-w", &pass],
        ))
        .await;
        assert!(
            !ok && out.contains("Cannot complete Allocation"),
            "{user}: {out}"
        );
    }
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    for reason in ["bad_integrity", "expired_credentials"] {
        assert!(
            text.contains(&format!("reason=\"{reason}\"")),
            "{reason}: {text}"
        );
    }
}
