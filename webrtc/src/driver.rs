//! The tokio driver around a str0m [`Rtc`]: sockets, timers, the TURN client, signaling and
//! the data channels' streams, in one task per peer connection.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::channel::ChannelId;
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use crate::gather::{self, Server};
use crate::peer::{Cmd, Incoming, PeerConfig, Role};
use crate::{PathInfo, PeerState};
use relay_core::rtc::signal::{IceServer, Signal};
use relay_core::rtc::turn_client::{TurnClient, TurnEvent};
use relay_core::stun;

mod channels;
use channels::Chan;

/// Label of the channel that sets up the SCTP association; streams use their own.
const CONTROL_LABEL: &str = "perigee";
/// Give up when no candidate pair works within this time.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes the SCTP association may hold unsent or unacknowledged, all channels together.
/// sctp-proto's per-SACK work grows with what is in flight: on loopback 64–128 KiB gave
/// 37–39 MB/s, 1 MiB 6 MB/s (`docs/DECISIONS.md`).
const SCTP_BUFFERED: usize = 128 << 10;
/// STUN Binding retransmissions for server-reflexive candidates.
const BINDING_TRIES: u32 = 3;
const BINDING_RTO: Duration = Duration::from_millis(300);

/// The handle's ends of a running driver: its command channel, its state, and the streams
/// the other side opens.
pub(crate) type Handles = (
    mpsc::UnboundedSender<Cmd>,
    watch::Receiver<PeerState>,
    mpsc::UnboundedReceiver<Incoming>,
);

/// Starts the driver of one peer connection on `sockets` (host candidates).
pub(crate) fn spawn(
    cfg: PeerConfig,
    sockets: Vec<Arc<UdpSocket>>,
    signal_out: mpsc::UnboundedSender<Signal>,
    signal_in: mpsc::Receiver<Signal>,
) -> std::io::Result<Handles> {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (state, state_rx) = watch::channel(PeerState::Connecting);
    let (incoming, in_rx) = mpsc::unbounded_channel();
    let (pkt_tx, pkt_rx) = mpsc::channel(4096);
    let mut by_addr = HashMap::new();
    for (i, s) in sockets.iter().enumerate() {
        by_addr.insert(s.local_addr()?, s.clone());
        spawn_recv(s.clone(), i, pkt_tx.clone());
    }
    let rtc = Rtc::builder()
        .set_crypto_provider(crypto())
        .set_sctp_max_buffered_amount(SCTP_BUFFERED)
        .set_sctp_max_message_size(256 * 1024)
        .build(Instant::now());
    let deadline = Instant::now() + cfg.connect_timeout;
    let driver = Driver {
        cfg,
        rtc,
        sockets,
        by_addr,
        pkt_tx,
        turn: None,
        turn_socket: None,
        relayed: None,
        remote_relays: HashSet::new(),
        bindings: HashMap::new(),
        pending_offer: None,
        early_candidates: Vec::new(),
        described: false,
        queued_candidates: Vec::new(),
        chans: HashMap::new(),
        blocked: HashSet::new(),
        connected: false,
        path: None,
        state,
        signal_out,
        incoming,
        cmds: cmd_tx.downgrade(),
        deadline,
        next_timeout: Instant::now(),
    };
    tokio::spawn(driver.run(cmd_rx, signal_in, pkt_rx));
    Ok((cmd_tx, state_rx, in_rx))
}

fn crypto() -> Arc<str0m::crypto::CryptoProvider> {
    static P: std::sync::OnceLock<Arc<str0m::crypto::CryptoProvider>> = std::sync::OnceLock::new();
    P.get_or_init(|| Arc::new(str0m::crypto::from_feature_flags()))
        .clone()
}

/// A packet from a socket: the index of the host socket, or `usize::MAX` for the TURN one.
struct Packet {
    socket: usize,
    from: SocketAddr,
    data: Vec<u8>,
}

const TURN_SOCKET: usize = usize::MAX;

