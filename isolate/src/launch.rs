//! Starting a process inside a workspace: in its network namespace (with its `/etc` files
//! bound by `ip netns exec`), as the first process of a new PID namespace with its own
//! `/proc` and private `/tmp`, `/var/tmp` and `/dev/shm`, as its uid with no groups, no
//! capabilities and no way to gain any (`no_new_privs`), with a cleared environment.

use std::path::Path;
use std::process::Command;

use crate::net::{netns_name, Account};
use crate::tools::find;
use crate::Error;

/// The `PATH` of workspace processes.
pub const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A command running `program args…` in the workspace of `account`, in its home, with only
/// `HOME`, `USER`, `LOGNAME`, `SHELL`, `PATH`, `LANG` and `env` in its environment.
pub fn command(
    account: &Account,
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Command, Error> {
    let tool = |name: &'static str| {
        find(name).ok_or_else(|| Error::Config(format!("`{name}` is not installed")))
    };
    let (ip, unshare, setpriv) = (tool("ip")?, tool("unshare")?, tool("setpriv")?);
    let (sh, mount) = (tool("sh")?, tool("mount")?);
    // Still root, in the new mount namespace (private: nothing propagates to the host):
    // the shared temporary directories are replaced by the workspace's own.
    let private_tmp = format!(
        "set -e; m={m}; $m --bind \"$1\" /tmp; $m --bind \"$2\" /var/tmp; \
         $m -t tmpfs -o nosuid,nodev,mode=1777,size=256m tmpfs /dev/shm; \
         if [ -d /run/lock ]; then $m -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=1m tmpfs /run/lock; fi; \
         shift 2; exec \"$@\"",
        m = mount.display()
    );
    let uid = account.uid.to_string();
    let mut cmd = Command::new(ip);
    cmd.args(["netns", "exec", &netns_name(account.uid)])
        .arg(unshare)
        // The agent is PID 1 of the namespace: when it ends, every process of the
        // workspace ends with it.
        // Its own System V and POSIX IPC objects too (shared memory, queues, semaphores).
        .args([
            "--pid",
            "--ipc",
            "--fork",
            "--mount-proc",
            "--kill-child",
            "--",
        ])
        .arg(sh)
        .args(["-c", &private_tmp, "sh"])
        .arg(&account.tmp)
        .arg(account.tmp.with_file_name("var-tmp"))
        .arg(setpriv)
        .args(["--reuid", &uid, "--regid", &uid, "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"])
        // Changing the uid clears the parent-death signal `--kill-child` set: keep it, so
        // the agent (and with it the workspace's PID namespace) dies with `unshare`, the
        // process its supervisor watches and signals.
        .args(["--pdeathsig", "keep", "--"])
        .arg(program)
        .args(args)
        .env_clear()
        .env("HOME", &account.home)
        .env("USER", &account.name)
        .env("LOGNAME", &account.name)
        .env("SHELL", &account.shell)
        .env("PATH", PATH)
        .env(
            "LANG",
            std::env::var("LANG")
                .ok()
                .filter(|l| !l.is_empty())
                .unwrap_or_else(|| "C.UTF-8".into()),
        )
        .envs(env.iter().copied())
        .current_dir(&account.home);
    Ok(cmd)
}

/// The shell of workspace users: bash when the host has it.
pub fn default_shell() -> std::path::PathBuf {
    ["/bin/bash", "/bin/sh"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| "/bin/sh".into())
}
