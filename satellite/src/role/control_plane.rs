//! The satellite's calls to the control plane: registration and heartbeats (which bring
//! the edge configuration), and agent authentication (remembered, so an agent can reconnect
//! while the control plane is away).

use std::sync::Arc;

use perigee_api::http::HttpError;
use perigee_api::satellites::{ReportedAgent, SatelliteHeartbeat};
use relay_core::mesh::EdgeConfig;
use serde_json::json;
use tracing::warn;

use super::state::SatelliteState;
use super::MAX_CONFIG;
use crate::{AgentAuthenticator, AgentIdentity, AuthError, AuthFuture, Edge};

/// Agents may home on a satellite: their tokens are checked by the control plane, and the
/// answer is remembered so an agent can reconnect while the control plane is away.
pub(super) struct ControlPlaneAgentAuth {
    pub(super) http: reqwest::Client,
    pub(super) primary_url: String,
    pub(super) token: String,
    pub(super) state: Arc<SatelliteState>,
}

/// The control plane's answer to `agent-auth`.
#[derive(serde::Deserialize)]
struct AgentAuthAnswer {
    workspace_id: String,
    workspace_name: String,
}

impl ControlPlaneAgentAuth {
    async fn ask(&self, token: &str) -> Result<AgentIdentity, AuthError> {
        let resp = self
            .http
            .post(format!("{}/api/v2/satellites/agent-auth", self.primary_url))
            .bearer_auth(&self.token)
            .json(&json!({ "token": token }))
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(HttpError::from(e).to_string()))?;
        match perigee_api::http::json_limited::<AgentAuthAnswer>(resp, 64 * 1024).await {
            Ok(a) => Ok(AgentIdentity {
                workspace_id: a.workspace_id,
                workspace_name: a.workspace_name,
            }),
            Err(e) if e.status() == Some(401) => Err(AuthError::Rejected),
            Err(e @ HttpError::Status { .. }) => Err(AuthError::Unavailable(format!(
                "control plane answered {e}"
            ))),
            Err(e) => Err(AuthError::Unavailable(e.to_string())),
        }
    }
}

impl AgentAuthenticator for ControlPlaneAgentAuth {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(async move {
            let key = relay_core::token::hash(token);
            match self.ask(token).await {
                Ok(id) => {
                    self.state.set_agent(&key, Some(&id));
                    Ok(id)
                }
                Err(AuthError::Rejected) => {
                    self.state.set_agent(&key, None);
                    Err(AuthError::Rejected)
                }
                Err(AuthError::Unavailable(e)) => match self.state.agent(&key) {
                    Some(id) => {
                        warn!(error = %e, workspace = %id.workspace_name, "control plane unreachable: accepting an agent it accepted before");
                        Ok(id)
                    }
                    None => Err(AuthError::Unavailable(e)),
                },
            }
        })
    }
}

/// How a registration attempt failed.
pub(super) enum RegisterError {
    /// The control plane refused: retrying will not help.
    Refused(String),
    /// It could not be reached or failed: retry.
    Unavailable(String),
}

impl From<HttpError> for RegisterError {
    fn from(e: HttpError) -> Self {
        if e.is_refusal() {
            Self::Refused(e.to_string())
        } else {
            Self::Unavailable(e.to_string())
        }
    }
}

/// Registration and heartbeats.
pub(super) struct ControlPlaneClient {
    pub(super) http: reqwest::Client,
    pub(super) primary_url: String,
    pub(super) token: String,
    /// What every call sends (access URL, version, heartbeat interval, TURN URLs).
    pub(super) body: SatelliteHeartbeat,
}

impl ControlPlaneClient {
    /// Registers (or heartbeats, by `path`), reporting the edge's agents and mesh round trips
    /// and the `error` to show admins; answers the edge configuration.
    pub(super) async fn call(
        &self,
        path: &str,
        edge: Option<&Edge>,
        error: Option<String>,
    ) -> Result<EdgeConfig, RegisterError> {
        let mut body = self.body.clone();
        if let Some(edge) = edge {
            body.mesh_rtt_ms = edge
                .mesh_rtts_ms()
                .into_iter()
                .map(|(peer, ms)| (peer, json!(ms)))
                .collect();
            body.agents = edge
                .agents()
                .into_iter()
                .map(|(ws, info)| ReportedAgent {
                    workspace_id: ws,
                    transport: info.transport.as_str().to_owned(),
                    uptime_secs: info.uptime.as_secs(),
                })
                .collect();
        }
        body.error = error;
        let resp = self
            .http
            .post(format!("{}{path}", self.primary_url))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .map_err(HttpError::from)?;
        Ok(perigee_api::http::json_limited(resp, MAX_CONFIG).await?)
    }
}
