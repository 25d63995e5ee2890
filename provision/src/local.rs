//! The local provisioner: a workspace is a directory under the data directory plus a
//! `perigee agent` process holding that workspace's agent token.
//!
//! Isolated (root on Linux, [`crate::local_isolation`]): the agent runs as the workspace's
//! own uid in its own network and PID namespaces, with its home under the home root.
//! Otherwise it runs as the server's user and the provisioner is single-user unless the
//! operator turned isolation off on purpose.
//!
//! Agents outlive a restart of the server (as pods outlive a control-plane restart): each
//! agent's PID is kept in `agent.pid`, and a restarted server adopts a live agent instead of
//! starting a second one. A dead agent is restarted with backoff.

use std::collections::HashMap;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use relay_core::backoff::Backoff;
use relay_core::token::Secret;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::ProvisionError;

/// How the local provisioner starts agents.
#[derive(Debug, Clone)]
pub struct LocalProvisionerConfig {
    /// Directory holding one sub-directory per workspace.
    pub root: PathBuf,
    /// The `perigee` binary.
    pub exe: PathBuf,
    /// URL the agents dial (the built-in edge).
    pub agent_url: String,
    /// CA certificate the agents trust (self-signed deployments).
    pub ca_cert: Option<PathBuf>,
    /// Command words put before the agent command (e.g. `ip netns exec NS`); not used
    /// when workspaces are isolated.
    pub exec_prefix: Vec<String>,
    /// Isolation of workspaces (none: agents run as the server's user).
    pub isolation: Option<crate::local_isolation::IsolationConfig>,
    /// Without isolation: only admins may create workspaces (another user's code would
    /// run as the server's user).
    pub single_user: bool,
}

/// Supervises the agents of local workspaces.
pub struct LocalProvisioner {
    cfg: LocalProvisionerConfig,
    running: Mutex<HashMap<String, watch::Sender<bool>>>,
}

const TOKEN_FILE: &str = "agent-token";
const PID_FILE: &str = "agent.pid";
const LOG_FILE: &str = "agent.log";
/// How the running agent was started: `isolated` or `plain` (absent: before isolation).
const MODE_FILE: &str = "agent.mode";
/// Optional: the URL of the edge this workspace's agent dials, when not the built-in one.
const URL_FILE: &str = "agent-url";

