//! The workspace-provider role (`perigee workspace-provider`): the deployment of a remote
//! workspace provider. It registers with its REMOTE token and heartbeats, reporting a
//! startup failure when it has one (`pending → ready`, or `error` with the message). Each
//! heartbeat's answer lists the workspaces placed on the provider; it runs them (agents dial
//! the provider's access URL override, else their home edge) and removes the ones that are
//! gone, through its provisioner (local processes, or Kubernetes pods), and reports where
//! each workspace is with the next heartbeat.
//!
//! [`run`] takes its provisioner (or why there is none), its bound health listener and a
//! shutdown token, so a test starts the role in process.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod health;

use std::sync::Arc;
use std::time::Duration;

use perigee_api::http::HttpError;
use perigee_api::providers::{
    AgentTokenAnswer, AgentTokenRequest, AssignedWorkspace, Desired, HeartbeatAnswer,
    ProviderHeartbeat, WorkspaceReport,
};
use perigee_provision::{Provisioner, WorkspaceSpec, WorkspaceState};
use relay_core::token::Secret;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Largest heartbeat answer read (it lists every workspace placed on the provider).
const MAX_ANSWER: usize = 16 * 1024 * 1024;

/// Everything the role is configured with.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The control plane's URL (no trailing slash).
    pub primary_url: String,
    /// The REMOTE token.
    pub token: Secret,
    /// Roots trusted for the control plane.
    pub roots: rustls::RootCertStore,
    /// Between heartbeats.
    pub heartbeat: Duration,
    /// The service account the deployment runs as (Kubernetes), reported so that no
    /// workspace is given it.
    pub service_account: Option<String>,
}

/// Why the role stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The control plane refused the provider (a wrong or revoked token).
    #[error("the control plane at {url} refused this provider: {message}")]
    Refused {
        /// The control plane's URL.
        url: String,
        /// Its answer.
        message: String,
    },
    /// Setting up failed.
    #[error("{0}")]
    Setup(String),
}

/// What the role runs workspaces with: a provisioner, or the startup failure it reports to
/// the control plane instead of crashing in a loop (shown by `perigee providers ls`).
pub type Startup = Result<Arc<dyn Provisioner>, String>;

/// What a started role tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The provider's name, as the control plane knows it.
    pub name: String,
}

