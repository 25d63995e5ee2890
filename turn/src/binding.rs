//! The STUN/TURN server every edge runs (`perigee server` and `perigee satellite`): its
//! settings, its listeners (UDP, TCP, TLS) and the URLs tickets advertise for it. Binding
//! comes first (a satellite lists its TURN URLs when it registers); serving starts once the
//! control plane has handed over the credential secret.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use relay_core::tls::Identity;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::policy::PeerPolicy;
use crate::{TurnConfig, TurnMetrics, TurnServer};

/// Why TURN could not be set up (a flag, a busy port): the message names the flag to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BindError(String);

impl BindError {
    fn new(m: impl std::fmt::Display) -> Self {
        Self(m.to_string())
    }
}

/// TURN settings shared by the roles that run an edge (flags `--turn-*`).
#[derive(Debug, Clone, Default)]
pub struct TurnSettings {
    /// UDP address, or `off` [default: the edge's IP, port 3478].
    pub udp_address: Option<String>,
    /// TCP address, or `off` [default: the UDP address].
    pub tcp_address: Option<String>,
    /// TLS address (`turns:`) [default: off].
    pub tls_address: Option<String>,
    /// Peer ranges allowed although refused by default (CIDRs).
    pub allow_peers: Vec<String>,
    /// Allocations per user.
    pub user_quota: usize,
    /// Allocations in total.
    pub total_quota: usize,
    /// Bytes per second per allocation (0: no limit).
    pub bandwidth: u64,
}

impl BoundTurn {
    /// The bound listeners: UDP first, then TCP and TLS when on (`true`: TCP).
    pub fn listeners(&self) -> Vec<(bool, SocketAddr)> {
        let mut out: Vec<(bool, SocketAddr)> = self
            .udp
            .local_addr()
            .ok()
            .map(|a| (false, a))
            .into_iter()
            .collect();
        for l in [&self.tcp, &self.tls].into_iter().flatten() {
            out.extend(l.local_addr().ok().map(|a| (true, a)));
        }
        out
    }
}

/// TURN listeners bound but not serving yet (the secret may come later, from the control
/// plane), and the URLs to advertise for them.
pub struct BoundTurn {
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    tls: Option<TcpListener>,
    relay_ip: IpAddr,
    policy: PeerPolicy,
    /// `stun:`, `turn:` and `turns:` URLs, for tickets.
    pub urls: Vec<String>,
}

fn parse_addr(flag: &str, s: &str) -> Result<Option<SocketAddr>, BindError> {
    if s == "off" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|_| BindError(format!("{flag} {s:?} is not HOST:PORT or off")))
}

/// `HOST:PORT` for a URL (IPv6 literals in brackets).
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The address relayed transport addresses are on: the listener's own, else the access
/// host's (resolved), else the edge's bound address. Never a wildcard: peers could not
/// reach it.
async fn relay_ip(
    local: SocketAddr,
    bound: SocketAddr,
    access_host: Option<&str>,
) -> Result<IpAddr, BindError> {
    if !local.ip().is_unspecified() {
        return Ok(local.ip());
    }
    if let Some(h) = access_host {
        if let Ok(ip) = h.parse::<IpAddr>() {
            return Ok(ip);
        }
        if let Ok(mut addrs) = tokio::net::lookup_host((h, 0)).await {
            if let Some(a) = addrs.find(|a| a.is_ipv4()) {
                return Ok(a.ip());
            }
        }
    }
    if bound.ip().is_unspecified() {
        return Err(BindError(format!("TURN listens on {local} but its relay address is unknown: the access URL's host does not resolve to IPv4; give --turn-address a specific IP")));
    }
    Ok(bound.ip())
}

/// Binds UDP, and TCP when asked; TCP on the UDP address means the same port number, which
/// for port 0 is retried until both are free.
async fn bind_udp_tcp(
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
) -> Result<(UdpSocket, Option<TcpListener>), BindError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let udp = UdpSocket::bind(udp_addr).await.map_err(|e| {
            BindError(format!("binding the TURN server on UDP {udp_addr} (choose another with --turn-address HOST:PORT, or --turn-address off): {e}"))
        })?;
        let Some(a) = tcp_addr else {
            return Ok((udp, None));
        };
        let same = a == udp_addr;
        let a = if same {
            udp.local_addr().map_err(BindError::new)?
        } else {
            a
        };
        match TcpListener::bind(a).await {
            Ok(tcp) => return Ok((udp, Some(tcp))),
            Err(_) if same && udp_addr.port() == 0 && attempts < 50 => continue,
            Err(e) => {
                return Err(BindError(format!("binding TURN over TCP on {a} (choose another with --turn-tcp-address HOST:PORT, or off): {e}")))
            }
        }
    }
}

