//! `perigee satellite`: a regional edge registered with the control plane by token.
//!
//! It has no database. At start it registers (receiving ticket keys, mesh keys and the other
//! edges), then heartbeats; it keeps serving tunnels with what it last received while the
//! control plane is away, and picks up rotated keys with the next heartbeat.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use relay_core::mesh::EdgeConfig;
use relay_core::tls::{Identity, LocalCa};
use satellite::{AgentAuthenticator, AgentIdentity, AuthError, AuthFuture, Edge};

use crate::satellite_state::SatelliteState;
use serde_json::json;
use tracing::{info, warn};

/// Arguments of `perigee satellite`.
#[derive(clap::Args)]
pub(crate) struct SatelliteArgs {
    /// The control plane's URL.
    #[arg(long, env = "PERIGEE_PRIMARY_URL")]
    primary_url: String,
    /// The satellite token printed by `perigee satellites create`.
    #[arg(long, env = "PERIGEE_SATELLITE_TOKEN", hide_env_values = true)]
    token: String,
    /// TCP address for HTTPS (tunnels, the forwarded API); the same UDP port carries mesh
    /// links. Port 0 picks a free port (printed when ready).
    #[arg(long, env = "PERIGEE_ADDRESS", default_value = "0.0.0.0:443")]
    address: String,
    /// The URL users reach this satellite at (as given to `perigee satellites create`).
    #[arg(long, env = "PERIGEE_ACCESS_URL")]
    access_url: String,
    /// PEM certificate chain for HTTPS [default: a certificate from a local CA kept in
    /// <data-dir>/tls].
    #[arg(long, env = "PERIGEE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, env = "PERIGEE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Where the local CA lives when no certificate is given
    /// [default: $XDG_DATA_HOME/perigee-satellite].
    #[arg(long, env = "PERIGEE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// CA certificate to trust for the control plane and other edges (self-signed
    /// deployments).
    #[arg(long, env = "PERIGEE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Seconds between heartbeats to the control plane.
    #[arg(long, env = "PERIGEE_HEARTBEAT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_secs: u64,
    #[command(flatten)]
    turn: crate::turn_cmd::TurnArgs,
}

/// Agents may home on a satellite: their tokens are checked by the control plane, and the
/// answer is remembered so an agent can reconnect while the control plane is away.
struct ControlPlaneAgentAuth {
    http: reqwest::Client,
    primary_url: String,
    token: String,
    state: Arc<SatelliteState>,
}

impl ControlPlaneAgentAuth {
    async fn ask(&self, token: &str) -> Result<AgentIdentity, AuthError> {
        let resp = self
            .http
            .post(format!("{}/api/v2/satellites/agent-auth", self.primary_url))
            .bearer_auth(&self.token)
            .json(&json!({ "token": token }))
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
        let status = resp.status();
        if status == http::StatusCode::UNAUTHORIZED {
            return Err(AuthError::Rejected);
        }
        let v: serde_json::Value = crate::client::json_limited(resp, 64 * 1024)
            .await
            .map_err(|e| AuthError::Unavailable(format!("{e:#}")))?;
        if !status.is_success() {
            return Err(AuthError::Unavailable(format!(
                "control plane answered HTTP {}",
                status.as_u16()
            )));
        }
        match (v["workspace_id"].as_str(), v["workspace_name"].as_str()) {
            (Some(id), Some(name)) => Ok(AgentIdentity {
                workspace_id: id.to_owned(),
                workspace_name: name.to_owned(),
            }),
            _ => Err(AuthError::Unavailable("unexpected answer".into())),
        }
    }
}

impl AgentAuthenticator for ControlPlaneAgentAuth {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(async move {
            let key = relay_core::token::hash(token);
            match self.ask(token).await {
                Ok(id) => {
                    self.state.set_agent(&key, Some(&id));
                    Ok(id)
                }
                Err(AuthError::Rejected) => {
                    self.state.set_agent(&key, None);
                    Err(AuthError::Rejected)
                }
                Err(AuthError::Unavailable(e)) => match self.state.agent(&key) {
                    Some(id) => {
                        warn!(error = %e, workspace = %id.workspace_name, "control plane unreachable: accepting an agent it accepted before");
                        Ok(id)
                    }
                    None => Err(AuthError::Unavailable(e)),
                },
            }
        })
    }
}

/// How a registration attempt failed.
enum RegisterError {
    /// The control plane refused: retrying will not help.
    Refused(String),
    /// It could not be reached or failed: retry.
    Unavailable(String),
}

