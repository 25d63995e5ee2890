//! The agent role (`perigee agent`): the link to the home edge ([`crate::run`]) plus what a
//! workspace's agent does around it: an end-to-end key reported to the control plane, its
//! own SSH server (the owner's keys asked of the control plane at each login), and ending
//! when the workspace is gone.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use perigee_api::http::HttpError;
use relay_core::token::Secret;
use tokio_util::sync::CancellationToken;

use crate::{AgentConfig, LinkError};

/// Everything `perigee agent` is configured with.
#[derive(Debug, Clone)]
pub struct RoleConfig {
    /// The link to the home edge (its `ssh_port` and `e2e` are the role's to fill).
    pub link: AgentConfig,
    /// Serve port 22 with the agent's own SSH server.
    pub ssh: bool,
    /// The SSH host key (made on first start).
    pub ssh_host_key: PathBuf,
    /// The SSH server's start directory (the workspace's home).
    pub workdir: PathBuf,
    /// Paths whose disappearance means the workspace is gone.
    pub watch: Vec<PathBuf>,
}

/// Why the agent role ended.
#[derive(Debug, thiserror::Error)]
pub enum RoleError {
    /// The link failed for good (see [`LinkError::WorkspaceGone`]).
    #[error(transparent)]
    Link(#[from] LinkError),
    /// A watched path is gone: the workspace was deleted.
    #[error("the workspace is gone: {} no longer exists", .0.display())]
    Removed(PathBuf),
    /// Setting up (the end-to-end key, the SSH server) failed.
    #[error("{0}")]
    Setup(String),
}

impl RoleError {
    /// The workspace is gone (deleted, or its token revoked): the process should end with
    /// [`relay_core::link::EXIT_WORKSPACE_GONE`] so that provisioners do not restart it.
    pub fn workspace_gone(&self) -> bool {
        matches!(
            self,
            Self::Removed(_) | Self::Link(LinkError::WorkspaceGone(..))
        )
    }

    fn setup(e: impl std::fmt::Display) -> Self {
        Self::Setup(e.to_string())
    }
}

/// Runs the agent role until `shutdown`, the workspace's removal or a final link error.
pub async fn run(cfg: RoleConfig, shutdown: CancellationToken) -> Result<(), RoleError> {
    let url = cfg.link.url.trim_end_matches('/').to_owned();
    // The inner-session key for end-to-end encrypted tunnels: a fresh one per start, its
    // fingerprint reported to the control plane (which hands it to clients with tickets).
    let identity = relay_core::e2e::AgentIdentity::generate()
        .map_err(|e| RoleError::Setup(format!("making the end-to-end key: {e}")))?;
    let roots = relay_core::tls::roots(cfg.link.ca_cert.as_deref()).map_err(RoleError::setup)?;
    let http = perigee_api::http::role_http(roots).map_err(RoleError::setup)?;
    let report = tokio::spawn(report_key(
        http.clone(),
        url.clone(),
        cfg.link.token.clone(),
        identity.fingerprint.clone(),
    ));
    let ssh_port = if cfg.ssh {
        Some(start_ssh(&cfg, http, &url, shutdown.clone()).await?)
    } else {
        None
    };
    let link = AgentConfig {
        ssh_port,
        e2e: Some(identity.server.clone()),
        ..cfg.link.clone()
    };
    let result = tokio::select! {
        r = crate::run(link, shutdown.clone().cancelled_owned()) => r.map_err(RoleError::from),
        gone = watch_workspace(cfg.watch.clone()) => Err(RoleError::Removed(gone)),
    };
    report.abort();
    result
}

/// Resolves with the first of `paths` that is gone (a deleted workspace's home, a removed
/// data directory); never when `paths` is empty. Only "not found" counts: a path the agent
/// may not look into is present.
async fn watch_workspace(paths: Vec<PathBuf>) -> PathBuf {
    if paths.is_empty() {
        std::future::pending::<()>().await;
    }
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for p in &paths {
            if let Err(e) = std::fs::symlink_metadata(p) {
                if e.kind() == std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), "the workspace is gone; ending the agent");
                    return p.clone();
                }
            }
        }
    }
}