impl LocalProvisioner {
    /// A provisioner with the given settings.
    pub fn new(cfg: LocalProvisionerConfig) -> Self {
        Self {
            cfg,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// Whether only admins may create workspaces here, and why.
    pub fn single_user(&self) -> bool {
        self.cfg.single_user && self.cfg.isolation.is_none()
    }

    /// Whether workspaces run isolated.
    pub fn isolated(&self) -> bool {
        self.cfg.isolation.is_some()
    }

    /// Rebuilds this server's workspace network rules (at start, before agents are
    /// supervised): the namespaces of existing workspaces are kept and covered again.
    pub fn install_network(&self) -> Result<(), perigee_isolate::Error> {
        match &self.cfg.isolation {
            Some(iso) => iso.network.install(&iso.known_uids(&self.cfg.root)),
            None => Ok(()),
        }
    }

    /// The directory of a workspace.
    pub fn dir(&self, workspace_id: &str) -> PathBuf {
        self.cfg.root.join(workspace_id)
    }

    /// Whether the workspace exists here (its directory holds an agent token).
    pub fn has(&self, workspace_id: &str) -> bool {
        self.dir(workspace_id).join(TOKEN_FILE).exists()
    }

    /// Ids of the workspaces that exist here.
    pub fn workspace_ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.cfg.root) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join(TOKEN_FILE).exists())
            .filter_map(|e| e.file_name().to_str().map(str::to_owned))
            .collect()
    }

    /// Creates the workspace directory, stores the agent token (mode 0600) and starts the agent,
    /// which dials `agent_url` (default: the built-in edge). `owner` names the workspace's
    /// Unix user when isolated.
    pub async fn create(
        &self,
        workspace_id: &str,
        name: &str,
        owner: &str,
        agent_token: &Secret,
        agent_url: Option<&str>,
    ) -> Result<(), ProvisionError> {
        let dir = self.dir(workspace_id);
        if self.cfg.isolation.is_some() {
            std::fs::create_dir_all(&dir).map_err(ProvisionError::new)?;
        } else {
            std::fs::create_dir_all(dir.join("home")).map_err(ProvisionError::new)?;
        }
        std::fs::write(dir.join(crate::local_isolation::USER_FILE), owner)
            .map_err(ProvisionError::new)?;
        relay_core::tls::write_private(&dir.join(TOKEN_FILE), agent_token.expose().as_bytes())
            .map_err(ProvisionError::new)?;
        if let Some(url) = agent_url {
            std::fs::write(dir.join(URL_FILE), url).map_err(ProvisionError::new)?;
        }
        self.start(workspace_id, name).await
    }

    /// Starts supervising a workspace's agent (adopting a live one).
    pub async fn start(&self, workspace_id: &str, name: &str) -> Result<(), ProvisionError> {
        let dir = self.dir(workspace_id);
        if !dir.join(TOKEN_FILE).exists() {
            return Err(ProvisionError::new(format!(
                "workspace {name}: {} is missing",
                dir.join(TOKEN_FILE).display()
            )));
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Ok(mut running) = self.running.lock() {
            if running.contains_key(workspace_id) {
                return Ok(());
            }
            running.insert(workspace_id.to_owned(), stop_tx);
        }
        let sup = Supervisor {
            cfg: self.cfg.clone(),
            dir,
            workspace_id: workspace_id.to_owned(),
            name: name.to_owned(),
        };
        tokio::spawn(sup.run(stop_rx));
        Ok(())
    }

    /// Stops the agent and removes the workspace directory (and, isolated, its home,
    /// network and uid).
    pub async fn delete(&self, workspace_id: &str) -> Result<(), ProvisionError> {
        self.stop(workspace_id).await;
        let dir = self.dir(workspace_id);
        if let Some(iso) = self.cfg.isolation.clone() {
            let (d, id) = (dir.clone(), workspace_id.to_owned());
            tokio::task::spawn_blocking(move || iso.remove(&d, &id))
                .await
                .map_err(ProvisionError::new)?
                .map_err(|e| {
                    ProvisionError::new(format!("removing workspace {workspace_id}: {e}"))
                })?;
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ProvisionError::new(format!(
                "remove {}: {e}",
                dir.display()
            ))),
        }
    }

    /// Stops a workspace's agent and its supervision, keeping its directory (home, token).
    pub async fn stop(&self, workspace_id: &str) {
        let stop = self
            .running
            .lock()
            .ok()
            .and_then(|mut r| r.remove(workspace_id));
        if let Some(stop) = stop {
            stop.send_replace(true);
        }
        if let Some(pid) = live_agent_pid(&self.dir(workspace_id), workspace_id) {
            terminate(pid).await;
        }
    }

    /// Where a workspace is: running while its agent lives, starting while supervised
    /// without a live agent, stopped when not supervised.
    pub fn local_state(&self, workspace_id: &str) -> crate::WorkspaceState {
        use crate::WorkspaceState;
        if !self.has(workspace_id) {
            return WorkspaceState::Missing;
        }
        let supervised = self
            .running
            .lock()
            .map(|r| r.contains_key(workspace_id))
            .unwrap_or(false);
        match (supervised, self.agent_pid(workspace_id)) {
            (true, Some(_)) => WorkspaceState::Running,
            (true, None) => WorkspaceState::Starting("agent starting".into()),
            (false, _) => WorkspaceState::Stopped,
        }
    }

    /// The PID of a workspace's agent, if it is alive.
    pub fn agent_pid(&self, workspace_id: &str) -> Option<u32> {
        live_agent_pid(&self.dir(workspace_id), workspace_id)
    }
}

struct Supervisor {
    cfg: LocalProvisionerConfig,
    dir: PathBuf,
    workspace_id: String,
    name: String,
}

