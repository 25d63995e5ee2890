//! The satellite role (`perigee satellite`): a regional edge registered with the control
//! plane by token.
//!
//! It has no database. At start it registers (receiving ticket keys, mesh keys and the other
//! edges), then heartbeats; it keeps serving tunnels with what it last received while the
//! control plane is away ([`state`]), and picks up rotated keys with the next heartbeat.
//! [`run`] takes bound listeners and a shutdown token, so a test starts a satellite in
//! process on port 0.

mod control_plane;
mod devurls;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use relay_core::mesh::EdgeConfig;
use relay_core::tls::{Identity, LocalCa};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Edge, HttpSettings};
use control_plane::{ControlPlaneAgentAuth, ControlPlaneClient, RegisterError};
use state::SatelliteState;

/// Why the satellite stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum SatelliteError {
    /// The control plane refused the registration (a wrong or revoked token): retrying will
    /// not help.
    #[error("the control plane at {url} refused this satellite: {message}")]
    Refused {
        /// The control plane's URL.
        url: String,
        /// Its answer.
        message: String,
    },
    /// The control plane revoked the satellite while it ran.
    #[error("the control plane revoked this satellite: {0}")]
    Revoked(String),
    /// Setting up (TLS material, listeners, metrics) failed.
    #[error("{0}")]
    Setup(String),
}

impl SatelliteError {
    fn setup(e: impl std::fmt::Display) -> Self {
        Self::Setup(e.to_string())
    }
}

/// Where the satellite's HTTPS certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files (certificate chain, private key).
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
    /// A certificate issued by the local CA kept in `<data_dir>/tls`, naming the access host,
    /// the bound address and the satellite's dev URL wildcard.
    LocalCa,
}

/// Everything `perigee satellite` is configured with.
#[derive(Debug, Clone)]
pub struct SatelliteConfig {
    /// The control plane's URL (no trailing slash).
    pub primary_url: String,
    /// The satellite token.
    pub token: String,
    /// The URL users reach this satellite at (no trailing slash).
    pub access_url: String,
    /// The HTTPS certificate.
    pub tls: TlsSource,
    /// Where the state file and the local CA live (created 0700).
    pub data_dir: PathBuf,
    /// Roots trusted for the control plane and the other edges.
    pub roots: rustls::RootCertStore,
    /// Between heartbeats.
    pub heartbeat: Duration,
    /// TURN's settings (the listeners are bound by the caller, see [`Listeners`]).
    pub turn: turn::binding::TurnSettings,
    /// The HTTP listener's limits.
    pub http: HttpSettings,
}

/// The satellite's bound sockets: TCP for HTTPS, UDP on the same port for mesh links and
/// agents' QUIC, and TURN's (bound first, so the registration lists its URLs).
pub struct Listeners {
    /// HTTPS.
    pub tcp: TcpListener,
    /// QUIC (mesh links, agents).
    pub udp: std::net::UdpSocket,
    /// TURN, unless it is off.
    pub turn: Option<turn::binding::BoundTurn>,
}

/// What a started satellite tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The edge's name, as the control plane knows it.
    pub edge: String,
    /// Its region.
    pub region: String,
    /// The bound HTTPS address.
    pub bound: SocketAddr,
    /// The dev URL wildcard served, if any.
    pub devurl_host: Option<String>,
}

/// Largest edge configuration accepted from the control plane.
const MAX_CONFIG: usize = 4 * 1024 * 1024;

