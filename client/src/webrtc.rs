//! Networking v2 in the CLI: a WebRTC peer connection to the workspace's agent, signaled
//! through the entry edge, and the rule for which path a stream takes.

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use perigee_webrtc::{signal, IceServer, PathInfo, Peer, PeerConfig, Role, Signal};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, DuplexStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::dial::Ws;

/// Which path streams may take (`--path`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PathChoice {
    /// Start both; a stream takes whichever is ready first, later ones WebRTC once up.
    #[default]
    Auto,
    /// WebRTC only (direct or through a TURN relay); fail if it cannot connect.
    Webrtc,
    /// The edge's envproxy path only.
    Envproxy,
}

impl std::str::FromStr for PathChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "webrtc" => Ok(Self::Webrtc),
            "envproxy" => Ok(Self::Envproxy),
            other => Err(format!("{other:?} is not auto, webrtc or envproxy")),
        }
    }
}

/// Starts an offering peer whose signaling goes over `ws` (a signaling stream from the
/// edge) and waits until it connects.
pub async fn connect(ws: Ws, ice_servers: Vec<IceServer>) -> anyhow::Result<(Peer, PathInfo)> {
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::channel(signal::MAX_SIGNALS);
    tokio::spawn(async move {
        if let Err(e) = pump(ws, out_rx, in_tx).await {
            tracing::debug!(error = %e, "signaling ended");
        }
    });
    let cfg = PeerConfig {
        role: Role::Offerer,
        peer_ice_servers: ice_servers.clone(),
        ice_servers,
        relay_only: std::env::var("PERIGEE_WEBRTC_RELAY_ONLY").is_ok_and(|v| v == "1"),
        // How long ICE may try before the tunnel stays on envproxy for good (10 s unless
        // PERIGEE_WEBRTC_TIMEOUT_MS says otherwise: networks known to block UDP).
        connect_timeout: std::env::var("PERIGEE_WEBRTC_TIMEOUT_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(std::time::Duration::from_millis)
            .unwrap_or(perigee_webrtc::CONNECT_TIMEOUT),
    };
    let (peer, _incoming) = Peer::start(cfg, out_tx, in_rx).await?;
    let path = peer
        .connected()
        .await
        .map_err(|why| anyhow::anyhow!("WebRTC did not connect: {why}"))?;
    Ok((peer, path))
}

/// Signals between the peer and the edge's WebSocket: each message is a binary WebSocket
/// message holding one or more length-prefixed frames (`perigee_webrtc::signal`).
async fn pump(
    ws: Ws,
    mut out: mpsc::UnboundedReceiver<Signal>,
    incoming: mpsc::Sender<Signal>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let mut buf: Vec<u8> = Vec::new();
    let mut received = 0usize;
    loop {
        tokio::select! {
            s = out.recv() => match s {
                Some(s) => sink.send(Message::Binary(signal::encode(&s).into())).await?,
                None => break,
            },
            m = stream.next() => match m {
                Some(Ok(Message::Binary(b))) if b.is_empty() => break,
                Some(Ok(Message::Binary(b))) => {
                    buf.extend_from_slice(&b);
                    while buf.len() >= 4 {
                        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                        anyhow::ensure!(len <= signal::MAX_SIGNAL_LEN, "signaling message of {len} bytes");
                        if buf.len() < 4 + len {
                            break;
                        }
                        let s = signal::decode(&buf[4..4 + len])?;
                        buf.drain(..4 + len);
                        received += 1;
                        anyhow::ensure!(received <= signal::MAX_SIGNALS, "too many signaling messages");
                        if incoming.send(s).await.is_err() {
                            return Ok(());
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.into()),
            },
        }
    }
    // Keep the signaling stream open while the peer lives: the agent ends its session
    // with the connection, not with the stream.
    let _ = sink.send(Message::Close(None)).await;
    Ok(())
}

/// Moves bytes between a data-channel stream and a local reader/writer until both
/// directions end; gives the driver a moment to deliver the final half-close.
pub async fn splice<R, W>(s: DuplexStream, mut rd: R, mut wr: W) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut sr, mut sw) = tokio::io::split(s);
    let up = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                sw.shutdown().await?;
                return anyhow::Ok(());
            }
            sw.write_all(&buf[..n]).await?;
        }
    };
    let down = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = sr.read(&mut buf).await?;
            if n == 0 {
                wr.shutdown().await?;
                return anyhow::Ok(());
            }
            wr.write_all(&buf[..n]).await?;
            wr.flush().await?;
        }
    };
    tokio::try_join!(up, down)?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}
