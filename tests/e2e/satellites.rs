//! Satellites on loopback: registration, the forwarded API, mesh tunnels, health windows and
//! the refusals (revoked token, another satellite's token, forged mesh hello, wrong scheme).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use relay_core::wire::{Frame, StatusCode};

use crate::harness::{free_port, run_with_stdin, wait_until, Satellite, Server, TempDir, BIN};

/// Both CAs in one file, for clients that talk to the server and the satellite.
pub(crate) fn both_cas(
    server: &Server,
    sat_dir: &std::path::Path,
    out: &std::path::Path,
) -> PathBuf {
    let mut pem = std::fs::read(server.data().join("tls/ca.pem")).expect("server CA");
    pem.extend(std::fs::read(sat_dir.join("tls/ca.pem")).expect("satellite CA"));
    let path = out.join("cas.pem");
    std::fs::write(&path, pem).expect("write CAs");
    path
}

fn satellites_json(server: &Server) -> serde_json::Value {
    serde_json::from_str(&server.ok(&["satellites", "ls", "-o", "json"])).expect("json")
}

pub(crate) fn health_of(server: &Server, name: &str) -> (String, String) {
    let v = satellites_json(server);
    let s = v["satellites"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or_default();
    (
        s["health"].as_str().unwrap_or("").to_owned(),
        s["error"].as_str().unwrap_or("").to_owned(),
    )
}

pub(crate) fn wait_health(server: &Server, name: &str, want: &str, within: Duration) -> Duration {
    wait_until(&format!("satellite {name} {want}"), within, || {
        health_of(server, name).0 == want
    })
}

#[test]
fn satellite_registers_serves_the_api_and_forwards_tunnels_over_the_mesh() {
    let server = Server::start();
    let tmp = TempDir::new("sat");
    let sat_dir = tmp.0.join("sat");
    std::fs::create_dir_all(&sat_dir).expect("dir");

    // An access URL whose scheme differs from the control plane's is refused.
    let out = server.run(&[
        "satellites",
        "create",
        "plain",
        "--region",
        "x",
        "--access-url",
        "http://127.0.0.1:9",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another scheme"), "{err}");

    let port = free_port("127.0.0.1");
    let access = format!("https://127.0.0.1:{port}");
    let token = server
        .ok(&[
            "satellites",
            "create",
            "eu",
            "--region",
            "Europe",
            "--access-url",
            &access,
        ])
        .trim()
        .to_owned();
    assert!(
        token.starts_with("pgs_"),
        "token printed on stdout: {token}"
    );
    assert_eq!(health_of(&server, "eu").0, "unregistered");

    let sat_args = |token: &str, access: &str| {
        crate::harness::satellite_args_at(&server, token, port, access, &sat_dir)
    };
    let args = sat_args(&token, &access);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut sat = Satellite::start(&tmp.0, &[], &args);
    wait_health(&server, "eu", "ok", Duration::from_secs(10));
    let v = satellites_json(&server);
    assert_eq!(v["satellites"][0]["version"], v["control_plane_version"]);
    assert_eq!(v["satellites"][0]["version_mismatch"], false);

    // A developer uses only the satellite's URL: login, create, ls and a tunnel.
    let cas = both_cas(&server, &sat_dir, &tmp.0);
    let client = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .env("PERIGEE_CA_CERT", &cas)
            .env("PERIGEE_CONFIG_DIR", tmp.0.join("client"))
            .env_remove("PERIGEE_URL")
            .env_remove("PERIGEE_TOKEN")
            .env_remove("HTTPS_PROXY");
        c
    };
    let ok = |args: &[&str]| {
        let out = client(args).output().expect("run");
        assert!(
            out.status.success(),
            "perigee {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["login", &sat.url, "--token", &server.token()]);
    let session = std::fs::read_to_string(tmp.0.join("client/session.json")).expect("session");
    assert!(session.contains(&sat.url), "{session}");
    ok(&["create", "far"]);
    server.wait_agent("far", Duration::from_secs(20), None);
    assert!(ok(&["ls"]).contains("far"));
    let regions: serde_json::Value =
        serde_json::from_str(&ok(&["ping", "far", "-o", "json"])).expect("ping json");
    let names: Vec<&str> = regions["regions"]
        .as_array()
        .expect("regions")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert!(
        names.contains(&"eu") && names.contains(&"primary"),
        "{regions}"
    );

    let echo = server.echo_in("far");
    let data = crate::harness::pseudo_random(11, 2 * 1024 * 1024);
    let mut c = client(&["tunnel", "-v", "--region", "eu", "far", &echo.to_string()]);
    let out = run_with_stdin(std::mem::replace(&mut c, Command::new("true")), &data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.stdout == data,
        "echo through the mesh differs: {stderr}"
    );
    assert!(
        stderr.contains("edge=eu via=eu -> mesh -> primary"),
        "{stderr}"
    );

    let metrics = fetch(&format!("{}/metrics", sat.url), &cas);
    assert!(
        metrics.contains("perigee_edge_streams_total{path=\"mesh_out\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("perigee_edge_mesh_links_open{direction=\"out\"} 1"));
    let lc = fetch(&format!("{}/latency-check", sat.url), &cas);
    assert!(
        lc.contains("\"edge\":\"eu\"") && lc.contains("primary"),
        "{lc}"
    );

    // A forged mesh hello (right name, wrong MAC) and an unknown edge are refused.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        for (edge, why) in [("eu", "bad MAC"), ("nobody", "not a registered edge")] {
            let (code, msg) = mesh_hello(&server, edge).await;
            assert_eq!(code, StatusCode::Unauthorized, "{msg}");
            assert!(msg.contains(why), "{msg}");
        }
    });
    let m = fetch(&format!("{}/metrics", server.url), &cas);
    assert!(
        m.contains("perigee_edge_drops_total{reason=\"mesh_auth\",side=\"link\"} 2"),
        "{m}"
    );

    // Killed: unhealthy after 2 missed heartbeats, unreachable after 4 (1 s interval).
    sat.kill();
    // Right away (the control plane still lists eu), a cached choice of eu fails over: the
    // API calls go to another known edge and the tunnel to the next best region.
    let cache = serde_json::json!([{
        "deployment": sat.url, "home": "primary", "name": "eu", "access_url": sat.url,
        "expires_at": relay_core::unix_now() + 300,
    }]);
    std::fs::write(tmp.0.join("client/region-cache.json"), cache.to_string()).expect("cache");
    let out = run_with_stdin(
        client(&["tunnel", "-v", "far", &echo.to_string()]),
        b"moved",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.stdout, b"moved", "{err}");
    assert!(
        err.contains("trying the next best") && err.contains("edge=primary"),
        "{err}"
    );
    let t_unhealthy = wait_health(&server, "eu", "unhealthy", Duration::from_secs(10));
    let t_unreachable = wait_health(&server, "eu", "unreachable", Duration::from_secs(10));
    eprintln!("unhealthy after {t_unhealthy:?}, unreachable {t_unreachable:?} later");
    let (_, e) = health_of(&server, "eu");
    assert!(e.contains("no heartbeat"), "{e}");
    // No longer a region: ping and new tunnels use the primary edge.
    let p: serde_json::Value =
        serde_json::from_str(&ok(&["ping", "far", "-o", "json"])).expect("ping json");
    assert_eq!(p["chosen"], "primary", "{p}");
    assert_eq!(p["regions"].as_array().map(Vec::len), Some(1), "{p}");
    let out = run_with_stdin(client(&["tunnel", "-v", "far", &echo.to_string()]), b"hop");
    assert_eq!(
        out.stdout,
        b"hop",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Another satellite's token is refused with a clear error.
    let port2 = free_port("127.0.0.1");
    let args = sat_args(&token, &format!("https://127.0.0.1:{port2}"));
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a2 = format!("127.0.0.1:{port2}");
    args[5] = &a2;
    Satellite::assert_refused(&tmp.0, &args, "belongs to satellite \"eu\"");

    // Restarted: ok again.
    let args = sat_args(&token, &access);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut sat = Satellite::start(&tmp.0, &[], &args);
    wait_health(&server, "eu", "ok", Duration::from_secs(10));
    // Inbound mesh links on the primary (the killed instance's may linger until its idle
    // timeout).
    let mesh_in = || -> u32 {
        let m = fetch(&format!("{}/metrics", server.url), &cas);
        m.lines()
            .find_map(|l| l.strip_prefix("perigee_edge_mesh_links_open{direction=\"in\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    wait_until(
        "the satellite's mesh link up",
        Duration::from_secs(10),
        || mesh_in() >= 1,
    );

    // Removed while running: the primary edge cuts its mesh link at once, the satellite
    // stops at its next heartbeat, and its token no longer starts it.
    server.ok(&["satellites", "rm", "eu"]);
    wait_until("mesh links cut", Duration::from_secs(5), || mesh_in() == 0);
    wait_until("revoked satellite exits", Duration::from_secs(10), || {
        sat.exited()
    });
    Satellite::assert_refused(&tmp.0, &args, "satellite token not recognised");
}

pub(crate) fn fetch(url: &str, ca: &std::path::Path) -> String {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let roots = relay_core::tls::roots(Some(ca)).expect("roots");
        let tls = relay_core::tls::client_config(roots, &[b"http/1.1"]).expect("tls");
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .expect("client")
            .get(url)
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("text")
    })
}

/// Dials the server's QUIC endpoint as an edge and sends a MESH_HELLO with a made-up MAC.
async fn mesh_hello(server: &Server, edge: &str) -> (StatusCode, String) {
    let hello = Frame::MeshHello {
        edge: edge.into(),
        mac: [0x42; relay_core::wire::MESH_MAC_LEN],
    };
    let ca = server.data().join("tls/ca.pem");
    let answer = crate::harness::quic_exchange(
        server.addr,
        &ca,
        relay_core::wire::MESH_ALPN,
        &hello.to_bytes(),
    )
    .await;
    match answer {
        Some(Frame::Status { code, message }) => (code, message),
        other => panic!("unexpected answer {other:?}"),
    }
}
