//! The control plane goes away for twelve of the satellite's heartbeats: a satellite keeps serving the agent homed on it,
//! existing tunnels keep working and new tunnels open with tickets obtained before the stop;
//! after the restart nothing is lost and the satellite registers again. Then the
//! ticket-signing key is rotated without restarting the satellite, and the satellite is
//! restarted during a second outage (it starts from its saved state).

use std::io::{Read as _, Write as _};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::harness::{echo_server, free_port, tunnel_roundtrip, wait_until, Satellite, Server};

/// Twelve heartbeats (`--heartbeat-secs 1`) and six rounds of checks: the satellite has
/// noticed the outage and kept serving through many failed heartbeats.
const OUTAGE: Duration = Duration::from_secs(12);

fn health(server: &Server) -> String {
    let v: serde_json::Value =
        serde_json::from_str(&server.ok(&["satellites", "ls", "-o", "json"])).expect("json");
    v["satellites"][0]["health"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn roundtrip_ok(server: &Server, echo: u16, msg: &[u8]) {
    let out = tunnel_roundtrip(server, "near", echo, msg);
    assert_eq!(out.stdout, msg, "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn tunnels_survive_a_control_plane_outage_and_keys_rotate_without_restarts() {
    // The agent homes on a satellite on the host's loopback: not reachable from an
    // isolated workspace, by design.
    let mut server = Server::start_unisolated();
    let port = free_port("127.0.0.1");
    let access = format!("https://127.0.0.1:{port}");
    let token = server.create_satellite("eu", "eu-west", &access);
    let data = server.data();
    let ca = data.join("tls/ca.pem");
    // The satellite shares the server's local CA (same data directory), so one CA file
    // serves clients and agents.
    let address = format!("127.0.0.1:{port}");
    let primary_url = server.url.clone();
    let sat_args = [
        "--primary-url",
        &primary_url,
        "--token",
        &token,
        "--address",
        &address,
        "--access-url",
        &access,
        "--ca-cert",
        ca.to_str().expect("path"),
        "--data-dir",
        data.to_str().expect("path"),
        "--heartbeat-secs",
        "1",
    ];
    let mut sat = Satellite::start(&server.dir, &[], &sat_args);
    wait_until("satellite ok", Duration::from_secs(10), || {
        health(&server) == "ok"
    });

    // The agent homes on the satellite.
    server.ok(&["create", "near", "--edge", "eu"]);
    let (agent_pid, _) = server.wait_agent("near", Duration::from_secs(20), None);
    assert_eq!(server.workspace("near")["home_edge"], "eu");
    let echo = echo_server();
    roundtrip_ok(&server, echo, b"before"); // also caches a fresh ticket on disk

    // A tunnel that stays open across the outage.
    let mut long = server
        .cmd(&["tunnel", "near", &echo.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tunnel");
    let mut stdin = long.stdin.take().expect("stdin");
    let mut stdout = long.stdout.take().expect("stdout");
    let mut ping = |msg: &[u8]| {
        stdin.write_all(msg).expect("write");
        stdin.flush().expect("flush");
        let mut got = vec![0u8; msg.len()];
        stdout
            .read_exact(&mut got)
            .expect("echo on the open tunnel");
        assert_eq!(got, msg);
    };
    ping(b"open");

    server.stop();
    let stopped = Instant::now();
    let mut checks = 0;
    while stopped.elapsed() < OUTAGE {
        ping(format!("still-open-{checks}").as_bytes());
        roundtrip_ok(&server, echo, format!("new-{checks}").as_bytes());
        checks += 1;
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!(
        "{checks} checks during a {:?} outage passed",
        stopped.elapsed()
    );

    // Restart: nothing lost; the satellite registers again; the open tunnel still works.
    let (dir, addr) = (server.dir.clone(), server.addr);
    let server2 = Server::start_full(
        &dir,
        &addr.to_string(),
        &[],
        &[],
        &["--workspace-isolation", "off"],
    );
    wait_until(
        "satellite ok after restart",
        Duration::from_secs(15),
        || health(&server2) == "ok",
    );
    let (pid_after, _) = server2.wait_agent("near", Duration::from_secs(10), None);
    assert_eq!(pid_after, agent_pid, "the agent was never restarted");
    ping(b"after-restart");

    // Rotate the ticket-signing key: the satellite learns it at its next heartbeat; a ticket
    // signed with the old key still opens tunnels; new tickets use the new key.
    let old_ticket = std::fs::read_to_string(dir.join("config/tickets.json")).expect("tickets");
    server2.ok(&["keys", "rotate"]);
    roundtrip_ok(&server2, echo, b"old-key-ticket");
    let _ = std::fs::remove_file(dir.join("config/tickets.json"));
    // The satellite accepts the new key once its next heartbeat (1 s) brought it.
    wait_until(
        "new key accepted by the satellite",
        Duration::from_secs(10),
        || tunnel_roundtrip(&server2, "near", echo, b"new-key-ticket").stdout == b"new-key-ticket",
    );
    let new_ticket = std::fs::read_to_string(dir.join("config/tickets.json")).expect("tickets");
    let kid = |s: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(s).expect("json");
        let t = v
            .as_object()
            .and_then(|m| m.values().next())
            .expect("a ticket")["ticket"]
            .as_str()
            .expect("ticket")
            .to_owned();
        let claims = t.split('.').nth(1).expect("claims").to_owned();
        use base64::Engine as _;
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .expect("b64");
        serde_json::from_slice::<serde_json::Value>(&json).expect("claims")["kid"]
            .as_str()
            .expect("kid")
            .to_owned()
    };
    assert_ne!(
        kid(&old_ticket),
        kid(&new_ticket),
        "new tickets use the new key"
    );

    drop(stdin);
    let _ = long.wait();

    // The satellite restarts while the control plane is down again: it starts from the state
    // it saved (keys, mesh, the agents the control plane vouched for), takes its agent back
    // and opens new tunnels.
    let mut server2 = server2;
    server2.stop();
    sat.kill();
    let _sat = Satellite::start(&dir, &[], &sat_args);
    let back = wait_until(
        "a new tunnel through the restarted satellite",
        Duration::from_secs(30),
        || {
            tunnel_roundtrip(&server2, "near", echo, b"offline-restart").stdout
                == b"offline-restart"
        },
    );
    eprintln!("satellite restarted without the control plane; tunnels back after {back:?}");
    drop(server2);
}
