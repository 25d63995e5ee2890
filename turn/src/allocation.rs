//! An allocation's state (permissions, channels, the bandwidth bucket), how a client is
//! reached (UDP or its stream's writer), and the task relaying peers' packets to it.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::server::TurnMetrics;
use crate::stun;

/// A token bucket: bytes per second relayed per allocation (rate 0: no limit).
pub(crate) struct Bucket {
    pub(crate) rate: u64,
    pub(crate) tokens: f64,
    pub(crate) at: Instant,
}

impl Bucket {
    pub(crate) fn take(&mut self, n: usize) -> bool {
        if self.rate == 0 {
            return true;
        }
        let now = Instant::now();
        let rate = self.rate as f64;
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * rate).min(rate);
        self.at = now;
        if self.tokens >= n as f64 {
            self.tokens -= n as f64;
            true
        } else {
            false
        }
    }
}

/// What an allocation holds, behind its lock.
pub(crate) struct State {
    pub(crate) expires: Instant,
    pub(crate) permissions: HashMap<IpAddr, Instant>,
    pub(crate) channels: HashMap<u16, (SocketAddr, Instant)>,
    pub(crate) bucket: Bucket,
    pub(crate) alloc_txid: [u8; 12],
}

impl State {
    pub(crate) fn permitted(&self, ip: IpAddr, now: Instant) -> bool {
        self.permissions.get(&ip).is_some_and(|t| *t > now)
    }

    pub(crate) fn channel_of(&self, peer: SocketAddr, now: Instant) -> Option<u16> {
        self.channels
            .iter()
            .find(|(_, (p, t))| *p == peer && *t > now)
            .map(|(c, _)| *c)
    }
}

/// How a client's messages reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// STUN over UDP.
    Udp,
    /// STUN over TCP.
    Tcp,
    /// STUN over TLS over TCP.
    Tls,
}

/// A client: the transport and address its messages come from (an allocation belongs to
/// that 5-tuple).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Client {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Where answers and relayed data for one client go.
#[derive(Clone)]
pub(crate) enum Reply {
    /// The server's UDP socket, to the client's address.
    Udp(Arc<UdpSocket>, SocketAddr),
    /// The writer of the client's TCP or TLS connection.
    Stream(tokio::sync::mpsc::Sender<Vec<u8>>),
}

impl Reply {
    /// Sends `out`: over UDP from the buffer, which stays for the next packet; to a
    /// stream's writer by handing the buffer over (no copy) and starting a new one.
    async fn send(&self, out: &mut Vec<u8>) -> bool {
        match self {
            Reply::Udp(s, to) => s.send_to(out, *to).await.is_ok(),
            Reply::Stream(tx) => {
                let buf = std::mem::replace(out, Vec::with_capacity(out.capacity()));
                tx.send(buf).await.is_ok()
            }
        }
    }
}

/// One allocation: its relayed socket and the task relaying peers' packets to the client.
pub(crate) struct Allocation {
    pub(crate) username: String,
    pub(crate) user: String,
    pub(crate) relay: Arc<UdpSocket>,
    pub(crate) relay_addr: SocketAddr,
    pub(crate) state: Mutex<State>,
    pub(crate) task: tokio::task::JoinHandle<()>,
}

impl Drop for Allocation {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Peer → client: Data indications, or ChannelData on a bound channel, for permitted peers.
pub(crate) async fn relay_loop(
    alloc: std::sync::Weak<Allocation>,
    relay: Arc<UdpSocket>,
    reply: Reply,
    metrics: TurnMetrics,
) {
    let mut buf = vec![0u8; stun::MAX_MESSAGE_LEN];
    let mut out = Vec::with_capacity(2048);
    // Indications need unique, not secret, transaction ids: a random start and a counter
    // (no system call per packet).
    let mut txid = relay_core::token::random_bytes::<12>();
    let mut counter = u64::from_be_bytes([
        txid[4], txid[5], txid[6], txid[7], txid[8], txid[9], txid[10], txid[11],
    ]);
    loop {
        let Ok((n, peer)) = relay.recv_from(&mut buf).await else {
            continue;
        };
        let Some(a) = alloc.upgrade() else { return };
        let now = Instant::now();
        let channel = {
            let Ok(mut st) = a.state.lock() else { return };
            if !st.permitted(peer.ip(), now) {
                metrics.refuse("no_permission");
                continue;
            }
            if !st.bucket.take(n) {
                metrics.refuse("bandwidth");
                continue;
            }
            st.channel_of(peer, now)
        };
        drop(a);
        out.clear();
        match channel {
            Some(ch) => stun::encode_channel_data(ch, &buf[..n], &mut out),
            None => {
                counter = counter.wrapping_add(1);
                txid[4..].copy_from_slice(&counter.to_be_bytes());
                stun::encode_data_indication(&mut out, &txid, peer, &buf[..n]);
            }
        }
        if reply.send(&mut out).await {
            metrics
                .relayed
                .with_label_values(&["to_client"])
                .inc_by(n as u64);
        }
    }
}
