//! `perigee`: one binary, one subcommand per role.
#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};

mod agent_cmd;
mod config_ssh;
mod edge_args;
mod isolation_args;
mod kube_args;
mod orgs;
mod ping;
mod provider_cmd;
mod providers;
mod satellite_cmd;
mod satellites;
mod server;
mod session;
mod ssh_config;
mod stdio;
mod table;
mod tunnel;
mod turn_cmd;
mod urls;
mod workspaces;

/// perigee: cloud development workspaces, reached through the edge nearest to you.
///
/// Quick start on one machine:
///   perigee server                      # control plane + built-in edge, SQLite, local workspaces
///   perigee login http://127.0.0.1:3000 --token "$(cat ~/.local/share/perigee/admin-token)"
///   perigee create dev && perigee ls
///   ssh -o ProxyCommand='perigee tunnel dev %p' user@dev
#[derive(Parser)]
#[command(
    name = "perigee",
    version,
    verbatim_doc_comment,
    propagate_version = true
)]
struct Cli {
    /// Log filter (tracing `EnvFilter` syntax), e.g. `debug` or `satellite=debug`.
    #[arg(long, global = true, env = "PERIGEE_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

/// Parsed once per process: the size of its largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the control plane with its built-in edge and the local provisioner.
    Server(server::ServerArgs),
    /// Run a satellite: a regional edge registered with the control plane by token.
    Satellite(satellite_cmd::SatelliteArgs),
    /// Run a remote workspace provider's deployment (registers with its REMOTE token).
    WorkspaceProvider(provider_cmd::ProviderArgs),
    /// Run a workspace agent (started for you by provisioners).
    Agent(agent_cmd::AgentArgs),
    /// Log in to a deployment and remember the session.
    Login(session::LoginArgs),
    /// Create a workspace.
    Create(workspaces::CreateArgs),
    /// List your workspaces and whether their agents are connected.
    Ls(workspaces::LsArgs),
    /// Delete a workspace (its agent is stopped and its directory removed).
    Delete(workspaces::DeleteArgs),
    /// Stop a workspace: its agent (process or pod) goes, its home and token stay.
    Stop(workspaces::DeleteArgs),
    /// Start a stopped workspace again.
    Start(workspaces::DeleteArgs),
    /// Join stdin/stdout to a workspace port (use as an OpenSSH ProxyCommand).
    Tunnel(tunnel::TunnelArgs),
    /// Forward local TCP ports to workspace ports.
    PortForward(tunnel::PortForwardArgs),
    /// Write `Host perigee.*` into ~/.ssh/config so that `ssh perigee.WORKSPACE` works
    /// (generates and uploads your perigee SSH key).
    ConfigSsh(config_ssh::ConfigSshArgs),
    /// SSH into a workspace (OpenSSH through a perigee tunnel); `--stdio` is the
    /// ProxyCommand `config-ssh` writes.
    Ssh(config_ssh::SshArgs),
    /// Measure the round trip to each region and show which one tunnels would use.
    Ping(ping::PingArgs),
    /// Manage satellites (admins).
    #[command(subcommand)]
    Satellites(satellites::SatellitesCmd),
    /// Manage ticket-signing keys (admins).
    #[command(subcommand)]
    Keys(satellites::KeysCmd),
    /// Manage organizations.
    #[command(subcommand)]
    Orgs(orgs::OrgsCmd),
    /// Manage users and their site roles.
    #[command(subcommand)]
    Users(orgs::UsersCmd),
    /// Manage your API tokens (create, list, revoke).
    #[command(subcommand)]
    Tokens(orgs::TokensCmd),
    /// Share workspace ports in the browser (dev URLs): create, ls, rm.
    #[command(subcommand)]
    Urls(urls::UrlsCmd),
    /// Manage workspace providers (admins and site managers).
    #[command(subcommand)]
    Providers(providers::ProvidersCmd),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let is_daemon = matches!(
        cli.cmd,
        Cmd::Server(_) | Cmd::Agent(_) | Cmd::Satellite(_) | Cmd::WorkspaceProvider(_)
    );
    let default = if is_daemon { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_new(cli.log.as_deref().unwrap_or(default))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let _ = rustls::crypto::ring::default_provider().install_default();

    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.cmd {
            Cmd::Server(a) => server::run(a).await,
            Cmd::Agent(a) => agent_cmd::run(a).await,
            Cmd::Login(a) => session::login(a).await,
            Cmd::Create(a) => workspaces::create(a).await,
            Cmd::Ls(a) => workspaces::ls(a).await,
            Cmd::Delete(a) => workspaces::delete(a).await,
            Cmd::Stop(a) => workspaces::stop_start(a, "stop").await,
            Cmd::Start(a) => workspaces::stop_start(a, "start").await,
            Cmd::Tunnel(a) => tunnel::tunnel(a).await,
            Cmd::PortForward(a) => tunnel::port_forward(a).await,
            Cmd::Ping(a) => ping::ping(a).await,
            Cmd::ConfigSsh(a) => config_ssh::config_ssh(a).await,
            Cmd::Ssh(a) => config_ssh::ssh(a).await,
            Cmd::Satellite(a) => satellite_cmd::run(a).await,
            Cmd::WorkspaceProvider(a) => provider_cmd::run(a).await,
            Cmd::Satellites(c) => satellites::run(c).await,
            Cmd::Keys(c) => satellites::keys(c).await,
            Cmd::Orgs(c) => orgs::orgs(c).await,
            Cmd::Users(c) => orgs::users(c).await,
            Cmd::Tokens(c) => orgs::tokens(c).await,
            Cmd::Urls(c) => urls::run(c).await,
            Cmd::Providers(c) => providers::run(c).await,
        }
    });
    // Blocking stdin readers must not hold the process open once the work is done.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
