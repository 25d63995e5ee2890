//! Local candidates: one UDP socket per usable interface address, server-reflexive addresses
//! from STUN Binding requests, and the relayed address from the TURN client.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::UdpSocket;

use relay_core::rtc::signal::IceServer;

/// A STUN or TURN server from an ICE server entry.
#[derive(Debug, Clone)]
pub(crate) struct Server {
    pub(crate) addr: SocketAddr,
    pub(crate) turn: bool,
    pub(crate) username: String,
    pub(crate) password: String,
}

/// Parses `stun:HOST:PORT` and `turn:HOST:PORT[?transport=udp]` URLs (IP literals or names
/// resolved now). TCP and TLS transports are skipped: the driver speaks TURN over UDP.
pub(crate) async fn servers(list: &[IceServer]) -> Vec<Server> {
    let mut out = Vec::new();
    for s in list {
        for url in &s.urls {
            let (turn, rest) = if let Some(r) = url.strip_prefix("turn:") {
                (true, r)
            } else if let Some(r) = url.strip_prefix("stun:") {
                (false, r)
            } else {
                continue;
            };
            let (hostport, query) = rest.split_once('?').unwrap_or((rest, ""));
            if query.contains("transport=") && !query.contains("transport=udp") {
                continue;
            }
            let hostport = if hostport
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                hostport.to_owned()
            } else {
                format!("{hostport}:3478")
            };
            let Ok(mut addrs) = tokio::net::lookup_host(hostport.as_str()).await else {
                continue;
            };
            if let Some(addr) = addrs.find(SocketAddr::is_ipv4) {
                out.push(Server {
                    addr,
                    turn,
                    username: s.username.clone(),
                    password: s.credential.clone(),
                });
            }
        }
    }
    out
}

/// Binds one UDP socket on each IPv4 interface address (loopback included, so two peers on
/// one host connect over it). Link-local addresses are skipped.
pub(crate) async fn host_sockets() -> std::io::Result<Vec<Arc<UdpSocket>>> {
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()?
        .into_iter()
        .map(|i| i.ip())
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_unspecified(),
            IpAddr::V6(_) => false,
        })
        .collect();
    ips.sort();
    ips.dedup();
    let mut out = Vec::new();
    for ip in ips {
        if let Ok(s) = bind(SocketAddr::new(ip, 0)) {
            out.push(Arc::new(s));
        }
    }
    if out.is_empty() {
        return Err(std::io::Error::other("no usable IPv4 interface address"));
    }
    Ok(out)
}

/// A UDP socket with large buffers: data channels burst far more than a kernel default holds.
pub(crate) fn bind(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )?;
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    UdpSocket::from_std(s.into())
}
