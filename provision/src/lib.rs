//! What runs workspaces: one trait for every provisioner. The local provisioner (a
//! directory and a `perigee agent` process; the embedded default, [`local`]) and the
//! Kubernetes provisioner (a pod, a volume and a secret; crate `perigee-kube`) both implement
//! it and pass one behaviour suite. The control plane (`provider`) holds an
//! `Arc<dyn Provisioner>` and never names a concrete one.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod isolation_decision;
pub mod local;
pub mod local_isolation;

pub use local::{LocalProvisioner, LocalProvisionerConfig};
pub use local_isolation::IsolationConfig;

use std::future::Future;
use std::pin::Pin;

use relay_core::token::Secret;
use serde_json::Value;

/// A provisioner's future.
pub type ProvisionFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Everything a provisioner needs to run one workspace.
#[derive(Debug, Clone)]
pub struct WorkspaceSpec {
    /// Workspace id (stable; names the provisioner's objects).
    pub id: String,
    /// Workspace name (for people).
    pub name: String,
    /// The owner's user name (`""` when unknown): the workspace's Unix user when isolated.
    pub owner: String,
    /// The owner's e-mail address (`""` when unknown).
    pub owner_email: String,
    /// The agent's token.
    pub agent_token: Secret,
    /// Where the agent dials (its home edge or the provider's access URL); `""`: the
    /// provisioner's own default (the local provisioner's built-in edge).
    pub agent_url: String,
    /// The provider's pod settings, as the control plane's provider settings render them
    /// for the owner.
    pub pod_settings: Value,
}

/// Where a workspace is, as its provisioner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceState {
    /// Not known here.
    Missing,
    /// Being brought up (the reason, e.g. `ContainerCreating`).
    Starting(String),
    /// Its agent runs.
    Running,
    /// Kept (volume, token) but not running.
    Stopped,
    /// Cannot run until something changes (e.g. an image that cannot be pulled, a pod no
    /// node can take); the reason is for people.
    Failed(String),
}

impl WorkspaceState {
    /// `missing`, `starting`, `running`, `stopped` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Starting(_) => "starting",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Failed(_) => "failed",
        }
    }

    /// The reason, for `starting` and `failed`.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Starting(m) | Self::Failed(m) => Some(m),
            _ => None,
        }
    }
}

/// Why a provisioner could not do something.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProvisionError(pub String);

impl ProvisionError {
    /// An error with `message`.
    pub fn new(message: impl std::fmt::Display) -> Self {
        Self(message.to_string())
    }
}

/// Runs workspaces. Every operation is idempotent: creating what exists, starting what
/// runs, stopping what is stopped and deleting what is gone all succeed.
pub trait Provisioner: Send + Sync {
    /// Creates the workspace's lasting parts (home volume, agent token) and starts it.
    fn create<'a>(
        &'a self,
        spec: &'a WorkspaceSpec,
    ) -> ProvisionFuture<'a, Result<(), ProvisionError>>;
    /// Starts a created workspace.
    fn start<'a>(
        &'a self,
        spec: &'a WorkspaceSpec,
    ) -> ProvisionFuture<'a, Result<(), ProvisionError>>;
    /// Stops it, keeping its home and token.
    fn stop<'a>(&'a self, id: &'a str) -> ProvisionFuture<'a, Result<(), ProvisionError>>;
    /// Removes everything of it.
    fn delete<'a>(&'a self, id: &'a str) -> ProvisionFuture<'a, Result<(), ProvisionError>>;
    /// Where it is.
    fn state<'a>(
        &'a self,
        id: &'a str,
    ) -> ProvisionFuture<'a, Result<WorkspaceState, ProvisionError>>;
    /// Ids of every workspace it holds.
    fn list(&self) -> ProvisionFuture<'_, Result<Vec<String>, ProvisionError>>;
    /// The process id of a workspace's agent, where it is a process of this host.
    fn agent_pid(&self, _id: &str) -> Option<u32> {
        None
    }
    /// Why only admins may create workspaces here, if so (the local provisioner without
    /// isolation runs everyone's code as the server's user).
    fn admins_only(&self) -> Option<&'static str> {
        None
    }
    /// Keeps the pod settings the control plane gave a workspace where people can look
    /// (the local provisioner writes `kubernetes.json` beside it; the Kubernetes one applies
    /// them to the pod instead).
    fn note_pod_settings(&self, _id: &str, _settings: &Value) {}
}

impl Provisioner for crate::LocalProvisioner {
    fn create<'a>(
        &'a self,
        spec: &'a WorkspaceSpec,
    ) -> ProvisionFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            if self.has(&spec.id) {
                return crate::LocalProvisioner::start(self, &spec.id, &spec.name).await;
            }
            crate::LocalProvisioner::create(
                self,
                &spec.id,
                &spec.name,
                if spec.owner.is_empty() {
                    spec.owner_email.split('@').next().unwrap_or("")
                } else {
                    &spec.owner
                },
                &spec.agent_token,
                (!spec.agent_url.is_empty()).then_some(spec.agent_url.as_str()),
            )
            .await
        })
    }

    fn start<'a>(
        &'a self,
        spec: &'a WorkspaceSpec,
    ) -> ProvisionFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move { crate::LocalProvisioner::start(self, &spec.id, &spec.name).await })
    }

    fn stop<'a>(&'a self, id: &'a str) -> ProvisionFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            crate::LocalProvisioner::stop(self, id).await;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> ProvisionFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move { crate::LocalProvisioner::delete(self, id).await })
    }

    fn state<'a>(
        &'a self,
        id: &'a str,
    ) -> ProvisionFuture<'a, Result<WorkspaceState, ProvisionError>> {
        Box::pin(async move { Ok(self.local_state(id)) })
    }

    fn list(&self) -> ProvisionFuture<'_, Result<Vec<String>, ProvisionError>> {
        Box::pin(async move { Ok(self.workspace_ids()) })
    }

    fn agent_pid(&self, id: &str) -> Option<u32> {
        crate::LocalProvisioner::agent_pid(self, id)
    }

    fn note_pod_settings(&self, id: &str, settings: &Value) {
        if !self.has(id) {
            return;
        }
        let path = self.dir(id).join("kubernetes.json");
        let text = serde_json::to_string_pretty(settings).unwrap_or_default();
        if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            if let Err(e) = std::fs::write(&path, text) {
                tracing::warn!(workspace = id, error = %e, "cannot write kubernetes.json");
            }
        }
    }

    fn admins_only(&self) -> Option<&'static str> {
        self.single_user().then_some(
            "the built-in provider runs workspaces as the server's own user on this host \
             (the server is not root on Linux, so workspaces cannot be isolated from it and \
             from each other): only admins may create workspaces on it. Ask an admin to add a \
             workspace provider (`perigee providers create`) and create yours there with \
             --provider, or run `perigee server` as root on Linux",
        )
    }
}