/// Starts the agent's SSH server on a loopback port (answered: streams for port 22 go
/// there).
async fn start_ssh(
    cfg: &RoleConfig,
    http: reqwest::Client,
    url: &str,
    shutdown: CancellationToken,
) -> Result<u16, RoleError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| RoleError::Setup(format!("binding the SSH server on loopback: {e}")))?;
    let port = listener.local_addr().map_err(RoleError::setup)?.port();
    let keys = OwnerKeys {
        http,
        url: format!("{url}/api/v2/workspaceagent/authorized-keys"),
        token: cfg.link.token.clone(),
        last: Mutex::new(None),
    };
    let ssh = perigee_ssh::SshConfig {
        host_key: cfg.ssh_host_key.clone(),
        workdir: cfg.workdir.clone(),
        shell: perigee_ssh::default_shell(),
        keys: Arc::new(keys),
        resume_grace: perigee_ssh::RESUME_GRACE,
    };
    // The host key is made (or read) before the port is handed out.
    perigee_ssh::host_key(&ssh.host_key).map_err(RoleError::setup)?;
    tokio::spawn(async move {
        if let Err(e) = perigee_ssh::serve(listener, ssh, shutdown.cancelled_owned()).await {
            tracing::warn!(error = %e, "SSH server stopped");
        }
    });
    tracing::info!(port, "SSH server ready for the workspace's port 22");
    Ok(port)
}

/// One of the owner's keys, as the control plane lists them.
#[derive(serde::Deserialize)]
struct OwnerKey {
    public_key: String,
}

/// The workspace owner's SSH keys, asked of the control plane at every login so a removed
/// key stops new sessions at once; the last answer serves while the control plane cannot be
/// reached.
struct OwnerKeys {
    http: reqwest::Client,
    url: String,
    token: Secret,
    last: Mutex<Option<Vec<String>>>,
}

impl OwnerKeys {
    async fn fetch(&self) -> Result<Vec<String>, HttpError> {
        let r = self
            .http
            .get(&self.url)
            .bearer_auth(self.token.expose())
            .timeout(Duration::from_secs(5))
            .send()
            .await?;
        let keys: Vec<OwnerKey> = perigee_api::http::json_limited(r, 1024 * 1024).await?;
        Ok(keys.into_iter().map(|k| k.public_key).collect())
    }
}

impl perigee_ssh::AuthorizedKeys for OwnerKeys {
    fn keys(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<String>, String>> + Send + '_>>
    {
        Box::pin(async move {
            match self.fetch().await {
                Ok(k) => {
                    if let Ok(mut l) = self.last.lock() {
                        *l = Some(k.clone());
                    }
                    Ok(k)
                }
                // A refusal (the workspace is gone, the token revoked) is final; only an
                // unreachable control plane falls back to the last answer.
                Err(e) if e.is_refusal() => Err(e.to_string()),
                Err(e) => self
                    .last
                    .lock()
                    .ok()
                    .and_then(|l| l.clone())
                    .ok_or_else(|| e.to_string()),
            }
        })
    }
}

/// Reports the end-to-end key's fingerprint, retrying until the control plane (directly or
/// through the agent's edge) takes it.
async fn report_key(http: reqwest::Client, url: String, token: Secret, fingerprint: String) {
    let mut backoff =
        relay_core::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let sent = http
            .post(format!("{url}/api/v2/workspaceagent/e2e-key"))
            .bearer_auth(token.expose())
            .json(&serde_json::json!({ "fingerprint": fingerprint }))
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::info!("end-to-end key reported");
                return;
            }
            Ok(r) if r.status().is_client_error() => {
                tracing::warn!(
                    status = r.status().as_u16(),
                    "the control plane refused the end-to-end key"
                );
                return;
            }
            Ok(r) => tracing::debug!(
                status = r.status().as_u16(),
                "reporting the end-to-end key; retrying"
            ),
            Err(e) => tracing::debug!(error = %e, "reporting the end-to-end key; retrying"),
        }
        tokio::time::sleep(backoff.next_delay(relay_core::token::random_u64())).await;
    }
}
