//! The TURN server (RFC 8656): Binding, Allocate, Refresh, CreatePermission, ChannelBind,
//! Send and Data indications, ChannelData, expiry, quotas and a bandwidth limit. Clients
//! reach it over UDP ([`TurnServer::serve`]) or over TCP and TLS (`crate::stream`); relayed
//! addresses are always UDP.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UdpSocket;
use tracing::{debug, info};

use crate::allocation::{relay_loop, Allocation, Bucket, Client, Reply, State, Transport};
use crate::auth::Credentials;
use crate::policy::PeerPolicy;
use crate::stun::{self, attr, method, Builder, Class, Message};

/// Permission lifetime (RFC 8656 §9).
pub const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// Channel binding lifetime (RFC 8656 §12).
pub const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);
/// Allocation lifetime when the client asks for none.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(600);
/// Longest allocation lifetime granted.
pub const MAX_LIFETIME: Duration = Duration::from_secs(3600);
/// Sent as SOFTWARE.
pub const SOFTWARE: &str = concat!("perigee ", env!("CARGO_PKG_VERSION"));

/// How a TURN server runs.
#[derive(Debug, Clone)]
pub struct TurnConfig {
    /// Realm in challenges and keys.
    pub realm: String,
    /// Secret shared with the control plane for ephemeral credentials.
    pub secret: Vec<u8>,
    /// Addresses relay sockets bind to and advertise: at most one per family; IPv4 unless
    /// the client asks for IPv6 (REQUESTED-ADDRESS-FAMILY).
    pub relay_ips: Vec<IpAddr>,
    /// Which peers allocations may reach.
    pub policy: PeerPolicy,
    /// Allocations in total.
    pub max_allocations: usize,
    /// Allocations per user.
    pub max_per_user: usize,
    /// Bytes per second relayed per allocation, both directions together (0: no limit).
    pub bandwidth: u64,
}

/// Counters, registered in the edge's registry.
#[derive(Clone)]
pub struct TurnMetrics {
    allocations: prometheus::IntGauge,
    refused: prometheus::IntCounterVec,
    pub(crate) relayed: prometheus::IntCounterVec,
}

impl TurnMetrics {
    /// Registers the TURN metrics in `registry`.
    pub fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let allocations =
            prometheus::IntGauge::new("perigee_turn_allocations", "Open TURN allocations")?;
        let refused = prometheus::IntCounterVec::new(
            prometheus::Opts::new(
                "perigee_turn_refused_total",
                "TURN requests and packets refused, by reason",
            ),
            &["reason"],
        )?;
        let relayed = prometheus::IntCounterVec::new(
            prometheus::Opts::new("perigee_turn_relayed_bytes_total", "Bytes relayed by TURN"),
            &["direction"],
        )?;
        registry.register(Box::new(allocations.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(relayed.clone()))?;
        Ok(Self {
            allocations,
            refused,
            relayed,
        })
    }

    pub(crate) fn refuse(&self, reason: &str) {
        self.refused.with_label_values(&[reason]).inc();
    }
}

struct Inner {
    cfg: TurnConfig,
    creds: Credentials,
    allocations: Mutex<HashMap<Client, Arc<Allocation>>>,
    metrics: TurnMetrics,
}