impl TurnSettings {
    /// Checks the flags and binds the listeners (`None` when TURN is off); `bound` is the
    /// edge's own address, `access_host` the host of its URL (advertised when the listeners
    /// bind a wildcard address).
    pub async fn bind(
        &self,
        bound: SocketAddr,
        access_url: &str,
    ) -> Result<Option<BoundTurn>, BindError> {
        let access: Option<http::Uri> = access_url.parse().ok();
        let access_host = access
            .as_ref()
            .and_then(|u| u.host())
            .map(|h| h.trim_matches(['[', ']']));
        let udp_addr = match self.udp_address.as_deref() {
            Some(s) => parse_addr("--turn-address", s)?,
            None => Some(SocketAddr::new(bound.ip(), 3478)),
        };
        let Some(udp_addr) = udp_addr else {
            return Ok(None);
        };
        let tcp_addr = match self.tcp_address.as_deref() {
            Some(s) => parse_addr("--turn-tcp-address", s)?,
            None => Some(udp_addr),
        };
        let tls_addr = match self.tls_address.as_deref() {
            Some(s) => parse_addr("--turn-tls-address", s)?,
            None => None,
        };
        let policy = PeerPolicy::new(
            self.allow_peers
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|e: String| BindError(format!("--turn-allow-peers: {e}")))
                })
                .collect::<Result<_, _>>()?,
        );
        let (udp, tcp) = bind_udp_tcp(udp_addr, tcp_addr).await?;
        let local = udp.local_addr().map_err(BindError::new)?;
        let tls = match tls_addr {
            Some(a) => Some(TcpListener::bind(a).await.map_err(|e| {
                BindError(format!("binding TURN over TLS on {a} (choose another with --turn-tls-address HOST:PORT, or off): {e}"))
            })?),
            None => None,
        };
        let advertise = |l: SocketAddr| match (l.ip().is_unspecified(), access_host) {
            (true, Some(h)) => host_port(h, l.port()),
            _ => l.to_string(),
        };
        let relay_ip = relay_ip(local, bound, access_host).await?;
        let mut urls = vec![
            format!("stun:{}", advertise(local)),
            format!("turn:{}?transport=udp", advertise(local)),
        ];
        if let Some(l) = &tcp {
            urls.push(format!(
                "turn:{}?transport=tcp",
                advertise(l.local_addr().map_err(BindError::new)?)
            ));
        }
        if let Some(l) = &tls {
            urls.push(format!(
                "turns:{}?transport=tcp",
                advertise(l.local_addr().map_err(BindError::new)?)
            ));
        }
        // The edge's own port serves TURN too (found by its first byte): the way out of
        // networks that only let HTTPS through.
        if let (Some(u), Some(h)) = (&access, access_host) {
            let https = u.scheme_str() == Some("https");
            let port = u.port_u16().unwrap_or(if https { 443 } else { 80 });
            let scheme = if https { "turns" } else { "turn" };
            urls.push(format!("{scheme}:{}?transport=tcp", host_port(h, port)));
        }
        Ok(Some(BoundTurn {
            udp,
            tcp,
            tls,
            relay_ip,
            policy,
            urls,
        }))
    }

    /// Serves the bound listeners with credentials made from `secret` until `shutdown`;
    /// prints a readiness line. Returns the server, whose
    /// [`serve_connection`](TurnServer::serve_connection) takes TURN connections found on
    /// the edge's own port.
    pub fn serve(
        &self,
        b: BoundTurn,
        secret: &[u8],
        identity: &Identity,
        registry: &prometheus::Registry,
        shutdown: CancellationToken,
    ) -> Result<TurnServer, BindError> {
        let server = TurnServer::new(
            TurnConfig {
                realm: "perigee".into(),
                secret: secret.to_vec(),
                relay_ips: vec![b.relay_ip],
                policy: b.policy,
                max_allocations: self.total_quota,
                max_per_user: self.user_quota,
                bandwidth: self.bandwidth,
            },
            TurnMetrics::new(registry).map_err(BindError::new)?,
        );
        let addr = |l: std::io::Result<SocketAddr>| l.map_err(BindError::new);
        let mut ready = vec![format!("udp {}", addr(b.udp.local_addr())?)];
        tokio::spawn(
            server
                .clone()
                .serve(b.udp, shutdown.clone().cancelled_owned()),
        );
        if let Some(l) = b.tcp {
            ready.push(format!("tcp {}", addr(l.local_addr())?));
            tokio::spawn(
                server
                    .clone()
                    .serve_tcp(l, None, shutdown.clone().cancelled_owned()),
            );
        }
        if let Some(l) = b.tls {
            ready.push(format!("tls {}", addr(l.local_addr())?));
            let cfg = relay_core::tls::server_config(identity, &[]).map_err(BindError::new)?;
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
            tokio::spawn(server.clone().serve_tcp(
                l,
                Some(acceptor),
                shutdown.clone().cancelled_owned(),
            ));
        }
        println!(
            "perigee turn ready: {} (advertised as {})",
            ready.join(", "),
            b.urls.join(" ")
        );
        Ok(server)
    }
}
