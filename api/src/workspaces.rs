//! Workspaces (`/api/v2/workspaces…`), their tickets and the caller (`/api/v2/users/me`).

use serde::{Deserialize, Serialize};

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct User {
    /// Id.
    pub id: String,
    /// Login name.
    pub username: String,
    /// `admin`, `site-manager` or `member`.
    pub role: String,
}

/// A workspace row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Workspace {
    /// Id.
    pub id: String,
    /// Name, unique per owner.
    pub name: String,
    /// Owner's user id.
    pub owner_id: String,
    /// Owner's user name.
    pub owner: String,
    /// Provider name.
    pub provider: String,
    /// `running` or `stopped`.
    pub status: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// The edge the agent links to (`primary` unless it homes on a satellite).
    pub home_edge: String,
    /// The organization it belongs to.
    pub org: String,
    /// What its provider last reported (`starting`, `running`, `stopped`, `failed`,
    /// `missing`; remote providers).
    pub provider_state: Option<String>,
    /// Why, for `starting` and `failed` (e.g. `ErrImagePull: …`).
    pub provider_message: Option<String>,
}

/// A connected agent, as shown by `perigee ls`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct AgentStatus {
    /// `quic` or `h2`.
    pub transport: String,
    /// Seconds since the link came up.
    pub uptime_secs: u64,
}

/// A workspace as the API shows it (`GET /api/v2/workspaces`, `…/{name}`, creation).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct WorkspaceView {
    /// The workspace.
    #[serde(flatten)]
    pub workspace: Workspace,
    /// Whether the agent is connected to its edge.
    pub agent_connected: bool,
    /// The agent link, when connected.
    pub agent: Option<AgentStatus>,
    /// Local provisioner: the agent's process id.
    pub agent_pid: Option<u32>,
}

/// `POST /api/v2/workspaces`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateWorkspace {
    /// Its name (a DNS label).
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::label_schema"))]
    pub name: String,
    /// The edge the agent should link to (default: the primary edge).
    #[serde(default)]
    pub edge: Option<String>,
    /// The organization (default: the caller's only organization).
    #[serde(default)]
    pub org: Option<String>,
    /// The workspace provider (default: the default provider).
    #[serde(default)]
    pub provider: Option<String>,
}

/// `DELETE /api/v2/workspaces/{name}`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Deleted {
    /// The workspace's name.
    pub deleted: String,
}

/// An empty JSON object, for requests without a body (`{}`).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

/// `POST /api/v2/workspaces/{name}/ticket`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TicketRequest {
    /// The ports the ticket opens.
    #[cfg_attr(feature = "schema", schemars(inner(range(min = 1, max = 65535))))]
    pub ports: Vec<u16>,
}

/// A signed connection ticket and where to use it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TicketResponse {
    /// The ticket (send it in the `Perigee-Ticket` header).
    pub ticket: String,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// Workspace id.
    pub workspace_id: String,
    /// The workspace's home edge's URL (any healthy edge also works: see `/api/v2/regions`).
    pub edge_url: String,
    /// The workspace's home edge's name.
    pub home_edge: String,
    /// Fingerprint (SHA-256, hex) of the agent's end-to-end key when the workspace's provider
    /// has end-to-end encryption on: streams then carry a TLS session with exactly that key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_fingerprint: Option<String>,
    /// STUN/TURN servers with ephemeral credentials for the WebRTC path, when the
    /// workspace's provider has Networking v2 on (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ice_servers: Vec<IceServer>,
}

/// One ICE server entry, in the WebRTC `RTCIceServer` shape, and the edge running it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct IceServer {
    /// `stun:`, `turn:` and `turns:` URLs.
    pub urls: Vec<String>,
    /// TURN username (`EXPIRY:USER-ID`).
    pub username: String,
    /// TURN password.
    pub credential: String,
    /// The edge whose TURN server this is: clients use the one of the edge they enter
    /// through, so that relayed bytes stay in their region.
    pub edge: String,
}

/// Every API error's body.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// A machine-readable code, where there is one (e.g. the edge's `bad_ticket`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The request field at fault, where there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
