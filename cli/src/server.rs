//! `perigee server`: control plane, built-in edge and local provisioner in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use perigee_provision::{LocalProvisioner, LocalProvisionerConfig};
use provider::{ControlPlane, EdgeHooks, Store};
use relay_core::mesh::{EdgeConfig, EdgeEntry, PRIMARY_EDGE};
use relay_core::tls::{Identity, LocalCa};
use satellite::{AgentAuthenticator, AgentIdentity, AuthError, AuthFuture, Edge};
use tracing::{info, warn};

/// Arguments of `perigee server`.
#[derive(clap::Args)]
pub(crate) struct ServerArgs {
    /// Where the database, TLS material and local workspaces live
    /// [default: $XDG_DATA_HOME/perigee or ~/.local/share/perigee].
    #[arg(long, env = "PERIGEE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// TCP address for HTTPS/HTTP (API, tunnels, agent links over HTTP/2); the same UDP port
    /// carries QUIC agent links. Port 0 picks a free port (printed when ready).
    #[arg(long, env = "PERIGEE_ADDRESS", default_value = "127.0.0.1:3000")]
    address: String,
    /// The URL users reach this server at [default: derived from --address].
    #[arg(long, env = "PERIGEE_ACCESS_URL")]
    access_url: Option<String>,
    /// Serve HTTPS with a certificate from a local CA kept in <data-dir>/tls (clients trust
    /// it with PERIGEE_CA_CERT=<data-dir>/tls/ca.pem).
    #[arg(long, env = "PERIGEE_TLS_SELF_SIGNED", conflicts_with_all = ["tls_cert", "tls_key"], value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    tls_self_signed: bool,
    /// PEM certificate chain for HTTPS.
    #[arg(long, env = "PERIGEE_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for HTTPS.
    #[arg(long, env = "PERIGEE_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Region label of this server's built-in edge, shown in `perigee ping` and the regions
    /// list (satellites add more regions).
    #[arg(long, env = "PERIGEE_SERVER_REGION", default_value = "default")]
    region: String,
    /// Words put before the agent command when starting local agents, e.g.
    /// `ip netns exec ws1` or `systemd-run --user --scope`.
    #[arg(long, env = "PERIGEE_AGENT_EXEC_PREFIX")]
    agent_exec_prefix: Option<String>,
    /// Keep state in PostgreSQL instead of SQLite in the data directory, e.g.
    /// postgres://perigee:PASSWORD@db:5432/perigee. Several replicas can share one database.
    /// Prefer the environment variable: a password on the command line shows in `ps`.
    #[arg(long, env = "PERIGEE_POSTGRES_URL", hide_env_values = true)]
    postgres_url: Option<String>,
    #[command(flatten)]
    turn: crate::turn_cmd::TurnArgs,
    #[command(flatten)]
    http: crate::edge_args::HttpArgs,
    /// Let site admins connect (tunnels, SSH) to other users' workspaces as
    /// OWNER.WORKSPACE; every agent then also accepts admins' SSH keys. Off by default.
    #[arg(long, env = "PERIGEE_ADMIN_WORKSPACE_ACCESS", value_parser = clap::builder::BoolishValueParser::new(), action = clap::ArgAction::SetTrue)]
    admin_workspace_access: bool,
    /// Wildcard host of this edge's dev URLs, e.g. `*.dev.example.com`: a workspace's web
    /// port is then at `PORT--WORKSPACE--USER.dev.example.com` (DNS and the certificate
    /// must cover the wildcard).
    #[arg(long, env = "PERIGEE_DEVURL_HOST")]
    devurl_host: Option<String>,
    /// With several replicas on one PostgreSQL database: the URL other replicas reach this
    /// one at directly (its own address, not the load balancer's), e.g.
    /// https://10.1.2.3:8443. A tunnel arriving at a replica without the workspace's agent
    /// link is then passed to the replica that has it, over the mesh (UDP on the same port).
    #[arg(long, env = "PERIGEE_REPLICA_URL", requires = "postgres_url")]
    replica_url: Option<String>,
    /// This replica's name among the others [default: a random one per start].
    #[arg(long, env = "PERIGEE_REPLICA_NAME")]
    replica_name: Option<String>,
    /// The widest sharing level owners may give a dev URL: private, org, authed or public.
    #[arg(long, env = "PERIGEE_DEVURL_MAX_ACCESS", default_value = "public", value_parser = ["private", "org", "authed", "public"])]
    devurl_max_access: String,
    /// What runs the built-in provider's workspaces: `local` (a directory and an agent
    /// process each, on this host; isolated when run as root) or `kubernetes` (pods in the
    /// cluster this server runs in, through its service account or KUBECONFIG: what the
    /// Helm chart runs, so no workspace is ever a process of the control-plane pod).
    #[arg(long, env = "PERIGEE_PROVISIONER", default_value = "local", value_parser = ["local", "kubernetes"])]
    provisioner: String,
    #[command(flatten)]
    kube: crate::kube_args::KubeArgs,
    #[command(flatten)]
    isolation: crate::isolation_args::IsolationArgs,
}

