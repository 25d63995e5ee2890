//! `perigee urls`: sharing levels capped by the deployment's maximum, named URLs unique per
//! user, addresses under the edge's dev URL host, and shares gone with their workspace.

use crate::harness::{Server, TempDir};

#[test]
fn urls_are_shared_within_the_deployments_limits() {
    let tmp = TempDir::new("devurls");
    let server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[],
        &[
            "--devurl-host",
            "*.Dev.Test",
            "--devurl-max-access",
            "authed",
        ],
    );
    server.ok(&["create", "ws"]);
    server.ok(&["create", "ws2"]);
    let port = server.addr.port();

    // Private by default; the address is under the dev URL host, on the edge's port.
    let url = server.ok(&["urls", "create", "ws", "8080"]);
    assert_eq!(
        url.trim(),
        format!("https://8080--ws--admin.dev.test:{port}")
    );
    // Above the maximum: refused, and nothing changes.
    server.refused(
        &["urls", "create", "ws", "8080", "--access", "public"],
        "allows dev URLs up to \"authed\"",
    );
    let url = server.ok(&[
        "urls", "create", "ws", "3000", "--access", "org", "--name", "docs", "--https",
    ]);
    assert_eq!(url.trim(), format!("https://docs--admin.dev.test:{port}"));
    // A name is one per user: another workspace's port cannot take it.
    server.refused(
        &["urls", "create", "ws2", "3000", "--name", "docs"],
        "named \"docs\" already",
    );
    server.refused(
        &["urls", "create", "ws2", "3000", "--name", "a--b"],
        "single hyphens",
    );
    server.refused(&["urls", "create", "ws", "0"], "port must be 1-65535");
    server.ok(&["urls", "create", "ws2", "5000", "--access", "authed"]);

    let list: serde_json::Value =
        serde_json::from_str(&server.ok(&["urls", "ls", "-o", "json"])).unwrap();
    let got: Vec<(String, u64, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["workspace"].as_str().unwrap().to_owned(),
                u["port"].as_u64().unwrap(),
                u["access"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("ws".into(), 3000, "org".into()),
            ("ws".into(), 8080, "private".into()),
            ("ws2".into(), 5000, "authed".into()),
        ]
    );
    assert!(server
        .ok(&["urls", "ls", "ws"])
        .contains("docs--admin.dev.test"));

    // Removing: once, then 404; a deleted workspace takes its shares with it.
    server.ok(&["urls", "rm", "ws", "8080"]);
    server.refused(&["urls", "rm", "ws", "8080"], "is not shared");
    server.ok(&["delete", "ws2"]);
    let list = server.ok(&["urls", "ls"]);
    assert!(!list.contains("ws2"), "{list}");

    // Another user sees none of these and cannot share the admin's workspace.
    let bob = server
        .ok(&["users", "create", "bob", "--org", "default"])
        .trim()
        .to_owned();
    let out = server
        .cmd(&["urls", "ls", "-o", "json"])
        .env("PERIGEE_TOKEN", &bob)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let out = server
        .cmd(&["urls", "create", "ws", "3000"])
        .env("PERIGEE_TOKEN", &bob)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workspace named \"ws\""));
}

const HOST_BASE: &str = "dev.test";

/// A client for dev URLs on `server`: every `*.dev.test` name resolves to the edge.
fn client(server: &Server, hosts: &[&str]) -> reqwest::blocking::Client {
    let roots = relay_core::tls::roots(Some(&server.data().join("tls/ca.pem"))).unwrap();
    let tls = relay_core::tls::client_config(roots, &[b"http/1.1"]).unwrap();
    let mut b = reqwest::blocking::Client::builder().use_preconfigured_tls(tls);
    for h in hosts {
        b = b.resolve(h, server.addr);
    }
    b.build().unwrap()
}

