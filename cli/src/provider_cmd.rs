//! `perigee workspace-provider`: the deployment of a remote workspace provider. It registers
//! with its REMOTE token and heartbeats, reporting a startup failure when it has one
//! (`pending → ready`, or `error` with the message). Each heartbeat's answer lists the
//! workspaces placed on the provider; it runs them (agents dial the provider's access URL
//! override, else their home edge) and removes the ones that are gone, through the
//! provisioner `--provisioner` names (local processes, or Kubernetes pods), and reports
//! where each workspace is with the next heartbeat.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use perigee_provision::{Provisioner, WorkspaceSpec, WorkspaceState};
use serde_json::json;
use tracing::{info, warn};

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
    let http = crate::client::role_http(roots)?;
    let problem = startup(&a).err();
    if let Some(p) = &problem {
        warn!(error = %p, "reporting a startup failure to the control plane");
    }
    let (provisioner, problem) = match problem {
        Some(p) => (None, Some(p)),
        None => match provisioner(&a, &url).await {
            Ok(p) => (Some(p), None),
            Err(e) => {
                warn!(error = %e, "reporting a startup failure to the control plane");
                (None, Some(e))
            }
        },
    };
    // Without isolation, only the deployment's admins may create workspaces here.
    let admins_only = matches!(&provisioner, Some(Runner::Local(p)) if p.single_user());
    let mut reports: Vec<serde_json::Value> = Vec::new();
    let every = Duration::from_secs(a.heartbeat_secs);
    let health = crate::provider_health::Health::new(every);
    if let Some(addr) = &a.health_address {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("--health-address {addr}: cannot listen"))?;
        info!(address = %listener.local_addr()?, "serving /healthz and /livez");
        health.clone().serve(listener);
    }
    let mut announced = false;
    loop {
        let sent = http
            .post(format!("{url}/api/v2/providers/heartbeat"))
            .bearer_auth(a.token.trim())
            .json(&json!({
                "version": env!("CARGO_PKG_VERSION"),
                "heartbeat_secs": a.heartbeat_secs,
                "error": problem,
                "service_account": a.kube.own_service_account,
                "admins_only": admins_only,
                "workspaces": reports,
            }))
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                let v = crate::client::json_limited(resp, 64 * 1024).await?;
                health.ok();
                if !announced {
                    let name = v["name"].as_str().unwrap_or("?");
                    info!(provider = name, "registered with the control plane");
                    println!("perigee workspace-provider ready: registered as {name} with {url}");
                    announced = true;
                }
                if let Some(p) = &provisioner {
                    reports = reconcile(p, &http, &url, a.token.trim(), &v["workspaces"]).await;
                }
            }
            Ok(resp) if resp.status().is_client_error() => {
                let status = resp.status().as_u16();
                let v = crate::client::json_limited(resp, 64 * 1024)
                    .await
                    .unwrap_or_default();
                anyhow::bail!(
                    "the control plane at {url} refused this provider: {} (HTTP {status})",
                    v["error"].as_str().unwrap_or("no reason given")
                );
            }
            Ok(resp) => {
                let status = resp.status().as_u16();
                warn!(status, "control plane error; retrying");
                health.failed(format!("HTTP {status} from the control plane"));
            }
            Err(e) => {
                warn!(error = %e, "control plane unreachable; retrying");
                health.failed(format!("control plane unreachable: {e}"));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = crate::server::shutdown_signal() => return Ok(()),
        }
    }
}

