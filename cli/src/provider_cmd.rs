//! `perigee workspace-provider`: the deployment of a remote workspace provider. It registers
//! with its REMOTE token and heartbeats, reporting a startup failure when it has one
//! (`pending → ready`, or `error` with the message). Each heartbeat's answer lists the
//! workspaces placed on the provider; it runs them with the local provisioner (agents dial
//! the provider's access URL override, else their home edge) and removes the ones that are
//! gone. The Kubernetes provisioner comes with the Kubernetes issue.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
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
    crate::server::create_private_dir(&dir.join("workspaces"))
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
    let provisioner = match &problem {
        Some(_) => None,
        None => {
            let dir = startup(&a).map_err(anyhow::Error::msg)?;
            Some(provider::LocalProvisioner::new(
                provider::LocalProvisionerConfig {
                    root: dir.join("workspaces"),
                    exe: std::env::current_exe().context("locating the perigee binary")?,
                    agent_url: url.clone(),
                    ca_cert: a.ca_cert.clone(),
                    exec_prefix: Vec::new(),
                },
            ))
        }
    };
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
                    reconcile(p, &http, &url, a.token.trim(), &v["workspaces"]).await;
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

/// Runs the workspaces the control plane placed here and removes the ones that are gone.
/// Failures are logged and retried at the next heartbeat.
async fn reconcile(
    p: &provider::LocalProvisioner,
    http: &reqwest::Client,
    url: &str,
    token: &str,
    assigned: &serde_json::Value,
) {
    let assigned = assigned.as_array().cloned().unwrap_or_default();
    let mut wanted = Vec::with_capacity(assigned.len());
    for w in &assigned {
        let (Some(id), Some(name), Some(agent_url)) = (
            w["id"].as_str(),
            w["name"].as_str(),
            w["agent_url"].as_str(),
        ) else {
            continue;
        };
        wanted.push(id.to_owned());
        let result = if p.has(id) {
            p.start(id, name).await.map_err(|e| e.to_string())
        } else {
            match agent_token(http, url, token, id).await {
                Ok(t) => p
                    .create(id, name, &t, Some(agent_url))
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(format!("{e:#}")),
            }
        };
        if let Err(e) = result {
            warn!(workspace = name, error = %e, "cannot run workspace; retrying at the next heartbeat");
        }
        if p.has(id) {
            // What the Kubernetes provisioner will apply to the pod; the local provisioner
            // keeps it next to the workspace.
            let path = p.dir(id).join("kubernetes.json");
            let text = serde_json::to_string_pretty(&w["kubernetes"]).unwrap_or_default();
            if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
                if let Err(e) = std::fs::write(&path, text) {
                    warn!(workspace = name, error = %e, "cannot write kubernetes.json");
                }
            }
        }
    }
    for id in p.workspace_ids() {
        if !wanted.contains(&id) {
            info!(workspace = %id, "workspace deleted on the control plane; removing it");
            if let Err(e) = p.delete(&id).await {
                warn!(workspace = %id, error = %e, "cannot remove workspace");
            }
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
