//! A client that speaks perigee's tunnel protocol itself (TLS + WebSocket to the edge), so the
//! "perigee edge+agent" figures count the same number of relay processes as the peers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::Message;

pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

pub struct Client {
    pub addr: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub ticket: String,
    pub workspace_id: String,
}

impl Client {
    pub fn new(
        addr: &str,
        ca: &std::path::Path,
        ticket: String,
        workspace_id: String,
    ) -> anyhow::Result<Self> {
        let roots = relay_core::tls::roots(Some(ca))?;
        let tls = Arc::new(relay_core::tls::client_config(roots, &[b"http/1.1"])?);
        Ok(Self {
            addr: addr.to_owned(),
            tls,
            ticket,
            workspace_id,
        })
    }

    async fn tls(&self) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let tcp = tokio::net::TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?;
        Ok(tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await?)
    }

    pub async fn open(&self, port: u16) -> anyhow::Result<Ws> {
        let io = self.tls().await?;
        let mut req = format!("wss://{}/api/v2/tunnel", self.addr).into_client_request()?;
        req.headers_mut()
            .insert("perigee-ticket", self.ticket.parse()?);
        req.headers_mut().insert("perigee-port", port.into());
        req.headers_mut()
            .insert("perigee-workspace", self.workspace_id.parse()?);
        let (ws, _) = tokio_tungstenite::client_async(req, io).await?;
        Ok(ws)
    }
}

/// Fetches a ticket for `ports` with a plain HTTP/1.1 request (no client library needed).
pub async fn ticket(
    addr: &str,
    ca: &std::path::Path,
    token: &str,
    ports: &[u16],
) -> anyhow::Result<(String, String)> {
    let c = Client::new(addr, ca, String::new(), String::new())?;
    let mut io = c.tls().await?;
    let body = serde_json::json!({ "ports": ports }).to_string();
    let req = format!(
        "POST /api/v2/workspaces/bench/ticket HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    io.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    let _ = io.read_to_end(&mut resp).await;
    let text = String::from_utf8_lossy(&resp);
    let json = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(json.trim())?;
    Ok((
        v["ticket"].as_str().unwrap_or_default().to_owned(),
        v["workspace_id"].as_str().unwrap_or_default().to_owned(),
    ))
}

pub async fn throughput(c: &Client, sink: u16, dur: Duration) -> anyhow::Result<f64> {
    let mut ws = c.open(sink).await?;
    let chunk = Bytes::from(vec![0x5au8; 128 * 1024]);
    let start = Instant::now();
    while start.elapsed() < dur {
        ws.send(Message::Binary(chunk.clone())).await?;
    }
    ws.send(Message::Binary(Bytes::new())).await?;
    let mut got = Vec::new();
    while got.len() < 8 {
        match ws.next().await {
            Some(Ok(Message::Binary(b))) => got.extend_from_slice(&b),
            other => anyhow::bail!("no byte count from sink: {other:?}"),
        }
    }
    let n = u64::from_be_bytes(got[..8].try_into()?);
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

pub async fn pingpong(c: &Client, echo: u16, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut ws = c.open(echo).await?;
    let msg = Bytes::from_static(&[7u8; 64]);
    let mut out = Vec::with_capacity(samples);
    for i in 0..(samples + samples / 10) {
        let t = Instant::now();
        ws.send(Message::Binary(msg.clone())).await?;
        let mut n = 0;
        while n < 64 {
            match ws.next().await {
                Some(Ok(Message::Binary(b))) => n += b.len(),
                other => anyhow::bail!("echo failed: {other:?}"),
            }
        }
        if i >= samples / 10 {
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// New tunnel over the existing agent link: TCP + TLS + upgrade + one echoed byte (µs).
pub async fn first_byte(c: &Client, echo: u16, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        let mut ws = c.open(echo).await?;
        ws.send(Message::Binary(Bytes::from_static(b"x"))).await?;
        match ws.next().await {
            Some(Ok(Message::Binary(_))) => {}
            other => anyhow::bail!("no first byte: {other:?}"),
        }
        out.push(t.elapsed().as_secs_f64() * 1e6);
        let _ = ws.close(None).await;
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}
