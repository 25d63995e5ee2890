//! Networking v2 on the agent: answers the WebRTC offers that arrive on signaling streams
//! and connects each data channel the client opens to the session's workspace port.
//!
//! Like end-to-end streams, a signaling stream reaches its handler through a loopback hop
//! (the link pumps work on TCP sockets): the agent registers the session's port under a
//! random id, connects to its own answerer and sends the id first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use perigee_webrtc::{signal, Peer, PeerConfig, Role};
use relay_core::wire::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, info, Instrument as _};

/// The agent's WebRTC answerer: a loopback listener taking signaling streams (started on
/// the first one). Its accept loop ends when it is dropped.
pub(crate) struct Answerer {
    addr: SocketAddr,
    pending: Arc<Mutex<HashMap<u64, u16>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Answerer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl Answerer {
    /// Starts an answerer whose data channels reach workspace ports (port 22: `ssh`).
    pub(crate) async fn start(ssh: Option<u16>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let pending: Arc<Mutex<HashMap<u64, u16>>> = Arc::default();
        let waiting = pending.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let waiting = waiting.clone();
                tokio::spawn(async move {
                    if let Err(e) = accept(&waiting, sock, ssh).await {
                        debug!(error = %e, "signaling session ended");
                    }
                });
            }
        });
        Ok(Self {
            addr,
            pending,
            accept,
        })
    }

    /// Connects a signaling stream for a session whose data channels reach `port` (already
    /// checked to answer, so a client learns "nothing listens" as for a plain stream).
    pub(crate) async fn front(&self, port: u16) -> Result<TcpStream, (StatusCode, String)> {
        let id = relay_core::token::random_u64();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, port);
        }
        let fail = |e: std::io::Error| {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
            (StatusCode::ConnectFailed, format!("WebRTC answerer: {e}"))
        };
        let mut front = TcpStream::connect(self.addr).await.map_err(fail)?;
        let _ = front.set_nodelay(true);
        front.write_u64(id).await.map_err(fail)?;
        Ok(front)
    }
}

async fn accept(
    pending: &Mutex<HashMap<u64, u16>>,
    mut sock: TcpStream,
    ssh: Option<u16>,
) -> std::io::Result<()> {
    let id = sock.read_u64().await?;
    let port = pending
        .lock()
        .ok()
        .and_then(|mut p| p.remove(&id))
        .ok_or_else(|| std::io::Error::other("unknown signaling session id"))?;
    let span = tracing::info_span!("webrtc", session = id, port);
    session(sock, port, ssh).instrument(span).await;
    Ok(())
}

/// One peer connection: signaling on `sock`, every data channel to `port`.
async fn session(sock: TcpStream, port: u16, ssh: Option<u16>) {
    let (rd, wr) = sock.into_split();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let (in_tx, in_rx) = mpsc::channel(signal::MAX_SIGNALS);
    tokio::spawn(async move {
        if let Err(e) = signal::pump(rd, wr, out_rx, in_tx).await {
            debug!(error = %e, "signaling stream ended");
        }
    });
    let cfg = PeerConfig {
        role: Role::Answerer,
        ice_servers: Vec::new(),
        peer_ice_servers: Vec::new(),
        relay_only: false,
        connect_timeout: perigee_webrtc::CONNECT_TIMEOUT,
    };
    let (peer, mut incoming) = match Peer::start(cfg, out_tx, in_rx).await {
        Ok(p) => p,
        Err(e) => {
            debug!(error = %e, "no WebRTC peer");
            return;
        }
    };
    let watch = peer.clone();
    tokio::spawn(async move {
        match watch.connected().await {
            Ok(path) => info!(%path, "WebRTC peer connected"),
            Err(why) => debug!(%why, "WebRTC peer not connected"),
        }
    });
    while let Some(ch) = incoming.recv().await {
        tokio::spawn(
            async move {
                let mut tcp = match crate::port::connect(port, ssh).await {
                    Ok(t) => t,
                    Err((_, msg)) => {
                        debug!(%msg, "data channel refused");
                        return;
                    }
                };
                let mut s = ch.stream;
                match tokio::io::copy_bidirectional(&mut s, &mut tcp).await {
                    Ok((up, down)) => debug!(up, down, "data channel done"),
                    Err(e) => debug!(error = %e, "data channel ended"),
                }
                let _ = s.shutdown().await;
            }
            .instrument(tracing::debug_span!("channel", label = %ch.label)),
        );
    }
    drop(peer);
}
