//! A TURN client (RFC 8656) for a peer's relayed candidate, without I/O: the driver feeds it
//! the server's packets and the clock, and sends what it produces to the server.
//!
//! One UDP allocation with long-term credentials (the coturn REST form from a connection
//! ticket), refreshed before it expires; each peer gets a channel (ChannelBind, which also
//! installs the permission) and data goes as ChannelData once bound, as Send indications
//! before. Stale nonces (438) are retried once with the new nonce.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::stun::{self, attr, method, Builder, Class, Message};

/// First retransmission timeout of a request (doubled each time, RFC 8489 §6.2.1).
const RTO: Duration = Duration::from_millis(250);
/// Transmissions of one request before giving up.
const MAX_TRIES: u32 = 5;
/// Allocation lifetime asked for.
const LIFETIME_SECS: u32 = 600;
/// Channel bindings last 10 minutes; refresh well before.
const CHANNEL_REFRESH: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Req {
    Allocate,
    Refresh,
    ChannelBind(SocketAddr, u16),
}

struct Pending {
    req: Req,
    packet: Vec<u8>,
    tries: u32,
    resend_at: Instant,
    /// Already retried after a 401/438 answer.
    reauthed: bool,
}

struct PeerState {
    channel: u16,
    bound: bool,
    refresh_at: Instant,
}

/// What the client learned from a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum TurnEvent {
    /// The allocation exists: the relayed transport address.
    Allocated(SocketAddr),
    /// Data from a peer through the relay.
    Data {
        /// The peer's address.
        peer: SocketAddr,
        /// The payload.
        data: Vec<u8>,
    },
    /// The allocation failed or was lost; no relayed candidate.
    Failed(String),
}

/// The client state of one allocation on one server.
pub struct TurnClient {
    server: SocketAddr,
    username: String,
    password: String,
    realm: String,
    nonce: String,
    key: Option<[u8; 16]>,
    relayed: Option<SocketAddr>,
    refresh_at: Option<Instant>,
    failed: bool,
    pending: HashMap<[u8; 12], Pending>,
    peers: HashMap<SocketAddr, PeerState>,
    next_channel: u16,
    out: VecDeque<Vec<u8>>,
}

impl TurnClient {
    /// A client for `server` with ephemeral credentials; call [`start`](Self::start).
    pub fn new(server: SocketAddr, username: &str, password: &str) -> Self {
        Self {
            server,
            username: username.to_owned(),
            password: password.to_owned(),
            realm: String::new(),
            nonce: String::new(),
            key: None,
            relayed: None,
            refresh_at: None,
            failed: false,
            pending: HashMap::new(),
            peers: HashMap::new(),
            next_channel: 0x4000,
            out: VecDeque::new(),
        }
    }

    /// The TURN server.
    pub fn server(&self) -> SocketAddr {
        self.server
    }

    /// The relayed address, once allocated.
    pub fn relayed(&self) -> Option<SocketAddr> {
        self.relayed
    }

    /// Sends the first Allocate (unauthenticated: the server answers 401 with its realm and
    /// a nonce).
    pub fn start(&mut self, now: Instant) {
        self.request(Req::Allocate, now, false);
    }