/// Runs the satellite until `shutdown` or until the control plane revokes it. `ready`
/// receives the registration's outcome once tunnels are served.
pub async fn run(
    config: SatelliteConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<Ready>>,
) -> Result<(), SatelliteError> {
    let access: http::Uri = config
        .access_url
        .parse()
        .map_err(|_| SatelliteError::Setup(format!("{:?} is not a URL", config.access_url)))?;
    let tls_on = access.scheme_str() == Some("https");
    let http = perigee_api::http::role_http(config.roots.clone()).map_err(SatelliteError::setup)?;
    let cp = ControlPlaneClient {
        http: http.clone(),
        primary_url: config.primary_url.clone(),
        token: config.token.clone(),
        body: perigee_api::satellites::SatelliteHeartbeat {
            access_url: config.access_url.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            heartbeat_secs: config.heartbeat.as_secs(),
            turn_urls: listeners
                .turn
                .as_ref()
                .map(|t| t.urls.clone())
                .unwrap_or_default(),
            ..Default::default()
        },
    };
    relay_core::create_private_dir(&config.data_dir).map_err(SatelliteError::setup)?;
    let state = Arc::new(SatelliteState::load(
        config.data_dir.join("satellite-state.json"),
    ));

    // Register first: without keys the satellite cannot check a single ticket. When the
    // control plane cannot be reached, start with what the last registration gave.
    let mut backoff =
        relay_core::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(15));
    let mut offline = false;
    let edge_config = loop {
        let attempt = tokio::select! {
            r = cp.call("/api/v2/satellites/register", None, None) => r,
            _ = shutdown.cancelled() => return Ok(()),
        };
        match attempt {
            Ok(c) => break c,
            Err(RegisterError::Refused(message)) => {
                return Err(SatelliteError::Refused {
                    url: config.primary_url,
                    message,
                })
            }
            Err(RegisterError::Unavailable(m)) => {
                if let Some(c) = state.config() {
                    warn!(error = %m, "control plane unreachable: starting with the configuration of the last registration");
                    offline = true;
                    break c;
                }
                let d = backoff.next_delay(relay_core::token::random_u64());
                warn!(error = %m, retry_in = ?d, "cannot register with the control plane yet");
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = shutdown.cancelled() => return Ok(()),
                }
            }
        }
    };
    state.set_config(&edge_config);
    if edge_config.control_plane_version != env!("CARGO_PKG_VERSION") {
        warn!(
            control_plane = %edge_config.control_plane_version,
            satellite = env!("CARGO_PKG_VERSION"),
            "version mismatch with the control plane"
        );
    }
    info!(name = %edge_config.edge, region = %edge_config.region, "registered with the control plane");

    let bound = listeners.tcp.local_addr().map_err(SatelliteError::setup)?;
    let identity = identity(&config, &access, bound, &edge_config, tls_on)?;
    let registry = prometheus::Registry::new();
    let stun = match (listeners.turn, &edge_config.turn_secret) {
        (Some(t), Some(secret)) => Some(crate::listener::stun_handler(
            config
                .turn
                .serve(t, secret.as_bytes(), &identity, &registry, shutdown.clone())
                .map_err(SatelliteError::setup)?,
        )),
        (Some(_), None) => {
            warn!("the control plane sent no TURN secret: not relaying (is it an older version?)");
            None
        }
        (None, _) => None,
    };
    let http_tls = crate::listener::https_config(&identity, tls_on, stun.is_some())
        .map_err(SatelliteError::setup)?;
    let auth = ControlPlaneAgentAuth {
        http: http.clone(),
        primary_url: config.primary_url.clone(),
        token: config.token.clone(),
        state: state.clone(),
    };
    let edge = Edge::new(
        &edge_config.edge,
        relay_core::ticket::Verifier::default(),
        Arc::new(auth),
        registry,
    )
    .map_err(SatelliteError::setup)?;
    edge.configure(&edge_config);
    let endpoint =
        crate::quic::endpoint(listeners.udp, &identity).map_err(SatelliteError::setup)?;
    edge.enable_mesh(endpoint.clone(), config.roots.clone())
        .map_err(SatelliteError::setup)?;
    let forwarder = crate::forward::Forwarder {
        primary_url: config.primary_url.clone(),
        satellite: edge_config.edge.clone(),
        client: http,
    };
    let devurl_host = own_devurl_host(&edge_config).map(str::to_owned);
    if let (Some(wildcard), Some(key)) = (&devurl_host, &edge_config.devurl_cookie_key) {
        edge.enable_devurls(
            wildcard,
            if tls_on { "https" } else { "http" },
            Arc::new(devurls::ControlPlaneDevUrls {
                http: forwarder.client.clone(),
                primary_url: config.primary_url.clone(),
                token: config.token.clone(),
            }),
            key.as_bytes(),
        );
        info!(%wildcard, "serving dev URLs");
    }
    let router = edge.with_devurls(edge.router().merge(forwarder.router()));

    let serving = crate::Serving::start(
        edge.clone(),
        listeners.tcp,
        http_tls,
        router,
        stun,
        endpoint,
        config.http.clone(),
    );
    // Dial the other edges now so the first forwarded tunnel finds the mesh up; then keep
    // redialing what goes down, in the background so a dead edge never delays a heartbeat.
    let failures = edge.dial_mesh().await;
    for (peer, e) in &failures {
        warn!(%peer, error = %e, "mesh link not up yet");
    }
    let mesh_problem = Arc::new(std::sync::Mutex::new(primary_problem(&failures)));
    let redial = tokio::spawn(redial_mesh(
        edge.clone(),
        mesh_problem.clone(),
        config.heartbeat,
    ));
    if let Some(tx) = ready {
        let _ = tx.send(Ready {
            edge: edge_config.edge.clone(),
            region: edge_config.region.clone(),
            bound,
            devurl_host,
        });
    }
    let beat = heartbeat_loop(
        cp,
        edge.clone(),
        Beat {
            problem: mesh_problem,
            state,
            every: config.heartbeat,
            offline,
        },
    );
    let result = tokio::select! {
        r = beat => r,
        _ = shutdown.cancelled() => Ok(()),
    };
    redial.abort();
    serving.stop().await;
    result
}

