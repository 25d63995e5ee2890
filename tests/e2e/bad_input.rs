//! Bad input gets a clear error, and nothing a peer sends takes the server down.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use relay_core::ticket::{Claims, Signer};
use relay_core::wire::{Frame, StatusCode};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{tunnel_roundtrip, Server};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

fn tls(server: &Server, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let roots = relay_core::tls::roots(Some(&server.data().join("tls/ca.pem"))).expect("roots");
    relay_core::tls::client_config(roots, alpn).expect("tls config")
}

/// Opens a raw tunnel WebSocket; on refusal returns the HTTP status and body.
async fn ws_open(
    server: &Server,
    ticket: &str,
    workspace: Option<&str>,
    port: u16,
) -> Result<Ws, (u16, String)> {
    ws_open_as(server, ticket, workspace, port, false).await
}

/// [`ws_open`], or a WebRTC signaling stream (`Perigee-Signal: 1`) when `signal`.
async fn ws_open_as(
    server: &Server,
    ticket: &str,
    workspace: Option<&str>,
    port: u16,
    signal: bool,
) -> Result<Ws, (u16, String)> {
    let tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let tls = tokio_rustls::TlsConnector::from(Arc::new(tls(server, &[b"http/1.1"])))
        .connect(name, tcp)
        .await
        .expect("tls");
    let mut req = format!("wss://{}/api/v2/tunnel", server.addr)
        .into_client_request()
        .expect("req");
    req.headers_mut()
        .insert("perigee-ticket", ticket.parse().expect("header"));
    req.headers_mut().insert("perigee-port", port.into());
    if signal {
        req.headers_mut()
            .insert("perigee-signal", http::HeaderValue::from_static("1"));
    }
    if let Some(ws) = workspace {
        req.headers_mut()
            .insert("perigee-workspace", ws.parse().expect("header"));
    }
    match tokio_tungstenite::client_async(req, tls).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err((
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("unexpected tunnel error: {e}"),
    }
}

fn claims(ws: &str, port: u16, iat: u64, exp: u64) -> Claims {
    Claims {
        kid: String::new(),
        sub: "test".into(),
        ws: ws.into(),
        ports: vec![port],
        iat,
        exp,
        sid: "t".into(),
        home: String::new(),
        e2e: false,
        tid: String::new(),
    }
}

/// Echoes one message through an open tunnel.
async fn echo_once(ws: &mut Ws, msg: &[u8]) -> Vec<u8> {
    ws.send(Message::Binary(msg.to_vec().into()))
        .await
        .expect("send");
    match tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("echo in time")
    {
        Some(Ok(Message::Binary(b))) => b.to_vec(),
        other => panic!("expected echo, got {other:?}"),
    }
}

/// Whether the edge ends this tunnel (close or error) within a bounded time.
async fn is_cut(ws: &mut Ws) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return false,
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}

