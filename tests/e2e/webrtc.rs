//! Networking v2 on loopback: `perigee tunnel` over a WebRTC data channel (direct, and
//! relayed through the built-in edge's TURN server), the race in `auto`, and the
//! per-provider switch applying to the next connection without a restart.

use crate::harness::{Server, TempDir};

fn tunnel(
    server: &Server,
    ws: &str,
    port: u16,
    extra: &[&str],
    env: &[(&str, &str)],
    data: &[u8],
) -> std::process::Output {
    let p = port.to_string();
    let mut args = vec!["tunnel", ws, p.as_str(), "-v"];
    args.extend_from_slice(extra);
    let mut cmd = server.cmd(&args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    crate::harness::run_with_stdin(cmd, data)
}

fn check(out: &std::process::Output, data: &[u8], path: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    assert!(
        out.stdout == data,
        "echo differs ({} of {} bytes): {err}",
        out.stdout.len(),
        data.len()
    );
    assert!(
        err.contains(&format!("path={path}")),
        "expected path={path}: {err}"
    );
    err
}

/// `perigee ping WORKSPACE --port PORT -o json`'s path.
fn ping_path(server: &Server, ws: &str, port: u16) -> serde_json::Value {
    let out = server.ok(&["ping", ws, "--port", &port.to_string(), "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["path"].clone()
}

#[test]
fn tunnel_over_webrtc_direct_and_relayed_and_the_switch() {
    let tmp = TempDir::new("webrtc");
    let server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[],
        // The relayed step needs the agent to reach the edge's TURN relay on the host's
        // loopback, which an isolated workspace cannot (by design; on its own host the
        // direct path always works, shown isolated in tests/e2e/isolation.rs).
        &[
            "--turn-allow-peers",
            "127.0.0.0/8",
            "--workspace-isolation",
            "off",
        ],
    );
    server.ok(&["create", "rtc"]);
    server.wait_agent("rtc", std::time::Duration::from_secs(30), None);
    let port = server.echo_in("rtc");
    let data = crate::harness::pseudo_random(11, 2 << 20);

    // Direct: both peers on loopback.
    let out = tunnel(&server, "rtc", port, &["--path", "webrtc"], &[], &data);
    let err = check(&out, &data, "direct");
    assert!(err.contains("why=\"direct ("), "{err}");
    let p = ping_path(&server, "rtc", port);
    assert_eq!(p["kind"], "direct", "{p}");
    assert!(p["connect_ms"].as_f64().is_some_and(|t| t > 0.0), "{p}");

    // Relayed: the client offers only its TURN candidate.
    let out = tunnel(
        &server,
        "rtc",
        port,
        &["--path", "webrtc"],
        &[("PERIGEE_WEBRTC_RELAY_ONLY", "1")],
        &data,
    );
    let err = check(&out, &data, "relay");
    assert!(err.contains("relay via TURN 127.0.0.1:"), "{err}");

    // Auto races both paths; either may win on loopback, the bytes are intact either way.
    let out = tunnel(&server, "rtc", port, &[], &[], &data);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success() && out.stdout == data, "{err}");
    assert!(err.contains("path="), "{err}");

    // The switch: off applies to the next connection (tickets cached on disk are dropped).
    let provider = server.ok(&["providers", "ls", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&provider).unwrap();
    let name = list
        .as_array()
        .and_then(|l| l.iter().find(|p| p["built_in"] == true))
        .and_then(|p| p["name"].as_str())
        .unwrap()
        .to_owned();
    server.ok(&["providers", "edit", &name, "--networking-v2", "off"]);
    // A client's cached ticket keeps the old setting until it expires; a new one has it.
    let _ = std::fs::remove_file(server.dir.join("config/tickets.json"));
    let out = tunnel(&server, "rtc", port, &[], &[], &data);
    let err = check(&out, &data, "envproxy");
    assert!(err.contains("Networking v2 is off"), "{err}");
    let p = ping_path(&server, "rtc", port);
    assert_eq!(p["kind"], "envproxy", "{p}");
    assert!(
        p["why"].as_str().unwrap().contains("Networking v2 is off"),
        "{p}"
    );
    let out = tunnel(&server, "rtc", port, &["--path", "webrtc"], &[], b"x");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Networking v2 off"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
