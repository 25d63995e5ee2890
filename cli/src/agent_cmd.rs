//! `perigee agent`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use relay_core::token::Secret;

/// Arguments of `perigee agent`.
#[derive(clap::Args)]
pub(crate) struct AgentArgs {
    /// URL of the home edge.
    #[arg(long, env = "PERIGEE_AGENT_URL")]
    url: String,
    /// The workspace's agent token (prefer --token-file: environments leak).
    #[arg(
        long,
        env = "PERIGEE_AGENT_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    token: Option<String>,
    /// File holding the agent token.
    #[arg(long, env = "PERIGEE_AGENT_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// CA certificate to trust for the edge (self-signed deployments).
    #[arg(long, env = "PERIGEE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Milliseconds to wait for QUIC before falling back to HTTP/2 over TCP.
    #[arg(long, env = "PERIGEE_AGENT_QUIC_TIMEOUT_MS", default_value_t = 1500)]
    quic_timeout_ms: u64,
    /// The link's transport: `auto` uses HTTP/2 over TCP when the edge is near (TCP connect
    /// under 2 ms: same host or cluster, where nothing is lost and kernel TCP is cheaper),
    /// else QUIC with HTTP/2 as the fallback; `quic` always tries QUIC first; `h2` never
    /// tries QUIC.
    #[arg(long, env = "PERIGEE_AGENT_LINK", default_value = "auto", value_parser = ["auto", "quic", "h2"])]
    link: String,
    /// Never try QUIC; use HTTP/2 over TCP (same as `--link h2`).
    #[arg(long, env = "PERIGEE_AGENT_DISABLE_QUIC", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    disable_quic: bool,
    /// While on the HTTP/2 fallback, seconds between checks whether QUIC answers again (the
    /// link moves back when no tunnel is open on it).
    #[arg(long, env = "PERIGEE_AGENT_QUIC_RETRY_SECS", default_value_t = 30)]
    quic_retry_secs: u64,
    /// Serve SSH on the workspace's port 22 with the agent's own server (the owner's keys
    /// from the control plane); `off` leaves port 22 to an sshd in the workspace.
    #[arg(long, env = "PERIGEE_AGENT_SSH", default_value = "on", value_parser = ["on", "off"])]
    ssh: String,
    /// Paths (separated by `:`) whose disappearance ends the agent with exit code 3, which
    /// the local provisioner does not restart: the workspace's home or directory, the data
    /// directory. A path the agent may not look into counts as present.
    #[arg(long, env = "PERIGEE_AGENT_WATCH")]
    watch: Option<String>,
    /// The SSH host key, made on first start and kept [default:
    /// .perigee/ssh_host_ed25519_key in the working directory, the workspace's home].
    #[arg(long, env = "PERIGEE_AGENT_SSH_HOST_KEY")]
    ssh_host_key: Option<PathBuf>,
}

pub(crate) async fn run(a: AgentArgs) -> anyhow::Result<()> {
    if let Some(paths) = &a.watch {
        let paths: Vec<PathBuf> = std::env::split_paths(paths)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        tokio::spawn(watch_workspace(paths));
    }
    let token = match (a.token.clone(), &a.token_file) {
        (Some(t), _) => t,
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading agent token from {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => {
            anyhow::bail!("no agent token: pass --token-file (or PERIGEE_AGENT_TOKEN_FILE)")
        }
    };
    // The inner-session key for end-to-end encrypted tunnels: a fresh one per start, its
    // fingerprint reported to the control plane (which hands it to clients with tickets).
    let identity =
        relay_core::e2e::AgentIdentity::generate().context("making the end-to-end key")?;
    agent::e2e::start(identity.server.clone())
        .await
        .context("starting the end-to-end terminator")?;
    tokio::spawn(report_key(
        a.url.trim_end_matches('/').to_owned(),
        token.clone(),
        a.ca_cert.clone(),
        identity.fingerprint.clone(),
    ));
    if a.ssh == "on" {
        start_ssh(&a, &token).await?;
    }
    let cfg = agent::AgentConfig {
        url: a.url,
        token: Secret::new(token),
        ca_cert: a.ca_cert,
        quic_timeout: Duration::from_millis(a.quic_timeout_ms),
        link: match (a.disable_quic, a.link.as_str()) {
            (true, _) | (_, "h2") => agent::LinkChoice::H2,
            (_, "quic") => agent::LinkChoice::Quic,
            _ => agent::LinkChoice::Auto,
        },
        quic_retry: Duration::from_secs(a.quic_retry_secs.max(1)),
    };
    match agent::run(cfg, crate::server::shutdown_signal()).await {
        Err(e @ agent::LinkError::WorkspaceGone(..)) => {
            tracing::warn!(error = %e, "ending the agent");
            std::process::exit(relay_core::link::EXIT_WORKSPACE_GONE);
        }
        r => r?,
    }
    Ok(())
}

/// Ends the agent once one of `paths` is gone (a deleted workspace's home, a removed data
/// directory). Only "not found" counts: a path the agent may not look into is present.
async fn watch_workspace(paths: Vec<PathBuf>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        for p in &paths {
            if let Err(e) = std::fs::symlink_metadata(p) {
                if e.kind() == std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), "the workspace is gone; ending the agent");
                    std::process::exit(relay_core::link::EXIT_WORKSPACE_GONE);
                }
            }
        }
    }
}