#[test]
fn bad_input_gets_a_clear_error_and_no_panic() {
    let mut server = Server::start();
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    server.ok(&["create", "a"]);
    server.ok(&["create", "b"]);
    server.wait_agent("a", Duration::from_secs(20), None);
    server.wait_agent("b", Duration::from_secs(20), None);
    let echo = server.echo_in("a");
    let id_a = server.workspace("a")["id"].as_str().expect("id").to_owned();
    let id_b = server.workspace("b")["id"].as_str().expect("id").to_owned();

    // Through the CLI: a port nothing listens on, an unknown workspace, a bad name.
    let out = tunnel_roundtrip(&server, "a", closed_port, b"x");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("nothing is listening on port {closed_port}")),
        "{err}"
    );
    let out = tunnel_roundtrip(&server, "nope", echo, b"x");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no workspace named \"nope\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.run(&["create", "Bad_Name"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid workspace name"));

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let store = provider::Store::open_sqlite(&server.data().join("perigee.db"))
            .await
            .expect("db");
        let signer = store.signing_key().await.expect("signing key");
        let now = relay_core::unix_now();

        // The good ticket works.
        let good = signer.sign(claims(&id_a, echo, now, now + 60));
        let mut ws = ws_open(&server, &good, Some(&id_a), echo)
            .await
            .expect("good ticket");
        assert_eq!(echo_once(&mut ws, b"ping").await, b"ping");

        // Forged (unknown key), tampered, expired, wrong workspace, wrong port, garbage, huge.
        let (other, _) = Signer::generate().expect("key");
        let forged = other.sign(claims(&id_a, echo, now, now + 60));
        #[allow(clippy::err_expect)] // Ws is not Debug, so expect_err is not available
        let refused = |r: Result<Ws, (u16, String)>| r.err().expect("must be refused");
        let (s, b) = refused(ws_open(&server, &forged, None, echo).await);
        assert!(s == 401 && b.contains("unknown key"), "{s} {b}");
        let mut tampered = good.clone();
        let last = tampered.pop().expect("char");
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        let (s, b) = refused(ws_open(&server, &tampered, None, echo).await);
        assert!(
            s == 401 && (b.contains("signature") || b.contains("malformed")),
            "{s} {b}"
        );
        let expired = signer.sign(claims(&id_a, echo, now - 400, now - 310));
        let (s, b) = refused(ws_open(&server, &expired, None, echo).await);
        assert!(s == 401 && b.contains("expired"), "{s} {b}");
        let for_b = signer.sign(claims(&id_b, echo, now, now + 60));
        let (s, b) = refused(ws_open(&server, &for_b, Some(&id_a), echo).await);
        assert!(s == 403 && b.contains("another workspace"), "{s} {b}");
        // WebRTC signaling is checked like a stream: not for another workspace, not with
        // an expired ticket.
        let (s, b) = refused(ws_open_as(&server, &for_b, Some(&id_a), echo, true).await);
        assert!(
            s == 403 && b.contains("another workspace"),
            "signal: {s} {b}"
        );
        let (s, b) = refused(ws_open_as(&server, &expired, None, echo, true).await);
        assert!(s == 401 && b.contains("expired"), "signal: {s} {b}");
        let (s, b) = refused(ws_open(&server, &good, Some(&id_a), echo + 1).await);
        assert!(s == 403 && b.contains("does not grant port"), "{s} {b}");
        let (s, b) = refused(ws_open(&server, "pt1.garbage", None, echo).await);
        assert!(s == 401 && b.contains("malformed"), "{s} {b}");
        let huge = format!("pt1.{}", "A".repeat(6000));
        let (s, b) = refused(ws_open(&server, &huge, None, echo).await);
        assert!(s == 401 && b.contains("too long"), "{s} {b}");

        // A tunnel to a deleted workspace, with a ticket issued before the delete.
        let out = server.run(&["delete", "b"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (s, b) = refused(ws_open(&server, &for_b, Some(&id_b), echo).await);
        assert!(s == 404 && b.contains("not connected"), "{s} {b}");

        // Malformed WebSocket input: a text message, an oversized message. Each cuts only
        // its own tunnel.
        let mut t = ws_open(&server, &good, Some(&id_a), echo)
            .await
            .expect("tunnel");
        t.send(Message::Text("not bytes".into()))
            .await
            .expect("send text");
        assert!(is_cut(&mut t).await, "a text message must end the tunnel");
        let mut t = ws_open(&server, &good, Some(&id_a), echo)
            .await
            .expect("tunnel");
        let _ = t
            .send(Message::Binary(vec![0u8; 2 * 1024 * 1024].into()))
            .await;
        assert!(
            is_cut(&mut t).await,
            "an oversized message must end the tunnel"
        );
        assert_eq!(
            echo_once(&mut ws, b"still-alive").await,
            b"still-alive",
            "other tunnels are unaffected"
        );

        // Malformed and oversized agent-link frames over QUIC, and a bad agent token.
        for (bytes, expect) in [
            (vec![9u8, 9, 9, 9], StatusCode::BadFrame),
            (vec![1u8, 1, 0xff, 0xff, 0, 0], StatusCode::BadFrame),
            (
                Frame::Hello {
                    token: "pga_forged".into(),
                }
                .to_bytes(),
                StatusCode::Unauthorized,
            ),
        ] {
            let code = quic_hello(&server, &bytes).await;
            assert_eq!(code, Some(expect), "frame {bytes:?}");
        }

        // Garbage on the TCP port.
        {
            use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
            let mut s = tokio::net::TcpStream::connect(server.addr)
                .await
                .expect("tcp");
            let _ = s
                .write_all(&[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 0, 0, 0, 0])
                .await;
            let mut buf = [0u8; 64];
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
        }

        // Still serving, and the refusals are counted by reason.
        let mut t = ws_open(&server, &good, Some(&id_a), echo)
            .await
            .expect("tunnel after abuse");
        assert_eq!(echo_once(&mut t, b"ok").await, b"ok");
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls(&server, &[b"http/1.1"]))
            .build()
            .expect("client");
        let metrics = http
            .get(format!("{}/metrics", server.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        // …and by the side blamed: the client's garbage is never the link's or the
        // workspace's fault.
        for (reason, side) in [
            ("bad_ticket", "client"),
            ("expired_ticket", "client"),
            ("no_agent", "workspace"),
            ("port_refused", "workspace"),
            ("agent_auth", "workspace"),
            ("bad_request", "client"),
        ] {
            assert!(
                metrics.contains(&format!(
                    "perigee_edge_drops_total{{reason=\"{reason}\",side=\"{side}\"}}"
                )),
                "no {reason} drop counted on the {side}'s side:\n{metrics}"
            );
        }
        assert!(
            !metrics.contains("reason=\"link_error\",side=\"link\""),
            "a client's abuse was counted against the link:\n{metrics}"
        );
    });
    assert!(server.is_running(), "the server survived");
}

/// Connects to the edge's QUIC endpoint as a would-be agent and sends `hello` on the first
/// stream; returns the status the edge answered with (None if it just closed).
async fn quic_hello(server: &Server, hello: &[u8]) -> Option<StatusCode> {
    let ca = server.data().join("tls/ca.pem");
    match crate::harness::quic_exchange(server.addr, &ca, relay_core::wire::LINK_ALPN, hello).await
    {
        Some(Frame::Status { code, .. }) => Some(code),
        _ => None,
    }
}

#[test]
fn server_refuses_bad_configuration_with_a_clear_error() {
    let tmp = crate::harness::TempDir::new("badcfg");
    let data = tmp.0.join("data");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(crate::harness::BIN)
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run server");
        assert!(!out.status.success(), "server accepted {args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    assert!(run(&["--address", "nonsense"]).contains("is not HOST:PORT"));
    assert!(
        run(&["--address", "127.0.0.1:0", "--access-url", "ftp://x"])
            .contains("must start with http:// or https://")
    );
    assert!(run(&["--tls-cert", "/nonexistent.pem"]).contains("--tls-key"));
    let err = run(&[
        "--address",
        "127.0.0.1:0",
        "--tls-cert",
        "/nonexistent.pem",
        "--tls-key",
        "/nonexistent.key",
    ]);
    assert!(err.contains("/nonexistent.pem"), "{err}");
}
