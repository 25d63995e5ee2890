//! Whether local workspaces are isolated (`--workspace-isolation auto|on|off`, decided at
//! start by probing the host) and the isolation settings that follow for a server (edge
//! ports translated at the gateway) or a workspace provider (no edge on the host). Shared by
//! `perigee server` and `perigee workspace-provider --provisioner local`.

use std::net::{IpAddr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};

use perigee_isolate::net::{EdgePort, Proto, GATEWAY};
use perigee_isolate::{Mode, Network, UidRange, UidRegistry};
use tracing::{info, warn};

use crate::IsolationConfig;

/// Why isolation cannot be set up as asked; the message names the flag to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IsolationError(String);

/// The isolation flags.
#[derive(Debug, Clone)]
pub struct IsolationSettings {
    /// `--workspace-isolation`.
    pub mode: Mode,
    /// `--workspace-uid-range`.
    pub uid_range: UidRange,
    /// `--workspace-home-root`.
    pub home_root: PathBuf,
    /// `--workspace-dns`.
    pub dns: Option<IpAddr>,
    /// The host-wide uid registry.
    pub uid_registry: PathBuf,
}

/// What was decided at start.
#[derive(Debug, Clone)]
pub struct Decision {
    settings: IsolationSettings,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Isolated,
    SingleUser,
    Off,
}

impl IsolationSettings {
    /// No local workspaces here (the Kubernetes provisioner runs them).
    pub fn not_used(&self) -> Decision {
        Decision {
            settings: self.clone(),
            kind: Kind::Off,
        }
    }

    /// Decides, probing the host for `auto` and `on`; `prefixed`: an agent exec prefix
    /// places agents itself, which isolation cannot be combined with.
    pub fn decide(&self, prefixed: bool) -> Result<Decision, IsolationError> {
        let kind = match self.mode {
            Mode::Off => {
                warn!("--workspace-isolation off: every local workspace runs as this server's user, on the host's network");
                Kind::Off
            }
            Mode::On if prefixed => return Err(IsolationError(
                "--workspace-isolation on cannot be combined with --agent-exec-prefix (isolation places agents itself)".into(),
            )),
            Mode::Auto if prefixed => {
                info!("an agent exec prefix is set: local workspaces are not isolated");
                Kind::Off
            }
            Mode::On => {
                perigee_isolate::probe()
                    .map_err(|e| IsolationError(format!("--workspace-isolation on: {e}")))?;
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
        Ok(Decision {
            settings: self.clone(),
            kind,
        })
    }
}

impl Decision {
    /// Local workspaces are isolated.
    pub fn is_on(&self) -> bool {
        matches!(self.kind, Kind::Isolated)
    }

    /// Local workspaces run as this process's user although isolation was wanted (`auto`
    /// on a host that cannot): only admins may create them.
    pub fn single_user(&self) -> bool {
        matches!(self.kind, Kind::SingleUser)
    }

    /// The local provisioner's isolation settings for `perigee server`: `edge` lists the
    /// edge's listeners (`true`: TCP) that workspaces reach at their gateway; agents dial the
    /// gateway, or the access URL's host (named in the workspace's `/etc/hosts`) when an
    /// operator certificate names it.
    pub fn config(
        &self,
        data_dir: &Path,
        edge: &[(bool, SocketAddr)],
        access_url: &str,
        operator_cert: bool,
        scheme: &str,
    ) -> Result<Option<IsolationConfig>, IsolationError> {
        if !self.is_on() {
            return Ok(None);
        }
        let main = edge
            .first()
            .map(|(_, a)| *a)
            .ok_or_else(|| IsolationError("no edge listener".into()))?;
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
    pub fn config_for_provider(
        &self,
        data_dir: &Path,
        agent_url: &str,
    ) -> Result<Option<IsolationConfig>, IsolationError> {
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
    ) -> Result<IsolationConfig, IsolationError> {
        let data_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
        let home_root = &self.settings.home_root;
        if home_root.starts_with(&data_dir) {
            return Err(IsolationError(format!(
                "--workspace-home-root {} is inside the data directory, which workspaces must not reach",
                home_root.display()
            )));
        }
        perigee_isolate::home::check_root(home_root).map_err(|e| IsolationError(e.to_string()))?;
        Ok(IsolationConfig {
            home_root: home_root.clone(),
            uid_range: self.settings.uid_range,
            registry: UidRegistry::new(&self.settings.uid_registry),
            network: Network::new(&data_dir, ports, aliases, self.settings.dns),
            agent_url,
        })
    }
}

/// Where a connection to the gateway goes for an edge listener on `addr`.
fn translate_to(addr: SocketAddr) -> Result<SocketAddrV4, IsolationError> {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => Ok(SocketAddrV4::new(GATEWAY, addr.port())),
        IpAddr::V4(ip) => Ok(SocketAddrV4::new(ip, addr.port())),
        IpAddr::V6(ip) if ip.is_unspecified() => Ok(SocketAddrV4::new(GATEWAY, addr.port())),
        IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => Ok(SocketAddrV4::new(v4, addr.port())),
            None => Err(IsolationError(format!(
                "isolated workspaces reach the edge over IPv4, but it listens on {addr}; listen on an IPv4 address or 0.0.0.0, or pass --workspace-isolation off"
            ))),
        },
    }
}
