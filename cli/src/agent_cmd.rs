//! `perigee agent`: its flags; the role is `agent::role`.

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
    let workdir = std::env::current_dir().context("the agent's working directory")?;
    let cfg = agent::role::RoleConfig {
        link: agent::AgentConfig {
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
            ssh_port: None,
            e2e: None,
        },
        ssh: a.ssh == "on",
        ssh_host_key: a
            .ssh_host_key
            .unwrap_or_else(|| workdir.join(".perigee/ssh_host_ed25519_key")),
        workdir,
        watch: a
            .watch
            .as_deref()
            .map(|p| {
                std::env::split_paths(p)
                    .filter(|p| !p.as_os_str().is_empty())
                    .collect()
            })
            .unwrap_or_default(),
    };
    match agent::role::run(cfg, crate::server::shutdown_token()).await {
        Err(e) if e.workspace_gone() => {
            tracing::warn!(error = %e, "ending the agent");
            std::process::exit(relay_core::link::EXIT_WORKSPACE_GONE);
        }
        r => Ok(r?),
    }
}