    /// The next packet for the server.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.out.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let resend = self.pending.values().map(|p| p.resend_at).min();
        let peers = self.peers.values().map(|p| p.refresh_at).min();
        [resend, self.refresh_at, peers].into_iter().flatten().min()
    }

    /// Retransmits, refreshes the allocation and channel bindings.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<TurnEvent> {
        if self.failed {
            return None;
        }
        let mut lost = None;
        for p in self.pending.values_mut() {
            if p.resend_at > now {
                continue;
            }
            if p.tries >= MAX_TRIES {
                if matches!(p.req, Req::Allocate | Req::Refresh) {
                    lost = Some(format!("TURN server {} does not answer", self.server));
                }
                p.resend_at = now + Duration::from_secs(3600);
                continue;
            }
            p.tries += 1;
            p.resend_at = now + RTO * 2u32.pow(p.tries - 1);
            self.out.push_back(p.packet.clone());
        }
        self.pending
            .retain(|_, p| p.tries < MAX_TRIES || p.resend_at <= now);
        if let Some(why) = lost {
            return Some(self.fail(why));
        }
        if self.refresh_at.is_some_and(|t| t <= now) {
            self.refresh_at = None;
            self.request(Req::Refresh, now, false);
        }
        let due: Vec<(SocketAddr, u16)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.refresh_at <= now)
            .map(|(a, p)| (*a, p.channel))
            .collect();
        for (peer, channel) in due {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.refresh_at = now + CHANNEL_REFRESH;
            }
            self.request(Req::ChannelBind(peer, channel), now, false);
        }
        None
    }

    fn fail(&mut self, why: String) -> TurnEvent {
        self.failed = true;
        self.relayed = None;
        self.pending.clear();
        self.peers.clear();
        TurnEvent::Failed(why)
    }

    fn request(&mut self, req: Req, now: Instant, reauthed: bool) {
        let txid = crate::token::random_bytes::<12>();
        let m = match req {
            Req::Allocate | Req::Refresh => {
                let (meth, life) = if req == Req::Allocate {
                    (method::ALLOCATE, LIFETIME_SECS)
                } else {
                    (method::REFRESH, LIFETIME_SECS)
                };
                let mut b = Builder::new(meth, Class::Request, &txid);
                if req == Req::Allocate {
                    b.add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
                }
                b.add(attr::LIFETIME, &life.to_be_bytes());
                b
            }
            Req::ChannelBind(peer, channel) => {
                let mut b = Builder::new(method::CHANNEL_BIND, Class::Request, &txid);
                b.add(
                    attr::CHANNEL_NUMBER,
                    &[(channel >> 8) as u8, channel as u8, 0, 0],
                );
                b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
                b
            }
        };
        let packet = self.sign(m);
        self.out.push_back(packet.clone());
        self.pending.insert(
            txid,
            Pending {
                req,
                packet,
                tries: 1,
                resend_at: now + RTO,
                reauthed,
            },
        );
    }

    fn sign(&self, mut b: Builder) -> Vec<u8> {
        match &self.key {
            Some(key) => {
                b.add(attr::USERNAME, self.username.as_bytes());
                b.add(attr::REALM, self.realm.as_bytes());
                b.add(attr::NONCE, self.nonce.as_bytes());
                b.finish(Some(key), true)
            }
            None => b.finish(None, true),
        }
    }

    /// Handles a packet from the server.
    pub fn handle_packet(&mut self, buf: &[u8], now: Instant) -> Option<TurnEvent> {
        if self.failed {
            return None;
        }
        if stun::is_channel_data(buf) {
            let (channel, data) = stun::decode_channel_data(buf).ok()?;
            let peer = self
                .peers
                .iter()
                .find(|(_, p)| p.channel == channel)
                .map(|(a, _)| *a)?;
            return Some(TurnEvent::Data {
                peer,
                data: data.to_vec(),
            });
        }
        let m = Message::decode(buf).ok()?;
        if m.method == method::DATA && m.class == Class::Indication {
            let peer = *m.xor_addresses(attr::XOR_PEER_ADDRESS).ok()?.first()?;
            let data = m.get(attr::DATA)?.to_vec();
            return Some(TurnEvent::Data { peer, data });
        }
        let p = self.pending.remove(&m.transaction_id)?;
        match m.class {
            Class::Success => {
                if let Some(key) = &self.key {
                    if !m.check_integrity(buf, key) {
                        // Not from the server we authenticated with: ignore, keep waiting.
                        self.pending.insert(m.transaction_id, p);
                        return None;
                    }
                }
                self.on_success(p.req, &m, now)
            }
            Class::Error => self.on_error(p, &m, now),
            _ => None,
        }
    }

    fn on_success(&mut self, req: Req, m: &Message, now: Instant) -> Option<TurnEvent> {
        let life = Duration::from_secs(u64::from(m.u32(attr::LIFETIME).unwrap_or(LIFETIME_SECS)));
        match req {
            Req::Allocate => {
                let relayed = *m.xor_addresses(attr::XOR_RELAYED_ADDRESS).ok()?.first()?;
                self.relayed = Some(relayed);
                self.refresh_at = Some(
                    now + life
                        .saturating_sub(Duration::from_secs(60))
                        .max(Duration::from_secs(30)),
                );
                Some(TurnEvent::Allocated(relayed))
            }
            Req::Refresh => {
                self.refresh_at = Some(
                    now + life
                        .saturating_sub(Duration::from_secs(60))
                        .max(Duration::from_secs(30)),
                );
                None
            }
            Req::ChannelBind(peer, _) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.bound = true;
                }
                None
            }
        }
    }

    fn on_error(&mut self, p: Pending, m: &Message, now: Instant) -> Option<TurnEvent> {
        let (code, reason) = stun::error_code(m).unwrap_or((0, String::new()));
        if (code == 401 || code == 438) && !p.reauthed {
            let realm = m.text(attr::REALM).ok().flatten().map(str::to_owned);
            let nonce = m.text(attr::NONCE).ok().flatten().map(str::to_owned);
            if let Some(nonce) = nonce {
                if let Some(realm) = realm {
                    self.realm = realm;
                }
                self.nonce = nonce;
                self.key = Some(stun::long_term_key(
                    &self.username,
                    &self.realm,
                    &self.password,
                ));
                self.request(p.req, now, true);
                return None;
            }
        }
        match p.req {
            Req::Allocate | Req::Refresh => Some(self.fail(format!(
                "TURN server {} refused the allocation: {code} {reason}",
                self.server
            ))),
            Req::ChannelBind(peer, _) => {
                // Usually 403: the server's policy refuses this peer. ICE tries other pairs.
                self.peers.remove(&peer);
                tracing::debug!(%peer, code, %reason, "TURN channel bind refused");
                None
            }
        }
    }

    /// Wraps `data` for `peer`: ChannelData once the channel is bound, a Send indication
    /// before (binding the channel on first use). `None` when there is no allocation.
    pub fn send_to(&mut self, peer: SocketAddr, data: &[u8], now: Instant) -> Option<Vec<u8>> {
        self.relayed?;
        let channel = match self.peers.get(&peer) {
            Some(p) if p.bound => {
                let mut out = Vec::with_capacity(data.len() + 8);
                stun::encode_channel_data(p.channel, data, &mut out);
                return Some(out);
            }
            Some(p) => p.channel,
            None => {
                if self.next_channel > *stun::CHANNELS.end() {
                    return None;
                }
                let channel = self.next_channel;
                self.next_channel += 1;
                self.peers.insert(
                    peer,
                    PeerState {
                        channel,
                        bound: false,
                        refresh_at: now + CHANNEL_REFRESH,
                    },
                );
                self.request(Req::ChannelBind(peer, channel), now, false);
                channel
            }
        };
        let _ = channel;
        let txid = crate::token::random_bytes::<12>();
        let mut b = Builder::new(method::SEND, Class::Indication, &txid);
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer);
        b.add(attr::DATA, data);
        Some(b.finish(None, false))
    }
}
