//! The STUN/TURN server every edge runs (`perigee server` and `perigee satellite`): its
//! flags, its listeners (UDP, TCP, TLS) and the URLs tickets advertise for it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::Context as _;
use relay_core::tls::Identity;
use tokio::net::{TcpListener, UdpSocket};

/// TURN flags shared by the roles that run an edge.
#[derive(clap::Args, Clone)]
pub(crate) struct TurnArgs {
    /// UDP address of this edge's STUN/TURN server (Networking v2 relays through it), or
    /// `off` [default: the --address IP, port 3478].
    #[arg(long, env = "PERIGEE_TURN_ADDRESS")]
    turn_address: Option<String>,
    /// TCP address for TURN over TCP (clients whose network blocks UDP), or `off`
    /// [default: the UDP address's IP and port].
    #[arg(long, env = "PERIGEE_TURN_TCP_ADDRESS")]
    turn_tcp_address: Option<String>,
    /// TCP address for TURN over TLS (`turns:`) with this edge's certificate, e.g.
    /// 0.0.0.0:5349, or 0.0.0.0:443 on a host where the edge does not own 443 [default: off].
    #[arg(long, env = "PERIGEE_TURN_TLS_ADDRESS")]
    turn_tls_address: Option<String>,
    /// Peer ranges TURN may relay to although they are refused by default (loopback, private,
    /// link-local, metadata …), comma-separated CIDRs. Only for networks you mean to expose.
    #[arg(long, env = "PERIGEE_TURN_ALLOW_PEERS", value_delimiter = ',')]
    turn_allow_peers: Vec<String>,
    /// TURN allocations per user.
    #[arg(long, env = "PERIGEE_TURN_USER_QUOTA", default_value_t = 10)]
    turn_user_quota: usize,
    /// TURN allocations in total.
    #[arg(long, env = "PERIGEE_TURN_TOTAL_QUOTA", default_value_t = 2000)]
    turn_total_quota: usize,
    /// Bytes per second each TURN allocation may relay (0: no limit).
    #[arg(long, env = "PERIGEE_TURN_BANDWIDTH", default_value_t = 0)]
    turn_bandwidth: u64,
}

impl BoundTurn {
    /// The bound listeners: UDP first, then TCP and TLS when on (`true`: TCP).
    pub(crate) fn listeners(&self) -> Vec<(bool, SocketAddr)> {
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
pub(crate) struct BoundTurn {
    udp: UdpSocket,
    tcp: Option<TcpListener>,
    tls: Option<TcpListener>,
    relay_ip: IpAddr,
    policy: turn::policy::PeerPolicy,
    /// `stun:`, `turn:` and `turns:` URLs, for tickets.
    pub urls: Vec<String>,
}

fn parse_addr(flag: &str, s: &str) -> anyhow::Result<Option<SocketAddr>> {
    if s == "off" {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .with_context(|| format!("{flag} {s:?} is not HOST:PORT or off"))
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
) -> anyhow::Result<IpAddr> {
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
    anyhow::ensure!(
        !bound.ip().is_unspecified(),
        "TURN listens on {local} but its relay address is unknown: the access URL's host does not resolve to IPv4; give --turn-address a specific IP"
    );
    Ok(bound.ip())
}

/// Binds UDP, and TCP when asked; TCP on the UDP address means the same port number, which
/// for port 0 is retried until both are free.
async fn bind_udp_tcp(
    udp_addr: SocketAddr,
    tcp_addr: Option<SocketAddr>,
) -> anyhow::Result<(UdpSocket, Option<TcpListener>)> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let udp = UdpSocket::bind(udp_addr).await.with_context(|| {
            format!("binding the TURN server on UDP {udp_addr} (choose another with --turn-address HOST:PORT, or --turn-address off)")
        })?;
        let Some(a) = tcp_addr else {
            return Ok((udp, None));
        };
        let same = a == udp_addr;
        let a = if same { udp.local_addr()? } else { a };
        match TcpListener::bind(a).await {
            Ok(tcp) => return Ok((udp, Some(tcp))),
            Err(_) if same && udp_addr.port() == 0 && attempts < 50 => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("binding TURN over TCP on {a} (choose another with --turn-tcp-address HOST:PORT, or off)")
                })
            }
        }
    }
}