/// The HTTPS identity: the given files, else one from the local CA naming every host the
/// satellite is reached at.
fn identity(
    config: &SatelliteConfig,
    access: &http::Uri,
    bound: SocketAddr,
    edge_config: &EdgeConfig,
    tls_on: bool,
) -> Result<Identity, SatelliteError> {
    match &config.tls {
        TlsSource::Files { cert, key } => {
            Identity::from_pem_files(cert, key).map_err(SatelliteError::setup)
        }
        TlsSource::LocalCa => {
            let ca = LocalCa::load_or_create(&config.data_dir.join("tls"))
                .map_err(SatelliteError::setup)?;
            let mut names = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                bound.ip().to_string(),
            ];
            names.extend(access.host().map(|h| h.trim_matches(['[', ']']).to_owned()));
            // Its dev URL wildcard, as the control plane has it.
            names.extend(own_devurl_host(edge_config).map(str::to_owned));
            names.dedup();
            if tls_on {
                info!(ca = %ca.cert_path.display(), "no --tls-cert: serving a certificate from the local CA (clients trust it with PERIGEE_CA_CERT)");
            }
            ca.issue(&names).map_err(SatelliteError::setup)
        }
    }
}

/// This satellite's dev URL wildcard host (`perigee satellites create --devurl-host`).
fn own_devurl_host(config: &EdgeConfig) -> Option<&str> {
    config
        .edges
        .iter()
        .find(|e| e.name == config.edge)
        .and_then(|e| e.devurl_host.as_deref())
}

type Problem = Arc<std::sync::Mutex<Option<String>>>;

/// The problem worth reporting: the mesh link to the primary edge (where most agents live)
/// is down. A dead *satellite* is reported by its own missing heartbeats, not by every other
/// satellite failing to reach it.
fn primary_problem(failures: &[(String, String)]) -> Option<String> {
    failures
        .iter()
        .find(|(p, _)| p == relay_core::mesh::PRIMARY_EDGE)
        .map(|(p, e)| format!("mesh link to {p}: {e}"))
}

/// Redials mesh links that went down, every `every`.
async fn redial_mesh(edge: Edge, problem: Problem, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let failures = edge.dial_mesh().await;
        for (peer, e) in &failures {
            tracing::debug!(%peer, error = %e, "mesh link down");
        }
        let p = primary_problem(&failures);
        match problem.lock() {
            Ok(mut g) => *g = p,
            Err(poisoned) => *poisoned.into_inner() = p,
        }
    }
}

/// What the heartbeat loop works with.
struct Beat {
    problem: Problem,
    state: Arc<SatelliteState>,
    every: Duration,
    /// Started without reaching the control plane.
    offline: bool,
}

/// Heartbeats until the control plane revokes the satellite (an error).
async fn heartbeat_loop(cp: ControlPlaneClient, edge: Edge, b: Beat) -> Result<(), SatelliteError> {
    let mut down_since = b.offline.then(std::time::Instant::now);
    loop {
        tokio::time::sleep(b.every).await;
        let error = match b.problem.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        };
        // After an outage, register again (same call, but logged as such by the control plane).
        let path = if down_since.is_some() {
            "/api/v2/satellites/register"
        } else {
            "/api/v2/satellites/heartbeat"
        };
        match cp.call(path, Some(&edge), error).await {
            Ok(cfg) => {
                if let Some(t) = down_since.take() {
                    info!(after = ?t.elapsed(), "control plane is back; registered again");
                }
                edge.configure(&cfg);
                b.state.set_config(&cfg);
            }
            Err(RegisterError::Refused(m)) => return Err(SatelliteError::Revoked(m)),
            Err(RegisterError::Unavailable(m)) => {
                if down_since.is_none() {
                    warn!(error = %m, "control plane unreachable; serving tunnels with the keys received last");
                    down_since = Some(std::time::Instant::now());
                }
            }
        }
    }
}