impl Supervisor {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(5));
        loop {
            let started = Instant::now();
            if let Some(pid) = live_agent_pid(&self.dir, &self.workspace_id) {
                let was = std::fs::read_to_string(self.dir.join(MODE_FILE))
                    .unwrap_or_else(|_| "plain".into());
                if was.trim() != self.mode() {
                    // An agent started before isolation was turned on (or off) is restarted
                    // the way this server runs workspaces, never adopted as it is.
                    info!(workspace = %self.name, pid, was = %was.trim(), now = self.mode(), "restarting an agent started the other way");
                    terminate(pid).await;
                    continue;
                }
                info!(workspace = %self.name, pid, "adopting running agent");
                // Not our child: watch /proc until it goes away.
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                        _ = stopped(&mut stop) => return,
                    }
                    if live_agent_pid(&self.dir, &self.workspace_id) != Some(pid) {
                        break;
                    }
                }
            } else {
                match self.spawn().await {
                    Ok(mut child) => {
                        let pid = child.id().unwrap_or(0);
                        let _ = std::fs::write(self.dir.join(PID_FILE), pid.to_string());
                        let _ = std::fs::write(self.dir.join(MODE_FILE), self.mode());
                        info!(workspace = %self.name, pid, "agent started");
                        tokio::select! {
                            status = child.wait() => {
                                warn!(workspace = %self.name, pid, ?status, "agent exited");
                                let code = status.ok().and_then(|s| s.code());
                                if code == Some(relay_core::link::EXIT_WORKSPACE_GONE) {
                                    info!(workspace = %self.name, "the agent found its workspace gone; not restarting it");
                                    return;
                                }
                            }
                            _ = stopped(&mut stop) => {
                                let _ = child.start_kill();
                                let _ = child.wait().await;
                                return;
                            }
                        }
                    }
                    Err(e) => warn!(workspace = %self.name, error = %e, "could not start agent"),
                }
            }
            if !self.dir.exists() {
                info!(workspace = %self.name, "the workspace directory is gone; supervision ends");
                return;
            }
            if started.elapsed() > Duration::from_secs(10) {
                backoff.reset();
            }
            let delay = backoff.next_delay(relay_core::token::random_u64());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stopped(&mut stop) => return,
            }
        }
    }

    fn mode(&self) -> &'static str {
        if self.cfg.isolation.is_some() {
            "isolated"
        } else {
            "plain"
        }
    }

    async fn spawn(&self) -> std::io::Result<tokio::process::Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        let url_override = std::fs::read_to_string(self.dir.join(URL_FILE))
            .ok()
            .map(|s| s.trim().to_owned());
        let mut cmd = match &self.cfg.isolation {
            Some(iso) => self.isolated_command(iso, url_override).await?,
            None => self.plain_command(url_override),
        };
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Own process group: a Ctrl-C aimed at the server does not kill workspaces, and
            // stopping one signals the whole group.
            .process_group(0);
        tokio::process::Command::from(cmd).spawn()
    }

    /// The agent as the server's user, in the workspace's directory.
    fn plain_command(&self, url_override: Option<String>) -> std::process::Command {
        let mut words: Vec<String> = self.cfg.exec_prefix.clone();
        words.push(self.cfg.exe.display().to_string());
        words.push("agent".into());
        let mut cmd = std::process::Command::new(&words[0]);
        cmd.args(&words[1..])
            .current_dir(self.dir.join("home"))
            .env(
                "PERIGEE_AGENT_URL",
                url_override.unwrap_or_else(|| self.cfg.agent_url.clone()),
            )
            .env("PERIGEE_AGENT_TOKEN_FILE", self.dir.join(TOKEN_FILE))
            .env("PERIGEE_AGENT_WORKSPACE_ID", &self.workspace_id)
            .env("PERIGEE_AGENT_WATCH", &self.dir);
        if let Some(ca) = &self.cfg.ca_cert {
            cmd.env("PERIGEE_CA_CERT", ca);
        }
        cmd
    }

    /// The agent as the workspace's own uid, in its namespaces, with a cleared environment.
    async fn isolated_command(
        &self,
        iso: &crate::local_isolation::IsolationConfig,
        url_override: Option<String>,
    ) -> std::io::Result<std::process::Command> {
        let token = std::fs::read(self.dir.join(TOKEN_FILE))?;
        let (iso, dir, id, ca) = (
            iso.clone(),
            self.dir.clone(),
            self.workspace_id.clone(),
            self.cfg.ca_cert.clone(),
        );
        let prepared = tokio::task::spawn_blocking(move || {
            let p = iso.prepare(&dir, &id, &token, ca.as_deref())?;
            Ok::<_, perigee_isolate::Error>((p, iso))
        })
        .await
        .map_err(std::io::Error::other)?;
        let (p, iso) = prepared.map_err(std::io::Error::other)?;
        let url = url_override.unwrap_or_else(|| iso.agent_url.clone());
        let token_file = p.token_file.display().to_string();
        let ca_file = p.ca_file.as_ref().map(|c| c.display().to_string());
        // The agent ends when its home goes (a deleted workspace) or the data directory
        // does (a removed deployment); it can stat the latter though it cannot read it.
        let watch = format!(
            "{}:{}",
            p.account.home.display(),
            self.dir
                .parent()
                .and_then(Path::parent)
                .unwrap_or(&self.dir)
                .display()
        );
        let mut env = vec![
            ("PERIGEE_AGENT_URL", url.as_str()),
            ("PERIGEE_AGENT_TOKEN_FILE", token_file.as_str()),
            ("PERIGEE_AGENT_WORKSPACE_ID", self.workspace_id.as_str()),
            ("PERIGEE_AGENT_WATCH", watch.as_str()),
        ];
        if let Some(ca) = &ca_file {
            env.push(("PERIGEE_CA_CERT", ca.as_str()));
        }
        let log = std::env::var("PERIGEE_LOG").ok();
        if let Some(l) = &log {
            env.push(("PERIGEE_LOG", l.as_str()));
        }
        perigee_isolate::launch::command(&p.account, &self.cfg.exe, &["agent"], &env)
            .map_err(std::io::Error::other)
    }
}

/// Resolves only when the workspace is explicitly stopped. A dropped sender (the server
/// shutting down) must not count: agents outlive the server by design.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The PID in `agent.pid` if that process is alive and is this workspace's agent.
fn live_agent_pid(dir: &Path, workspace_id: &str) -> Option<u32> {
    let pid: u32 = std::fs::read_to_string(dir.join(PID_FILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // The environment is readable for our own processes; it guards against PID reuse.
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let needle = format!("PERIGEE_AGENT_WORKSPACE_ID={workspace_id}");
    let is_ours = env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes());
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    (is_ours && !zombie).then_some(pid)
}

/// Sends SIGTERM to the agent's process group (the agent leads it; isolated, it holds the
/// `unshare` parent and the agent, whose PID namespace ends every workspace process with
/// it), then SIGKILL after a grace period.
async fn terminate(pid: u32) {
    let signal = |sig: &str| {
        let _ = std::process::Command::new("kill")
            .args([sig, "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
    };
    signal("-TERM");
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
    }
    signal("-KILL");
}
