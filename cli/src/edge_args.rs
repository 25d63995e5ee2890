//! Flags of the HTTP listener every edge runs (`perigee server` and `perigee satellite`).

/// The edge's HTTP listener limits.
#[derive(clap::Args, Clone)]
pub(crate) struct HttpArgs {
    /// Seconds a client has to send a request's head before the connection is cut (slow
    /// clients holding connections open); idle keep-alive connections close after it too.
    #[arg(long, env = "PERIGEE_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    http_header_timeout_secs: u64,
}

impl HttpArgs {
    /// The settings these flags give.
    pub(crate) fn settings(&self) -> satellite::HttpSettings {
        satellite::HttpSettings {
            header_timeout: std::time::Duration::from_secs(self.http_header_timeout_secs),
        }
    }
}
