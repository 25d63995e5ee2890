//! The flags of the STUN/TURN server every edge runs (`perigee server` and
//! `perigee satellite`); binding and serving are `turn::binding`.

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

impl TurnArgs {
    /// The settings these flags give.
    pub(crate) fn settings(&self) -> turn::binding::TurnSettings {
        turn::binding::TurnSettings {
            udp_address: self.turn_address.clone(),
            tcp_address: self.turn_tcp_address.clone(),
            tls_address: self.turn_tls_address.clone(),
            allow_peers: self.turn_allow_peers.clone(),
            user_quota: self.turn_user_quota,
            total_quota: self.turn_total_quota,
            bandwidth: self.turn_bandwidth,
        }
    }
}
