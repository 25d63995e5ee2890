//! The control plane: users, API tokens, workspaces, connection tickets and the REST API.
//!
//! It never touches the data path: edges verify the tickets it signs without calling it.
//! The embedding binary supplies [`EdgeHooks`] so the API can report whether a workspace's
//! agent is connected and can cut a deleted workspace's link.
#![recursion_limit = "256"]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use relay_core::mesh::{EdgeConfig, EdgeEntry};
use relay_core::ticket::Signer;

pub mod api;
mod builtin;
pub mod db;
pub mod devurls_api;
pub mod edges_api;
pub mod error;
pub use perigee_api::k8s_schema;
pub mod openapi;
pub mod orgs_api;
pub use perigee_api::provider_settings;
pub mod providers_api;
pub mod request;
pub mod signin;
pub mod ssh_keys_api;
pub mod store;
pub mod store_edges;
pub mod store_orgs;
pub mod store_provider_edit;
pub mod store_providers;
pub mod tokens_api;
mod webui;

pub use error::ApiError;
pub use store::Store;

/// What the control plane needs from the edges that hold agent links.
pub trait EdgeHooks: Send + Sync + 'static {
    /// Whether the workspace's agent is connected, and over which transport.
    fn agent_status(&self, workspace_id: &str) -> Option<AgentStatus>;
    /// Cuts the workspace's agent link (workspace deleted).
    fn disconnect(&self, workspace_id: &str);
    /// Gives the built-in edge the keys to trust and the other edges (at start, and after a
    /// key rotation or a satellite change).
    fn configure(&self, config: &EdgeConfig);
    /// Dev URL sharing changed: the built-in edge forgets the decisions it reuses.
    fn devurls_changed(&self) {}
}

pub use perigee_api::workspaces::AgentStatus;

/// Everything the REST API handlers share.
#[derive(Clone)]
pub struct ControlPlane {
    pub(crate) store: Store,
    signer: Arc<RwLock<Arc<Signer>>>,
    pub(crate) provisioner: Arc<dyn perigee_provision::Provisioner>,
    /// Where built-in agents dial when they home on the built-in edge (none: the
    /// provisioner's own default, as local agents reach the edge in process's host).
    pub(crate) builtin_agent_url: Option<String>,
    pub(crate) hooks: Arc<dyn EdgeHooks>,
    /// The built-in edge, as listed in the regions.
    pub(crate) primary: EdgeEntry,
    /// Agents linked to satellites, as their last heartbeat reported them.
    remote_agents: Arc<Mutex<HashMap<String, RemoteAgent>>>,
    /// The secret of TURN credentials, shared with every edge's TURN server (none: no
    /// WebRTC relay anywhere).
    pub(crate) turn_secret: Option<Vec<u8>>,
    /// Whether site admins may open connections (tickets, SSH) to other users' workspaces,
    /// named `OWNER.WORKSPACE`. Off unless the operator turns it on.
    pub(crate) admin_workspace_access: bool,
    /// The control plane edge's dev URL base (`dev.example.com` for `*.dev.example.com`);
    /// none: this deployment shows no dev URL addresses.
    pub(crate) devurl_base: Option<String>,
    /// `https` or `http`, as the edge serves.
    pub(crate) devurl_scheme: &'static str,
    /// `:PORT` when the edge is not on the scheme's default port.
    pub(crate) devurl_port_suffix: String,
    /// The widest sharing level owners may choose.
    pub(crate) devurl_max_access: devurls_api::Access,
    /// Limits on password checks (CPU-heavy by design), shared by every request.
    pub(crate) signin_limits: Arc<signin::Limits>,
    /// This replica's name, when several `perigee server` processes share the database.
    pub(crate) replica: Option<String>,
}

#[derive(Clone)]
struct RemoteAgent {
    edge: String,
    status: AgentStatus,
    reported: Instant,
    valid_for: Duration,
}

impl ControlPlane {
    /// Assembles a control plane.
    pub fn new(
        store: Store,
        signer: Signer,
        provisioner: Arc<dyn perigee_provision::Provisioner>,
        hooks: Arc<dyn EdgeHooks>,
        primary: EdgeEntry,
    ) -> Self {
        Self {
            store,
            signer: Arc::new(RwLock::new(Arc::new(signer))),
            provisioner,
            builtin_agent_url: None,
            hooks,
            primary,
            remote_agents: Arc::default(),
            turn_secret: None,
            admin_workspace_access: false,
            devurl_base: None,
            devurl_scheme: "https",
            devurl_port_suffix: String::new(),
            devurl_max_access: devurls_api::Access::Public,
            signin_limits: Arc::default(),
            replica: None,
        }
    }