/// A TURN server; [`serve`](TurnServer::serve) runs it on a bound UDP socket.
#[derive(Clone)]
pub struct TurnServer {
    inner: Arc<Inner>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Attributes this server understands (others below 0x8000 are refused with 420).
const KNOWN: &[u16] = &[
    attr::MAPPED_ADDRESS,
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::ERROR_CODE,
    attr::UNKNOWN_ATTRIBUTES,
    attr::CHANNEL_NUMBER,
    attr::LIFETIME,
    attr::XOR_PEER_ADDRESS,
    attr::DATA,
    attr::REALM,
    attr::NONCE,
    attr::XOR_RELAYED_ADDRESS,
    attr::REQUESTED_ADDRESS_FAMILY,
    attr::EVEN_PORT,
    attr::REQUESTED_TRANSPORT,
    attr::DONT_FRAGMENT,
    attr::XOR_MAPPED_ADDRESS,
];

/// A refusal: error code and reason phrase.
type Refusal = (u16, &'static str);

impl TurnServer {
    /// A server with `cfg`, counting into `metrics`.
    pub fn new(cfg: TurnConfig, metrics: TurnMetrics) -> Self {
        let creds = Credentials::new(&cfg.secret, &cfg.realm);
        Self {
            inner: Arc::new(Inner {
                cfg,
                creds,
                allocations: Mutex::new(HashMap::new()),
                metrics,
            }),
        }
    }

    /// Open allocations.
    pub fn allocations(&self) -> usize {
        self.inner.allocations.lock().map(|a| a.len()).unwrap_or(0)
    }

    /// Serves `socket` until `shutdown` resolves; allocations end with it.
    pub async fn serve(self, socket: UdpSocket, shutdown: impl std::future::Future<Output = ()>) {
        let socket = Arc::new(socket);
        let sweeper = tokio::spawn(sweep(self.inner.clone()));
        tokio::pin!(shutdown);
        let mut buf = vec![0u8; stun::MAX_MESSAGE_LEN];
        loop {
            let (n, from) = tokio::select! {
                r = socket.recv_from(&mut buf) => match r {
                    Ok(x) => x,
                    Err(e) => {
                        debug!(error = %e, "turn recv");
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let pkt = &buf[..n];
            let client = Client {
                transport: Transport::Udp,
                addr: from,
            };
            if stun::is_channel_data(pkt) {
                self.channel_data(client, pkt).await;
            } else if let Some(reply) = self.handle(client, pkt, &Reply::Udp(socket.clone(), from))
            {
                let _ = socket.send_to(&reply, from).await;
            }
        }
        sweeper.abort();
        if let Ok(mut a) = self.inner.allocations.lock() {
            a.clear();
        }
        self.inner.metrics.allocations.set(0);
    }

    pub(crate) fn allocation_of(&self, client: Client) -> bool {
        self.allocation(client).is_some()
    }

    fn allocation(&self, client: Client) -> Option<Arc<Allocation>> {
        self.inner
            .allocations
            .lock()
            .ok()
            .and_then(|a| a.get(&client).cloned())
    }

    /// Ends `client`'s allocation (its TCP or TLS connection closed, RFC 8656 §3.1).
    pub(crate) fn end(&self, client: Client) {
        if let Ok(mut all) = self.inner.allocations.lock() {
            if all.remove(&client).is_some() {
                debug!(client = %client.addr, transport = ?client.transport, "turn allocation ended with its connection");
            }
            self.inner.metrics.allocations.set(all.len() as i64);
        }
    }

    pub(crate) fn refuse(&self, reason: &str) {
        self.inner.metrics.refuse(reason);
    }

    pub(crate) fn max_allocations(&self) -> usize {
        self.inner.cfg.max_allocations
    }

    pub(crate) async fn channel_data(&self, from: Client, pkt: &[u8]) {
        let Ok((ch, data)) = stun::decode_channel_data(pkt) else {
            self.inner.metrics.refuse("malformed");
            return;
        };
        let Some(a) = self.allocation(from) else {
            self.inner.metrics.refuse("no_allocation");
            return;
        };
        let now = Instant::now();
        let peer = {
            let Ok(mut st) = a.state.lock() else { return };
            match st.channels.get(&ch) {
                Some((p, t)) if *t > now => {
                    let p = *p;
                    if !st.bucket.take(data.len()) {
                        self.inner.metrics.refuse("bandwidth");
                        return;
                    }
                    p
                }
                _ => {
                    self.inner.metrics.refuse("no_channel");
                    return;
                }
            }
        };
        if a.relay.send_to(data, peer).await.is_ok() {
            self.inner
                .metrics
                .relayed
                .with_label_values(&["to_peer"])
                .inc_by(data.len() as u64);
        }
    }

    /// Handles one STUN message; returns the response to send, if any.
    pub(crate) fn handle(&self, from: Client, pkt: &[u8], reply: &Reply) -> Option<Vec<u8>> {
        let m = match Message::decode(pkt) {
            Ok(m) => m,
            Err(e) => {
                debug!(client = %from.addr, error = %e, "malformed STUN");
                self.inner.metrics.refuse("malformed");
                return None;
            }
        };
        let fp = m.get(attr::FINGERPRINT).is_some();
        match (m.class, m.method) {
            (Class::Request, method::BINDING) => {
                let mut b = Builder::new(method::BINDING, Class::Success, &m.transaction_id);
                b.add_xor_address(attr::XOR_MAPPED_ADDRESS, from.addr);
                b.add(attr::SOFTWARE, SOFTWARE.as_bytes());
                Some(b.finish(None, fp))
            }
            (Class::Indication, method::SEND) => {
                self.send_indication(from, &m);
                None
            }
            (Class::Request, _) => Some(self.request(from, pkt, &m, reply)),
            _ => None,
        }
    }

    fn send_indication(&self, from: Client, m: &Message) {
        let Some(a) = self.allocation(from) else {
            self.inner.metrics.refuse("no_allocation");
            return;
        };
        let (Ok(peers), Some(data)) = (m.xor_addresses(attr::XOR_PEER_ADDRESS), m.get(attr::DATA))
        else {
            self.inner.metrics.refuse("malformed");
            return;
        };
        let Some(peer) = peers.first().copied() else {
            self.inner.metrics.refuse("malformed");
            return;
        };
        if self.inner.cfg.policy.check(peer.ip()).is_err() {
            self.inner.metrics.refuse("forbidden_peer");
            return;
        }
        {
            let Ok(mut st) = a.state.lock() else { return };
            if !st.permitted(peer.ip(), Instant::now()) {
                self.inner.metrics.refuse("no_permission");
                return;
            }
            if !st.bucket.take(data.len()) {
                self.inner.metrics.refuse("bandwidth");
                return;
            }
        }
        if a.relay.try_send_to(data, peer).is_ok() {
            self.inner
                .metrics
                .relayed
                .with_label_values(&["to_peer"])
                .inc_by(data.len() as u64);
        }
    }

    fn challenge(&self, m: &Message, code: u16, reason: &str) -> Vec<u8> {
        let mut b = Builder::new(m.method, Class::Error, &m.transaction_id);
        b.add_error(code, reason);
        b.add(attr::REALM, self.inner.cfg.realm.as_bytes());
        b.add(attr::NONCE, self.inner.creds.nonce(unix_now()).as_bytes());
        b.finish(None, m.get(attr::FINGERPRINT).is_some())
    }

    fn request(&self, from: Client, raw: &[u8], m: &Message, reply: &Reply) -> Vec<u8> {
        let fp = m.get(attr::FINGERPRINT).is_some();
        let unknown: Vec<u16> = m
            .attributes
            .iter()
            .map(|(t, _, _)| *t)
            .filter(|t| *t < 0x8000 && !KNOWN.contains(t))
            .collect();
        if !unknown.is_empty() {
            debug!(client = %from.addr, ?unknown, "unknown comprehension-required attributes");
            self.inner.metrics.refuse("unknown_attribute");
            let mut b = Builder::new(m.method, Class::Error, &m.transaction_id);
            b.add_error(420, "Unknown Attribute");
            let list: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
            b.add(attr::UNKNOWN_ATTRIBUTES, &list);
            return b.finish(None, fp);
        }
        // Long-term credentials (RFC 8489 §9.2); an attribute over its limit (763 bytes)
        // or not UTF-8 is a malformed request, not a missing credential.
        let (username, realm, nonce) = (
            m.text(attr::USERNAME),
            m.text(attr::REALM),
            m.text(attr::NONCE),
        );
        if username.is_err() || realm.is_err() || nonce.is_err() {
            self.inner.metrics.refuse("malformed");
            let mut b = Builder::new(m.method, Class::Error, &m.transaction_id);
            b.add_error(
                400,
                "Bad Request: USERNAME, REALM or NONCE too long or not UTF-8",
            );
            return b.finish(None, fp);
        }
        let (Ok(Some(username)), Ok(Some(realm)), Ok(Some(nonce))) = (username, realm, nonce)
        else {
            self.inner.metrics.refuse("unauthenticated");
            return self.challenge(m, 401, "Unauthorized");
        };
        if m.get(attr::MESSAGE_INTEGRITY).is_none() || realm != self.inner.cfg.realm {
            self.inner.metrics.refuse("unauthenticated");
            return self.challenge(m, 401, "Unauthorized");
        }
        let now = unix_now();
        if !self.inner.creds.nonce_fresh(nonce, now) {
            self.inner.metrics.refuse("stale_nonce");
            return self.challenge(m, 438, "Stale Nonce");
        }
        let (user, key) = match self.inner.creds.key_for(username, now) {
            Ok(k) => k,
            Err(e) => {
                self.inner.metrics.refuse(match e {
                    crate::auth::AuthError::Expired => "expired_credentials",
                    crate::auth::AuthError::Malformed => "bad_username",
                });
                return self.challenge(m, 401, "Unauthorized");
            }
        };
        if !m.check_integrity(raw, &key) {
            self.inner.metrics.refuse("bad_integrity");
            return self.challenge(m, 401, "Unauthorized");
        }
        let existing = self.allocation(from);
        if let Some(a) = &existing {
            if a.username != username {
                self.inner.metrics.refuse("wrong_credentials");
                return error(m, 441, "Wrong Credentials", &key, fp);
            }
        }
        let result = match m.method {
            method::ALLOCATE => self.allocate(from, m, existing, username, user, reply),
            method::REFRESH => self.refresh(from, m, existing),
            method::CREATE_PERMISSION => self.create_permission(m, existing),
            method::CHANNEL_BIND => self.channel_bind(m, existing),
            _ => Err((400, "Bad Request")),
        };
        match result {
            Ok(mut b) => {
                b.add(attr::SOFTWARE, SOFTWARE.as_bytes());
                b.finish(Some(&key), fp)
            }
            Err((code, reason)) => {
                self.inner.metrics.refuse(match code {
                    403 => "forbidden_peer",
                    437 => "allocation_mismatch",
                    486 => "user_quota",
                    508 => "capacity",
                    _ => "bad_request",
                });
                error(m, code, reason, &key, fp)
            }
        }
    }

    fn allocate(
        &self,
        from: Client,
        m: &Message,
        existing: Option<Arc<Allocation>>,
        username: &str,
        user: String,
        reply: &Reply,
    ) -> Result<Builder, Refusal> {
        let lifetime = lifetime(m);
        if let Some(a) = existing {
            // A retransmitted Allocate gets the same answer; anything else is a mismatch.
            let same = a
                .state
                .lock()
                .map(|s| s.alloc_txid == m.transaction_id)
                .unwrap_or(false);
            if !same {
                return Err((437, "Allocation Mismatch"));
            }
            return Ok(allocate_success(m, &a, from.addr, lifetime));
        }
        match m.get(attr::REQUESTED_TRANSPORT).and_then(|v| v.first()) {
            None => return Err((400, "Bad Request: REQUESTED-TRANSPORT missing")),
            Some(17) => {}
            Some(_) => return Err((442, "Unsupported Transport Protocol")),
        }
        let want_v6 = match m
            .get(attr::REQUESTED_ADDRESS_FAMILY)
            .and_then(|v| v.first())
        {
            None | Some(0x01) => false,
            Some(0x02) => true,
            Some(_) => return Err((440, "Address Family not Supported")),
        };
        let relay_ip = self
            .inner
            .cfg
            .relay_ips
            .iter()
            .copied()
            .find(|ip| ip.is_ipv6() == want_v6)
            .ok_or((440, "Address Family not Supported"))?;
        if lifetime.is_zero() {
            return Err((400, "Bad Request: zero lifetime"));
        }
        {
            let all = self
                .inner
                .allocations
                .lock()
                .map_err(|_| (500, "Server Error"))?;
            if all.len() >= self.inner.cfg.max_allocations {
                return Err((508, "Insufficient Capacity"));
            }
            if all.values().filter(|a| a.user == user).count() >= self.inner.cfg.max_per_user {
                return Err((486, "Allocation Quota Reached"));
            }
        }
        let std_sock = bind_relay(relay_ip, m.get(attr::EVEN_PORT).is_some())
            .ok_or((508, "Insufficient Capacity"))?;
        std_sock
            .set_nonblocking(true)
            .map_err(|_| (508, "Insufficient Capacity"))?;
        let relay =
            Arc::new(UdpSocket::from_std(std_sock).map_err(|_| (508, "Insufficient Capacity"))?);
        let relay_addr = relay
            .local_addr()
            .map_err(|_| (508, "Insufficient Capacity"))?;
        let state = State {
            expires: Instant::now() + lifetime,
            permissions: HashMap::new(),
            channels: HashMap::new(),
            bucket: Bucket {
                rate: self.inner.cfg.bandwidth,
                tokens: self.inner.cfg.bandwidth as f64,
                at: Instant::now(),
            },
            alloc_txid: m.transaction_id,
        };
        let a = Arc::new_cyclic(|weak: &std::sync::Weak<Allocation>| Allocation {
            username: username.to_owned(),
            user,
            relay: relay.clone(),
            relay_addr,
            state: Mutex::new(state),
            task: tokio::spawn(relay_loop(
                weak.clone(),
                relay.clone(),
                reply.clone(),
                self.inner.metrics.clone(),
            )),
        });
        let b = allocate_success(m, &a, from.addr, lifetime);
        if let Ok(mut all) = self.inner.allocations.lock() {
            all.insert(from, a.clone());
            self.inner.metrics.allocations.set(all.len() as i64);
        }
        info!(client = %from.addr, transport = ?from.transport, relay = %relay_addr, user = %a.user, "turn allocation");
        Ok(b)
    }

    fn refresh(
        &self,
        from: Client,
        m: &Message,
        existing: Option<Arc<Allocation>>,
    ) -> Result<Builder, Refusal> {
        let a = existing.ok_or((437, "Allocation Mismatch"))?;
        let lifetime = lifetime(m);
        if lifetime.is_zero() {
            if let Ok(mut all) = self.inner.allocations.lock() {
                all.remove(&from);
                self.inner.metrics.allocations.set(all.len() as i64);
            }
        } else if let Ok(mut st) = a.state.lock() {
            st.expires = Instant::now() + lifetime;
        }
        let mut b = Builder::new(m.method, Class::Success, &m.transaction_id);
        b.add(attr::LIFETIME, &(lifetime.as_secs() as u32).to_be_bytes());
        Ok(b)
    }

    /// The policy first: a refused peer is a 403 in whatever family it is spelled.
    fn check_peer(&self, a: &Allocation, peer: SocketAddr) -> Result<(), Refusal> {
        if let Err(why) = self.inner.cfg.policy.check(peer.ip()) {
            debug!(peer = %peer.ip(), why, "turn peer refused");
            return Err((403, "Forbidden"));
        }
        if peer.is_ipv4() != a.relay_addr.is_ipv4() {
            return Err((443, "Peer Address Family Mismatch"));
        }
        Ok(())
    }

    fn create_permission(
        &self,
        m: &Message,
        existing: Option<Arc<Allocation>>,
    ) -> Result<Builder, Refusal> {
        let a = existing.ok_or((437, "Allocation Mismatch"))?;
        let peers = m
            .xor_addresses(attr::XOR_PEER_ADDRESS)
            .map_err(|_| (400, "Bad Request: XOR-PEER-ADDRESS"))?;
        if peers.is_empty() {
            return Err((400, "Bad Request: XOR-PEER-ADDRESS missing"));
        }
        for p in &peers {
            self.check_peer(&a, *p)?;
        }
        let until = Instant::now() + PERMISSION_LIFETIME;
        let mut st = a.state.lock().map_err(|_| (500, "Server Error"))?;
        for p in peers {
            st.permissions.insert(p.ip(), until);
        }
        Ok(Builder::new(m.method, Class::Success, &m.transaction_id))
    }

    fn channel_bind(
        &self,
        m: &Message,
        existing: Option<Arc<Allocation>>,
    ) -> Result<Builder, Refusal> {
        let a = existing.ok_or((437, "Allocation Mismatch"))?;
        let ch = m
            .get(attr::CHANNEL_NUMBER)
            .and_then(|v| v.get(..2))
            .map(|v| u16::from_be_bytes([v[0], v[1]]))
            .ok_or((400, "Bad Request: CHANNEL-NUMBER missing"))?;
        if !stun::CHANNELS.contains(&ch) {
            return Err((400, "Bad Request: channel number out of range"));
        }
        let peers = m
            .xor_addresses(attr::XOR_PEER_ADDRESS)
            .map_err(|_| (400, "Bad Request: XOR-PEER-ADDRESS"))?;
        let [peer] = peers.as_slice() else {
            return Err((400, "Bad Request: one XOR-PEER-ADDRESS"));
        };
        self.check_peer(&a, *peer)?;
        let now = Instant::now();
        let mut st = a.state.lock().map_err(|_| (500, "Server Error"))?;
        if let Some((bound, t)) = st.channels.get(&ch) {
            if *t > now && bound != peer {
                return Err((400, "Bad Request: channel bound to another peer"));
            }
        }
        if st.channel_of(*peer, now).is_some_and(|c| c != ch) {
            return Err((400, "Bad Request: peer bound to another channel"));
        }
        st.channels.insert(ch, (*peer, now + CHANNEL_LIFETIME));
        st.permissions.insert(peer.ip(), now + PERMISSION_LIFETIME);
        Ok(Builder::new(m.method, Class::Success, &m.transaction_id))
    }
}

/// A relay socket on `ip`; with `even`, on an even port (EVEN-PORT; the next port is not
/// reserved, so RESERVATION-TOKEN is never offered).
fn bind_relay(ip: IpAddr, even: bool) -> Option<std::net::UdpSocket> {
    for _ in 0..32 {
        let s = std::net::UdpSocket::bind((ip, 0)).ok()?;
        if !even || s.local_addr().ok()?.port() % 2 == 0 {
            return Some(s);
        }
    }
    None
}

fn lifetime(m: &Message) -> Duration {
    match m.u32(attr::LIFETIME) {
        Some(0) => Duration::ZERO,
        Some(s) => Duration::from_secs(u64::from(s)).clamp(DEFAULT_LIFETIME, MAX_LIFETIME),
        None => DEFAULT_LIFETIME,
    }
}

fn allocate_success(m: &Message, a: &Allocation, from: SocketAddr, lifetime: Duration) -> Builder {
    let mut b = Builder::new(method::ALLOCATE, Class::Success, &m.transaction_id);
    b.add_xor_address(attr::XOR_RELAYED_ADDRESS, a.relay_addr);
    b.add(attr::LIFETIME, &(lifetime.as_secs() as u32).to_be_bytes());
    b.add_xor_address(attr::XOR_MAPPED_ADDRESS, from);
    b
}

fn error(m: &Message, code: u16, reason: &str, key: &[u8], fp: bool) -> Vec<u8> {
    let mut b = Builder::new(m.method, Class::Error, &m.transaction_id);
    b.add_error(code, reason);
    b.finish(Some(key), fp)
}

/// Ends expired allocations and forgets expired permissions and channels, every second.
async fn sweep(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let now = Instant::now();
        let Ok(mut all) = inner.allocations.lock() else {
            return;
        };
        all.retain(|client, a| {
            let Ok(mut st) = a.state.lock() else {
                return false;
            };
            st.permissions.retain(|_, t| *t > now);
            st.channels.retain(|_, (_, t)| *t > now);
            let alive = st.expires > now;
            if !alive {
                debug!(client = %client.addr, "turn allocation expired");
            }
            alive
        });
        inner.metrics.allocations.set(all.len() as i64);
    }
}
