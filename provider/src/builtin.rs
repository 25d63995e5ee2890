//! The built-in provider's workspaces, run by the control plane's own provisioner (local
//! processes, or pods in the cluster the control plane runs in).

use relay_core::token::Secret;

use crate::store::{Workspace, BUILT_IN_PROVIDER};
use crate::{ApiError, ControlPlane};
use perigee_provision::WorkspaceSpec;

impl ControlPlane {
    /// What the provisioner gets for built-in workspace `ws`: the built-in provider's pod
    /// settings rendered for the owner, and where the agent dials (a satellite it homes on,
    /// else the provisioner's default: the built-in edge for local agents, the access URL
    /// for pods).
    pub(crate) async fn builtin_spec(
        &self,
        ws: &Workspace,
        agent_token: Option<Secret>,
    ) -> Result<WorkspaceSpec, ApiError> {
        let provider = self
            .store
            .provider_by_name(BUILT_IN_PROVIDER)
            .await?
            .ok_or_else(|| ApiError::internal("the built-in provider is missing"))?;
        let email = self
            .store
            .provider_workspaces(&provider.id)
            .await?
            .into_iter()
            .find(|w| w.id == ws.id)
            .map(|w| w.owner_email)
            .unwrap_or_default();
        let agent_url = if !ws.home_edge.is_empty() && ws.home_edge != self.primary.name {
            self.edge_url(&ws.home_edge).await?
        } else {
            self.builtin_agent_url.clone().unwrap_or_default()
        };
        Ok(WorkspaceSpec {
            owner: ws.owner.clone(),
            id: ws.id.clone(),
            name: ws.name.clone(),
            pod_settings: provider.settings.pod_settings(&email),
            owner_email: email,
            agent_token: agent_token.unwrap_or_else(|| Secret::new("")),
            agent_url,
        })
    }

    /// Starts a built-in workspace (after `perigee start`, or a restart of the server).
    pub(crate) async fn start_builtin(&self, ws: &Workspace) -> Result<(), ApiError> {
        let spec = self.builtin_spec(ws, None).await?;
        self.provisioner
            .start(&spec)
            .await
            .map_err(|e| ApiError::internal(format!("starting workspace {}: {e}", ws.name)))
    }

    /// Stops a built-in workspace, keeping its home.
    pub(crate) async fn stop_builtin(&self, ws: &Workspace) -> Result<(), ApiError> {
        self.provisioner
            .stop(&ws.id)
            .await
            .map_err(|e| ApiError::internal(format!("stopping workspace {}: {e}", ws.name)))
    }
}
