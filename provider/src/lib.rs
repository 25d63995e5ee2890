//! The control plane: users, API tokens, workspaces, connection tickets and the REST API.
//!
//! It never touches the data path: edges verify the tickets it signs without calling it.
//! The embedding binary supplies [`EdgeHooks`] so the API can report whether a workspace's
//! agent is connected and can cut a deleted workspace's link.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::sync::Arc;

pub mod api;
pub mod error;
pub mod local;
pub mod store;

pub use error::ApiError;
pub use local::{LocalProvisioner, LocalProvisionerConfig};
pub use store::Store;

/// What the control plane needs from the edges that hold agent links.
pub trait EdgeHooks: Send + Sync + 'static {
    /// Whether the workspace's agent is connected, and over which transport.
    fn agent_status(&self, workspace_id: &str) -> Option<AgentStatus>;
    /// Cuts the workspace's agent link (workspace deleted).
    fn disconnect(&self, workspace_id: &str);
}

/// A connected agent, as shown by `perigee ls`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentStatus {
    /// `quic` or `h2`.
    pub transport: String,
    /// Seconds since the link came up.
    pub uptime_secs: u64,
}

/// Everything the REST API handlers share.
#[derive(Clone)]
pub struct ControlPlane {
    pub(crate) store: Store,
    pub(crate) signer: Arc<relay_core::ticket::Signer>,
    pub(crate) provisioner: Arc<LocalProvisioner>,
    pub(crate) hooks: Arc<dyn EdgeHooks>,
    pub(crate) access_url: String,
}

impl ControlPlane {
    /// Assembles a control plane.
    pub fn new(
        store: Store,
        signer: Arc<relay_core::ticket::Signer>,
        provisioner: Arc<LocalProvisioner>,
        hooks: Arc<dyn EdgeHooks>,
        access_url: String,
    ) -> Self {
        Self {
            store,
            signer,
            provisioner,
            hooks,
            access_url,
        }
    }

    /// The REST API routes.
    pub fn router(&self) -> axum::Router {
        api::router(self.clone())
    }

    /// Starts the agents of every existing workspace (after a restart).
    pub async fn resume_workspaces(&self) -> Result<(), ApiError> {
        for ws in self.store.all_workspaces().await? {
            self.provisioner.start(&ws.id, &ws.name).await?;
        }
        Ok(())
    }
}
