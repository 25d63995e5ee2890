//! UDP blocked for the agent: the link falls back to HTTP/2 over TLS/TCP.
//!
//! Everything runs inside a network namespace this test creates, whose nftables ruleset
//! drops every UDP packet; the namespace is deleted afterwards.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{Server, TempDir};

struct Netns(String);

impl Netns {
    fn create() -> Self {
        let name = format!("pg-e2e-{}", std::process::id());
        let ip = |args: &[&str]| {
            let st = Command::new("ip")
                .args(args)
                .status()
                .expect("ip (iproute2)");
            assert!(st.success(), "ip {args:?} failed (this test needs root)");
        };
        let _ = Command::new("ip")
            .args(["netns", "del", &name])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &name]);
        let ns = Self(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"]);
        crate::harness::drop_udp_in(&ns.0);
        ns
    }

    fn exec(&self) -> Vec<&str> {
        vec!["ip", "netns", "exec", &self.0]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn agent_link_falls_back_to_http2_when_udp_is_blocked() {
    let ns = Netns::create();
    let tmp = TempDir::new("netns");
    let prefix = ns.exec();
    // Agents check every second whether QUIC answers again.
    let server = Server::start_with_env(
        &tmp.0,
        "127.0.0.1:0",
        &prefix,
        &[
            ("PERIGEE_AGENT_QUIC_RETRY_SECS", "1"),
            // On loopback `auto` would take HTTP/2 at once (a near edge); this is about QUIC.
            ("PERIGEE_AGENT_LINK", "quic"),
        ],
    );

    // An echo service inside the namespace, as the workspace's port 7.
    let mut echo = crate::harness::python_echo(&["ip", "netns", "exec", &ns.0], 7);

    server.ok(&["create", "nat"]);
    let (_, transport) = server.wait_agent("nat", Duration::from_secs(30), None);
    assert_eq!(
        transport, "h2",
        "with UDP dropped the agent link must use HTTP/2"
    );
    let data = crate::harness::pseudo_random(3, 4 * 1024 * 1024);
    let out = crate::harness::tunnel_roundtrip(&server, "nat", 7, &data);
    assert!(
        out.stdout == data,
        "echo over the HTTP/2 link differs ({} of {} bytes): {}",
        out.stdout.len(),
        data.len(),
        String::from_utf8_lossy(&out.stderr)
    );

    // UDP comes back: with no tunnel open, the link moves back to QUIC by itself.
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            "nft",
            "delete",
            "table",
            "inet",
            "perigee_test",
        ])
        .status()
        .expect("nft");
    assert!(st.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let w = server.workspace("nat");
        if w["agent"]["transport"] == "quic" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "link did not move back to QUIC: {w}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = crate::harness::tunnel_roundtrip(&server, "nat", 7, b"over-quic-again");
    assert_eq!(
        out.stdout,
        b"over-quic-again",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = echo.kill();
    let _ = echo.wait();
    drop(server);
}
