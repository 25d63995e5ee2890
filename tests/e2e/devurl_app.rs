//! A web app standing in for a developer's server in the workspace: echoes what it was sent
//! (host and forwarding headers), hashes uploads as they stream, streams downloads, echoes
//! WebSocket messages, sends Server-Sent Events, serves a page whose script uses the
//! WebSocket, and counts the TCP
//! connections it accepted (to see keep-alive reuse).

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

pub struct App {
    pub port: u16,
    pub connections: Arc<AtomicUsize>,
    _rt: tokio::runtime::Runtime,
}

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn text(s: String) -> hyper::Response<Body> {
    hyper::Response::new(Full::new(Bytes::from(s)).boxed())
}

pub const PAGE: &str = "<!doctype html><html><head><title>workspace app</title></head><body>\
<h1>Hello from the workspace</h1><p id=\"r\">pending</p><script>\
const w = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');\
w.onopen = () => w.send('ping over the edge');\
w.onmessage = e => { document.getElementById('r').textContent = 'ws: ' + e.data; };\
w.onerror = () => { document.getElementById('r').textContent = 'ws failed'; };\
</script></body></html>";

async fn handle(mut req: hyper::Request<Incoming>) -> Result<hyper::Response<Body>, Infallible> {
    let h = |k: &str| {
        req.headers()
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("-")
            .to_owned()
    };
    match req.uri().path() {
        "/" => Ok(text(format!(
            "hello from the workspace; host={}; xfh={}; xfp={}; xff={}; cookie={}",
            h("host"),
            h("x-forwarded-host"),
            h("x-forwarded-proto"),
            h("x-forwarded-for"),
            h("cookie")
        ))),
        "/page" => {
            let mut r = text(PAGE.to_owned());
            r.headers_mut()
                .insert("content-type", "text/html".parse().unwrap());
            Ok(r)
        }
        "/upload" => {
            let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
            let mut n = 0usize;
            let mut body = req.into_body();
            while let Some(Ok(f)) = body.frame().await {
                if let Ok(d) = f.into_data() {
                    n += d.len();
                    ctx.update(&d);
                }
            }
            let hex: String = ctx
                .finish()
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            Ok(text(format!("{n} {hex}")))
        }
        "/big" => {
            let chunks = (0..320u32).map(|i| {
                Ok::<_, Infallible>(Frame::data(Bytes::from(vec![(i % 251) as u8; 65536])))
            });
            Ok(hyper::Response::new(BodyExt::boxed(StreamBody::new(
                futures_util::stream::iter(chunks),
            ))))
        }
        "/events" => {
            // Server-Sent Events, 150 ms apart: a proxy that buffers shows them all at once.
            let events = futures_util::stream::unfold(0u32, |i| async move {
                if i == 5 {
                    return None;
                }
                if i > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
                }
                let f = Frame::data(Bytes::from(format!("data: event {i}\n\n")));
                Some((Ok::<_, Infallible>(f), i + 1))
            });
            let mut r = hyper::Response::new(BodyExt::boxed(StreamBody::new(events)));
            r.headers_mut()
                .insert("content-type", "text/event-stream".parse().unwrap());
            r.headers_mut()
                .insert("cache-control", "no-cache".parse().unwrap());
            Ok(r)
        }
        "/ws" => {
            let key = h("sec-websocket-key");
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(up) = on.await else { return };
                let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(up),
                    Role::Server,
                    None,
                )
                .await;
                let (mut tx, mut rx) = ws.split();
                while let Some(Ok(m)) = rx.next().await {
                    if (m.is_text() || m.is_binary()) && tx.send(m).await.is_err() {
                        break;
                    }
                }
            });
            let mut r = hyper::Response::new(Full::new(Bytes::new()).boxed());
            *r.status_mut() = hyper::StatusCode::SWITCHING_PROTOCOLS;
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut().insert(
                "sec-websocket-accept",
                derive_accept_key(key.as_bytes()).parse().unwrap(),
            );
            Ok(r)
        }
        _ => {
            let mut r = text("not here".into());
            *r.status_mut() = hyper::StatusCode::NOT_FOUND;
            Ok(r)
        }
    }
}

impl App {
    /// The same app speaking HTTPS with a self-signed certificate (its CA kept in `dir`),
    /// as dev servers do.
    /// The app over HTTPS (a self-signed certificate), in network namespace `ns`.
    pub fn start_tls(dir: &std::path::Path, ns: Option<String>) -> Self {
        let ca = relay_core::tls::LocalCa::load_or_create(dir).unwrap();
        let id = ca.issue(&["localhost".to_owned()]).unwrap();
        let cfg = relay_core::tls::server_config(&id, &[b"http/1.1"]).unwrap();
        Self::serve(Some(tokio_rustls::TlsAcceptor::from(Arc::new(cfg))), ns)
    }

    /// The app in network namespace `ns` (a workspace's: `Server::netns_of`).
    pub fn start(ns: Option<String>) -> Self {
        Self::serve(None, ns)
    }

    fn serve(tls: Option<tokio_rustls::TlsAcceptor>, ns: Option<String>) -> Self {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let std_listener = crate::harness::bind_in_netns(ns.as_deref());
        std_listener.set_nonblocking(true).unwrap();
        let listener = {
            let _guard = rt.enter();
            tokio::net::TcpListener::from_std(std_listener).unwrap()
        };
        let port = listener.local_addr().unwrap().port();
        let count = connections.clone();
        rt.spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let builder = hyper::server::conn::http1::Builder::new();
                    let svc = hyper::service::service_fn(handle);
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(sock), svc)
                                .with_upgrades()
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(sock).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(s), svc)
                                    .with_upgrades()
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        Self {
            port,
            connections,
            _rt: rt,
        }
    }
}
