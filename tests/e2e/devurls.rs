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

pub(crate) const HOST_BASE: &str = "dev.test";

/// A client for dev URLs on `server`: every `*.dev.test` name resolves to the edge.
pub(crate) fn client(server: &Server, hosts: &[&str]) -> reqwest::blocking::Client {
    client_alpn(server, hosts, b"http/1.1")
}

/// The same, offering one ALPN protocol.
fn client_alpn(server: &Server, hosts: &[&str], alpn: &[u8]) -> reqwest::blocking::Client {
    client_to(&server.data().join("tls/ca.pem"), server.addr, hosts, alpn)
}

/// A client trusting the CAs in `ca` that resolves `hosts` to `addr` and follows no
/// redirect.
pub(crate) fn client_to(
    ca: &std::path::Path,
    addr: std::net::SocketAddr,
    hosts: &[&str],
    alpn: &[u8],
) -> reqwest::blocking::Client {
    let roots = relay_core::tls::roots(Some(ca)).unwrap();
    let tls = relay_core::tls::client_config(roots, &[alpn]).unwrap();
    let mut b = reqwest::blocking::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none());
    for h in hosts {
        b = b.resolve(h, addr);
    }
    b.build().unwrap()
}

/// A server with dev URLs under `*.dev.test`, workspace `ws` with its agent up, and the
/// test app listening in the workspace.
pub(crate) fn fixture(tag: &str) -> (TempDir, Server, crate::devurl_app::App) {
    fixture_with(tag, &[])
}

/// [`fixture`] with more server flags.
pub(crate) fn fixture_with(tag: &str, extra: &[&str]) -> (TempDir, Server, crate::devurl_app::App) {
    let tmp = TempDir::new(tag);
    let mut args = vec!["--devurl-host", "*.dev.test"];
    args.extend_from_slice(extra);
    let server = Server::start_extra(&tmp.0, &args);
    server.ok(&["create", "ws"]);
    server.wait_agent("ws", std::time::Duration::from_secs(30), None);
    let app = crate::devurl_app::App::start(server.netns_of("ws"));
    (tmp, server, app)
}