pub(crate) fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d).join("perigee"));
    }
    let home = std::env::var_os("HOME")
        .context("neither XDG_DATA_HOME nor HOME is set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/perigee"))
}

pub(crate) async fn run(a: ServerArgs) -> anyhow::Result<()> {
    // Parse and check everything before binding anything.
    if let Some(w) = &a.devurl_host {
        relay_core::devurl::check_wildcard(w).map_err(|e| anyhow::anyhow!("--devurl-host: {e}"))?;
    }
    let data_dir = match a.data_dir.clone() {
        Some(d) => d,
        None => default_data_dir()?,
    };
    let requested: SocketAddr = a.address.parse().with_context(|| {
        format!(
            "--address {:?} is not HOST:PORT (e.g. 127.0.0.1:3000)",
            a.address
        )
    })?;
    let exec_prefix: Vec<String> = a
        .agent_exec_prefix
        .as_deref()
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let tls_on = a.tls_self_signed || a.tls_cert.is_some();
    let on_kubernetes = a.provisioner == "kubernetes";
    let isolation = if on_kubernetes {
        a.isolation.not_used()?
    } else {
        a.isolation.decide(!exec_prefix.is_empty())?
    };
    if let Some(url) = &a.access_url {
        let ok = url.starts_with("https://") || url.starts_with("http://");
        anyhow::ensure!(
            ok,
            "--access-url {url:?} must start with http:// or https://"
        );
    }
    relay_core::create_private_dir(&data_dir)?;
    let shutdown = shutdown_token();

    let store = match &a.postgres_url {
        Some(url) => Store::open_postgres(url)
            .await
            .map_err(|e| anyhow::anyhow!("{}", redact_password(&e.to_string(), url)))
            .context("opening the PostgreSQL database given by --postgres-url")?,
        None => Store::open_sqlite(&data_dir.join("perigee.db"))
            .await
            .context("opening the database")?,
    };
    store.ensure_built_in_provider().await?;
    let signer = store.signing_key().await?;
    let ca = LocalCa::load_or_create(&data_dir.join("tls"))?;

    let (tcp, udp) = satellite::bind_pair(requested).await?;
    let bound = tcp.local_addr()?;
    let scheme = if tls_on { "https" } else { "http" };
    let access_url = a
        .access_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{bound}"));
    let access_host = access_url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_owned()));

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
        a.devurl_host
            .as_deref()
            .map(|w| format!("*.{}", relay_core::devurl::base(w))),
    );
    if isolation.is_on() {
        // Isolated agents dial the gateway address of their namespace.
        names.push(perigee_isolate::net::GATEWAY.to_string());
    }
    names.dedup();
    let identity = match (&a.tls_cert, &a.tls_key) {
        (Some(c), Some(k)) => Identity::from_pem_files(c, k)?,
        _ => ca.issue(&names)?,
    };
    let registry = prometheus::Registry::new();
    // Used as text, like coturn's static-auth-secret (so its tools take it with -W).
    let turn_secret = store.secret("turn").await?.into_bytes();
    let mut edge_ports = vec![(true, bound), (false, bound)];
    let turn = a.turn.settings();
    let (turn_urls, stun) = match turn.bind(bound, &access_url).await? {
        Some(t) => {
            edge_ports.extend(t.listeners());
            let urls = t.urls.clone();
            let server = turn.serve(t, &turn_secret, &identity, &registry, shutdown.clone())?;
            (urls, Some(satellite::stun_handler(server)))
        }
        None => (Vec::new(), None),
    };
    let http_tls = satellite::https_config(&identity, tls_on, stun.is_some())?;
    let verifier = relay_core::ticket::Verifier::new(store.ticket_public_keys().await?);
    let replica = a.replica_url.as_ref().map(|_| {
        a.replica_name
            .clone()
            .unwrap_or_else(|| relay_core::token::random_id()[..8].to_owned())
    });
    let edge = Edge::new(
        PRIMARY_EDGE,
        verifier,
        Arc::new(StoreAuth(store.clone(), replica.clone())),
        registry,
    )?;

    // Local agents dial the built-in edge on the bound address; with an operator certificate
    // they use the access URL so that the name matches.
    let agent_url = if a.tls_cert.is_some() {
        access_url.clone()
    } else {
        format!("{scheme}://{bound}")
    };
    let isolated = isolation.config(
        &data_dir,
        &edge_ports,
        &access_url,
        a.tls_cert.is_some(),
        scheme,
    )?;
    let local = Arc::new(LocalProvisioner::new(LocalProvisionerConfig {
        root: data_dir.join("workspaces"),
        exe: std::env::current_exe().context("locating the perigee binary")?,
        agent_url,
        ca_cert: if a.tls_cert.is_some() {
            None
        } else {
            Some(ca.cert_path.clone())
        },
        exec_prefix,
        single_user: isolation.single_user(),
        isolation: isolated,
    }));
    let provisioner: Arc<dyn perigee_provision::Provisioner> = if on_kubernetes {
        Arc::new(
            a.kube
                .provisioner()
                .await
                .map_err(|e| anyhow::anyhow!("--provisioner kubernetes: {e}"))?,
        )
    } else {
        local
            .install_network()
            .context("setting up the workspace network (nftables)")?;
        local
    };
    let cp = ControlPlane::new(
        store.clone(),
        signer,
        provisioner,
        Arc::new(EdgeHooksImpl(edge.clone())),
        EdgeEntry {
            name: PRIMARY_EDGE.to_owned(),
            region: a.region.clone(),
            access_url: access_url.clone(),
            devurl_host: a.devurl_host.clone(),
            turn_urls,
        },
    )
    .with_builtin_agent_url(on_kubernetes.then(|| access_url.clone()))
    .with_turn_secret(turn_secret)
    .with_replica_opt(replica.clone())
    .with_admin_workspace_access(a.admin_workspace_access)
    .with_devurls(
        a.devurl_host.as_deref().map(relay_core::devurl::base),
        // As users reach the edge (TLS may end in front of it).
        if access_url.starts_with("https://") {
            "https"
        } else {
            "http"
        },
        access_url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.port_u16())
            .unwrap_or(if tls_on { 443 } else { 80 }),
        provider::devurls_api::Access::parse(&a.devurl_max_access)
            .unwrap_or(provider::devurls_api::Access::Public),
    );
    store
        .set_built_in_service_account(if on_kubernetes {
            a.kube
                .own_service_account
                .as_deref()
                .filter(|s| !s.is_empty())
        } else {
            None
        })
        .await?;
    cp.refresh_edges().await?;
    first_admin(
        &store,
        &data_dir,
        &access_url,
        tls_on.then_some(ca.cert_path.as_path()),
    )
    .await?;
    store.ensure_default_org().await?;
    cp.resume_workspaces().await?;

    if let Some(wildcard) = &a.devurl_host {
        let scheme = if access_url.starts_with("https://") {
            "https"
        } else {
            "http"
        };
        let cookie_key = store.secret("devurl-cookie").await?;
        edge.enable_devurls(
            wildcard,
            scheme,
            Arc::new(DevUrlsImpl(
                cp.clone(),
                format!("{}/login", access_url.trim_end_matches('/')),
            )),
            cookie_key.as_bytes(),
        );
    }
    let router = edge.with_devurls(edge.router().merge(cp.router()));
    let endpoint = satellite::quic::endpoint(udp, &identity)?;
    edge.enable_mesh(
        endpoint.clone(),
        relay_core::tls::roots(Some(&ca.cert_path))?,
    )?;
    if let (Some(me), Some(url)) = (&replica, &a.replica_url) {
        edge.enable_replica(
            me,
            Arc::new(ReplicaLocator {
                store: store.clone(),
                me: me.clone(),
            }),
        )?;
        store.replica_alive(me, url).await?;
        cp.refresh_edges().await?;
        tokio::spawn(replica_beat(
            cp.clone(),
            store.clone(),
            me.clone(),
            url.clone(),
        ));
        info!(replica = %me, %url, "running as one of several replicas");
    }
    let serving = satellite::Serving::start(
        edge.clone(),
        tcp,
        http_tls,
        router,
        stun,
        endpoint,
        a.http.settings(),
    );
    info!(%access_url, address = %bound, "perigee server ready");
    // Readiness line on stdout for scripts and tests (the port is real even with :0).
    println!("perigee server ready: {access_url} (listening on {bound}, tcp and udp)");
    shutdown.cancelled().await;
    info!("shutting down; local workspace agents keep running and are adopted on the next start");
    serving.stop().await;
    Ok(())
}