#[test]
fn dev_urls_are_served_through_the_edge() {
    let tmp = TempDir::new("devurl-serve");
    let server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[],
        &["--devurl-host", "*.dev.test"],
    );
    server.ok(&["create", "ws"]);
    server.wait_agent("ws", std::time::Duration::from_secs(30), None);
    let app = crate::devurl_app::App::start();
    let edge_port = server.addr.port();
    let host = format!("{}--ws--admin.{HOST_BASE}", app.port);
    let url = |path: &str| format!("https://{host}:{edge_port}{path}");
    let idle_host = format!("1--ws--admin.{HOST_BASE}");
    let c = client(
        &server,
        &[
            &host,
            &idle_host,
            "0--ws--admin.dev.test",
            "nope.dev.test",
            "ghost--admin.dev.test",
        ],
    );

    // Unshared: private to the owner, and an anonymous browser is asked to sign in.
    let r = c.get(url("/")).send().unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.text().unwrap().contains("Sign-in required"));

    server.ok(&[
        "urls",
        "create",
        "ws",
        &app.port.to_string(),
        "--access",
        "public",
    ]);
    let r = c
        .get(url("/"))
        .header(
            "X-Forwarded-Host",
            format!("9999--other--admin.{HOST_BASE}"),
        )
        .header("X-Forwarded-For", "6.6.6.6")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let timing = r
        .headers()
        .get("server-timing")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        timing.contains("edge;") && timing.contains("workspace;"),
        "{timing}"
    );
    let body = r.text().unwrap();
    // The workspace sees the real host, the edge's forwarding headers, never the client's.
    assert!(body.contains(&format!("host={host}")), "{body}");
    assert!(body.contains(&format!("xfh={host}")), "{body}");
    assert!(
        body.contains("xfp=https") && body.contains("xff=127.0.0.1"),
        "{body}"
    );

    // Keep-alive: twenty requests, one connection to the workspace.
    let before = app.connections.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..20 {
        assert_eq!(c.get(url("/")).send().unwrap().status(), 200);
    }
    let after = app.connections.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        after - before <= 1,
        "{} new connections to the workspace",
        after - before
    );

    // 20 MB down and up, streamed, intact.
    let big = c.get(url("/big")).send().unwrap().bytes().unwrap();
    assert_eq!(big.len(), 320 * 65536);
    assert!(big
        .chunks(65536)
        .enumerate()
        .all(|(i, c)| c.iter().all(|b| *b == (i % 251) as u8)));
    let up = crate::harness::pseudo_random(9, 20 * 1024 * 1024);
    let want: String = ring::digest::digest(&ring::digest::SHA256, &up)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let got = c
        .post(url("/upload"))
        .body(up)
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(got, format!("{} {want}", 20 * 1024 * 1024));

    // Error pages: nothing listening, unknown URL, malformed hosts, port out of range.
    server.ok(&["urls", "create", "ws", "1", "--access", "public"]);
    let r = c
        .get(format!("https://{idle_host}:{edge_port}/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 502);
    assert!(r.text().unwrap().contains("Nothing is listening"));
    let r = c
        .get(format!("https://ghost--admin.dev.test:{edge_port}/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    for h in ["0--ws--admin.dev.test", "nope.dev.test"] {
        let r = c.get(format!("https://{h}:{edge_port}/")).send().unwrap();
        assert_eq!(r.status(), 400, "{h}");
    }
    // The API is not reachable on a dev URL host.
    let r = c.get(url("/api/v2/users/me")).send().unwrap();
    assert_eq!(r.status(), 404, "the API answered on a dev URL host");

    // WebSocket through the edge, then a real browser running the page's script.
    websocket_echo(&server, &host, edge_port);
    browser_sees_the_page(&server, &tmp, &host, edge_port);
}

fn websocket_echo(server: &Server, host: &str, edge_port: u16) {
    use futures_util::{SinkExt as _, StreamExt as _};
    use tokio_tungstenite::tungstenite::Message;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let roots = relay_core::tls::roots(Some(&server.data().join("tls/ca.pem"))).unwrap();
        let tls = relay_core::tls::client_config(roots, &[b"http/1.1"]).unwrap();
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from(host.to_owned()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(tls))
            .connect(name, tcp)
            .await
            .unwrap();
        let (mut ws, _) =
            tokio_tungstenite::client_async(format!("wss://{host}:{edge_port}/ws"), tls)
                .await
                .unwrap();
        for i in 0..5 {
            ws.send(Message::text(format!("hello {i}"))).await.unwrap();
            let m = ws.next().await.unwrap().unwrap();
            assert_eq!(m.into_text().unwrap().as_str(), format!("hello {i}"));
        }
    });
}

fn browser_sees_the_page(server: &Server, tmp: &TempDir, host: &str, edge_port: u16) {
    let shot = tmp.0.join("devurl-page.png");
    let args = |extra: &[&str]| {
        let mut c = std::process::Command::new("chromium");
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--ignore-certificate-errors",
            &format!(
                "--host-resolver-rules=MAP *.{HOST_BASE} {}",
                server.addr.ip()
            ),
            &format!("--user-data-dir={}", tmp.0.join("chromium").display()),
        ])
        .args(extra)
        .arg(format!("https://{host}:{edge_port}/page"));
        c
    };
    let out = args(&["--dump-dom"])
        .output()
        .expect("chromium (apt install chromium)");
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("Hello from the workspace"),
        "{dom}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        dom.contains("ws: ping over the edge"),
        "the page's WebSocket did not echo: {dom}"
    );
    let out = args(&[
        &format!("--screenshot={}", shot.display()),
        "--window-size=1280,800",
    ])
    .output()
    .unwrap();
    assert!(shot.exists(), "{}", String::from_utf8_lossy(&out.stderr));
    // Kept next to the test binaries for a look after the run.
    let _ = std::fs::copy(&shot, std::env::temp_dir().join("perigee-devurl-page.png"));
}