/// Heartbeats until `shutdown` or until the control plane refuses the provider; serves
/// `/livez` and `/healthz` on `health` when given. `ready` learns the provider's name at the
/// first answered heartbeat.
pub async fn run(
    config: ProviderConfig,
    startup: Startup,
    health: Option<tokio::net::TcpListener>,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<Ready>>,
) -> Result<(), ProviderError> {
    let http = perigee_api::http::role_http(config.roots.clone())
        .map_err(|e| ProviderError::Setup(e.to_string()))?;
    let (provisioner, problem) = match startup {
        Ok(p) => (Some(p), None),
        Err(e) => {
            warn!(error = %e, "reporting a startup failure to the control plane");
            (None, Some(e))
        }
    };
    // Without isolation, only the deployment's admins may create workspaces here.
    let admins_only = provisioner
        .as_ref()
        .is_some_and(|p| p.admins_only().is_some());
    let state = health::Health::new(config.heartbeat);
    if let Some(listener) = health {
        if let Ok(a) = listener.local_addr() {
            info!(address = %a, "serving /healthz and /livez");
        }
        state.clone().serve(listener, shutdown.clone());
    }
    let mut ready = ready;
    let mut reports: Vec<WorkspaceReport> = Vec::new();
    loop {
        let beat = ProviderHeartbeat {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            heartbeat_secs: config.heartbeat.as_secs(),
            error: problem.clone(),
            service_account: config.service_account.clone(),
            admins_only,
            workspaces: std::mem::take(&mut reports),
        };
        match heartbeat(&http, &config, &beat).await {
            Ok(answer) => {
                state.ok();
                if let Some(tx) = ready.take() {
                    info!(provider = %answer.name, "registered with the control plane");
                    let _ = tx.send(Ready {
                        name: answer.name.clone(),
                    });
                }
                if let Some(p) = &provisioner {
                    reports = reconcile(p.as_ref(), &http, &config, &answer.workspaces).await;
                }
            }
            Err(e) if e.is_refusal() => {
                return Err(ProviderError::Refused {
                    url: config.primary_url,
                    message: e.to_string(),
                })
            }
            Err(e) => {
                warn!(error = %e, "control plane unreachable or failing; retrying");
                state.failed(format!("control plane: {e}"));
                reports = beat.workspaces;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(config.heartbeat) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
    }
}

async fn heartbeat(
    http: &reqwest::Client,
    config: &ProviderConfig,
    beat: &ProviderHeartbeat,
) -> Result<HeartbeatAnswer, HttpError> {
    let resp = http
        .post(format!("{}/api/v2/providers/heartbeat", config.primary_url))
        .bearer_auth(config.token.expose())
        .json(beat)
        .send()
        .await?;
    perigee_api::http::json_limited(resp, MAX_ANSWER).await
}

/// Runs the workspaces the control plane placed here and removes the ones that are gone;
/// returns where each one is, for the next heartbeat. Failures are logged and retried at
/// the next heartbeat.
async fn reconcile(
    p: &dyn Provisioner,
    http: &reqwest::Client,
    config: &ProviderConfig,
    assigned: &[AssignedWorkspace],
) -> Vec<WorkspaceReport> {
    let mut wanted = Vec::with_capacity(assigned.len());
    let mut reports = Vec::with_capacity(assigned.len());
    for w in assigned {
        wanted.push(w.id.clone());
        let mut spec = WorkspaceSpec {
            owner: String::new(),
            id: w.id.clone(),
            name: w.name.clone(),
            owner_email: String::new(),
            // Only a new workspace needs one (a started one keeps its stored token).
            agent_token: Secret::new(""),
            agent_url: w.agent_url.clone(),
            pod_settings: w.kubernetes.clone(),
        };
        let stopped = w.desired == Desired::Stopped;
        let id = w.id.as_str();
        let result = match p.state(id).await {
            Ok(WorkspaceState::Stopped | WorkspaceState::Missing) if stopped => Ok(()),
            Ok(_) if stopped => p.stop(id).await.map_err(|e| e.to_string()),
            Ok(WorkspaceState::Missing) => match agent_token(http, config, id).await {
                Ok(t) => {
                    spec.agent_token = t;
                    p.create(&spec).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(format!("agent token for {id}: {e}")),
            },
            Ok(WorkspaceState::Stopped) => p.start(&spec).await.map_err(|e| e.to_string()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            warn!(workspace = %w.name, error = %e, "cannot run workspace; retrying at the next heartbeat");
        }
        p.note_pod_settings(id, &w.kubernetes);
        match p.state(id).await {
            Ok(s) => reports.push(WorkspaceReport {
                id: w.id.clone(),
                state: s.as_str().to_owned(),
                message: s.message().map(str::to_owned),
            }),
            Err(e) => warn!(workspace = %w.name, error = %e, "cannot read workspace state"),
        }
    }
    match p.list().await {
        Ok(ids) => {
            for id in ids.into_iter().filter(|id| !wanted.contains(id)) {
                info!(workspace = %id, "workspace deleted on the control plane; removing it");
                if let Err(e) = p.delete(&id).await {
                    warn!(workspace = %id, error = %e, "cannot remove workspace");
                }
            }
        }
        Err(e) => warn!(error = %e, "cannot list workspaces"),
    }
    reports
}

async fn agent_token(
    http: &reqwest::Client,
    config: &ProviderConfig,
    workspace_id: &str,
) -> Result<Secret, HttpError> {
    let resp = http
        .post(format!(
            "{}/api/v2/providers/agent-token",
            config.primary_url
        ))
        .bearer_auth(config.token.expose())
        .json(&AgentTokenRequest {
            workspace_id: workspace_id.to_owned(),
        })
        .send()
        .await?;
    let a: AgentTokenAnswer = perigee_api::http::json_limited(resp, 64 * 1024).await?;
    Ok(Secret::new(a.token))
}
