//! Isolation of local workspaces (the built-in provider's `local` provisioner) on a Linux
//! host where perigee runs as root. Each workspace gets:
//!
//! - a uid of its own from a configured range, allocated host-wide ([`uids`]) so two
//!   servers on one host never share one, skipping every uid in `/etc/passwd`;
//! - a home outside the control plane's data directory, owned by that uid, mode 0700
//!   ([`home`]);
//! - a network namespace with one veth to the host ([`net`]): the edge's ports answer at the
//!   host side (the gateway address), nftables drops everything else to the host and
//!   between workspaces, and cloud metadata; the internet is reached through masquerade;
//! - a PID namespace with its own `/proc`, and a cleared environment ([`launch`]).
//!
//! Everything here drives the kernel through the tools Debian ships (`ip`, `nft`,
//! `unshare`, `setpriv`): the decisions are in `docs/DECISIONS.md`.

pub mod home;
pub mod launch;
pub mod net;
pub mod uids;

mod tools;

use std::path::PathBuf;

pub use net::{EdgePort, Network};
pub use uids::{UidRange, UidRegistry};

/// `--workspace-isolation`: whether local workspaces are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Isolated when the host allows it (root on Linux, namespaces can be made): probed at
    /// start.
    Auto,
    /// Isolated, or the server refuses to start and says why.
    On,
    /// Workspaces run as the server's user, on the host's network (benchmarks, laptops).
    Off,
}

impl std::str::FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "on" => Ok(Self::On),
            "off" => Ok(Self::Off),
            other => Err(format!("{other:?} is not auto, on or off")),
        }
    }
}

/// Why isolation cannot be used here (and so the local provisioner is single-user).
#[derive(Debug, Clone, thiserror::Error)]
pub enum Unavailable {
    /// Not Linux.
    #[error("workspace isolation needs Linux (namespaces, nftables)")]
    NotLinux,
    /// Not root.
    #[error("workspace isolation needs root (the server runs as uid {0})")]
    NotRoot(u32),
    /// A tool is missing.
    #[error("workspace isolation needs `{0}` ({1}), which is not installed")]
    MissingTool(&'static str, &'static str),
    /// The probe could not make a network namespace, a veth or an nftables table.
    #[error("workspace isolation is not possible here: {0}")]
    Probe(String),
}

/// Why an isolation step failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command (`ip`, `nft`, …) failed.
    #[error("{command}: {message}")]
    Command {
        /// The command line, for people.
        command: String,
        /// What it printed on stderr, or how it ended.
        message: String,
    },
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path concerned.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Every uid of the range is taken.
    #[error("no free uid in {0} (every uid is in /etc/passwd or given to a workspace); widen --workspace-uid-range")]
    NoFreeUid(UidRange),
    /// A setting is wrong.
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// An [`Error::Io`] while doing `what` to `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Makes a uid new to its owner safe to hand out: ends every process still running as it
/// (a workspace whose data directory was removed while its code ran) and removes a
/// namespace left with its number, so nothing of a previous tenant can signal, trace or
/// share a network with the next one.
pub fn reclaim(uid: u32) -> Result<(), Error> {
    let mut killed = 0;
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
                continue;
            };
            let uids: Vec<u32> = status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|v| {
                    v.split_whitespace()
                        .filter_map(|u| u.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            if uids.contains(&uid) {
                let _ = tools::run("kill", &["-KILL", &pid.to_string()]);
                killed += 1;
            }
        }
    }
    if killed > 0 {
        tracing::warn!(
            uid,
            killed,
            "ended processes left running as a reclaimed workspace uid"
        );
    }
    net::remove_stale(uid)
}

/// Checks that this host can isolate workspaces: Linux, root, the tools, and a network
/// namespace with a veth and an nftables table can be made (and are removed again).
pub fn probe() -> Result<(), Unavailable> {
    if !cfg!(target_os = "linux") {
        return Err(Unavailable::NotLinux);
    }
    let uid = tools::current_uid();
    if uid != 0 {
        return Err(Unavailable::NotRoot(uid));
    }
    for (tool, package) in tools::NEEDED {
        if tools::find(tool).is_none() {
            return Err(Unavailable::MissingTool(tool, package));
        }
    }
    net::probe().map_err(|e| Unavailable::Probe(e.to_string()))
}
