//! Host-wide allocation of workspace uids.
//!
//! The registry is a directory (default `/var/lib/perigee/uids`, mode 0700) holding one
//! file per allocated uid, named by the uid and holding the path of the workspace directory
//! that owns it. Every server on the host allocates under an exclusive lock on
//! `<registry>/.lock`, so two servers never hand out one uid. An entry whose owner directory
//! is gone (a removed data directory or home root) is stale and reclaimed.
//!
//! A workspace's address in [`crate::net`] is derived from the low 16 bits of its uid, so
//! the allocator also refuses a uid whose low 16 bits another live entry has.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::Error;

/// Where the host-wide registry lives unless told otherwise.
pub const DEFAULT_REGISTRY: &str = "/var/lib/perigee/uids";

/// `--workspace-uid-range`: `FIRST-LAST`, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    /// First uid.
    pub first: u32,
    /// Last uid (inclusive).
    pub last: u32,
}

impl Default for UidRange {
    fn default() -> Self {
        Self {
            first: 200_000,
            last: 259_999,
        }
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

impl std::str::FromStr for UidRange {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, b) = s
            .split_once('-')
            .ok_or_else(|| format!("{s:?} is not FIRST-LAST (e.g. 200000-259999)"))?;
        let parse = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("{v:?} in {s:?} is not a uid"))
        };
        let (first, last) = (parse(a)?, parse(b)?);
        if first < 1000 {
            return Err(format!(
                "{s:?} starts below 1000, where system and login users live"
            ));
        }
        if last < first {
            return Err(format!("{s:?} ends before it starts"));
        }
        // 65535 is the overflow uid of user namespaces; 2^32-1 means "no uid".
        if last >= u32::MAX - 1 {
            return Err(format!("{s:?} reaches the reserved uids at the top"));
        }
        Ok(Self { first, last })
    }
}

/// The host-wide uid registry.
#[derive(Debug, Clone)]
pub struct UidRegistry {
    dir: PathBuf,
}

impl UidRegistry {
    /// The registry in `dir` (created, mode 0700, when first used).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// Gives `owner` (an existing directory) a uid from `range`: the one it already has
    /// (`false`), or the lowest free one (`true`: new to this owner, possibly left behind by
    /// a workspace whose directory was removed without deleting it — see
    /// [`crate::reclaim`]).
    pub fn allocate(&self, range: UidRange, owner: &Path) -> Result<(u32, bool), Error> {
        let _lock = self.lock()?;
        let entries = self.entries()?;
        if let Some((uid, _)) = entries.iter().find(|(_, o)| o.as_path() == owner) {
            return Ok((*uid, false));
        }
        let in_passwd = passwd_uids();
        let low_taken: HashSet<u32> = entries.keys().map(|u| u & 0xffff).collect();
        for uid in range.first..=range.last {
            let low = uid & 0xffff;
            if in_passwd.contains(&uid)
                || entries.contains_key(&uid)
                || low_taken.contains(&low)
                || !crate::net::usable_low(low)
            {
                continue;
            }
            let path = self.dir.join(uid.to_string());
            std::fs::write(&path, owner.as_os_str().as_encoded_bytes())
                .map_err(|e| Error::io("writing", path, e))?;
            return Ok((uid, true));
        }
        Err(Error::NoFreeUid(range))
    }

    /// Frees `uid` if `owner` holds it.
    pub fn release(&self, uid: u32, owner: &Path) -> Result<(), Error> {
        let _lock = self.lock()?;
        let path = self.dir.join(uid.to_string());
        match std::fs::read(&path) {
            Ok(o) if o == owner.as_os_str().as_encoded_bytes() => {
                std::fs::remove_file(&path).map_err(|e| Error::io("removing", path, e))
            }
            _ => Ok(()),
        }
    }

