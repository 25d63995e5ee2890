//! A remote workspace provider's deployment and the control plane:
//! `POST /api/v2/providers/heartbeat` and `POST /api/v2/providers/agent-token`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A remote provider's deployment reports in (`POST /api/v2/providers/heartbeat`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderHeartbeat {
    /// Version it runs.
    pub version: String,
    /// Its heartbeat interval, seconds.
    pub heartbeat_secs: u64,
    /// A startup or runtime failure, when it has one.
    #[serde(default)]
    pub error: Option<String>,
    /// The service account its deployment runs as (Kubernetes), which no workspace may be
    /// given.
    #[serde(default)]
    pub service_account: Option<String>,
    /// It runs workspaces without isolation, as its own user: only admins may create
    /// workspaces on it.
    #[serde(default)]
    pub admins_only: bool,
    /// Where each of its workspaces is, as its provisioner sees it.
    #[serde(default)]
    pub workspaces: Vec<WorkspaceReport>,
}

/// One workspace in a provider's heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceReport {
    /// Workspace id.
    pub id: String,
    /// `starting`, `running`, `stopped`, `failed` or `missing`.
    pub state: String,
    /// Why, for `starting` and `failed`.
    #[serde(default)]
    pub message: Option<String>,
}

/// Most workspace reports taken from one heartbeat.
pub const MAX_REPORTS: usize = 10_000;
/// Longest report message kept (longer ones are cut).
pub const MAX_REPORT_MESSAGE: usize = 500;
/// The states a provider may report.
pub const REPORT_STATES: &[&str] = &["starting", "running", "stopped", "failed", "missing"];

/// The control plane's answer to a heartbeat: what the provider should run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatAnswer {
    /// The provider's name.
    pub name: String,
    /// The control plane's version.
    pub control_plane_version: String,
    /// The workspaces placed on this provider.
    pub workspaces: Vec<AssignedWorkspace>,
}

/// Whether a workspace should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Desired {
    /// Run it.
    Running,
    /// Keep it stopped (its home and token stay).
    Stopped,
}

/// A workspace placed on a provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssignedWorkspace {
    /// Workspace id.
    pub id: String,
    /// Workspace name.
    pub name: String,
    /// Where its agent dials: the provider's access URL override, else its home edge.
    pub agent_url: String,
    /// Run it or keep it stopped.
    pub desired: Desired,
    /// The provider's pod settings rendered for the owner
    /// ([`crate::provider_settings::ProviderSettings::pod_settings`]).
    pub kubernetes: Value,
}

/// `POST /api/v2/providers/agent-token`: the agent token of a workspace about to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentTokenRequest {
    /// The workspace.
    pub workspace_id: String,
}

/// The answer: the agent token (shown once; stored hashed).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentTokenAnswer {
    /// The token.
    pub token: String,
}
