//! Satellites and ticket keys (`/api/v2/satellites…`, `/api/v2/keys/rotate`), admins only.

use serde::{Deserialize, Serialize};

/// A satellite row.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Satellite {
    /// Id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Region label.
    pub region: String,
    /// URL users reach it at.
    pub access_url: String,
    /// Wildcard host of its dev URLs.
    pub devurl_host: Option<String>,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// First registration (Unix seconds).
    pub registered_at: Option<i64>,
    /// Last heartbeat (Unix seconds).
    pub last_heartbeat_at: Option<i64>,
    /// Heartbeat interval the satellite announced, seconds.
    pub heartbeat_secs: Option<i64>,
    /// Version the satellite runs.
    pub version: Option<String>,
    /// Problem the satellite reported in its last heartbeat.
    pub reported_error: Option<String>,
    /// Round trips the satellite measured to other edges, ms.
    pub mesh_rtt_ms: serde_json::Map<String, serde_json::Value>,
    /// Its STUN/TURN URLs, as last reported.
    pub turn_urls: Vec<String>,
}

/// Health of a satellite, from its heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub enum Health {
    /// Heartbeats arrive and the satellite reports no problem.
    Ok,
    /// It missed two heartbeats, or reported a problem.
    Unhealthy,
    /// It missed four heartbeats.
    Unreachable,
    /// It never registered.
    Unregistered,
}

impl Health {
    /// `ok`, `unhealthy`, `unreachable` or `unregistered`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Unhealthy => "unhealthy",
            Self::Unreachable => "unreachable",
            Self::Unregistered => "unregistered",
        }
    }
}

/// A satellite as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SatelliteView {
    /// The satellite.
    #[serde(flatten)]
    pub satellite: Satellite,
    /// Its health.
    pub health: Health,
    /// Why it is not `ok`.
    pub error: Option<String>,
    /// The satellite runs another version than the control plane.
    pub version_mismatch: bool,
}

/// `GET /api/v2/satellites`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SatelliteList {
    /// The control plane's version (satellites should run the same).
    pub control_plane_version: String,
    /// Every satellite.
    pub satellites: Vec<SatelliteView>,
}

/// `POST /api/v2/satellites`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct CreateSatellite {
    /// Unique name (a DNS label).
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::label_schema"))]
    pub name: String,
    /// Region label.
    pub region: String,
    /// URL users reach it at.
    pub access_url: String,
    /// Wildcard host of its dev URLs.
    #[serde(default)]
    pub devurl_host: Option<String>,
}

/// The answer: the satellite, its token (shown once) and the command that starts it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SatelliteCreated {
    /// The satellite.
    pub satellite: SatelliteView,
    /// Its token.
    pub token: String,
    /// `perigee satellite …` with the token.
    pub command: String,
}

/// `POST /api/v2/keys/rotate`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct KeyRotated {
    /// The new ticket-signing key's id.
    pub kid: String,
    /// What happens next.
    pub note: String,
}

/// `POST /api/v2/satellites/devurl-redeem` (satellite token): a browser's one-time sign-in
/// code for one of the satellite's dev URL hosts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DevUrlRedeemRequest {
    /// The code.
    pub code: String,
    /// The host it was made for.
    pub host: String,
}

/// The answer: the user the code signs in, if it is good.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DevUrlRedeemed {
    /// The user's id.
    pub user_id: Option<String>,
}

/// An edge users may enter through (`GET /api/v2/regions`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Region {
    /// The edge's name (`primary` for the control plane's own).
    pub name: String,
    /// Region label shown to users.
    pub region: String,
    /// URL users reach it at.
    pub access_url: String,
    /// Wildcard host of its dev URLs.
    #[serde(default)]
    pub devurl_host: Option<String>,
    /// Its STUN/TURN URLs (empty: none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turn_urls: Vec<String>,
    /// Where to measure round trips.
    pub latency_check_url: String,
    /// Whether this is the control plane's own edge.
    #[serde(default)]
    pub primary: bool,
}

/// What a satellite reports on each heartbeat (`POST /api/v2/satellites/register` and
/// `…/heartbeat`, satellite token).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SatelliteHeartbeat {
    /// URL the satellite serves (must match the one it was created with).
    pub access_url: String,
    /// Its version.
    pub version: String,
    /// Its heartbeat interval, seconds.
    pub heartbeat_secs: u64,
    /// A problem it sees (e.g. the mesh to an edge is down).
    #[serde(default)]
    pub error: Option<String>,
    /// Round trips to other edges over the mesh, ms.
    #[serde(default)]
    pub mesh_rtt_ms: serde_json::Map<String, serde_json::Value>,
    /// Agents linked to the satellite.
    #[serde(default)]
    pub agents: Vec<ReportedAgent>,
    /// Its STUN/TURN server's URLs (`stun:`, `turn:`, `turns:`), checked by the control plane.
    #[serde(default)]
    pub turn_urls: Vec<String>,
}

/// An agent a satellite holds a link for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ReportedAgent {
    /// Workspace id.
    pub workspace_id: String,
    /// `quic` or `h2`.
    pub transport: String,
    /// Seconds since the link came up.
    pub uptime_secs: u64,
}