struct ControlPlaneClient {
    http: reqwest::Client,
    primary_url: String,
    token: String,
    body: serde_json::Value,
}

impl ControlPlaneClient {
    async fn call(
        &self,
        path: &str,
        edge: Option<&Edge>,
        error: Option<String>,
    ) -> Result<EdgeConfig, RegisterError> {
        let mut body = self.body.clone();
        if let Some(edge) = edge {
            body["mesh_rtt_ms"] = json!(edge.mesh_rtts_ms());
            let agents: Vec<serde_json::Value> = edge
                .agents()
                .into_iter()
                .map(|(ws, info)| {
                    json!({
                        "workspace_id": ws,
                        "transport": info.transport.as_str(),
                        "uptime_secs": info.uptime.as_secs(),
                    })
                })
                .collect();
            body["agents"] = json!(agents);
        }
        body["error"] = json!(error);
        let resp = self
            .http
            .post(format!("{}{path}", self.primary_url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(|e| RegisterError::Unavailable(format!("{e:#}")))?;
        let status = resp.status();
        let bytes = crate::client::read_limited(resp, MAX_CONFIG)
            .await
            .map_err(|e| RegisterError::Unavailable(format!("{e:#}")))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| {
                RegisterError::Unavailable(format!("unexpected answer from the control plane: {e}"))
            });
        }
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        let message = format!("{message} (HTTP {})", status.as_u16());
        if status.is_client_error() {
            Err(RegisterError::Refused(message))
        } else {
            Err(RegisterError::Unavailable(message))
        }
    }
}

/// Largest edge configuration accepted from the control plane.
const MAX_CONFIG: usize = 4 * 1024 * 1024;

fn check_url(flag: &str, url: &str) -> anyhow::Result<http::Uri> {
    let uri: http::Uri = url
        .parse()
        .with_context(|| format!("{flag} {url:?} is not a URL"))?;
    anyhow::ensure!(
        matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some(),
        "{flag} {url:?} must be http(s)://HOST[:PORT]"
    );
    Ok(uri)
}

