//! Networking v2 on the agent: answers the WebRTC offers that arrive on signaling streams
//! and connects each data channel the client opens to the session's workspace port.
//!
//! Like end-to-end streams, a signaling stream reaches its handler through a loopback hop
//! (the link pumps work on TCP sockets): the agent registers the session's port under a
//! random id, connects to its own answerer and sends the id first.

use perigee_webrtc::{signal, Peer, PeerConfig, Role};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, info, Instrument as _};

use crate::hop::Hop;

/// Starts the agent's WebRTC answerer: a loopback hop taking signaling streams whose data
/// channels reach a workspace port (port 22: `ssh`).
pub(crate) async fn answerer(ssh: Option<u16>) -> std::io::Result<Hop<u16>> {
    Hop::start(
        "WebRTC answerer",
        move |port: u16, sock: TcpStream| async move {
            let span = tracing::info_span!("webrtc", port);
            session(sock, port, ssh).instrument(span).await;
            Ok(())
        },
    )
    .await
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
