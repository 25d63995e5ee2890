//! `--workspace-isolation` and its settings, shared by `perigee server` and
//! `perigee workspace-provider --provisioner local`; what they decide is
//! `perigee_provision::isolation_decision`.

use std::net::IpAddr;
use std::path::PathBuf;

use perigee_isolate::{Mode, UidRange};
use perigee_provision::isolation_decision::{Decision, IsolationSettings};

/// How local workspaces are isolated from the server and from each other.
#[derive(clap::Args)]
pub(crate) struct IsolationArgs {
    /// Isolate local workspaces: each runs as a uid of its own, in its own network and PID
    /// namespaces, with a cleared environment and its home outside the data directory.
    /// `auto`: when the host allows it (root on Linux; probed at start), else only admins
    /// may create local workspaces; `on`: refuse to start without it; `off`: workspaces run
    /// as the server's user on the host's network (a benchmark, a one-person laptop).
    #[arg(long, env = "PERIGEE_WORKSPACE_ISOLATION", default_value = "auto", value_parser = ["auto", "on", "off"])]
    workspace_isolation: String,
    /// Uids given to isolated workspaces, FIRST-LAST; allocated host-wide (two servers on
    /// one host never share one), skipping every uid in /etc/passwd.
    #[arg(
        long,
        env = "PERIGEE_WORKSPACE_UID_RANGE",
        default_value = "200000-259999"
    )]
    workspace_uid_range: UidRange,
    /// Where isolated workspaces' homes live (outside the data directory, which they cannot
    /// read). Homes of workspaces made before isolation move here on start.
    #[arg(
        long,
        env = "PERIGEE_WORKSPACE_HOME_ROOT",
        default_value = "/var/lib/perigee/workspaces"
    )]
    workspace_home_root: PathBuf,
    /// The DNS server isolated workspaces use [default: the host's resolvers; one on the
    /// host's loopback is reached through the workspace's gateway].
    #[arg(long, env = "PERIGEE_WORKSPACE_DNS")]
    workspace_dns: Option<IpAddr>,
    /// The host-wide uid registry every perigee server on this host shares.
    #[arg(long, env = "PERIGEE_WORKSPACE_UID_REGISTRY", default_value = perigee_isolate::uids::DEFAULT_REGISTRY, hide = true)]
    workspace_uid_registry: PathBuf,
}

/// What was decided at start.
impl IsolationArgs {
    /// The settings these flags give.
    fn settings(&self) -> anyhow::Result<IsolationSettings> {
        let mode: Mode = self
            .workspace_isolation
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--workspace-isolation: {e}"))?;
        Ok(IsolationSettings {
            mode,
            uid_range: self.workspace_uid_range,
            home_root: self.workspace_home_root.clone(),
            dns: self.workspace_dns,
            uid_registry: self.workspace_uid_registry.clone(),
        })
    }

    /// No local workspaces (the Kubernetes provisioner runs them).
    pub(crate) fn not_used(&self) -> anyhow::Result<Decision> {
        Ok(self.settings()?.not_used())
    }

    /// Decides at start (probing the host); `prefixed`: `--agent-exec-prefix` is set.
    pub(crate) fn decide(&self, prefixed: bool) -> anyhow::Result<Decision> {
        Ok(self.settings()?.decide(prefixed)?)
    }
}
