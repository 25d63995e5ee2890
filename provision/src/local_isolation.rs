//! How the local provisioner runs an agent when workspaces are isolated (root on Linux):
//! the workspace's directory under the home root, a uid of its own, its network namespace
//! and the launch command (crate `perigee-isolate` does each step).

use std::path::{Path, PathBuf};

use perigee_isolate::net::Account;
use perigee_isolate::{home, launch, Network, UidRange, UidRegistry};

/// Isolation settings of a local provisioner.
#[derive(Debug, Clone)]
pub struct IsolationConfig {
    /// `--workspace-home-root`: where workspace directories (and homes) live.
    pub home_root: PathBuf,
    /// `--workspace-uid-range`.
    pub uid_range: UidRange,
    /// The host-wide uid registry.
    pub registry: UidRegistry,
    /// This server's workspace network (nftables table, edge ports at the gateway).
    pub network: Network,
    /// The URL agents dial from inside their namespace (the gateway's address).
    pub agent_url: String,
}

/// File in the workspace's data directory naming its uid (for people and `ls`).
const UID_FILE: &str = "uid";
/// File in the workspace's data directory naming its owner (the account's name).
pub(crate) const USER_FILE: &str = "user";

/// What a prepared workspace's agent is started with.
pub(crate) struct Prepared {
    pub(crate) account: Account,
    pub(crate) token_file: PathBuf,
    pub(crate) ca_file: Option<PathBuf>,
}

impl IsolationConfig {
    /// The uids of workspaces already set up (for the table rebuilt at start).
    pub(crate) fn known_uids(&self, data_root: &Path) -> Vec<u32> {
        let Ok(rd) = std::fs::read_dir(data_root) else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join(UID_FILE)).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    }

    /// Makes everything the workspace needs before its agent starts (idempotent: a restart
    /// finds and keeps what exists). `dir` is its directory in the data directory.
    pub(crate) fn prepare(
        &self,
        dir: &Path,
        id: &str,
        token: &[u8],
        ca: Option<&Path>,
    ) -> Result<Prepared, perigee_isolate::Error> {
        let base = home::prepare_base(&self.home_root, id)?;
        let (uid, fresh) = self.registry.allocate(self.uid_range, &base)?;
        if fresh {
            perigee_isolate::reclaim(uid)?;
        }
        std::fs::write(dir.join(UID_FILE), uid.to_string())
            .map_err(|e| perigee_isolate::Error::io("writing", dir.join(UID_FILE), e))?;
        // A home from before isolation (in the data directory) moves out intact.
        let home = home::prepare_home(&base, uid, Some(&dir.join("home")))?;
        let token_file = home::install_file(&base, "agent-token", token, Some(uid), 0o400)?;
        let ca_file = match ca {
            Some(ca) => {
                let pem =
                    std::fs::read(ca).map_err(|e| perigee_isolate::Error::io("reading", ca, e))?;
                Some(home::install_file(&base, "ca.pem", &pem, None, 0o644)?)
            }
            None => None,
        };
        let name = std::fs::read_to_string(dir.join(USER_FILE))
            .ok()
            .map(|n| unix_name(n.trim()))
            .unwrap_or_else(|| "dev".into());
        let account = Account {
            name,
            uid,
            home,
            shell: launch::default_shell(),
            tmp: home::prepare_tmp(&base)?,
        };
        self.network.up(&account)?;
        Ok(Prepared {
            account,
            token_file,
            ca_file,
        })
    }

    /// Removes the workspace's network, directory (home included) and uid.
    pub(crate) fn remove(&self, dir: &Path, id: &str) -> Result<(), perigee_isolate::Error> {
        let base = home::base(&self.home_root, id);
        if let Some(uid) = std::fs::read_to_string(dir.join(UID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            self.network.down(uid)?;
            self.registry.release(uid, &base)?;
        }
        home::remove(&base)
    }
}

/// A perigee user name as a Unix user name (`dev` when nothing usable is left).
fn unix_name(name: &str) -> String {
    let n: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(31)
        .collect::<String>()
        .to_ascii_lowercase();
    match n.chars().next() {
        Some(c) if c.is_ascii_lowercase() || c == '_' => n,
        _ => "dev".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn user_names_become_unix_names() {
        assert_eq!(super::unix_name("Bob"), "bob");
        assert_eq!(super::unix_name("9lives"), "dev");
        assert_eq!(super::unix_name("a.b;rm -rf"), "abrm-rf");
        assert_eq!(super::unix_name(""), "dev");
    }
}
