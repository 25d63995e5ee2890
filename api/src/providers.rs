//! A remote workspace provider's deployment and the control plane:
//! `POST /api/v2/providers/heartbeat` and `POST /api/v2/providers/agent-token`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A remote provider's deployment reports in (`POST /api/v2/providers/heartbeat`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Desired {
    /// Run it.
    Running,
    /// Keep it stopped (its home and token stay).
    Stopped,
}

/// A workspace placed on a provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentTokenRequest {
    /// The workspace.
    pub workspace_id: String,
}

/// The answer: the agent token (shown once; stored hashed).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentTokenAnswer {
    /// The token.
    pub token: String,
}

/// A provider as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Provider {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// The control plane's own cluster.
    pub built_in: bool,
    /// Where new workspaces go when no provider is named.
    pub default: bool,
    /// `pending | ready | error`.
    pub status: String,
    /// Why it is in `error`.
    pub status_message: Option<String>,
    /// URL its edge serves (remote providers).
    pub hostname: Option<String>,
    /// Kubernetes API server URL (remote providers).
    pub cluster_address: Option<String>,
    /// Namespace workspaces go to.
    pub namespace: Option<String>,
    /// Organizations allowed to create workspaces there, by name.
    pub orgs: Vec<String>,
    /// Workspaces it holds.
    pub workspaces: i64,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Last heartbeat of its `perigee workspace-provider` (Unix seconds).
    pub last_heartbeat_at: Option<i64>,
    /// Version its deployment runs.
    pub version: Option<String>,
    /// The Kubernetes service account its own deployment runs as (reported with its
    /// heartbeat): never a workspace's.
    pub own_service_account: Option<String>,
    /// Its deployment runs workspaces without isolation (a local provisioner not run as
    /// root): only admins may create workspaces there.
    pub admins_only: bool,
    /// Why it takes no new workspaces (`None`: not cordoned).
    pub cordon_reason: Option<String>,
    /// When it was cordoned (Unix seconds).
    pub cordoned_at: Option<i64>,
    /// Features and Kubernetes settings.
    pub settings: crate::provider_settings::ProviderSettings,
    /// The pod affinity its workspaces get (the configured one, else the default).
    pub effective_affinity: serde_json::Value,
}

/// What an edit did, with warnings worth showing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Edited {
    /// The provider after the edit.
    pub provider: Provider,
    /// e.g. an empty allowlist.
    pub warnings: Vec<String>,
}

/// `POST /api/v2/providers` (admins and site managers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateProvider {
    /// Unique name (a DNS label).
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::label_schema"))]
    pub name: String,
    /// The URL its edge serves (a subdomain of the control plane's).
    pub hostname: String,
    /// Its Kubernetes API server's URL.
    pub cluster_address: String,
    /// The namespace workspaces go to.
    #[serde(default)]
    pub namespace: Option<String>,
}

/// The answer: the provider, its REMOTE token (shown once) and the Helm command that
/// installs its deployment (also as data).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProviderCreated {
    /// The provider (`pending` until its deployment registers).
    pub provider: Provider,
    /// Its REMOTE token.
    pub token: String,
    /// `helm upgrade --install …` with the token.
    pub helm_command: String,
    /// The same as data: release, chart, version and `--set` values.
    pub helm: Value,
}

/// `POST /api/v2/providers/{name}/cordon`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CordonRequest {
    /// Why it takes no new workspaces.
    pub reason: String,
}

/// `DELETE /api/v2/providers/{name}`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProviderDeleted {
    /// The provider's name.
    pub deleted: String,
}