    /// Runs as replica `name` of several on one database: the built-in edge's configuration
    /// lists the other live replicas (as mesh peers `replica:NAME`).
    pub fn with_replica_opt(mut self, name: Option<String>) -> Self {
        self.replica = name;
        self
    }

    /// Dev URLs under `base` (a wildcard's base, `dev.example.com`) on the control plane's
    /// edge at `scheme://…:port`, shared at most at `max`.
    pub fn with_devurls(
        mut self,
        base: Option<String>,
        scheme: &'static str,
        port: u16,
        max: devurls_api::Access,
    ) -> Self {
        self.devurl_base = base;
        self.devurl_scheme = scheme;
        let default = if scheme == "https" { 443 } else { 80 };
        self.devurl_port_suffix = if port == default {
            String::new()
        } else {
            format!(":{port}")
        };
        self.devurl_max_access = max;
        self
    }

    /// Makes TURN credentials with `secret` in connection tickets, for the edges that report
    /// a TURN server (the built-in edge's `turn_urls`, satellites' heartbeats), and hands the
    /// secret to satellites.
    pub fn with_turn_secret(mut self, secret: Vec<u8>) -> Self {
        self.turn_secret = Some(secret);
        self
    }

    /// Lets site admins connect to other users' workspaces (`OWNER.WORKSPACE` in tickets;
    /// their SSH keys are accepted by every agent).
    pub fn with_admin_workspace_access(mut self, on: bool) -> Self {
        self.admin_workspace_access = on;
        self
    }

    /// Replaces what satellite `edge` last reported about the agents linked to it.
    pub(crate) fn note_remote_agents(
        &self,
        edge: &str,
        agents: Vec<(String, AgentStatus)>,
        valid_for: Duration,
    ) {
        let mut map = match self.remote_agents.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.retain(|_, a| a.edge != edge);
        let now = Instant::now();
        for (ws, status) in agents {
            map.insert(
                ws,
                RemoteAgent {
                    edge: edge.to_owned(),
                    status,
                    reported: now,
                    valid_for,
                },
            );
        }
    }

    /// The agent of a workspace homed on satellite `edge`, if its last report is fresh.
    pub(crate) fn remote_agent(&self, workspace_id: &str, edge: &str) -> Option<AgentStatus> {
        let map = match self.remote_agents.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.get(workspace_id)
            .filter(|a| a.edge == edge && a.reported.elapsed() < a.valid_for)
            .map(|a| a.status.clone())
    }

    /// The REST API routes.
    pub fn router(&self) -> axum::Router {
        self.api_router()
            .merge(signin::router(self.clone()))
            .merge(webui::router(self.clone()))
            .layer(axum::middleware::from_fn(request::read_body_first))
    }

    /// The JSON API alone (what the CLI calls; the admin pages call it in process).
    pub(crate) fn api_router(&self) -> axum::Router {
        api::router(self.clone())
            .merge(edges_api::router(self.clone()))
            .merge(orgs_api::router(self.clone()))
            .merge(providers_api::router(self.clone()))
            .merge(devurls_api::router(self.clone()))
            .merge(ssh_keys_api::router(self.clone()))
            .merge(tokens_api::router(self.clone()))
    }

    /// The access URL of edge `name` (the primary's for itself, an unknown name or `""`).
    pub(crate) async fn edge_url(&self, name: &str) -> Result<String, ApiError> {
        if name.is_empty() || name == self.primary.name {
            return Ok(self.primary.access_url.clone());
        }
        Ok(match self.store.satellite_by_name(name).await? {
            Some(s) => s.access_url,
            None => self.primary.access_url.clone(),
        })
    }

    /// The current ticket-signing key.
    pub(crate) fn signer(&self) -> Arc<Signer> {
        match self.signer.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Built-in agents that home on the built-in edge dial `url` (pods reach the control
    /// plane by its access URL; local agents need none).
    pub fn with_builtin_agent_url(mut self, url: Option<String>) -> Self {
        self.builtin_agent_url = url;
        self
    }

    pub(crate) fn set_signer(&self, signer: Signer) {
        let mut g = match self.signer.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *g = Arc::new(signer);
    }

    /// Starts the agents of every existing workspace (after a restart).
    pub async fn resume_workspaces(&self) -> Result<(), ApiError> {
        for ws in self.store.all_workspaces().await? {
            // Remote providers run their own workspaces.
            if ws.provider != store::BUILT_IN_PROVIDER || ws.status == "stopped" {
                continue;
            }
            self.start_builtin(&ws).await?;
        }
        Ok(())
    }
}
