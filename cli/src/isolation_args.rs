//! `--workspace-isolation` and its settings, shared by `perigee server` and
//! `perigee workspace-provider --provisioner local`.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use perigee_isolate::net::{EdgePort, Proto, GATEWAY};
use perigee_isolate::{Mode, Network, UidRange, UidRegistry};
use tracing::{info, warn};

/// How local workspaces are isolated from the server and from each other.
#[derive(clap::Args)]
pub(crate) struct IsolationArgs {
    /// Isolate local workspaces: each runs as a uid of its own, in its own network and PID
    /// namespaces, with a cleared environment and its home outside the data directory.
    /// `auto`: when the host allows it (root on Linux; probed at start), else only admins
    /// may create local workspaces; `on`: refuse to start without it; `off`: workspaces run
    /// as the server's user on the host's network (a benchmark, a one-person laptop).
    #[arg(long, env = "PERIGEE_WORKSPACE_ISOLATION", default_value = "auto", value_parser = ["auto", "on", "off"])]
    workspace_isolation: String,
    /// Uids given to isolated workspaces, FIRST-LAST; allocated host-wide (two servers on
    /// one host never share one), skipping every uid in /etc/passwd.
    #[arg(
        long,
        env = "PERIGEE_WORKSPACE_UID_RANGE",
        default_value = "200000-259999"
    )]
    workspace_uid_range: UidRange,
    /// Where isolated workspaces' homes live (outside the data directory, which they cannot
    /// read). Homes of workspaces made before isolation move here on start.
    #[arg(
        long,
        env = "PERIGEE_WORKSPACE_HOME_ROOT",
        default_value = "/var/lib/perigee/workspaces"
    )]
    workspace_home_root: PathBuf,
    /// The DNS server isolated workspaces use [default: the host's resolvers; one on the
    /// host's loopback is reached through the workspace's gateway].
    #[arg(long, env = "PERIGEE_WORKSPACE_DNS")]
    workspace_dns: Option<IpAddr>,
    /// The host-wide uid registry every perigee server on this host shares.
    #[arg(long, env = "PERIGEE_WORKSPACE_UID_REGISTRY", default_value = perigee_isolate::uids::DEFAULT_REGISTRY, hide = true)]
    workspace_uid_registry: PathBuf,
}

/// What was decided at start.
pub(crate) struct Decision<'a> {
    args: &'a IsolationArgs,
    kind: Kind,
}

enum Kind {
    Isolated,
    /// Not available: only admins may create local workspaces.
    SingleUser,
    /// Turned off on purpose.
    Off,
}

impl IsolationArgs {
    /// No local workspaces here (the built-in provider runs pods).
    pub(crate) fn not_used(&self) -> Decision<'_> {
        Decision {
            args: self,
            kind: Kind::Off,
        }
    }

    /// Probes the host and applies the mode; `on` without isolation is an error that says
    /// why. `prefixed`: an agent exec prefix was given (it places agents itself).
    pub(crate) fn decide(&self, prefixed: bool) -> anyhow::Result<Decision<'_>> {
        let mode: Mode = self
            .workspace_isolation
            .parse()
            .map_err(|e: String| anyhow::anyhow!("--workspace-isolation: {e}"))?;
        let kind = match mode {
            Mode::Off => {
                warn!("--workspace-isolation off: every local workspace runs as this server's user, on the host's network");
                Kind::Off
            }
            Mode::On if prefixed => anyhow::bail!(
                "--workspace-isolation on cannot be combined with --agent-exec-prefix (isolation places agents itself)"
            ),
            Mode::Auto if prefixed => {
                info!("an agent exec prefix is set: local workspaces are not isolated");
                Kind::Off
            }
            Mode::On => {
                perigee_isolate::probe().context("--workspace-isolation on")?;
                Kind::Isolated
            }
            Mode::Auto => match perigee_isolate::probe() {
                Ok(()) => Kind::Isolated,
                Err(e) => {
                    warn!(reason = %e, "local workspaces cannot be isolated: only admins may create workspaces on the built-in provider");
                    Kind::SingleUser
                }
            },
        };
        Ok(Decision { args: self, kind })
    }
}

