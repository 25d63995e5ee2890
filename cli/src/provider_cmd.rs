//! `perigee workspace-provider`: its flags, the startup checks and the provisioner they
//! choose; the role is the `perigee-workspace-provider` crate.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use perigee_provision::Provisioner;
use perigee_workspace_provider::{ProviderConfig, Startup};
use relay_core::token::Secret;

/// Arguments of `perigee workspace-provider`.
#[derive(clap::Args)]
pub(crate) struct ProviderArgs {
    /// The control plane's URL.
    #[arg(long, env = "PERIGEE_PRIMARY_URL")]
    primary_url: String,
    /// The REMOTE token printed by `perigee providers create`.
    #[arg(long, env = "PERIGEE_PROVIDER_TOKEN", hide_env_values = true)]
    token: String,
    /// Where this provider keeps its local workspaces
    /// [default: $XDG_DATA_HOME/perigee-provider].
    #[arg(long, env = "PERIGEE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// CA certificate to trust for the control plane (self-signed deployments).
    #[arg(long, env = "PERIGEE_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Seconds between heartbeats.
    #[arg(long, env = "PERIGEE_HEARTBEAT_SECS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_secs: u64,
    /// What runs workspaces: `local` (a directory and an agent process each, on this host)
    /// or `kubernetes` (a pod, a home volume and a secret each, through the in-cluster
    /// service account or KUBECONFIG).
    #[arg(long, env = "PERIGEE_PROVISIONER", default_value = "local", value_parser = ["local", "kubernetes"])]
    provisioner: String,
    #[command(flatten)]
    kube: crate::kube_args::KubeArgs,
    #[command(flatten)]
    isolation: crate::isolation_args::IsolationArgs,
    /// Serve `/livez` and `/healthz` (200 while the control plane answers heartbeats) for
    /// Kubernetes probes on this TCP address, e.g. 0.0.0.0:8080 [default: off].
    #[arg(long, env = "PERIGEE_HEALTH_ADDRESS")]
    health_address: Option<String>,
}

/// Startup checks; the failure is reported to the control plane (and shown by
/// `perigee providers ls`) instead of crashing in a loop.
fn startup(a: &ProviderArgs) -> Result<PathBuf, String> {
    let dir = match &a.data_dir {
        Some(d) => d.clone(),
        None => crate::server::default_data_dir()
            .map_err(|e| e.to_string())?
            .with_file_name("perigee-provider"),
    };
    relay_core::create_private_dir(&dir.join("workspaces"))
        .map_err(|e| format!("startup failed: {e:#}"))?;
    Ok(dir)
}

pub(crate) async fn run(a: ProviderArgs) -> anyhow::Result<()> {
    let url = a.primary_url.trim_end_matches('/').to_owned();
    let roots = relay_core::tls::roots(a.ca_cert.as_deref()).context("loading --ca-cert")?;
    let health = match &a.health_address {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--health-address {addr}: cannot listen"))?,
        ),
        None => None,
    };
    let provisioner: Startup = provisioner(&a, &url).await;
    let config = ProviderConfig {
        primary_url: url.clone(),
        token: Secret::new(a.token.trim()),
        roots,
        heartbeat: Duration::from_secs(a.heartbeat_secs),
        service_account: a.kube.own_service_account.clone(),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let role = tokio::spawn(perigee_workspace_provider::run(
        config,
        provisioner,
        health,
        crate::server::shutdown_token(),
        Some(tx),
    ));
    if let Ok(r) = rx.await {
        println!(
            "perigee workspace-provider ready: registered as {} with {url}",
            r.name
        );
    }
    Ok(role.await??)
}

/// The provisioner `--provisioner` names, or why it cannot run (reported to the control
/// plane).
async fn provisioner(a: &ProviderArgs, url: &str) -> Startup {
    if a.provisioner == "kubernetes" {
        let p = a.kube.provisioner().await?;
        return Ok(Arc::new(p) as Arc<dyn Provisioner>);
    }
    let dir = startup(a)?;
    let decision = a
        .isolation
        .decide(false)
        .map_err(|e| format!("startup failed: {e:#}"))?;
    let isolation = decision
        .config_for_provider(&dir, url)
        .map_err(|e| format!("startup failed: {e:#}"))?;
    let local =
        perigee_provision::LocalProvisioner::new(perigee_provision::LocalProvisionerConfig {
            root: dir.join("workspaces"),
            exe: std::env::current_exe()
                .map_err(|e| format!("locating the perigee binary: {e}"))?,
            agent_url: url.to_owned(),
            ca_cert: a.ca_cert.clone(),
            exec_prefix: Vec::new(),
            single_user: decision.single_user(),
            isolation,
        });
    local
        .install_network()
        .map_err(|e| format!("startup failed: setting up the workspace network: {e}"))?;
    Ok(Arc::new(local))
}
