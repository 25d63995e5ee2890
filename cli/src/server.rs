//! `perigee server`: its flags and the configuration they give; the role is the
//! `perigee-server` crate. Also the data directory default and the process's shutdown
//! signal, which every role command uses.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use perigee_server::{Listeners, Provisioning, Replica, ServerConfig, Tls};

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
    if let Some(url) = &a.access_url {
        let ok = url.starts_with("https://") || url.starts_with("http://");
        anyhow::ensure!(
            ok,
            "--access-url {url:?} must start with http:// or https://"
        );
    }
    let provisioning = if a.provisioner == "kubernetes" {
        a.isolation.not_used()?;
        let p = a
            .kube
            .provisioner()
            .await
            .map_err(|e| anyhow::anyhow!("--provisioner kubernetes: {e}"))?;
        Provisioning::Kubernetes {
            provisioner: Arc::new(p),
            own_service_account: a.kube.own_service_account.clone(),
        }
    } else {
        Provisioning::Local {
            isolation: a.isolation.decide(!exec_prefix.is_empty())?,
            exec_prefix,
            agent_exe: std::env::current_exe().context("locating the perigee binary")?,
        }
    };
    let config = ServerConfig {
        data_dir,
        access_url: a.access_url.clone(),
        tls: match (a.tls_cert.clone(), a.tls_key.clone()) {
            (Some(cert), Some(key)) => Tls::Files { cert, key },
            _ if a.tls_self_signed => Tls::SelfSigned,
            _ => Tls::Off,
        },
        region: a.region.clone(),
        postgres_url: a.postgres_url.clone(),
        turn: a.turn.settings(),
        http: a.http.settings(),
        admin_workspace_access: a.admin_workspace_access,
        devurl_host: a.devurl_host.clone(),
        devurl_max_access: provider::devurls_api::Access::parse(&a.devurl_max_access)
            .unwrap_or(provider::devurls_api::Access::Public),
        replica: a.replica_url.clone().map(|url| Replica {
            url,
            name: a.replica_name.clone(),
        }),
        provisioning,
    };
    let (tcp, udp) = satellite::bind_pair(requested).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let role = perigee_server::run(config, Listeners { tcp, udp }, shutdown_token(), Some(tx));
    let announce = async {
        if let Ok(r) = rx.await {
            // Readiness line on stdout for scripts and tests (the port is real even with :0).
            println!(
                "perigee server ready: {} (listening on {}, tcp and udp)",
                r.access_url, r.bound
            );
        }
    };
    let (result, ()) = tokio::join!(role, announce);
    Ok(result?)
}

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

/// Resolves on Ctrl-C or SIGTERM.
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