/// The provisioner `--provisioner` names, or why it cannot run (reported to the control
/// plane).
async fn provisioner(a: &ProviderArgs, url: &str) -> Result<Runner, String> {
    if a.provisioner == "kubernetes" {
        return Ok(Runner::Kube(a.kube.provisioner().await?));
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
    Ok(Runner::Local(local))
}

/// The provisioner this deployment runs.
enum Runner {
    Local(perigee_provision::LocalProvisioner),
    Kube(perigee_kube::KubeProvisioner),
}

impl Runner {
    fn get(&self) -> &dyn Provisioner {
        match self {
            Self::Local(p) => p,
            Self::Kube(p) => p,
        }
    }
}

/// Runs the workspaces the control plane placed here and removes the ones that are gone;
/// returns where each one is, for the next heartbeat. Failures are logged and retried at
/// the next heartbeat.
async fn reconcile(
    runner: &Runner,
    http: &reqwest::Client,
    url: &str,
    token: &str,
    assigned: &serde_json::Value,
) -> Vec<serde_json::Value> {
    let p = runner.get();
    let assigned = assigned.as_array().cloned().unwrap_or_default();
    let mut wanted = Vec::with_capacity(assigned.len());
    let mut reports = Vec::with_capacity(assigned.len());
    for w in &assigned {
        let (Some(id), Some(name), Some(agent_url)) = (
            w["id"].as_str(),
            w["name"].as_str(),
            w["agent_url"].as_str(),
        ) else {
            continue;
        };
        wanted.push(id.to_owned());
        let mut spec = WorkspaceSpec {
            owner: String::new(),
            id: id.to_owned(),
            name: name.to_owned(),
            owner_email: String::new(),
            // Only a new workspace needs one (a started one keeps its stored token).
            agent_token: relay_core::token::Secret::new(""),
            agent_url: agent_url.to_owned(),
            pod_settings: w["kubernetes"].clone(),
        };
        let stopped = w["desired"] == "stopped";
        let result = match p.state(id).await {
            Ok(WorkspaceState::Stopped) if stopped => Ok(()),
            Ok(WorkspaceState::Missing) if stopped => Ok(()),
            Ok(_) if stopped => p.stop(id).await.map_err(|e| e.to_string()),
            Ok(WorkspaceState::Missing) => match agent_token(http, url, token, id).await {
                Ok(t) => {
                    spec.agent_token = t;
                    p.create(&spec).await.map_err(|e| e.to_string())
                }
                Err(e) => Err(format!("{e:#}")),
            },
            Ok(WorkspaceState::Stopped) => p.start(&spec).await.map_err(|e| e.to_string()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            warn!(workspace = name, error = %e, "cannot run workspace; retrying at the next heartbeat");
        }
        if let Runner::Local(local) = runner {
            write_pod_settings(local, id, name, &w["kubernetes"]);
        }
        match p.state(id).await {
            Ok(s) => reports.push(json!({ "id": id, "state": s.as_str(), "message": s.message() })),
            Err(e) => warn!(workspace = name, error = %e, "cannot read workspace state"),
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

/// The local provisioner keeps what the Kubernetes one would apply to the pod next to the
/// workspace (`kubernetes.json`), for a look.
fn write_pod_settings(
    p: &perigee_provision::LocalProvisioner,
    id: &str,
    name: &str,
    settings: &serde_json::Value,
) {
    if !p.has(id) {
        return;
    }
    let path = p.dir(id).join("kubernetes.json");
    let text = serde_json::to_string_pretty(settings).unwrap_or_default();
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
        if let Err(e) = std::fs::write(&path, text) {
            warn!(workspace = name, error = %e, "cannot write kubernetes.json");
        }
    }
}

async fn agent_token(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    workspace_id: &str,
) -> anyhow::Result<relay_core::token::Secret> {
    let resp = http
        .post(format!("{url}/api/v2/providers/agent-token"))
        .bearer_auth(token)
        .json(&json!({ "workspace_id": workspace_id }))
        .send()
        .await?;
    let status = resp.status();
    let v = crate::client::json_limited(resp, 64 * 1024).await?;
    match v["token"].as_str() {
        Some(t) if status.is_success() => Ok(relay_core::token::Secret::new(t)),
        _ => anyhow::bail!(
            "agent token for {workspace_id}: {} (HTTP {})",
            v["error"].as_str().unwrap_or("no token in the answer"),
            status.as_u16()
        ),
    }
}