#[test]
fn dev_urls_are_served_through_the_edge() {
    let (tmp, server, app) = fixture("devurl-serve");
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

    // Unshared: private to the owner, and an anonymous browser is sent to sign in.
    let r = c.get(url("/")).send().unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to.starts_with(&format!(
            "{}/login?redirect=https%3A%2F%2F{host}",
            server.url
        )),
        "{to}"
    );

    share(&server, app.port, "public");
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

    // HTTP/2 from the browser side works the same (ALPN h2).
    let h2 = client_alpn(&server, &[&host], b"h2");
    let r = h2.get(url("/")).send().unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains(&format!("host={host}")));

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

    // A workspace port that speaks HTTPS (self-signed): `PORTs--…` reaches it, the plain
    // spelling does not.
    let tls_app = crate::devurl_app::App::start_tls(&tmp.0.join("app-ca"), server.netns_of("ws"));
    let tp = tls_app.port.to_string();
    server.ok(&["urls", "create", "ws", &tp, "--https", "--access", "public"]);
    let (s_host, p_host) = (
        format!("{tp}s--ws--admin.{HOST_BASE}"),
        format!("{tp}--ws--admin.{HOST_BASE}"),
    );
    let c2 = client(&server, &[&s_host, &p_host]);
    let r = c2
        .get(format!("https://{s_host}:{edge_port}/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().unwrap().contains(&format!("host={s_host}")));
    let r = c2
        .get(format!("https://{p_host}:{edge_port}/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 502, "plain HTTP to a TLS port");

    // WebSocket through the edge (a browser's run in `devurl_browser`).
    websocket_echo(&server, &host, edge_port);
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

/// One browser identity: its own cookies, by host.
pub(crate) struct Browser {
    pub(crate) c: reqwest::blocking::Client,
    cookies: std::collections::HashMap<String, String>,
}

impl Browser {
    fn new(server: &Server, hosts: &[&str]) -> Self {
        Self::with_client(client(server, hosts))
    }

    /// A browser identity over `c` (which must also reach the control plane).
    pub(crate) fn with_client(c: reqwest::blocking::Client) -> Self {
        Self {
            c,
            cookies: Default::default(),
        }
    }

    /// GET as a browser would send it: this host's cookie, if any.
    pub(crate) fn get(&self, url: &str) -> reqwest::blocking::Response {
        let host = url
            .split("://")
            .nth(1)
            .unwrap()
            .split([':', '/'])
            .next()
            .unwrap();
        let mut r = self.c.get(url);
        if let Some(c) = self.cookies.get(host) {
            r = r.header("cookie", format!("theme=dark; {c}"));
        }
        r.send().unwrap()
    }

    /// Posts the sign-in form as a browser would: the form (and its CSRF cookie) first.
    fn login_post(&self, server: &Server, fields: &[(&str, &str)]) -> reqwest::blocking::Response {
        let form = self.c.get(format!("{}/login", server.url)).send().unwrap();
        let cookie = form.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let html = form.text().unwrap();
        let token = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned();
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("csrf", &token));
        self.c
            .post(format!("{}/login", server.url))
            .header("cookie", cookie)
            .form(&all)
            .send()
            .unwrap()
    }

    /// Opens `url`, signing in as `user` when sent to the sign-in page; returns the final
    /// status.
    pub(crate) fn open(&mut self, server: &Server, url: &str, user: &str) -> u16 {
        let r = self.get(url);
        if r.status() != 303 {
            return r.status().as_u16();
        }
        let login = r.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            login.starts_with(&format!("{}/login?", server.url)),
            "{login}"
        );
        let redirect = url.to_owned();
        let pw = password(user);
        let r = self.login_post(
            server,
            &[
                ("username", user),
                ("password", &pw),
                ("redirect", &redirect),
            ],
        );
        assert_eq!(r.status(), 303, "sign-in as {user}");
        let auth = r.headers()["location"].to_str().unwrap().to_owned();
        let host = url
            .split("://")
            .nth(1)
            .unwrap()
            .split([':', '/'])
            .next()
            .unwrap()
            .to_owned();
        assert!(
            auth.contains(&format!("://{host}:")) && auth.contains("/.perigee/auth?code="),
            "{auth}"
        );
        let r = self.c.get(&auth).send().unwrap();
        assert_eq!(r.status(), 303);
        let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
        for attr in [
            "__Host-perigee-devurl=",
            "Path=/",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Max-Age=",
        ] {
            assert!(set.contains(attr), "{attr} missing in {set}");
        }
        assert!(!set.to_ascii_lowercase().contains("domain="), "{set}");
        self.cookies
            .insert(host, set.split(';').next().unwrap().to_owned());
        // The code works once.
        assert_eq!(self.c.get(&auth).send().unwrap().status(), 400);
        self.get(url).status().as_u16()
    }
}

pub(crate) fn password(user: &str) -> String {
    format!("{user}-long-enough-password")
}

/// Passwords for the owner `admin`, org member `bob` (org `default`) and outsider `carol`
/// (org `elsewhere`), made here.
pub(crate) fn three_users(server: &Server) {
    let bob = server
        .ok(&["users", "create", "bob", "--org", "default"])
        .trim()
        .to_owned();
    server.ok(&["orgs", "create", "elsewhere"]);
    let carol = server
        .ok(&["users", "create", "carol", "--org", "elsewhere"])
        .trim()
        .to_owned();
    set_password(server, &server.token(), "admin");
    set_password(server, &bob, "bob");
    set_password(server, &carol, "carol");
}

/// Shares port `port` of workspace `ws` at `access` (`urls create`).
pub(crate) fn share(server: &Server, port: u16, access: &str) {
    server.ok(&[
        "urls",
        "create",
        "ws",
        &port.to_string(),
        "--access",
        access,
    ]);
}

pub(crate) fn set_password(server: &Server, token: &str, user: &str) {
    let mut c = server.cmd(&["users", "passwd"]);
    c.env("PERIGEE_TOKEN", token);
    let out = crate::harness::run_with_stdin(c, format!("{}\n", password(user)).as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn sharing_levels_hold_for_four_browser_identities() {
    let (_tmp, server, app) = fixture("devurl-levels");
    let (p, edge) = (app.port, server.addr.port());
    let host = format!("{p}--ws--admin.{HOST_BASE}");
    let other_host = format!("{}--ws--admin.{HOST_BASE}", p + 1);
    let url = format!("https://{host}:{edge}/");
    three_users(&server);

    let hosts = [host.as_str(), other_host.as_str()];
    let mut owner = Browser::new(&server, &hosts);
    let mut member = Browser::new(&server, &hosts);
    let mut outsider = Browser::new(&server, &hosts);
    let anonymous = Browser::new(&server, &hosts);
    // Signing in happens while the URL is private: only the owner gets in.
    assert_eq!(owner.open(&server, &url, "admin"), 200);
    assert_eq!(member.open(&server, &url, "bob"), 403);
    assert_eq!(outsider.open(&server, &url, "carol"), 403);
    assert_eq!(anonymous.get(&url).status(), 303);

    for (level, want) in [
        ("org", [200, 200, 403, 303]),
        ("authed", [200, 200, 200, 303]),
        ("public", [200, 200, 200, 200]),
        ("private", [200, 403, 403, 303]),
    ] {
        share(&server, p, level);
        let got = [&owner, &member, &outsider, &anonymous].map(|b| b.get(&url).status().as_u16());
        assert_eq!(
            got, want,
            "{level}: owner, org member, other user, anonymous"
        );
    }

    // The workspace never sees the edge's cookie; the page's own cookies pass.
    let body = owner.get(&url).text().unwrap();
    assert!(
        body.contains("cookie=theme=dark") && !body.contains("perigee-devurl"),
        "{body}"
    );
    // A cookie is for its host only: the owner is a stranger on another port's URL.
    let other = format!("https://{other_host}:{edge}/");
    let mut r = owner.c.get(&other);
    r = r.header("cookie", owner.cookies[&host].clone());
    assert_eq!(r.send().unwrap().status(), 303);

    // The sign-in form is no open redirect, and a bad password gets nowhere.
    for evil in [
        "https://evil.example/",
        "https://127.0.0.1:1/",
        &format!("https://x@{host}:{edge}/"),
        "//evil.example/",
        "javascript:alert(1)",
    ] {
        let pw = password("admin");
        let r = owner.login_post(
            &server,
            &[("username", "admin"), ("password", &pw), ("redirect", evil)],
        );
        assert_eq!(r.status(), 400, "{evil}");
        assert!(r.headers().get("location").is_none(), "{evil}");
    }
    let r = owner.login_post(
        &server,
        &[
            ("username", "admin"),
            ("password", "wrong password!"),
            ("redirect", &url),
        ],
    );
    assert_eq!(r.status(), 401);
    // A post without the form's token (another site's page) is refused before any check.
    let pw = password("admin");
    let r = owner
        .c
        .post(format!("{}/login", server.url))
        .form(&[
            ("username", "admin"),
            ("password", pw.as_str()),
            ("redirect", url.as_str()),
            ("csrf", "guess"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get("location").is_none());

    // Guessing is slowed: at most ten attempts a minute per user name, then 429.
    let statuses: Vec<u16> = (0..10)
        .map(|_| {
            owner
                .login_post(
                    &server,
                    &[("username", "carol"), ("password", "a wrong guess")],
                )
                .status()
                .as_u16()
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );

    // Signing out ends the session on that host.
    let r = owner.get(&format!("https://{host}:{edge}/.perigee/signout"));
    assert!(r.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    owner.cookies.clear();
    assert_eq!(owner.get(&url).status(), 303);
}

#[test]
fn bad_requests_get_a_4xx_and_others_carry_on() {
    use std::io::{Read as _, Write as _};
    // Stalled request heads are cut after the header timeout: 2 s here (15 s by default).
    let (_tmp, server, app) = fixture_with("devurl-bad", &["--http-header-timeout-secs", "2"]);
    share(&server, app.port, "public");
    let edge = server.addr.port();
    let host = format!("{}--ws--admin.{HOST_BASE}", app.port);
    let url = format!("https://{host}:{edge}/");
    let c = client(&server, &[&host]);

    // Slowloris: ten connections trickle a request head and stall.
    let tls = std::sync::Arc::new(
        relay_core::tls::client_config(
            relay_core::tls::roots(Some(&server.data().join("tls/ca.pem"))).unwrap(),
            &[b"http/1.1"],
        )
        .unwrap(),
    );
    let mut slow = Vec::new();
    for _ in 0..10 {
        let name = rustls::pki_types::ServerName::try_from(host.clone()).unwrap();
        let conn = rustls::ClientConnection::new(tls.clone(), name).unwrap();
        let tcp = std::net::TcpStream::connect(server.addr).unwrap();
        let mut s = rustls::StreamOwned::new(conn, tcp);
        s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nX-Slow: ").as_bytes())
            .unwrap();
        s.flush().unwrap();
        slow.push(s);
    }
    // Meanwhile everyone else is served.
    let started = std::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(c.get(&url).send().unwrap().status(), 200);
    }
    // Oversized headers: a 4xx, and the next request is fine.
    let big = "x".repeat(64 * 1024);
    let mut r = c.get(&url);
    for i in 0..8 {
        r = r.header(format!("x-big-{i}"), &big);
    }
    let status = r.send().unwrap().status().as_u16();
    assert_eq!(status, 431, "oversized headers");
    assert_eq!(c.get(&url).send().unwrap().status(), 200);
    // The stalled heads are cut (2 s to send a head), not kept forever.
    for mut s in slow {
        s.sock
            .set_read_timeout(Some(std::time::Duration::from_secs(30)))
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap_or(0);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
    }
    let waited = started.elapsed();
    assert!(
        waited < std::time::Duration::from_secs(12),
        "stalled connections held for {waited:?}"
    );
    assert_eq!(c.get(&url).send().unwrap().status(), 200);
}