/// Starts the agent's SSH server on a loopback port and sends streams for port 22 to it.
async fn start_ssh(a: &AgentArgs, token: &str) -> anyhow::Result<()> {
    let workdir = std::env::current_dir().context("the agent's working directory")?;
    let host_key = a
        .ssh_host_key
        .clone()
        .unwrap_or_else(|| workdir.join(".perigee/ssh_host_ed25519_key"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the SSH server on loopback")?;
    let port = listener.local_addr()?.port();
    let http = relay_core::tls::roots(a.ca_cert.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(crate::client::role_http)?;
    let keys = OwnerKeys {
        http,
        url: format!(
            "{}/api/v2/workspaceagent/authorized-keys",
            a.url.trim_end_matches('/')
        ),
        token: token.to_owned(),
        last: std::sync::Mutex::new(None),
    };
    let cfg = perigee_ssh::SshConfig {
        host_key,
        workdir,
        shell: perigee_ssh::default_shell(),
        keys: std::sync::Arc::new(keys),
        resume_grace: perigee_ssh::RESUME_GRACE,
    };
    // The host key is made (or read) before the port is handed out.
    perigee_ssh::host_key(&cfg.host_key)?;
    tokio::spawn(async move {
        if let Err(e) = perigee_ssh::serve(listener, cfg, crate::server::shutdown_signal()).await {
            tracing::warn!(error = %e, "SSH server stopped");
        }
    });
    agent::redirect_ssh(port);
    tracing::info!(port, "SSH server ready for the workspace's port 22");
    Ok(())
}

/// The workspace owner's SSH keys, asked of the control plane at every login so a removed
/// key stops new sessions at once; the last answer serves while the control plane cannot be
/// reached.
struct OwnerKeys {
    http: reqwest::Client,
    url: String,
    token: String,
    last: std::sync::Mutex<Option<Vec<String>>>,
}

impl OwnerKeys {
    async fn fetch(&self) -> Result<Vec<String>, String> {
        let r = self
            .http
            .get(&self.url)
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("{e:#}"))?;
        let bytes = crate::client::success_body(r, 1024 * 1024).await?;
        let v: Vec<serde_json::Value> =
            serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok(v.iter()
            .filter_map(|k| k["public_key"].as_str().map(str::to_owned))
            .collect())
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
                Err(e) if e.starts_with("HTTP 4") => Err(e),
                Err(e) => self.last.lock().ok().and_then(|l| l.clone()).ok_or(e),
            }
        })
    }
}

/// Reports the end-to-end key's fingerprint, retrying until the control plane (directly or
/// through the agent's edge) takes it.
async fn report_key(url: String, token: String, ca_cert: Option<PathBuf>, fingerprint: String) {
    let client = relay_core::tls::roots(ca_cert.as_deref())
        .map_err(anyhow::Error::from)
        .and_then(crate::client::role_http);
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "cannot report the end-to-end key");
            return;
        }
    };
    let mut backoff =
        relay_core::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    loop {
        let sent = client
            .post(format!("{url}/api/v2/workspaceagent/e2e-key"))
            .bearer_auth(&token)
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
