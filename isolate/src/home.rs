//! A workspace's directory under `--workspace-home-root`:
//!
//! ```text
//! <home-root>/            root, 0711: workspaces cannot list each other
//!   <workspace id>/       root, 0711
//!     home/               the workspace's uid, 0700: its home
//!     agent-token         the workspace's uid, 0400: what its agent dials the edge with
//!     ca.pem              0644: the CA its agent trusts (self-signed deployments)
//! ```
//!
//! The control plane's data directory stays 0700 root: nothing in it is readable to a
//! workspace.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::Error;

/// The directory of workspace `id` under `root`.
pub fn base(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

/// The home inside a workspace directory.
pub fn home(base: &Path) -> PathBuf {
    base.join("home")
}

/// Makes `root` (0711) and checks that a workspace's uid can pass through every directory
/// above it: a home it cannot reach would leave its agent unable to start.
pub fn check_root(root: &Path) -> Result<(), Error> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(root)
        .map_err(|e| Error::io("creating", root, e))?;
    set_mode(root, 0o711)?;
    for dir in root.ancestors().skip(1) {
        let meta = std::fs::metadata(dir).map_err(|e| Error::io("reading", dir, e))?;
        if meta.mode() & 0o001 == 0 {
            return Err(Error::Config(format!(
                "--workspace-home-root {}: workspaces cannot reach it, {} is closed to other \
                 users (mode {:o}); give it o+x (chmod o+x {}) or choose another root",
                root.display(),
                dir.display(),
                meta.mode() & 0o777,
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Creates `<root>/<id>` (root-owned, 0711, as is `root`) and returns it.
pub fn prepare_base(root: &Path, id: &str) -> Result<PathBuf, Error> {
    let base = base(root, id);
    std::fs::create_dir_all(&base).map_err(|e| Error::io("creating", &base, e))?;
    for dir in [root, base.as_path()] {
        set_mode(dir, 0o711)?;
    }
    Ok(base)
}

/// Makes the home in `base` owned by `uid`, mode 0700. When `old` (a home in the data
/// directory, from before isolation) exists and the new home does not, it is moved there
/// intact first (a copy and a removal when they are on different file systems).
pub fn prepare_home(base: &Path, uid: u32, old: Option<&Path>) -> Result<PathBuf, Error> {
    let home = home(base);
    match old {
        Some(old) if old.is_dir() && !home.exists() => {
            tracing::info!(from = %old.display(), to = %home.display(), "moving a workspace's home out of the data directory");
            move_dir(old, &home)?;
            chown_tree(&home, uid)?;
        }
        _ => {
            if !home.exists() {
                std::fs::create_dir(&home).map_err(|e| Error::io("creating", &home, e))?;
            }
        }
    }
    // The top is always (re)owned: an upgrade or a changed uid leaves nothing to root.
    chown(&home, uid)?;
    set_mode(&home, 0o700)?;
    Ok(home)
}

/// The workspace's own temporary directories in `base`, `tmp/` and `var-tmp/` (mode 1777,
/// as `/tmp` is), bound over `/tmp` and `/var/tmp` inside it; returns `tmp/`.
pub fn prepare_tmp(base: &Path) -> Result<PathBuf, Error> {
    for name in ["tmp", "var-tmp"] {
        let dir = base.join(name);
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        }
        set_mode(&dir, 0o1777)?;
    }
    Ok(base.join("tmp"))
}

/// Writes `name` in `base`, owned by `uid` with `mode` (written afresh each start).
pub fn install_file(
    base: &Path,
    name: &str,
    contents: &[u8],
    uid: Option<u32>,
    mode: u32,
) -> Result<PathBuf, Error> {
    let path = base.join(name);
    let _ = std::fs::remove_file(&path);
    std::fs::write(&path, contents).map_err(|e| Error::io("writing", &path, e))?;
    if let Some(uid) = uid {
        chown(&path, uid)?;
    }
    set_mode(&path, mode)?;
    Ok(path)
}

/// Removes a workspace directory and everything in it.
pub fn remove(base: &Path) -> Result<(), Error> {
    match std::fs::remove_dir_all(base) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io("removing", base, e)),
        _ => Ok(()),
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<(), Error> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io("setting the mode of", path, e))
}

fn chown(path: &Path, uid: u32) -> Result<(), Error> {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))
        .map_err(|e| Error::io("changing the owner of", path, e))
}

/// Gives every file under `dir` to `uid`, never following symbolic links (a link planted
/// in an old home must not hand its target to the workspace).
fn chown_tree(dir: &Path, uid: u32) -> Result<(), Error> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        chown(&d, uid)?;
        let meta = std::fs::symlink_metadata(&d).map_err(|e| Error::io("reading", &d, e))?;
        if meta.is_dir() {
            let rd = std::fs::read_dir(&d).map_err(|e| Error::io("reading", &d, e))?;
            stack.extend(rd.flatten().map(|e| e.path()));
        }
    }
    Ok(())
}