    /// Live entries (uid → owner), removing stale ones. Called under the lock.
    fn entries(&self) -> Result<HashMap<u32, PathBuf>, Error> {
        let mut out = HashMap::new();
        let rd = std::fs::read_dir(&self.dir).map_err(|e| Error::io("reading", &self.dir, e))?;
        for entry in rd.flatten() {
            let Some(uid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            let owner = std::fs::read_to_string(entry.path())
                .map(|s| PathBuf::from(s.trim()))
                .unwrap_or_default();
            if owner.as_os_str().is_empty() || !owner.exists() {
                tracing::info!(uid, owner = %owner.display(), "reclaiming the uid of a workspace directory that is gone");
                let _ = std::fs::remove_file(entry.path());
                continue;
            }
            out.insert(uid, owner);
        }
        Ok(out)
    }

    fn lock(&self) -> Result<std::fs::File, Error> {
        use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
        // Parents as the system makes them (e.g. /var/lib/perigee, which also holds the
        // homes workspaces must reach), the registry itself private.
        if let Some(parent) = self.dir.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)
                .map_err(|e| Error::io("creating", parent, e))?;
        }
        match std::fs::DirBuilder::new().mode(0o700).create(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                return Err(Error::io("creating", &self.dir, e))
            }
            _ => {}
        }
        let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        let path = self.dir.join(".lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        file.lock().map_err(|e| Error::io("locking", &path, e))?;
        Ok(file)
    }
}

/// Every uid `/etc/passwd` names.
fn passwd_uids() -> HashSet<u32> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("perigee-uids-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("tmp");
        d
    }

    #[test]
    fn ranges_parse_and_refuse_with_reasons() {
        assert_eq!(
            "200000-200009".parse::<UidRange>(),
            Ok(UidRange {
                first: 200_000,
                last: 200_009
            })
        );
        assert!("100-200"
            .parse::<UidRange>()
            .unwrap_err()
            .contains("below 1000"));
        assert!("5000-4000"
            .parse::<UidRange>()
            .unwrap_err()
            .contains("ends before"));
        assert!("5000"
            .parse::<UidRange>()
            .unwrap_err()
            .contains("FIRST-LAST"));
    }

    #[test]
    fn two_owners_never_share_a_uid_and_gone_owners_are_reclaimed() {
        let base = tmp("alloc");
        let reg = UidRegistry::new(base.join("reg"));
        let range = UidRange {
            first: 300_002,
            last: 300_004,
        };
        let (a, b, c) = (base.join("a"), base.join("b"), base.join("c"));
        for d in [&a, &b, &c] {
            std::fs::create_dir_all(d).expect("owner");
        }
        let (ua, fresh) = reg.allocate(range, &a).expect("a");
        assert!(fresh);
        let (ub, _) = reg.allocate(range, &b).expect("b");
        assert_ne!(ua, ub);
        assert_eq!(
            reg.allocate(range, &a).expect("again"),
            (ua, false),
            "an owner keeps its uid"
        );
        let (uc, _) = reg.allocate(range, &c).expect("c");
        let d = base.join("d");
        std::fs::create_dir_all(&d).expect("d");
        assert!(matches!(reg.allocate(range, &d), Err(Error::NoFreeUid(_))));
        // A removed owner (a deleted data directory) frees its uid for the next one.
        std::fs::remove_dir_all(&b).expect("rm b");
        assert_eq!(reg.allocate(range, &d).expect("reclaimed"), (ub, true));
        reg.release(uc, &c).expect("release");
        let e = base.join("e");
        std::fs::create_dir_all(&e).expect("e");
        assert_eq!(reg.allocate(range, &e).expect("released"), (uc, true));
        // Someone else's entry is not released by a stranger.
        reg.release(ua, &e).expect("no-op");
        assert!(base.join("reg").join(ua.to_string()).exists());
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn uids_in_passwd_are_skipped() {
        let base = tmp("passwd");
        let reg = UidRegistry::new(base.join("reg"));
        // root (0) is in every passwd; a range holding only uids in passwd has nothing free.
        let taken: Vec<u32> = passwd_uids()
            .into_iter()
            .filter(|u| *u >= 1000 && *u < u32::MAX - 2)
            .collect();
        if let Some(u) = taken.first() {
            let owner = base.join("o");
            std::fs::create_dir_all(&owner).expect("o");
            let r = reg.allocate(
                UidRange {
                    first: *u,
                    last: *u,
                },
                &owner,
            );
            assert!(
                matches!(r, Err(Error::NoFreeUid(_))),
                "{u} is in /etc/passwd"
            );
        }
        let _ = std::fs::remove_dir_all(&base);
    }
}
