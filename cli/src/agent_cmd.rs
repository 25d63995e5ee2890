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
    /// Never try QUIC; use HTTP/2 over TCP.
    #[arg(long, env = "PERIGEE_AGENT_DISABLE_QUIC", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    disable_quic: bool,
    /// While on the HTTP/2 fallback, seconds between checks whether QUIC answers again (the
    /// link moves back when no tunnel is open on it).
    #[arg(long, env = "PERIGEE_AGENT_QUIC_RETRY_SECS", default_value_t = 30)]
    quic_retry_secs: u64,
}

pub(crate) async fn run(a: AgentArgs) -> anyhow::Result<()> {
    let token = match (a.token, &a.token_file) {
        (Some(t), _) => t,
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("reading agent token from {}", path.display()))?
            .trim()
            .to_owned(),
        (None, None) => {
            anyhow::bail!("no agent token: pass --token-file (or PERIGEE_AGENT_TOKEN_FILE)")
        }
    };
    let cfg = agent::AgentConfig {
        url: a.url,
        token: Secret::new(token),
        ca_cert: a.ca_cert,
        quic_timeout: Duration::from_millis(a.quic_timeout_ms),
        disable_quic: a.disable_quic,
        quic_retry: Duration::from_secs(a.quic_retry_secs.max(1)),
    };
    agent::run(cfg, crate::server::shutdown_signal()).await?;
    Ok(())
}
