//! The server role (`perigee server`): the control plane, its built-in edge (the `primary`
//! edge, with TURN and dev URLs) and the built-in provider's provisioner in one process.
//!
//! [`run`] takes the bound edge listeners and a shutdown token, so a test starts a whole
//! server in process on port 0.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod first_admin;
mod hooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use perigee_provision::isolation_decision::Decision;
use perigee_provision::{LocalProvisioner, LocalProvisionerConfig, Provisioner};
use provider::{ControlPlane, Store};
use relay_core::mesh::{EdgeEntry, PRIMARY_EDGE};
use relay_core::tls::{Identity, LocalCa};
use satellite::Edge;
use tokio_util::sync::CancellationToken;
use tracing::info;

use hooks::{DevUrlsImpl, EdgeHooksImpl, ReplicaLocator, StoreAuth};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Setting up failed (the database, TLS material, a listener, the workspace network):
    /// what was being done and why.
    #[error("{0}")]
    Setup(String),
}

/// `result.setup("doing what")`: a setup error saying what was being done.
pub(crate) trait Setup<T> {
    fn setup(self, what: &str) -> Result<T, ServerError>;
}

impl<T, E: std::fmt::Display> Setup<T> for Result<T, E> {
    fn setup(self, what: &str) -> Result<T, ServerError> {
        self.map_err(|e| ServerError::Setup(format!("{what}: {e}")))
    }
}

/// The server's HTTPS.
#[derive(Debug, Clone)]
pub enum Tls {
    /// Plain HTTP (TLS ends in front of the server, or a laptop).
    Off,
    /// A certificate from the local CA kept in `<data-dir>/tls`.
    SelfSigned,
    /// The operator's certificate chain and key (PEM files).
    Files {
        /// The certificate chain.
        cert: PathBuf,
        /// The private key.
        key: PathBuf,
    },
}

/// What runs the built-in provider's workspaces.
#[derive(Clone)]
pub enum Provisioning {
    /// Local processes (isolated as decided at start), started with `agent_exe`.
    Local {
        /// Whether workspaces are isolated.
        isolation: Decision,
        /// Words put before the agent command (`--agent-exec-prefix`).
        exec_prefix: Vec<String>,
        /// The `perigee` binary agents run.
        agent_exe: PathBuf,
    },
    /// Pods in the cluster the server runs in.
    Kubernetes {
        /// The provisioner.
        provisioner: Arc<dyn Provisioner>,
        /// The service account the server runs as, which no workspace may be given.
        own_service_account: Option<String>,
    },
}

/// Several replicas on one PostgreSQL database.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The URL other replicas reach this one at directly.
    pub url: String,
    /// This replica's name [default: random per start].
    pub name: Option<String>,
}

/// Everything `perigee server` is configured with.
#[derive(Clone)]
pub struct ServerConfig {
    /// Database, TLS material and local workspaces (created 0700).
    pub data_dir: PathBuf,
    /// The URL users reach the server at [default: derived from the bound address].
    pub access_url: Option<String>,
    /// HTTPS.
    pub tls: Tls,
    /// Region label of the built-in edge.
    pub region: String,
    /// PostgreSQL instead of SQLite in the data directory.
    pub postgres_url: Option<String>,
    /// TURN on the built-in edge.
    pub turn: turn::binding::TurnSettings,
    /// The edge's HTTP listener limits.
    pub http: satellite::HttpSettings,
    /// Admins may connect to other users' workspaces.
    pub admin_workspace_access: bool,
    /// Wildcard host of the built-in edge's dev URLs.
    pub devurl_host: Option<String>,
    /// The widest sharing level owners may give a dev URL.
    pub devurl_max_access: provider::devurls_api::Access,
    /// One of several replicas.
    pub replica: Option<Replica>,
    /// What runs the built-in provider's workspaces.
    pub provisioning: Provisioning,
}

/// The edge's bound sockets: TCP for HTTP(S), UDP on the same port for QUIC agent links.
pub struct Listeners {
    /// HTTP(S).
    pub tcp: tokio::net::TcpListener,
    /// QUIC.
    pub udp: std::net::UdpSocket,
}

/// What a started server tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    /// The URL users reach it at.
    pub access_url: String,
    /// The bound address.
    pub bound: SocketAddr,
}

