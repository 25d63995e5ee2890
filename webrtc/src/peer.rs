//! The handle on a peer connection: start it, wait for it, open streams on it. The work
//! happens in the driver task (`driver.rs`).

use tokio::io::DuplexStream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver;
use crate::gather;
use crate::stream::ToDriver;
use crate::{PathInfo, PeerState};
use relay_core::rtc::signal::{IceServer, Signal};

/// Which side of the offer/answer a peer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sends the offer (the client).
    Offerer,
    /// Answers (the agent).
    Answerer,
}

/// How to start a peer.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Offerer or answerer.
    pub role: Role,
    /// STUN/TURN servers for this side (the answerer also takes the offer's).
    pub ice_servers: Vec<IceServer>,
    /// ICE servers to hand the answering side with the offer.
    pub peer_ice_servers: Vec<IceServer>,
    /// Offer only the relayed candidate (WebRTC's `iceTransportPolicy: "relay"`): hides
    /// this side's addresses from the other, at the cost of a relay hop.
    pub relay_only: bool,
    /// How long ICE may take before the peer gives up ([`crate::CONNECT_TIMEOUT`] unless a
    /// caller knows better).
    pub connect_timeout: std::time::Duration,
}

/// A stream the remote side opened.
pub struct Incoming {
    /// The label the opener chose.
    pub label: String,
    /// The application's end.
    pub stream: DuplexStream,
}

/// What handles and stream pumps ask of the driver.
pub(crate) enum Cmd {
    Open(String, oneshot::Sender<std::io::Result<DuplexStream>>),
    Stream(ToDriver),
}

/// A handle on a running peer connection; dropping every handle ends it.
#[derive(Clone)]
pub struct Peer {
    cmd: mpsc::UnboundedSender<Cmd>,
    state: watch::Receiver<PeerState>,
}

impl Peer {
    /// Starts a peer. Signals to send to the other side come out of `signal_out`; signals
    /// from it go into `signal_in`. Streams the other side opens arrive on the returned
    /// receiver.
    pub async fn start(
        cfg: PeerConfig,
        signal_out: mpsc::UnboundedSender<Signal>,
        signal_in: mpsc::Receiver<Signal>,
    ) -> std::io::Result<(Peer, mpsc::UnboundedReceiver<Incoming>)> {
        let sockets = gather::host_sockets().await?;
        let (cmd_tx, state_rx, in_rx) = driver::spawn(cfg, sockets, signal_out, signal_in)?;
        Ok((
            Peer {
                cmd: cmd_tx,
                state: state_rx,
            },
            in_rx,
        ))
    }

    /// The current state.
    pub fn state(&self) -> PeerState {
        self.state.borrow().clone()
    }

    /// Waits until the peer is connected (the data channels' association is up) or failed.
    pub async fn connected(&self) -> Result<PathInfo, String> {
        let mut rx = self.state.clone();
        loop {
            match &*rx.borrow_and_update() {
                PeerState::Connected(p) => return Ok(p.clone()),
                PeerState::Failed(why) => return Err(why.clone()),
                PeerState::Connecting => {}
            }
            if rx.changed().await.is_err() {
                return Err("the peer connection ended".into());
            }
        }
    }

    /// Opens a stream on a new data channel labelled `label`.
    pub async fn open(&self, label: &str) -> std::io::Result<DuplexStream> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(Cmd::Open(label.to_owned(), tx))
            .map_err(|_| std::io::Error::other("the peer connection ended"))?;
        rx.await
            .map_err(|_| std::io::Error::other("the peer connection ended"))?
    }
}