async fn first_admin(
    store: &Store,
    data_dir: &Path,
    access_url: &str,
    ca: Option<&Path>,
) -> anyhow::Result<()> {
    if store.user_count().await? > 0 {
        return Ok(());
    }
    let admin = match store.create_user("admin", "admin").await {
        Ok(a) => a,
        // Another replica on the same database created it first; its data dir has the token.
        Err(e)
            if e.as_database_error()
                .is_some_and(|d| d.is_unique_violation()) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e.into()),
    };
    let token = store.create_api_token(&admin.id, "first admin").await?;
    let path = data_dir.join("admin-token");
    relay_core::tls::write_private(&path, format!("{}\n", token.expose()).as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    let ca_env = ca
        .map(|p| format!("PERIGEE_CA_CERT={} ", p.display()))
        .unwrap_or_default();
    eprintln!(
        "\nperigee: created the first admin user \"admin\".\n\
         Their API token is in {} (readable by you only). Log in with:\n\n  \
         {ca_env}perigee login {access_url} --token \"$(cat {})\"\n",
        path.display(),
        path.display()
    );
    Ok(())
}

/// `msg` with the password of `url` (if any) replaced, for errors that may quote the URL.
fn redact_password(msg: &str, url: &str) -> String {
    let creds = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(c, _)| c);
    match creds.and_then(|c| c.split_once(':')).map(|(_, p)| p) {
        Some(p) if !p.is_empty() => msg.replace(p, "***"),
        _ => msg.to_owned(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
/// A token cancelled when the process is asked to stop (Ctrl-C, SIGTERM): the shutdown
/// every role takes.
pub(crate) fn shutdown_token() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        t.cancel();
    });
    token
}

pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// Agent tokens checked against the store; `Some(name)`: this replica, recorded as the one
/// holding the link.
struct StoreAuth(Store, Option<String>);

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
struct ReplicaLocator {
    store: Store,
    me: String,
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
async fn replica_beat(cp: ControlPlane, store: Store, me: String, url: String) {
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
struct DevUrlsImpl(provider::ControlPlane, String);

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

struct EdgeHooksImpl(Edge);

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
