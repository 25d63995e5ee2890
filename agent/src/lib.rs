//! The workspace agent: dials its home edge, keeps one link, and connects each stream the edge
//! opens to `127.0.0.1:PORT` inside the workspace.
//!
//! The link is QUIC when UDP answers within [`AgentConfig::quic_timeout`], else HTTP/2 over an
//! upgraded TLS/TCP connection (see `satellite::h2link`). A lost link is redialled with
//! exponential backoff and jitter.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay_core::backoff::Backoff;
use relay_core::token::Secret;
use tracing::{info, warn};

mod e2e;
mod h2;
mod hop;
mod port;
mod quic;
pub mod role;
mod rtc;
mod serve;

/// How to reach the home edge.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The edge's URL (`https://host:port` or `http://host:port`).
    pub url: String,
    /// This workspace's agent token.
    pub token: Secret,
    /// Extra CA certificate to trust (a self-signed deployment's `ca.pem`).
    pub ca_cert: Option<PathBuf>,
    /// How long to wait for QUIC before falling back to HTTP/2.
    pub quic_timeout: Duration,
    /// Which transport the link uses.
    pub link: LinkChoice,
    /// While on the HTTP/2 fallback, how often to check whether QUIC answers again.
    pub quic_retry: Duration,
    /// The agent's own SSH server on loopback: streams for port 22 go there.
    pub ssh_port: Option<u16>,
    /// The inner-session identity for end-to-end streams (refused without one).
    pub e2e: Option<Arc<rustls::ServerConfig>>,
}

/// The agent link's transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkChoice {
    /// HTTP/2 over TLS/TCP when the edge is near (TCP connect under [`NEAR_RTT`]: same host,
    /// same cluster), else QUIC with HTTP/2 as the fallback.
    Auto,
    /// QUIC, HTTP/2 only when UDP does not answer.
    Quic,
    /// HTTP/2 over TLS/TCP only.
    H2,
}

/// Below this TCP connect time the edge counts as near: nothing is lost on such a path, so
/// QUIC's loss recovery buys nothing and the kernel's TCP costs less CPU per byte than a
/// userspace QUIC stack (HTTP/2 link 346 MB/s vs QUIC 201 MB/s on loopback, BENCHMARKS.md).
pub const NEAR_RTT: Duration = Duration::from_millis(2);

/// The shortest of two TCP connects to `addr` (each closed at once), or `None` if one fails.
async fn tcp_rtt(addr: SocketAddr) -> Option<Duration> {
    let mut best: Option<Duration> = None;
    for _ in 0..2 {
        let t = Instant::now();
        let s = tokio::time::timeout(NEAR_RTT * 50, tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
        let took = t.elapsed();
        drop(s);
        best = Some(best.map_or(took, |b| b.min(took)));
    }
    best
}

/// What went wrong while dialling or running a link.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The URL could not be used.
    #[error("invalid edge URL {0:?}: {1}")]
    Url(String, String),
    /// The edge refused the token.
    #[error("the edge refused this agent's token: {0}")]
    Unauthorized(String),
    /// Any other failure (network, TLS, protocol).
    #[error("{0}")]
    Other(String),
    /// The edge refused the token [`relay_core::link::REFUSALS_UNTIL_GONE`] times in a
    /// row: the workspace was deleted (or its token revoked). The agent should end.
    #[error("the workspace is gone: the edge refused this agent's token {1} times in a row ({0})")]
    WorkspaceGone(String, u32),
}

pub(crate) struct Target {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) tls: bool,
    pub(crate) addr: SocketAddr,
}

impl Target {
    async fn resolve(url: &str) -> Result<Self, LinkError> {
        let bad = |m: &str| LinkError::Url(url.to_owned(), m.to_owned());
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(bad("scheme must be http or https")),
        };
        let host = uri
            .host()
            .ok_or_else(|| bad("no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let addr = tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|e| bad(&e.to_string()))?
            .next()
            .ok_or_else(|| bad("host has no address"))?;
        Ok(Self {
            host,
            port,
            tls,
            addr,
        })
    }
}

/// Runs the agent until `shutdown` resolves.
pub async fn run(cfg: AgentConfig, shutdown: impl Future<Output = ()>) -> Result<(), LinkError> {
    let roots = relay_core::tls::roots(cfg.ca_cert.as_deref())
        .map_err(|e| LinkError::Other(e.to_string()))?;
    let roots = Arc::new(roots);
    let streams = Arc::new(
        serve::Streams::new(cfg.ssh_port, cfg.e2e.clone())
            .await
            .map_err(|e| LinkError::Other(format!("end-to-end terminator: {e}")))?,
    );
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    let mut refusals = 0u32;
    tokio::pin!(shutdown);
    loop {
        let started = Instant::now();
        let attempt = async {
            let target = Target::resolve(&cfg.url).await?;
            let h2_only = match cfg.link {
                LinkChoice::H2 => true,
                LinkChoice::Quic => false,
                LinkChoice::Auto => match tcp_rtt(target.addr).await {
                    Some(rtt) if rtt < NEAR_RTT => {
                        info!(edge = %target.addr, rtt_us = rtt.as_micros() as u64, "the edge is near: HTTP/2 link over TCP");
                        true
                    }
                    _ => false,
                },
            };
            if !h2_only {
                match tokio::time::timeout(
                    cfg.quic_timeout,
                    quic::connect(&target, &roots, &cfg.token),
                )
                .await
                {
                    Ok(Ok(conn)) => {
                        info!(edge = %target.addr, transport = "quic", "agent link up");
                        return quic::serve(conn, streams.clone()).await;
                    }
                    Ok(Err(LinkError::Unauthorized(m))) => return Err(LinkError::Unauthorized(m)),
                    Ok(Err(e)) => warn!(error = %e, "QUIC link failed; trying HTTP/2 over TCP"),
                    Err(_) => {
                        warn!(timeout = ?cfg.quic_timeout, "QUIC did not answer; trying HTTP/2 over TCP")
                    }
                }
            }
            let conn = h2::connect(&target, &roots, &cfg.token).await?;
            info!(edge = %target.addr, transport = "h2", "agent link up");
            let active = Arc::new(std::sync::atomic::AtomicUsize::new(0));
            if h2_only {
                return h2::serve(conn, active, streams.clone()).await;
            }
            // Serve over HTTP/2 while probing QUIC; once UDP answers and no tunnel is open on
            // this link, end it so the loop reconnects over QUIC. Open tunnels are never cut.
            tokio::select! {
                r = h2::serve(conn, active.clone(), streams.clone()) => r,
                () = quic::wait_until_usable(&target, &roots, cfg.quic_retry, cfg.quic_timeout, &active) => {
                    info!("UDP answers again; moving the agent link back to QUIC");
                    Ok(())
                }
            }
        };
        let result = tokio::select! {
            r = attempt => r,
            _ = &mut shutdown => return Ok(()),
        };
        if started.elapsed() > Duration::from_secs(10) {
            backoff.reset();
        }
        let delay = match &result {
            Err(LinkError::Unauthorized(m)) => {
                refusals += 1;
                if refusals >= relay_core::link::REFUSALS_UNTIL_GONE {
                    return Err(LinkError::WorkspaceGone(m.clone(), refusals));
                }
                Duration::from_secs(10)
            }
            _ => {
                refusals = 0;
                backoff.next_delay(relay_core::token::random_u64())
            }
        };
        match result {
            Ok(()) => info!(retry_in = ?delay, "agent link closed"),
            Err(e) => warn!(error = %e, retry_in = ?delay, "agent link failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut shutdown => return Ok(()),
        }
    }
}