fn spawn_recv(s: Arc<UdpSocket>, idx: usize, tx: mpsc::Sender<Packet>) {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((n, from)) = s.recv_from(&mut buf).await else {
                // ICMP errors surface here on Linux; the socket stays usable.
                if tx.is_closed() {
                    return;
                }
                continue;
            };
            if tx
                .send(Packet {
                    socket: idx,
                    from,
                    data: buf[..n].to_vec(),
                })
                .await
                .is_err()
            {
                return;
            }
        }
    });
}

struct Binding {
    socket: usize,
    server: SocketAddr,
    packet: Vec<u8>,
    tries: u32,
    resend_at: Instant,
}

struct Driver {
    cfg: PeerConfig,
    rtc: Rtc,
    sockets: Vec<Arc<UdpSocket>>,
    by_addr: HashMap<SocketAddr, Arc<UdpSocket>>,
    pkt_tx: mpsc::Sender<Packet>,
    turn: Option<TurnClient>,
    turn_socket: Option<Arc<UdpSocket>>,
    relayed: Option<SocketAddr>,
    remote_relays: HashSet<SocketAddr>,
    bindings: HashMap<[u8; 12], Binding>,
    pending_offer: Option<SdpPendingOffer>,
    /// Remote candidates that came before the description.
    early_candidates: Vec<Candidate>,
    /// The offer/answer exchange is done on our side (answer sent or accepted).
    described: bool,
    /// Local candidates to trickle once described.
    queued_candidates: Vec<String>,
    chans: HashMap<ChannelId, Chan>,
    blocked: HashSet<ChannelId>,
    connected: bool,
    path: Option<PathInfo>,
    state: watch::Sender<PeerState>,
    signal_out: mpsc::UnboundedSender<Signal>,
    incoming: mpsc::UnboundedSender<Incoming>,
    /// For new streams' pumps. Weak: when every `Peer` handle and every stream is gone,
    /// the command channel closes and the driver ends.
    cmds: mpsc::WeakUnboundedSender<Cmd>,
    deadline: Instant,
    next_timeout: Instant,
}

impl Driver {
    async fn run(
        mut self,
        mut cmd: mpsc::UnboundedReceiver<Cmd>,
        mut signals: mpsc::Receiver<Signal>,
        mut pkts: mpsc::Receiver<Packet>,
    ) {
        for s in self.sockets.clone() {
            if self.cfg.relay_only {
                break;
            }
            if let Ok(addr) = s.local_addr() {
                if let Ok(c) = Candidate::host(addr, "udp") {
                    self.rtc.add_local_candidate(c);
                    self.settle().await;
                }
            }
        }
        if self.cfg.role == Role::Offerer {
            let servers = self.cfg.ice_servers.clone();
            self.gather_servers(&servers).await;
            let mut api = self.rtc.sdp_api();
            api.add_channel(CONTROL_LABEL.into());
            if let Some((offer, pending)) = api.apply() {
                self.settle().await;
                self.pending_offer = Some(pending);
                let _ = self.signal_out.send(Signal::Offer {
                    sdp: offer.to_sdp_string(),
                    ice_servers: self.cfg.peer_ice_servers.clone(),
                });
            }
        }
        let mut signals_open = true;
        loop {
            self.settle().await;
            if self.failed() {
                return;
            }
            let wake = self.wake_at();
            tokio::select! {
                biased;
                p = pkts.recv() => {
                    let Some(p) = p else { return };
                    self.on_packet(p).await;
                    // Take whatever else is queued before polling again: fewer wakeups.
                    for _ in 0..64 {
                        match pkts.try_recv() {
                            Ok(p) => self.on_packet(p).await,
                            Err(_) => break,
                        }
                    }
                }
                c = cmd.recv() => {
                    let Some(c) = c else { return };
                    self.on_cmd(c).await;
                    for _ in 0..64 {
                        match cmd.try_recv() {
                            Ok(c) => self.on_cmd(c).await,
                            Err(_) => break,
                        }
                    }
                }
                s = signals.recv(), if signals_open => {
                    match s {
                        Some(s) => self.on_signal(s).await,
                        None => {
                            signals_open = false;
                            if !self.connected {
                                self.fail("the signaling stream ended before the connection was up".into());
                            }
                        }
                    }
                }
                () = tokio::time::sleep_until(wake.into()) => {
                    self.on_timer(Instant::now()).await;
                }
            }
            self.flush_blocked().await;
        }
    }

