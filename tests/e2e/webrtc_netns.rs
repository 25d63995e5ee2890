//! Networking v2 across network namespaces this test creates: the edge (server and its TURN
//! relay) in one, the agent in a second, the client in a third; the edge does not route
//! between them. OpenSSH through a `perigee tunnel` ProxyCommand copies 50 MB in each case:
//! a shared client–agent segment gives `direct`, none gives `relay` through the edge's TURN,
//! and UDP dropped for the client by nftables gives `envproxy`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{ip, pseudo_random, Server, TempDir};
use crate::ssh::{sha256, start_sshd_in, user};

struct Net {
    tag: String,
}

impl Net {
    fn ns(&self, role: &str) -> String {
        format!("pg{}{role}", self.tag)
    }

    /// Namespaces E (edge), A (agent), C (client); E links to A (10.77.1.0/24) and to C
    /// (10.77.2.0/24); with `shared`, A and C also share 10.77.3.0/24.
    fn create(shared: bool) -> Self {
        let net = Net {
            tag: format!(
                "{}{}",
                std::process::id() % 100_000,
                if shared { "s" } else { "r" }
            ),
        };
        for r in ["e", "a", "c"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &net.ns(r)])
                .stderr(Stdio::null())
                .status();
            ip(&["netns", "add", &net.ns(r)]);
            ip(&["-n", &net.ns(r), "link", "set", "lo", "up"]);
            // New namespaces inherit the host's IPv4 forwarding, which isolated workspaces
            // turn on: the edge must not route between agent and client here.
            let off = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &net.ns(r),
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=0",
                ])
                .status();
            assert!(
                off.is_ok_and(|s| s.success()),
                "forwarding off in {}",
                net.ns(r)
            );
        }
        let link = |a: &str, a_ip: &str, b: &str, b_ip: &str, n: &str| {
            let (ia, ib) = (format!("v{n}{a}"), format!("v{n}{b}"));
            ip(&[
                "link",
                "add",
                &ia,
                "netns",
                &net.ns(a),
                "type",
                "veth",
                "peer",
                "name",
                &ib,
                "netns",
                &net.ns(b),
            ]);
            ip(&["-n", &net.ns(a), "addr", "add", a_ip, "dev", &ia]);
            ip(&["-n", &net.ns(b), "addr", "add", b_ip, "dev", &ib]);
            ip(&["-n", &net.ns(a), "link", "set", &ia, "up"]);
            ip(&["-n", &net.ns(b), "link", "set", &ib, "up"]);
        };
        link("e", "10.77.1.1/24", "a", "10.77.1.2/24", "1");
        link("e", "10.77.2.1/24", "c", "10.77.2.2/24", "2");
        if shared {
            link("a", "10.77.3.2/24", "c", "10.77.3.3/24", "3");
        }
        ip(&[
            "-n",
            &net.ns("a"),
            "route",
            "add",
            "default",
            "via",
            "10.77.1.1",
        ]);
        ip(&[
            "-n",
            &net.ns("c"),
            "route",
            "add",
            "default",
            "via",
            "10.77.2.1",
        ]);
        net
    }

    fn block_udp(&self, role: &str) {
        crate::harness::drop_udp_in(&self.ns(role));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for r in ["e", "a", "c"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(r)])
                .status();
        }
    }
}

fn ssh_50mb(server: &Server, net: &Net, dir: &Path, port: u16, path_arg: &str, want: &str) {
    let proxy = format!(
        "ProxyCommand=ip netns exec {} {} tunnel ws %p -v --path {path_arg}",
        net.ns("c"),
        crate::harness::BIN
    );
    let opts = |c: &mut Command| {
        c.args(["-F", "/dev/null", "-i"])
            .arg(dir.join("client_key"))
            .args([
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-o", "BatchMode=yes", "-o", &proxy, "-o", "LogLevel=ERROR"]);
        server.session_env(c);
    };
    let mut c = Command::new("ssh");
    opts(&mut c);
    c.args(["-p", &port.to_string()])
        .arg(format!("{}@ws", user()))
        .arg("echo perigee-$((40+2))");
    let out = c.output().expect("ssh");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ssh failed: {err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "perigee-42");
    assert!(
        err.contains(&format!("path={want}")),
        "expected path={want}: {err}"
    );

    let src = dir.join("src.bin");
    std::fs::write(&src, pseudo_random(5, 50 * 1024 * 1024)).expect("src");
    let dst = dir.join(format!("dst-{want}.bin"));
    let mut c = Command::new("scp");
    opts(&mut c);
    c.args(["-P", &port.to_string()])
        .arg(&src)
        .arg(format!("{}@ws:{}", user(), dst.display()))
        .stdin(Stdio::null());
    let out = c.output().expect("scp");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "scp failed: {err}");
    assert_eq!(sha256(&src), sha256(&dst), "{err}");
    let _ = std::fs::remove_file(&dst);
}

fn scenario(shared: bool, block_client_udp: bool, path_arg: &str, want: &str) {
    let net = Net::create(shared);
    if block_client_udp {
        net.block_udp("c");
    }
    let tmp = TempDir::new(&format!("webrtc-{want}"));
    let dir = &tmp.0;
    let e = net.ns("e");
    let agent_prefix = format!("ip netns exec {}", net.ns("a"));
    let server = Server::start_full(
        dir,
        "10.77.2.1:0",
        &["ip", "netns", "exec", &e],
        &[("PERIGEE_AGENT_EXEC_PREFIX", agent_prefix.as_str())],
        &["--turn-allow-peers", "10.77.0.0/16"],
    );
    let sshd = start_sshd_in(dir, &["ip", "netns", "exec", &net.ns("a")], 2222);
    server.ok(&["create", "ws"]);
    server.wait_agent("ws", Duration::from_secs(30), None);
    ssh_50mb(&server, &net, dir, sshd.port, path_arg, want);
    // `perigee ping` from the client finds the same path, by connecting as a tunnel would;
    // with UDP blocked, WebRTC fails and says why.
    let mut c = Command::new("ip");
    c.args([
        "netns",
        "exec",
        &net.ns("c"),
        crate::harness::BIN,
        "ping",
        "ws",
    ])
    .args(["--port", &sshd.port.to_string(), "-o", "json"]);
    // Where WebRTC must fail, give it 2 s rather than the default 10 s.
    c.env("PERIGEE_WEBRTC_TIMEOUT_MS", "2000");
    server.session_env(&mut c);
    let out = c.output().expect("perigee ping");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["path"]["kind"], want, "{text}");
    if block_client_udp {
        assert!(
            v["path"]["why"]
                .as_str()
                .unwrap_or("")
                .contains("WebRTC failed"),
            "{text}"
        );
    }
    drop(sshd);
    drop(server);
}

#[test]
fn webrtc_direct_on_a_shared_segment() {
    scenario(true, false, "webrtc", "direct");
}

#[test]
fn webrtc_relay_through_the_edge_turn_when_peers_cannot_meet() {
    scenario(false, false, "webrtc", "relay");
}

#[test]
fn envproxy_when_udp_is_blocked_for_the_client() {
    scenario(false, true, "auto", "envproxy");
}
