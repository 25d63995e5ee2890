//! The rest of issue 18's boundaries: without isolation the local provisioner is the
//! admins' alone; agents end with their workspace; the agent's own SSH port is no way
//! around "external SSH off".

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{wait_until, Server, TempDir};

/// Whether `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

/// The agent's pid and the id of the one workspace in `data`.
fn only_agent(data: &Path) -> (u32, String) {
    let ws = data.join("workspaces");
    let mut found = None;
    wait_until("an agent pid", Duration::from_secs(30), || {
        found = std::fs::read_dir(&ws).ok().and_then(|rd| {
            rd.flatten().find_map(|e| {
                let pid = std::fs::read_to_string(e.path().join("agent.pid")).ok()?;
                Some((
                    pid.trim().parse().ok()?,
                    e.file_name().to_string_lossy().into_owned(),
                ))
            })
        });
        found.as_ref().is_some_and(|(pid, _)| !ended(*pid))
    });
    found.expect("agent")
}

#[test]
fn without_root_only_admins_create_local_workspaces() {
    let tmp = TempDir::new("single-user");
    // The server runs as nobody: isolation is impossible, `auto` makes it single-user.
    let chown = Command::new("chown")
        .args(["65534:65534"])
        .arg(&tmp.0)
        .status();
    assert!(chown.is_ok_and(|s| s.success()));
    let server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
        ],
        &[("PERIGEE_AGENT_EXEC_PREFIX", "")],
        &["--workspace-isolation", "auto"],
    );
    let bob = server.ok(&["users", "create", "bob", "--org", "default"]);
    let out = server
        .cmd(&["create", "mine"])
        .env("PERIGEE_TOKEN", bob.trim())
        .stdin(Stdio::null())
        .output()
        .expect("create");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a member got a workspace as the server's user"
    );
    assert!(err.contains("only admins may create workspaces"), "{err}");
    assert!(
        err.contains("perigee providers create") && err.contains("as root"),
        "{err}"
    );
    assert!(!server.ok(&["ls", "-o", "json"]).contains("mine"));
    // The admin's first run works exactly as before.
    server.ok(&["create", "dev"]);
    server.wait_agent("dev", Duration::from_secs(30), None);
    // A server that must isolate says why it cannot, and does not start.
    let o = Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .arg(crate::harness::BIN)
        .args([
            "server",
            "--address",
            "127.0.0.1:0",
            "--workspace-isolation",
            "on",
            "--data-dir",
        ])
        .arg(tmp.0.join("other"))
        .output()
        .expect("server");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("workspace isolation needs root"), "{err}");
}

fn agents_end_with_their_workspace(isolation: &str) {
    let tmp = TempDir::new(&format!("agent-end-{isolation}"));
    let mut server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[],
        &["--workspace-isolation", isolation],
    );
    // A deleted workspace: its agent ends within seconds and is not restarted.
    server.ok(&["create", "gone"]);
    server.wait_agent("gone", Duration::from_secs(30), None);
    let (pid, _) = only_agent(&server.data());
    server.ok(&["delete", "gone"]);
    wait_until(
        "the deleted workspace's agent to end",
        Duration::from_secs(10),
        || ended(pid),
    );

    // A removed data directory (the server stopped first, as a test's cleanup does): the
    // agent, left running on purpose by the stop, ends by itself.
    server.ok(&["create", "left"]);
    server.wait_agent("left", Duration::from_secs(30), None);
    let (pid, _) = only_agent(&server.data());
    server.stop();
    assert!(!ended(pid), "agents outlive a server stop");
    std::fs::remove_dir_all(server.data()).expect("rm data");
    wait_until("the orphaned agent to end", Duration::from_secs(10), || {
        ended(pid)
    });
}

#[test]
fn agents_end_with_their_workspace_isolated() {
    agents_end_with_their_workspace("on");
}

#[test]
fn agents_end_with_their_workspace_unisolated() {
    agents_end_with_their_workspace("off");
}

#[test]
fn the_agents_ssh_port_is_no_way_around_external_ssh_off() {
    let server = Server::start();
    server.ok(&["create", "ws"]);
    server.wait_agent("ws", Duration::from_secs(30), None);
    let (_, id) = only_agent(&server.data());
    let log = server.data().join("workspaces").join(&id).join("agent.log");
    let mut port = None;
    wait_until(
        "the agent's SSH port in its log",
        Duration::from_secs(20),
        || {
            let text = strip_ansi(&std::fs::read_to_string(&log).unwrap_or_default());
            port = text
                .lines()
                .find(|l| l.contains("SSH server ready"))
                .and_then(|l| l.split("port=").nth(1))
                .and_then(|p| p.split_whitespace().next().map(str::to_owned));
            port.is_some()
        },
    );
    let port = port.expect("port");
    server.ok(&["providers", "edit", "built-in", "--external-ssh", "off"]);
    for p in ["22", port.as_str()] {
        let o = server
            .cmd(&["tunnel", "ws", p])
            .stdin(Stdio::null())
            .output()
            .expect("tunnel");
        let err = String::from_utf8_lossy(&o.stderr);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            !o.status.success() && !out.contains("SSH-2.0"),
            "port {p} reached the SSH server: {out} {err}"
        );
    }
    let o = server
        .cmd(&["tunnel", "ws", &port])
        .stdin(Stdio::null())
        .output()
        .expect("tunnel");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("agent's SSH server"), "{err}");
}

/// `text` without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn the_default_home_root_is_reachable_from_workspaces() {
    // What `perigee server` as root uses with no flags (the quick start): the uid registry
    // and the homes share /var/lib/perigee, which must stay open to the workspaces' uids.
    let tmp = TempDir::new("default-root");
    let server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[],
        &[
            "--workspace-isolation",
            "on",
            "--workspace-home-root",
            "/var/lib/perigee/workspaces",
        ],
    );
    server.ok(&["create", "dflt"]);
    server.wait_agent("dflt", Duration::from_secs(30), None);
    let id = server.workspace("dflt")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert!(Path::new("/var/lib/perigee/workspaces")
        .join(&id)
        .join("home")
        .is_dir());
    server.ok(&["delete", "dflt"]);
    assert!(
        !Path::new("/var/lib/perigee/workspaces").join(&id).exists(),
        "the home went with it"
    );
}