    fn failed(&self) -> bool {
        matches!(*self.state.borrow(), PeerState::Failed(_))
    }

    fn fail(&mut self, why: String) {
        debug!(reason = %why, "peer connection failed");
        self.state.send_replace(PeerState::Failed(why));
        self.chans.clear();
        self.rtc.disconnect();
    }

    fn wake_at(&self) -> Instant {
        let mut t = self.next_timeout;
        if !self.connected {
            t = t.min(self.deadline);
        }
        if let Some(turn) = &self.turn {
            if let Some(tt) = turn.poll_timeout() {
                t = t.min(tt);
            }
        }
        if let Some(b) = self.bindings.values().map(|b| b.resend_at).min() {
            t = t.min(b);
        }
        t
    }

    async fn on_timer(&mut self, now: Instant) {
        if !self.connected && now >= self.deadline {
            self.fail(format!(
                "no ICE candidate pair worked within {:?}",
                self.cfg.connect_timeout
            ));
            return;
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.settle().await;
        if let Some(turn) = self.turn.as_mut() {
            if let Some(TurnEvent::Failed(why)) = turn.handle_timeout(now) {
                debug!(%why, "no relayed candidate");
            }
        }
        self.flush_turn().await;
        let due: Vec<[u8; 12]> = self
            .bindings
            .iter()
            .filter(|(_, b)| b.resend_at <= now)
            .map(|(k, _)| *k)
            .collect();
        for k in due {
            let Some(b) = self.bindings.get_mut(&k) else {
                continue;
            };
            if b.tries >= BINDING_TRIES {
                self.bindings.remove(&k);
                continue;
            }
            b.tries += 1;
            b.resend_at = now + BINDING_RTO * b.tries;
            let (sock, server, pkt) = (self.sockets[b.socket].clone(), b.server, b.packet.clone());
            let _ = sock.send_to(&pkt, server).await;
        }
    }

    /// Server-reflexive candidates (Binding from each non-loopback socket) and the relayed
    /// one (a TURN allocation from a socket of its own).
    async fn gather_servers(&mut self, list: &[IceServer]) {
        let servers: Vec<Server> = gather::servers(list).await;
        let now = Instant::now();
        for s in servers.iter().filter(|_| !self.cfg.relay_only) {
            for (i, sock) in self.sockets.iter().enumerate() {
                if sock
                    .local_addr()
                    .map(|a| a.ip().is_loopback())
                    .unwrap_or(true)
                    || s.addr.ip().is_loopback()
                {
                    continue;
                }
                let txid = relay_core::token::random_bytes::<12>();
                let packet = stun::Builder::new(stun::method::BINDING, stun::Class::Request, &txid)
                    .finish(None, true);
                let _ = sock.send_to(&packet, s.addr).await;
                self.bindings.insert(
                    txid,
                    Binding {
                        socket: i,
                        server: s.addr,
                        packet,
                        tries: 1,
                        resend_at: now + BINDING_RTO,
                    },
                );
            }
        }
        if self.turn.is_none() {
            if let Some(s) = servers.iter().find(|s| s.turn && !s.username.is_empty()) {
                let bind_ip: SocketAddr = if s.addr.ip().is_loopback() {
                    ([127, 0, 0, 1], 0).into()
                } else {
                    ([0, 0, 0, 0], 0).into()
                };
                match gather::bind(bind_ip) {
                    Ok(sock) => {
                        let sock = Arc::new(sock);
                        spawn_recv(sock.clone(), TURN_SOCKET, self.pkt_tx.clone());
                        self.turn_socket = Some(sock);
                        let mut c = TurnClient::new(s.addr, &s.username, &s.password);
                        c.start(now);
                        self.turn = Some(c);
                        self.flush_turn().await;
                    }
                    Err(e) => warn!(error = %e, "no socket for TURN"),
                }
            }
        }
    }

    async fn flush_turn(&mut self) {
        let (Some(turn), Some(sock)) = (self.turn.as_mut(), self.turn_socket.as_ref()) else {
            return;
        };
        let server = turn.server();
        while let Some(p) = turn.poll_transmit() {
            let _ = sock.send_to(&p, server).await;
        }
    }

    async fn add_local(&mut self, c: Candidate) {
        let line = c.to_sdp_string();
        let added = self.rtc.add_local_candidate(c).is_some();
        self.settle().await;
        if !added {
            return;
        }
        if self.described {
            let _ = self.signal_out.send(Signal::Candidate { candidate: line });
        } else {
            self.queued_candidates.push(line);
        }
    }

    async fn add_remote(&mut self, c: Candidate) {
        if c.kind() == str0m::CandidateKind::Relayed {
            self.remote_relays.insert(c.addr());
        }
        if self.described {
            self.rtc.add_remote_candidate(c);
            self.settle().await;
        } else {
            self.early_candidates.push(c);
        }
    }

    async fn now_described(&mut self) {
        self.described = true;
        for c in std::mem::take(&mut self.early_candidates) {
            self.rtc.add_remote_candidate(c);
            self.settle().await;
        }
        for line in std::mem::take(&mut self.queued_candidates) {
            let _ = self.signal_out.send(Signal::Candidate { candidate: line });
        }
    }

    async fn on_signal(&mut self, s: Signal) {
        match s {
            Signal::Offer { sdp, ice_servers }
                if self.cfg.role == Role::Answerer && !self.described =>
            {
                let offer = match SdpOffer::from_sdp_string(&sdp) {
                    Ok(o) => o,
                    Err(e) => return self.refuse(format!("bad offer: {e}")),
                };
                let answer = match self.rtc.sdp_api().accept_offer(offer) {
                    Ok(a) => a,
                    Err(e) => return self.refuse(format!("offer not accepted: {e}")),
                };
                self.settle().await;
                let _ = self.signal_out.send(Signal::Answer {
                    sdp: answer.to_sdp_string(),
                });
                self.now_described().await;
                let mut servers = self.cfg.ice_servers.clone();
                servers.extend(ice_servers);
                self.gather_servers(&servers).await;
            }
            Signal::Answer { sdp } if self.cfg.role == Role::Offerer && !self.described => {
                let Some(pending) = self.pending_offer.take() else {
                    return;
                };
                let answer = match SdpAnswer::from_sdp_string(&sdp) {
                    Ok(a) => a,
                    Err(e) => return self.refuse(format!("bad answer: {e}")),
                };
                if let Err(e) = self.rtc.sdp_api().accept_answer(pending, answer) {
                    return self.refuse(format!("answer not accepted: {e}"));
                }
                self.settle().await;
                self.now_described().await;
            }
            Signal::Candidate { candidate } => {
                let line = candidate.strip_prefix("a=").unwrap_or(&candidate);
                match Candidate::from_sdp_string(line) {
                    Ok(c) => self.add_remote(c).await,
                    Err(e) => debug!(error = %e, "remote candidate ignored"),
                }
            }
            Signal::Error { message } => self.fail(format!("the other side gave up: {message}")),
            other => debug!(?other, "unexpected signal ignored"),
        }
    }

    fn refuse(&mut self, why: String) {
        let _ = self.signal_out.send(Signal::Error {
            message: why.clone(),
        });
        self.fail(why);
    }

    async fn on_packet(&mut self, p: Packet) {
        let now = Instant::now();
        if p.socket == TURN_SOCKET {
            let ev = match self.turn.as_mut() {
                Some(t) if p.from == t.server() => t.handle_packet(&p.data, now),
                _ => None,
            };
            self.flush_turn().await;
            match ev {
                Some(TurnEvent::Allocated(relayed)) => {
                    self.relayed = Some(relayed);
                    let local = self
                        .turn_socket
                        .as_ref()
                        .and_then(|s| s.local_addr().ok())
                        .unwrap_or(relayed);
                    match Candidate::relayed(relayed, local, "udp") {
                        Ok(c) => self.add_local(c).await,
                        Err(e) => debug!(error = %e, "relayed candidate refused"),
                    }
                }
                Some(TurnEvent::Data { peer, data }) => {
                    if let Some(relayed) = self.relayed {
                        self.input(now, peer, relayed, &data).await;
                    }
                }
                Some(TurnEvent::Failed(why)) => debug!(%why, "no relayed candidate"),
                None => {}
            }
            return;
        }
        let Some(sock) = self.sockets.get(p.socket) else {
            return;
        };
        let Ok(local) = sock.local_addr() else {
            return;
        };
        if stun::is_stun(&p.data) && p.data.len() >= 20 {
            let mut txid = [0u8; 12];
            txid.copy_from_slice(&p.data[8..20]);
            if self.bindings.contains_key(&txid) {
                self.bindings.remove(&txid);
                if let Ok(m) = stun::Message::decode(&p.data) {
                    if let Some(mapped) = m
                        .xor_addresses(stun::attr::XOR_MAPPED_ADDRESS)
                        .ok()
                        .and_then(|v| v.first().copied())
                    {
                        if mapped != local {
                            if let Ok(c) = Candidate::server_reflexive(mapped, local, "udp") {
                                self.add_local(c).await;
                            }
                        }
                    }
                }
                return;
            }
        }
        self.input(now, p.from, local, &p.data).await;
    }

    async fn input(
        &mut self,
        now: Instant,
        source: SocketAddr,
        destination: SocketAddr,
        data: &[u8],
    ) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination,
                contents,
            },
        );
        if let Err(e) = self.rtc.handle_input(input) {
            debug!(error = %e, "input refused");
        }
        self.settle().await;
    }

    /// Drains the engine after a mutation; an engine error fails the connection.
    async fn settle(&mut self) {
        if self.failed() {
            return;
        }
        if let Err(e) = self.drain().await {
            self.fail(format!("WebRTC: {e}"));
        }
    }

    async fn drain(&mut self) -> Result<(), str0m::RtcError> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    return Ok(());
                }
                Output::Transmit(t) => self.transmit(t).await,
                Output::Event(e) => self.on_event(e),
            }
        }
    }

    async fn transmit(&mut self, t: str0m::net::Transmit) {
        let via_relay = Some(t.source) == self.relayed;
        if is_dtls(&t.contents) {
            let relayed = via_relay || self.remote_relays.contains(&t.destination);
            let changed = self
                .path
                .as_ref()
                .is_none_or(|p| p.local != t.source || p.remote != t.destination);
            if changed {
                let info = PathInfo {
                    relayed,
                    local: t.source,
                    remote: t.destination,
                    turn: self
                        .turn
                        .as_ref()
                        .map(TurnClient::server)
                        .filter(|_| via_relay),
                };
                debug!(path = %info, "data path");
                self.path = Some(info.clone());
                if self.connected {
                    self.state.send_replace(PeerState::Connected(info));
                }
            }
        }
        if via_relay {
            let now = Instant::now();
            let (Some(turn), Some(sock)) = (self.turn.as_mut(), self.turn_socket.clone()) else {
                return;
            };
            let server = turn.server();
            if let Some(pkt) = turn.send_to(t.destination, &t.contents, now) {
                let _ = sock.send_to(&pkt, server).await;
            }
            self.flush_turn().await;
            return;
        }
        if let Some(sock) = self.by_addr.get(&t.source) {
            let _ = sock.send_to(&t.contents, t.destination).await;
        }
    }

    fn on_event(&mut self, e: Event) {
        match e {
            Event::IceConnectionStateChange(IceConnectionState::Disconnected) if self.connected => {
                self.fail("the peer connection was lost (ICE disconnected)".into());
            }
            Event::ChannelOpen(id, label) => self.on_open(id, label),
            Event::ChannelData(d) => self.on_channel_data(d),
            Event::ChannelClose(id) => {
                self.chans.remove(&id);
                self.blocked.remove(&id);
            }
            Event::Closed => self.fail("the other side closed the connection".into()),
            _ => {}
        }
    }
}

/// DTLS records (content types 20–63) carry the connection's data; STUN checks do not.
fn is_dtls(b: &[u8]) -> bool {
    b.first().is_some_and(|&x| (20..=63).contains(&x))
}