impl TurnArgs {
    /// Checks the flags and binds the listeners (`None` when TURN is off); `bound` is the
    /// edge's own address, `access_host` the host of its URL (advertised when the listeners
    /// bind a wildcard address).
    pub(crate) async fn bind(
        &self,
        bound: SocketAddr,
        access_url: &str,
    ) -> anyhow::Result<Option<BoundTurn>> {
        let access: Option<http::Uri> = access_url.parse().ok();
        let access_host = access
            .as_ref()
            .and_then(|u| u.host())
            .map(|h| h.trim_matches(['[', ']']));
        let udp_addr = match self.turn_address.as_deref() {
            Some(s) => parse_addr("--turn-address", s)?,
            None => Some(SocketAddr::new(bound.ip(), 3478)),
        };
        let Some(udp_addr) = udp_addr else {
            return Ok(None);
        };
        let tcp_addr = match self.turn_tcp_address.as_deref() {
            Some(s) => parse_addr("--turn-tcp-address", s)?,
            None => Some(udp_addr),
        };
        let tls_addr = match self.turn_tls_address.as_deref() {
            Some(s) => parse_addr("--turn-tls-address", s)?,
            None => None,
        };
        let policy = turn::policy::PeerPolicy::new(
            self.turn_allow_peers
                .iter()
                .filter(|s| !s.trim().is_empty())
                .map(|s| {
                    s.trim()
                        .parse()
                        .map_err(|e: String| anyhow::anyhow!("--turn-allow-peers: {e}"))
                })
                .collect::<anyhow::Result<_>>()?,
        );
        let (udp, tcp) = bind_udp_tcp(udp_addr, tcp_addr).await?;
        let local = udp.local_addr()?;
        let tls = match tls_addr {
            Some(a) => Some(TcpListener::bind(a).await.with_context(|| {
                format!("binding TURN over TLS on {a} (choose another with --turn-tls-address HOST:PORT, or off)")
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
            urls.push(format!("turn:{}?transport=tcp", advertise(l.local_addr()?)));
        }
        if let Some(l) = &tls {
            urls.push(format!(
                "turns:{}?transport=tcp",
                advertise(l.local_addr()?)
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

    /// Serves the bound listeners with credentials made from `secret` until the process
    /// shuts down; prints a readiness line. Returns the handler for STUN connections on the
    /// edge's own port.
    pub(crate) fn serve(
        &self,
        b: BoundTurn,
        secret: &[u8],
        identity: &Identity,
        registry: &prometheus::Registry,
    ) -> anyhow::Result<satellite::StunHandler> {
        let server = turn::TurnServer::new(
            turn::TurnConfig {
                realm: "perigee".into(),
                secret: secret.to_vec(),
                relay_ips: vec![b.relay_ip],
                policy: b.policy,
                max_allocations: self.turn_total_quota,
                max_per_user: self.turn_user_quota,
                bandwidth: self.turn_bandwidth,
            },
            turn::TurnMetrics::new(registry)?,
        );
        let mut ready = vec![format!("udp {}", b.udp.local_addr()?)];
        tokio::spawn(
            server
                .clone()
                .serve(b.udp, crate::server::shutdown_signal()),
        );
        if let Some(l) = b.tcp {
            ready.push(format!("tcp {}", l.local_addr()?));
            tokio::spawn(
                server
                    .clone()
                    .serve_tcp(l, None, crate::server::shutdown_signal()),
            );
        }
        if let Some(l) = b.tls {
            ready.push(format!("tls {}", l.local_addr()?));
            let cfg = relay_core::tls::server_config(identity, &[])?;
            let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
            tokio::spawn(server.clone().serve_tcp(
                l,
                Some(acceptor),
                crate::server::shutdown_signal(),
            ));
        }
        println!(
            "perigee turn ready: {} (advertised as {})",
            ready.join(", "),
            b.urls.join(" ")
        );
        Ok(Arc::new(move |io, addr, tls| {
            Box::pin(server.clone().serve_connection(io, addr, tls))
        }))
    }
}
