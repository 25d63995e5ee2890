//! The edge: TLS termination, client tunnels, agent links, metrics.
//!
//! An [`Edge`] owns the agent links of the workspaces homed on it and the tunnel endpoint that
//! clients reach. It never binds sockets itself: callers hand it bound listeners
//! ([`serve_http`], [`quic::serve`]) and a shutdown future, so tests run on port 0.
//! It authorises tunnels offline with connection tickets; agents are authenticated through
//! an [`AgentAuthenticator`] supplied by whoever embeds the edge.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use dashmap::DashMap;
use relay_core::mesh::EdgeConfig;
use relay_core::ticket::Verifier;

pub mod devurl;
pub mod forward;
pub mod h2link;
mod linkio;
pub mod links;
mod listener;
pub mod mesh;
pub mod metrics;
pub mod quic;
pub mod role;
#[cfg(test)]
mod test_links;
pub mod tunnel;
mod wsrelay;

pub use links::{AgentLink, LinkInfo, Transport};
pub use listener::{
    bind_pair, https_config, serve_http, stun_handler, HttpSettings, Io, PeerAddr, Serving,
    StunHandler, STUN_ALPN,
};
pub use metrics::{DropReason, EdgeMetrics, Side};

/// Boxed future returned by [`AgentAuthenticator`].
pub type AuthFuture<'a> =
    Pin<Box<dyn Future<Output = Result<AgentIdentity, AuthError>> + Send + 'a>>;

/// Resolves an agent token to the workspace it belongs to.
pub trait AgentAuthenticator: Send + Sync + 'static {
    /// Checks `token`; called once per agent link, never per stream.
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a>;
}

/// The workspace an authenticated agent serves.
#[derive(Debug, Clone)]
pub struct AgentIdentity {
    /// Workspace id.
    pub workspace_id: String,
    /// Workspace name, for logs.
    pub workspace_name: String,
}

/// Why an agent was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is unknown or revoked.
    #[error("agent token not accepted")]
    Rejected,
    /// The authority could not be asked.
    #[error("agent authentication unavailable: {0}")]
    Unavailable(String),
}

/// One edge. Cheap to clone.
#[derive(Clone)]
pub struct Edge {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    verifier: RwLock<Arc<Verifier>>,
    mesh: mesh::Mesh,
    agents: DashMap<String, Arc<AgentLink>>,
    auth: Arc<dyn AgentAuthenticator>,
    metrics: EdgeMetrics,
    registry: prometheus::Registry,
    devurls: RwLock<Option<Arc<devurl::DevUrls>>>,
}

impl Edge {
    /// An edge named `name` trusting `verifier` for tickets and `auth` for agent tokens; its
    /// metrics are registered in `registry` (served at `/metrics`).
    pub fn new(
        name: &str,
        verifier: Verifier,
        auth: Arc<dyn AgentAuthenticator>,
        registry: prometheus::Registry,
    ) -> Result<Self, prometheus::Error> {
        let metrics = EdgeMetrics::register(&registry)?;
        Ok(Self {
            inner: Arc::new(Inner {
                name: name.to_owned(),
                verifier: RwLock::new(Arc::new(verifier)),
                mesh: mesh::Mesh::new(),
                agents: DashMap::new(),
                auth,
                metrics,
                registry,
                devurls: RwLock::new(None),
            }),
        })
    }

    /// Serves dev URLs under `wildcard` (`*.dev.example.com`) as `scheme` (what users
    /// reach the edge with), letting `resolver` decide who may open which; sign-in cookies
    /// are signed with `cookie_key`.
    pub fn enable_devurls(
        &self,
        wildcard: &str,
        scheme: &'static str,
        resolver: Arc<dyn devurl::DevUrlResolver>,
        cookie_key: &[u8],
    ) {
        let d = Arc::new(devurl::DevUrls::new(wildcard, scheme, resolver, cookie_key));
        match self.inner.devurls.write() {
            Ok(mut g) => *g = Some(d),
            Err(p) => *p.into_inner() = Some(d),
        }
    }

