//! Running the host tools isolation is built on.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::Error;

/// The tools isolation needs, with the Debian package that has each.
pub(crate) const NEEDED: [(&str, &str); 6] = [
    ("ip", "iproute2"),
    ("nft", "nftables"),
    ("unshare", "util-linux"),
    ("setpriv", "util-linux"),
    ("mount", "mount"),
    ("sh", "dash"),
];

/// The absolute path of `tool` in the usual system directories (a server may run with a
/// PATH that lacks `/usr/sbin`, and workspaces are started with a cleared environment).
pub(crate) fn find(tool: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|d| PathBuf::from(d).join(tool))
        .find(|p| p.is_file())
}

/// The real uid of this process (from `/proc`, without a system call binding).
pub(crate) fn current_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next().and_then(|u| u.parse().ok()))
        })
        .unwrap_or(u32::MAX)
}

/// Runs `tool args…`, failing with its stderr.
pub(crate) fn run(tool: &str, args: &[&str]) -> Result<(), Error> {
    run_input(tool, args, None).map(drop)
}

/// Runs `tool args…` with `input` on stdin; returns stdout.
pub(crate) fn run_input(tool: &str, args: &[&str], input: Option<&str>) -> Result<String, Error> {
    let command = format!("{tool} {}", args.join(" "));
    let path = find(tool).ok_or_else(|| Error::Command {
        command: command.clone(),
        message: "not installed".into(),
    })?;
    let mut child = Command::new(path)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Command {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        use std::io::Write as _;
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| Error::Command {
                command: command.clone(),
                message: format!("writing its input: {e}"),
            })?;
    }
    let out = child.wait_with_output().map_err(|e| Error::Command {
        command: command.clone(),
        message: e.to_string(),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(Error::Command {
            command,
            message: if err.is_empty() {
                out.status.to_string()
            } else {
                err
            },
        })
    }
}

/// Writes a kernel setting under `/proc/sys`.
pub(crate) fn sysctl(path: &str, value: &str) -> Result<(), Error> {
    let full = format!("/proc/sys/{path}");
    std::fs::write(&full, value).map_err(|e| Error::io("setting", full, e))
}