/// Runs the server until `shutdown`. `ready` learns the access URL once everything serves.
pub async fn run(
    config: ServerConfig,
    listeners: Listeners,
    shutdown: CancellationToken,
    ready: Option<tokio::sync::oneshot::Sender<Ready>>,
) -> Result<(), ServerError> {
    let data_dir = config.data_dir.clone();
    relay_core::create_private_dir(&data_dir).setup("the data directory")?;
    let tls_on = !matches!(config.tls, Tls::Off);
    let operator_cert = matches!(config.tls, Tls::Files { .. });

    let store = match &config.postgres_url {
        Some(url) => Store::open_postgres(url).await.map_err(|e| {
            ServerError::Setup(format!(
                "opening the PostgreSQL database given by --postgres-url: {}",
                first_admin::redact_password(&e.to_string(), url)
            ))
        })?,
        None => Store::open_sqlite(&data_dir.join("perigee.db"))
            .await
            .setup("opening the database")?,
    };
    store
        .ensure_built_in_provider()
        .await
        .setup("the built-in provider")?;
    let signer = store.signing_key().await.setup("the ticket-signing key")?;
    let ca = LocalCa::load_or_create(&data_dir.join("tls")).setup("the local CA")?;

    let bound = listeners.tcp.local_addr().setup("the TCP listener")?;
    let scheme = if tls_on { "https" } else { "http" };
    let access_url = config
        .access_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{bound}"));
    let access_host = access_url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()));
    let isolation_on =
        matches!(&config.provisioning, Provisioning::Local { isolation, .. } if isolation.is_on());

    // One identity for HTTPS and QUIC: the operator's certificate, or a leaf of the local CA
    // naming every way this server is reached. QUIC always needs one.
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        bound.ip().to_string(),
    ];
    names.extend(access_host);
    // The dev URL wildcard (`*.dev.example.com`), so browsers accept its hosts.
    names.extend(
        config
            .devurl_host
            .as_deref()
            .map(|w| format!("*.{}", relay_core::devurl::base(w))),
    );
    if isolation_on {
        // Isolated agents dial the gateway address of their namespace.
        names.push(perigee_isolate::net::GATEWAY.to_string());
    }
    names.dedup();
    let identity = match &config.tls {
        Tls::Files { cert, key } => {
            Identity::from_pem_files(cert, key).setup("reading --tls-cert and --tls-key")?
        }
        _ => ca.issue(&names).setup("issuing the server's certificate")?,
    };
    let registry = prometheus::Registry::new();
    // Used as text, like coturn's static-auth-secret (so its tools take it with -W).
    let turn_secret = store
        .secret("turn")
        .await
        .setup("the TURN secret")?
        .into_bytes();
    let mut edge_ports = vec![(true, bound), (false, bound)];
    let (turn_urls, stun) = match config.turn.bind(bound, &access_url).await.setup("TURN")? {
        Some(t) => {
            edge_ports.extend(t.listeners());
            let urls = t.urls.clone();
            let server = config
                .turn
                .serve(t, &turn_secret, &identity, &registry, shutdown.clone())
                .setup("TURN")?;
            (urls, Some(satellite::stun_handler(server)))
        }
        None => (Vec::new(), None),
    };
    let http_tls = satellite::https_config(&identity, tls_on, stun.is_some())
        .setup("the TLS configuration")?;
    let verifier = relay_core::ticket::Verifier::new(
        store.ticket_public_keys().await.setup("the ticket keys")?,
    );
    let replica = config.replica.as_ref().map(|r| {
        r.name
            .clone()
            .unwrap_or_else(|| relay_core::token::random_id()[..8].to_owned())
    });
    let edge = Edge::new(
        PRIMARY_EDGE,
        verifier,
        Arc::new(StoreAuth(store.clone(), replica.clone())),
        registry,
    )
    .setup("the built-in edge")?;

    let (provisioner, on_kubernetes, own_service_account): (Arc<dyn Provisioner>, bool, _) =
        match &config.provisioning {
            Provisioning::Kubernetes {
                provisioner,
                own_service_account,
            } => (provisioner.clone(), true, own_service_account.clone()),
            Provisioning::Local {
                isolation,
                exec_prefix,
                agent_exe,
            } => {
                // Local agents dial the built-in edge on the bound address; with an
                // operator certificate they use the access URL so that the name matches.
                let agent_url = if operator_cert {
                    access_url.clone()
                } else {
                    format!("{scheme}://{bound}")
                };
                let isolated = isolation
                    .config(&data_dir, &edge_ports, &access_url, operator_cert, scheme)
                    .setup("workspace isolation")?;
                let local = Arc::new(LocalProvisioner::new(LocalProvisionerConfig {
                    root: data_dir.join("workspaces"),
                    exe: agent_exe.clone(),
                    agent_url,
                    ca_cert: (!operator_cert).then(|| ca.cert_path.clone()),
                    exec_prefix: exec_prefix.clone(),
                    single_user: isolation.single_user(),
                    isolation: isolated,
                }));
                local
                    .install_network()
                    .setup("setting up the workspace network (nftables)")?;
                (local, false, None)
            }
        };
    let devurl_scheme = if access_url.starts_with("https://") {
        "https"
    } else {
        "http"
    };
    let cp = ControlPlane::new(
        store.clone(),
        signer,
        provisioner,
        Arc::new(EdgeHooksImpl(edge.clone())),
        EdgeEntry {
            name: PRIMARY_EDGE.to_owned(),
            region: config.region.clone(),
            access_url: access_url.clone(),
            devurl_host: config.devurl_host.clone(),
            turn_urls,
        },
    )
    .with_builtin_agent_url(on_kubernetes.then(|| access_url.clone()))
    .with_turn_secret(turn_secret)
    .with_replica_opt(replica.clone())
    .with_admin_workspace_access(config.admin_workspace_access)
    .with_devurls(
        config.devurl_host.as_deref().map(relay_core::devurl::base),
        // As users reach the edge (TLS may end in front of it).
        devurl_scheme,
        access_url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.port_u16())
            .unwrap_or(if tls_on { 443 } else { 80 }),
        config.devurl_max_access,
    );
    let own_service_account: Option<String> = own_service_account.filter(|s| !s.is_empty());
    store
        .set_built_in_service_account(own_service_account.as_deref())
        .await
        .setup("the built-in provider's service account")?;
    cp.refresh_edges()
        .await
        .map_err(|e| ServerError::Setup(e.message))?;
    first_admin::first_admin(
        &store,
        &data_dir,
        &access_url,
        tls_on.then_some(ca.cert_path.as_path()),
    )
    .await?;
    store
        .ensure_default_org()
        .await
        .setup("the default organization")?;
    cp.resume_workspaces()
        .await
        .map_err(|e| ServerError::Setup(e.message))?;

    if let Some(wildcard) = &config.devurl_host {
        let cookie_key = store
            .secret("devurl-cookie")
            .await
            .setup("the dev URL cookie key")?;
        edge.enable_devurls(
            wildcard,
            devurl_scheme,
            Arc::new(DevUrlsImpl(
                cp.clone(),
                format!("{}/login", access_url.trim_end_matches('/')),
            )),
            cookie_key.as_bytes(),
        );
    }
    let router = edge.with_devurls(edge.router().merge(cp.router()));
    let endpoint =
        satellite::quic::endpoint(listeners.udp, &identity).setup("the QUIC endpoint")?;
    edge.enable_mesh(
        endpoint.clone(),
        relay_core::tls::roots(Some(&ca.cert_path)).setup("the mesh's roots")?,
    )
    .setup("the mesh")?;
    if let (Some(me), Some(r)) = (replica.clone(), config.replica.clone()) {
        edge.enable_replica(
            &me,
            Arc::new(ReplicaLocator {
                store: store.clone(),
                me: me.clone(),
            }),
        )
        .setup("replicas")?;
        store
            .replica_alive(&me, &r.url)
            .await
            .setup("recording this replica")?;
        cp.refresh_edges()
            .await
            .map_err(|e| ServerError::Setup(e.message))?;
        tokio::spawn(hooks::replica_beat(
            cp.clone(),
            store.clone(),
            me.clone(),
            r.url.clone(),
        ));
        info!(replica = %me, url = %r.url, "running as one of several replicas");
    }
    let serving = satellite::Serving::start(
        edge.clone(),
        listeners.tcp,
        http_tls,
        router,
        stun,
        endpoint,
        config.http.clone(),
    );
    info!(%access_url, address = %bound, "perigee server ready");
    if let Some(tx) = ready {
        let _ = tx.send(Ready { access_url, bound });
    }
    shutdown.cancelled().await;
    info!("shutting down; local workspace agents keep running and are adopted on the next start");
    serving.stop().await;
    Ok(())
}