    /// Forgets the dev URL decisions the edge reuses (sharing changed).
    pub fn forget_devurl_decisions(&self) {
        if let Some(d) = self.devurls() {
            d.forget_decisions();
        }
    }

    pub(crate) fn devurls(&self) -> Option<Arc<devurl::DevUrls>> {
        match self.inner.devurls.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// `router` with dev URL hosts taken out in front of it (see [`devurl`]).
    pub fn with_devurls(&self, router: axum::Router) -> axum::Router {
        // As a fallback service the router is behind the middleware for every path,
        // including those it has no route for.
        axum::Router::new()
            .fallback_service(router)
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                devurl::dispatch,
            ))
    }

    /// This edge's name (`primary` for the control plane's built-in edge).
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The ticket verifier in force (a cheap clone of a shared pointer).
    pub(crate) fn verifier(&self) -> Arc<Verifier> {
        match self.inner.verifier.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub(crate) fn mesh(&self) -> &mesh::Mesh {
        &self.inner.mesh
    }

    /// Applies what the control plane sent: ticket keys, mesh keys and the other edges.
    /// Called at registration and on every heartbeat; open tunnels are not affected.
    pub fn configure(&self, cfg: &EdgeConfig) {
        let verifier = Arc::new(
            Verifier::new(cfg.ticket_public_keys()).with_revoked(cfg.revoked_tokens.clone()),
        );
        match self.inner.verifier.write() {
            Ok(mut g) => *g = verifier,
            Err(p) => *p.into_inner() = verifier,
        }
        self.inner.mesh.configure(cfg);
    }

    /// Makes this edge a replica of the control plane named `replica:NAME` on the mesh: it
    /// dials other replicas (entries named `replica:…`) without trusting their
    /// certificates — each side proves the mesh key over the connection instead — and asks
    /// `locator` which replica holds an agent link it does not have. Call after
    /// [`Edge::enable_mesh`].
    pub fn enable_replica(
        &self,
        name: &str,
        locator: Arc<dyn mesh::Locator>,
    ) -> anyhow::Result<()> {
        let tls = devurl::any_cert_config(relay_core::wire::MESH_ALPN)?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        cfg.transport_config(Arc::new(relay_core::link::quic_transport()));
        self.inner
            .mesh
            .set_replica(format!("{}{name}", mesh::REPLICA_PREFIX), cfg, locator);
        Ok(())
    }

    /// Lets the edge dial other edges from `endpoint` (the edge's own QUIC endpoint), trusting
    /// `roots` for their certificates.
    pub fn enable_mesh(
        &self,
        endpoint: quinn::Endpoint,
        roots: rustls::RootCertStore,
    ) -> anyhow::Result<()> {
        let tls = relay_core::tls::client_config(roots, &[relay_core::wire::MESH_ALPN])?;
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
        cfg.transport_config(Arc::new(relay_core::link::quic_transport()));
        self.inner.mesh.set_endpoint(endpoint, cfg);
        Ok(())
    }

    /// Dials every other edge the control plane listed, concurrently (so the first
    /// forwarded tunnel does not pay the handshake, and round trips are known); links that
    /// are up cost nothing. Returns the failures.
    pub async fn dial_mesh(&self) -> Vec<(String, String)> {
        let names: Vec<String> = self
            .inner
            .mesh
            .edge_names()
            .into_iter()
            .filter(|n| n != self.name())
            .collect();
        let dials = names.iter().map(|n| self.mesh_conn(n));
        let results = futures_util::future::join_all(dials).await;
        names
            .into_iter()
            .zip(results)
            .filter_map(|(n, r)| r.err().map(|e| (n, e.to_string())))
            .collect()
    }

    /// Round trips of the open mesh links, in milliseconds, by peer edge.
    pub fn mesh_rtts_ms(&self) -> std::collections::HashMap<String, f64> {
        self.inner.mesh.rtts_ms()
    }

    /// The edge's metrics.
    pub fn metrics(&self) -> &EdgeMetrics {
        &self.inner.metrics
    }

    /// The registry holding the edge's metrics.
    pub fn registry(&self) -> &prometheus::Registry {
        &self.inner.registry
    }

    pub(crate) fn authenticator(&self) -> &Arc<dyn AgentAuthenticator> {
        &self.inner.auth
    }

    /// The connected agent link of a workspace, if any.
    pub fn agent(&self, workspace_id: &str) -> Option<Arc<AgentLink>> {
        self.inner.agents.get(workspace_id).map(|l| l.clone())
    }

    /// Every connected agent: workspace id and link summary.
    pub fn agents(&self) -> Vec<(String, LinkInfo)> {
        self.inner
            .agents
            .iter()
            .map(|e| (e.key().clone(), e.value().info()))
            .collect()
    }

    /// Whether and how a workspace's agent is connected.
    pub fn agent_info(&self, workspace_id: &str) -> Option<LinkInfo> {
        self.agent(workspace_id).map(|l| l.info())
    }

    /// Closes a workspace's agent link (workspace deleted or token revoked).
    pub fn disconnect(&self, workspace_id: &str) {
        if let Some((_, link)) = self.inner.agents.remove(workspace_id) {
            link.close("workspace removed");
        }
    }

    /// Holds an authenticated link for its lifetime: records the handshake time, registers
    /// it (replacing an older link of the same workspace), waits until the transport ends
    /// (`ended`) or the link is closed by the edge, then unregisters it.
    pub(crate) async fn hold_link(
        &self,
        identity: &AgentIdentity,
        conn: links::LinkConn,
        handshake_started: std::time::Instant,
        ended: impl Future<Output = String>,
    ) {
        let link = Arc::new(AgentLink::new(
            identity.workspace_id.clone(),
            identity.workspace_name.clone(),
            conn,
        ));
        let transport = link.transport().as_str();
        self.inner
            .metrics
            .link_handshake_seconds
            .with_label_values(&[transport])
            .observe(handshake_started.elapsed().as_secs_f64());
        tracing::info!(workspace = %identity.workspace_name, transport, "agent link up");
        self.register(link.clone());
        tokio::select! {
            reason = ended => tracing::info!(workspace = %identity.workspace_name, %reason, "agent link down"),
            _ = link.closed() => {}
        }
        self.unregister(&link);
    }

    /// Registers a link, replacing (and closing) an older link of the same workspace.
    fn register(&self, link: Arc<AgentLink>) {
        let m = &self.inner.metrics;
        m.links_open
            .with_label_values(&[link.transport().as_str()])
            .inc();
        if let Some(old) = self
            .inner
            .agents
            .insert(link.workspace_id().to_owned(), link)
        {
            old.close("replaced by a newer link");
        }
    }

    /// Removes `link` if it is still the registered one.
    fn unregister(&self, link: &AgentLink) {
        self.inner
            .metrics
            .links_open
            .with_label_values(&[link.transport().as_str()])
            .dec();
        self.inner
            .agents
            .remove_if(link.workspace_id(), |_, cur| cur.id() == link.id());
    }

    /// The edge's HTTP routes: `/healthz`, `/metrics`, the tunnel and the agent-link upgrade.
    pub fn router(&self) -> axum::Router {
        use axum::routing::{any, get};
        axum::Router::new()
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/latency-check", get(latency_check))
            .route("/metrics", get(metrics::serve))
            .route(tunnel::PATH, any(tunnel::handle))
            .route(h2link::PATH, any(h2link::handle))
            .with_state(self.clone())
    }
}

/// `GET /latency-check`: a tiny answer for round-trip probes, with this edge's name and its
/// measured mesh round trips (a client adds them to find its fastest path to a workspace).
async fn latency_check(
    axum::extract::State(edge): axum::extract::State<Edge>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        [(http::header::CACHE_CONTROL, "no-store")],
        axum::Json(serde_json::json!({
            "edge": edge.name(),
            "mesh_rtt_ms": edge.mesh_rtts_ms(),
        })),
    )
        .into_response()
}

/// A JSON error response `{"error": message, "code": code}`.
pub(crate) fn error_response(
    status: http::StatusCode,
    code: &str,
    message: impl Into<String>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into(), "code": code })),
    )
        .into_response()
}