fn move_dir(from: &Path, to: &Path) -> Result<(), Error> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        // EXDEV: another file system.
        Err(e) if e.raw_os_error() == Some(18) => {
            let (f, t) = (from.display().to_string(), to.display().to_string());
            crate::tools::run("cp", &["-a", "--", &f, &t])?;
            std::fs::remove_dir_all(from).map_err(|e| Error::io("removing", from, e))
        }
        Err(e) => Err(Error::io("moving", from, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn a_home_root_behind_a_closed_directory_is_refused_with_the_fix() {
        let t = std::env::temp_dir().join(format!("perigee-root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        std::fs::create_dir_all(t.join("closed")).expect("dir");
        set_mode(&t.join("closed"), 0o700).expect("chmod");
        let e = check_root(&t.join("closed/homes")).expect_err("closed parent");
        assert!(e.to_string().contains("chmod o+x"), "{e}");
        set_mode(&t.join("closed"), 0o755).expect("chmod");
        check_root(&t.join("closed/homes")).expect("open parent");
        let mode = std::fs::metadata(t.join("closed/homes")).expect("m").mode() & 0o777;
        assert_eq!(mode, 0o711);
        let _ = std::fs::remove_dir_all(&t);
    }

    #[test]
    fn an_old_home_moves_intact_and_links_are_not_followed() {
        if crate::tools::current_uid() != 0 {
            return; // chown needs root; the end-to-end tests run as root
        }
        let t = std::env::temp_dir().join(format!("perigee-home-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&t);
        let old = t.join("data/ws/home");
        std::fs::create_dir_all(old.join("src")).expect("old");
        std::fs::write(old.join("src/main.rs"), "fn main() {}").expect("file");
        let target = t.join("secret");
        std::fs::write(&target, "root's").expect("secret");
        std::os::unix::fs::symlink(&target, old.join("link")).expect("link");
        let base = prepare_base(&t.join("homes"), "ws").expect("base");
        let home = prepare_home(&base, 200_123, Some(&old)).expect("home");
        assert!(!old.exists(), "moved, not copied");
        assert_eq!(
            std::fs::read_to_string(home.join("src/main.rs")).expect("kept"),
            "fn main() {}"
        );
        assert_eq!(
            std::fs::metadata(home.join("src/main.rs"))
                .expect("m")
                .uid(),
            200_123
        );
        assert_eq!(std::fs::metadata(&home).expect("m").mode() & 0o777, 0o700);
        assert_eq!(
            std::fs::metadata(&target).expect("m").uid(),
            0,
            "the link's target stays root's"
        );
        assert_eq!(
            std::fs::symlink_metadata(home.join("link"))
                .expect("m")
                .uid(),
            200_123
        );
        let _ = std::fs::remove_dir_all(&t);
    }
}