impl Decision<'_> {
    /// Whether workspaces run isolated.
    pub(crate) fn is_on(&self) -> bool {
        matches!(self.kind, Kind::Isolated)
    }

    /// Whether only admins may create local workspaces.
    pub(crate) fn single_user(&self) -> bool {
        matches!(self.kind, Kind::SingleUser)
    }

    /// The provisioner's isolation settings. `edge` are the edge's listeners (`true`: TCP)
    /// which workspaces reach at the gateway; agents dial the gateway (or, with an
    /// operator's certificate, the access URL's host, which names the gateway inside).
    pub(crate) fn config(
        &self,
        data_dir: &Path,
        edge: &[(bool, SocketAddr)],
        access_url: &str,
        operator_cert: bool,
        scheme: &str,
    ) -> anyhow::Result<Option<perigee_provision::IsolationConfig>> {
        if !self.is_on() {
            return Ok(None);
        }
        let main = edge.first().map(|(_, a)| *a).context("no edge listener")?;
        let uri: Option<http::Uri> = access_url.parse().ok();
        let access_host = uri.as_ref().and_then(|u| u.host()).map(str::to_owned);
        let access_port = uri
            .as_ref()
            .and_then(|u| u.port_u16())
            .unwrap_or(main.port());
        let mut ports = Vec::new();
        for (tcp, addr) in edge {
            let to = translate_to(*addr)?;
            let proto = if *tcp { Proto::Tcp } else { Proto::Udp };
            ports.push(EdgePort {
                proto,
                port: addr.port(),
                to,
            });
            // The access URL's port, when agents dial it by name and it differs.
            if operator_cert && addr.port() == main.port() && access_port != main.port() {
                ports.push(EdgePort {
                    proto,
                    port: access_port,
                    to,
                });
            }
        }
        let (agent_url, aliases) = match (operator_cert, access_host) {
            (true, Some(h)) if h.parse::<IpAddr>().is_err() => (access_url.to_owned(), vec![h]),
            _ => (format!("{scheme}://{GATEWAY}:{}", main.port()), Vec::new()),
        };
        self.finish(data_dir, ports, aliases, agent_url).map(Some)
    }

    /// The provisioner's isolation settings for `perigee workspace-provider`: no edge runs
    /// here, so workspaces reach their agents' URLs (the control plane, a satellite, the
    /// provider's access URL) like any other address outside the host.
    pub(crate) fn config_for_provider(
        &self,
        data_dir: &Path,
        agent_url: &str,
    ) -> anyhow::Result<Option<perigee_provision::IsolationConfig>> {
        if !self.is_on() {
            return Ok(None);
        }
        self.finish(data_dir, Vec::new(), Vec::new(), agent_url.to_owned())
            .map(Some)
    }

    fn finish(
        &self,
        data_dir: &Path,
        ports: Vec<EdgePort>,
        aliases: Vec<String>,
        agent_url: String,
    ) -> anyhow::Result<perigee_provision::IsolationConfig> {
        let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        let home_root = &self.args.workspace_home_root;
        anyhow::ensure!(
            !home_root.starts_with(&data_dir),
            "--workspace-home-root {} is inside the data directory, which workspaces must not reach",
            home_root.display()
        );
        perigee_isolate::home::check_root(home_root)?;
        Ok(perigee_provision::IsolationConfig {
            home_root: home_root.clone(),
            uid_range: self.args.workspace_uid_range,
            registry: UidRegistry::new(&self.args.workspace_uid_registry),
            network: Network::new(&data_dir, ports, aliases, self.args.workspace_dns),
            agent_url,
        })
    }
}

/// Where a connection to the gateway goes for an edge listener on `addr`.
fn translate_to(addr: SocketAddr) -> anyhow::Result<SocketAddrV4> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ok(SocketAddrV4::new(GATEWAY, addr.port())),
        IpAddr::V4(ip) => Ok(SocketAddrV4::new(ip, addr.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => Ok(SocketAddrV4::new(GATEWAY, addr.port())),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => Ok(SocketAddrV4::new(v4, addr.port())),
            None => anyhow::bail!(
                "isolated workspaces reach the edge over IPv4, but it listens on {addr}; listen on an IPv4 address or 0.0.0.0, or pass --workspace-isolation off"
            ),
        },
    }
}
