//! What the control plane and the built-in edge give each other in one process: agent
//! tokens checked against the store, the replica holding a link, dev URL decisions, and the
//! edge hooks the control plane calls.

use provider::{ControlPlane, EdgeHooks, Store};
use relay_core::mesh::{EdgeConfig, PRIMARY_EDGE};
use satellite::{AgentAuthenticator, AgentIdentity, AuthError, AuthFuture, Edge};
use tracing::warn;

/// Agent tokens checked against the store; `Some(name)`: this replica, recorded as the one
/// holding the link.
pub(crate) struct StoreAuth(pub(crate) Store, pub(crate) Option<String>);

impl AgentAuthenticator for StoreAuth {
    fn authenticate<'a>(&'a self, token: &'a str) -> AuthFuture<'a> {
        Box::pin(async move {
            match self.0.workspace_by_agent_token(token).await {
                Ok(Some(ws)) => {
                    // The agent linked here: this is now its home edge.
                    if ws.home_edge != PRIMARY_EDGE {
                        self.0
                            .set_home_edge(&ws.id, PRIMARY_EDGE)
                            .await
                            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
                    }
                    if let Some(me) = &self.1 {
                        self.0
                            .set_link_replica(&ws.id, me)
                            .await
                            .map_err(|e| AuthError::Unavailable(e.to_string()))?;
                    }
                    Ok(AgentIdentity {
                        workspace_id: ws.id,
                        workspace_name: ws.name,
                    })
                }
                Ok(None) => Err(AuthError::Rejected),
                Err(e) => Err(AuthError::Unavailable(e.to_string())),
            }
        })
    }
}

/// Which replica holds a workspace's agent link (as the store last recorded it).
pub(crate) struct ReplicaLocator {
    pub(crate) store: Store,
    pub(crate) me: String,
}

impl satellite::mesh::Locator for ReplicaLocator {
    fn locate<'a>(
        &'a self,
        workspace_id: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(async move {
            match self.store.link_replica(workspace_id).await {
                Ok(Some(r)) if r != self.me => {
                    Some(format!("{}{r}", relay_core::mesh::REPLICA_PREFIX))
                }
                Ok(_) => None,
                Err(e) => {
                    warn!(error = %e, "cannot look up the replica holding an agent link");
                    None
                }
            }
        })
    }
}

/// Every few seconds: this replica is alive, and the built-in edge learns which other
/// replicas are.
pub(crate) async fn replica_beat(cp: ControlPlane, store: Store, me: String, url: String) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        if let Err(e) = store.replica_alive(&me, &url).await {
            warn!(error = %e, "cannot record this replica as alive");
            continue;
        }
        if let Err(e) = cp.refresh_edges().await {
            warn!(error = %e.message, "cannot refresh the edge list");
        }
    }
}

/// The control plane's sharing rules, for the built-in edge's dev URLs.
pub(crate) struct DevUrlsImpl(pub(crate) provider::ControlPlane, pub(crate) String);

impl satellite::devurl::DevUrlResolver for DevUrlsImpl {
    fn resolve<'a>(
        &'a self,
        _host: &'a str,
        target: &'a relay_core::devurl::Target,
        viewer: Option<&'a str>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = satellite::devurl::Resolution> + Send + 'a>,
    > {
        use satellite::devurl::Resolution;
        Box::pin(async move {
            self.0
                .resolve_devurl(target, viewer)
                .await
                .unwrap_or_else(|e| Resolution::Unavailable(e.message))
        })
    }

    fn redeem<'a>(
        &'a self,
        code: &'a str,
        host: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(async move { self.0.redeem_devurl_code(code, host).await.ok().flatten() })
    }

    fn sign_in_url(&self) -> String {
        self.1.clone()
    }
}

pub(crate) struct EdgeHooksImpl(pub(crate) Edge);

impl EdgeHooks for EdgeHooksImpl {
    fn agent_status(&self, workspace_id: &str) -> Option<provider::AgentStatus> {
        self.0
            .agent_info(workspace_id)
            .map(|i| provider::AgentStatus {
                transport: i.transport.as_str().to_owned(),
                uptime_secs: i.uptime.as_secs(),
            })
    }

    fn disconnect(&self, workspace_id: &str) {
        self.0.disconnect(workspace_id);
    }

    fn configure(&self, config: &EdgeConfig) {
        self.0.configure(config);
    }

    fn devurls_changed(&self) {
        self.0.forget_devurl_decisions();
    }
}