pub(crate) async fn run(a: SatelliteArgs) -> anyhow::Result<()> {
    let primary_url = a.primary_url.trim_end_matches('/').to_owned();
    let access_url = a.access_url.trim_end_matches('/').to_owned();
    check_url("--primary-url", &primary_url)?;
    let access = check_url("--access-url", &access_url)?;
    let requested: SocketAddr = a.address.parse().with_context(|| {
        format!(
            "--address {:?} is not HOST:PORT (e.g. 0.0.0.0:443)",
            a.address
        )
    })?;
    let tls_on = access.scheme_str() == Some("https");
    let roots = relay_core::tls::roots(a.ca_cert.as_deref()).context("loading --ca-cert")?;
    let http = crate::client::role_http(roots.clone())?;
    // TURN binds first so that the registration already lists its URLs; it serves once the
    // control plane has handed over the credential secret.
    let turn = a.turn.bind(requested, &access_url).await?;
    let cp = ControlPlaneClient {
        http: http.clone(),
        primary_url: primary_url.clone(),
        token: a.token.trim().to_owned(),
        body: json!({
            "access_url": access_url,
            "version": env!("CARGO_PKG_VERSION"),
            "heartbeat_secs": a.heartbeat_secs,
            "turn_urls": turn.as_ref().map(|t| t.urls.clone()).unwrap_or_default(),
        }),
    };

    let data_dir = match &a.data_dir {
        Some(d) => d.clone(),
        None => crate::server::default_data_dir()?.with_file_name("perigee-satellite"),
    };
    crate::server::create_private_dir(&data_dir)?;
    let state = Arc::new(SatelliteState::load(data_dir.join("satellite-state.json")));

    // Register first: without keys the satellite cannot check a single ticket. When the
    // control plane cannot be reached, start with what the last registration gave.
    let mut backoff =
        relay_core::backoff::Backoff::new(Duration::from_millis(500), Duration::from_secs(15));
    let mut offline = false;
    let config = loop {
        match cp.call("/api/v2/satellites/register", None, None).await {
            Ok(c) => break c,
            Err(RegisterError::Refused(m)) => {
                anyhow::bail!("the control plane at {primary_url} refused this satellite: {m}")
            }
            Err(RegisterError::Unavailable(m)) => {
                if let Some(c) = state.config() {
                    warn!(error = %m, "control plane unreachable: starting with the configuration of the last registration");
                    offline = true;
                    break c;
                }
                let d = backoff.next_delay(relay_core::token::random_u64());
                warn!(error = %m, retry_in = ?d, "cannot register with the control plane yet");
                tokio::time::sleep(d).await;
            }
        }
    };
    state.set_config(&config);
    if config.control_plane_version != env!("CARGO_PKG_VERSION") {
        warn!(
            control_plane = %config.control_plane_version,
            satellite = env!("CARGO_PKG_VERSION"),
            "version mismatch with the control plane"
        );
    }
    info!(name = %config.edge, region = %config.region, "registered with the control plane");

    let (tcp, udp) = crate::server::bind_pair(requested).await?;
    let bound = tcp.local_addr()?;
    let identity = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Identity::from_pem_files(c, k)?,
        _ => {
            let ca = LocalCa::load_or_create(&data_dir.join("tls"))?;
            let mut names = vec![
                "localhost".to_owned(),
                "127.0.0.1".to_owned(),
                bound.ip().to_string(),
            ];
            names.extend(access.host().map(|h| h.trim_matches(['[', ']']).to_owned()));
            // Its dev URL wildcard, as the control plane has it.
            names.extend(own_devurl_host(&config).map(str::to_owned));
            names.dedup();
            if tls_on {
                info!(ca = %ca.cert_path.display(), "no --tls-cert: serving a certificate from the local CA (clients trust it with PERIGEE_CA_CERT)");
            }
            ca.issue(&names)?
        }
    };
    let registry = prometheus::Registry::new();
    let stun = match (turn, &config.turn_secret) {
        (Some(t), Some(secret)) => {
            Some(a.turn.serve(t, secret.as_bytes(), &identity, &registry)?)
        }
        (Some(_), None) => {
            warn!("the control plane sent no TURN secret: not relaying (is it an older version?)");
            None
        }
        (None, _) => None,
    };
    let http_tls = crate::server::https_config(&identity, tls_on, stun.is_some())?;
    let auth = ControlPlaneAgentAuth {
        http: http.clone(),
        primary_url: primary_url.clone(),
        token: a.token.trim().to_owned(),
        state: state.clone(),
    };
    let edge = Edge::new(
        &config.edge,
        relay_core::ticket::Verifier::default(),
        Arc::new(auth),
        registry,
    )?;
    edge.configure(&config);
    let endpoint = satellite::quic::endpoint(udp, &identity)?;
    edge.enable_mesh(endpoint.clone(), roots)?;
    let forwarder = satellite::forward::Forwarder {
        primary_url: primary_url.clone(),
        satellite: config.edge.clone(),
        client: http,
    };
    if let (Some(wildcard), Some(key)) = (own_devurl_host(&config), &config.devurl_cookie_key) {
        edge.enable_devurls(
            wildcard,
            if tls_on { "https" } else { "http" },
            Arc::new(crate::satellite_devurls::ControlPlaneDevUrls {
                http: forwarder.client.clone(),
                primary_url: primary_url.clone(),
                token: a.token.trim().to_owned(),
            }),
            key.as_bytes(),
        );
        info!(%wildcard, "serving dev URLs");
    }
    let router = edge.with_devurls(edge.router().merge(forwarder.router()));

    let serving = satellite::Serving::start(edge.clone(), tcp, http_tls, router, stun, endpoint);
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
        Duration::from_secs(a.heartbeat_secs),
    ));
    println!(
        "perigee satellite ready: {access_url} (listening on {bound}, tcp and udp; edge {:?}, region {:?})",
        config.edge, config.region
    );
    let beat = heartbeat_loop(
        cp,
        edge.clone(),
        Beat {
            problem: mesh_problem,
            state,
            every: Duration::from_secs(a.heartbeat_secs),
            offline,
        },
    );
    let result = tokio::select! {
        r = beat => r,
        _ = crate::server::shutdown_signal() => Ok(()),
    };
    redial.abort();
    serving.stop().await;
    result
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
async fn heartbeat_loop(cp: ControlPlaneClient, edge: Edge, b: Beat) -> anyhow::Result<()> {
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
            Err(RegisterError::Refused(m)) => {
                anyhow::bail!("the control plane revoked this satellite: {m}")
            }
            Err(RegisterError::Unavailable(m)) => {
                if down_since.is_none() {
                    warn!(error = %m, "control plane unreachable; serving tunnels with the keys received last");
                    down_since = Some(std::time::Instant::now());
                }
            }
        }
    }
}
