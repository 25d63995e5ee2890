//! Isolation across restarts: a home made before isolation moves out of the data directory
//! intact and its agent is restarted isolated; an isolated workspace keeps its namespace,
//! rules and agent across a server restart.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::time::Duration;

use crate::harness::{tunnel_roundtrip, Server, TempDir};

/// The id of the one workspace in `data` and its agent's pid (the process group leader).
fn workspace(data: &Path) -> (String, u32) {
    let rd = std::fs::read_dir(data.join("workspaces")).expect("workspaces");
    let e = rd.flatten().next().expect("one workspace");
    let pid = std::fs::read_to_string(e.path().join("agent.pid")).unwrap_or_default();
    (
        e.file_name().to_string_lossy().into_owned(),
        pid.trim().parse().unwrap_or(0),
    )
}

/// The real uid of the agent under the leader `pid` (isolated: `unshare`'s child).
fn agent_uid(pid: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    let agent = children
        .split_whitespace()
        .next()
        .unwrap_or(&pid.to_string())
        .to_owned();
    let status = std::fs::read_to_string(format!("/proc/{agent}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// A TCP echo server on 127.0.0.1:`port` inside the workspace's network namespace (as the
/// workspace's own code would run it).
fn echo_in_workspace(uid: u32, port: u16) -> std::process::Child {
    let ns = format!("perigee-{uid}");
    crate::harness::python_echo(&["ip", "netns", "exec", &ns], port)
}

#[test]
fn a_home_from_before_isolation_moves_out_intact_and_its_agent_restarts_isolated() {
    let tmp = TempDir::new("iso-upgrade");
    let mut server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[],
        &["--workspace-isolation", "off"],
    );
    server.ok(&["create", "old"]);
    server.wait_agent("old", Duration::from_secs(30), None);
    let (id, old_pid) = workspace(&server.data());
    let old_home = server.data().join("workspaces").join(&id).join("home");
    std::fs::create_dir_all(old_home.join("src")).expect("src");
    std::fs::write(old_home.join("src/notes.txt"), "kept across the upgrade").expect("write");
    assert_eq!(
        agent_uid(old_pid),
        Some(0),
        "before: the agent runs as the server's user"
    );
    let addr = server.addr;
    server.stop();

    let server = Server::start_full(
        &tmp.0,
        &addr.to_string(),
        &[],
        &[],
        &["--workspace-isolation", "on"],
    );
    server.wait_agent("old", Duration::from_secs(30), None);
    let (_, new_pid) = workspace(&server.data());
    assert_ne!(
        new_pid, old_pid,
        "the agent started before isolation was restarted"
    );
    let uid = agent_uid(new_pid).expect("agent uid");
    assert!(uid >= 200_000, "after: the agent runs as uid {uid}");
    let home = tmp.0.join("homes").join(&id).join("home");
    assert_eq!(
        std::fs::read_to_string(home.join("src/notes.txt")).expect("moved"),
        "kept across the upgrade"
    );
    assert_eq!(
        std::fs::metadata(home.join("src/notes.txt"))
            .expect("meta")
            .uid(),
        uid
    );
    assert!(!old_home.exists(), "the home left the data directory");
}

#[test]
fn an_isolated_workspace_keeps_its_namespace_and_rules_across_a_server_restart() {
    let tmp = TempDir::new("iso-restart");
    let mut server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[],
        &["--workspace-isolation", "on"],
    );
    server.ok(&["create", "ws"]);
    server.wait_agent("ws", Duration::from_secs(30), None);
    let (_, pid) = workspace(&server.data());
    let uid = agent_uid(pid).expect("uid");
    let mut echo = echo_in_workspace(uid, 7070);
    let o = tunnel_roundtrip(&server, "ws", 7070, b"before restart\n");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "before restart\n");

    let addr = server.addr;
    server.stop();
    let server = Server::start_full(
        &tmp.0,
        &addr.to_string(),
        &[],
        &[],
        &["--workspace-isolation", "on"],
    );
    server.wait_agent("ws", Duration::from_secs(30), None);
    let (_, pid2) = workspace(&server.data());
    assert_eq!(pid2, pid, "the isolated agent was adopted, not restarted");
    let o = tunnel_roundtrip(&server, "ws", 7070, b"after restart\n");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "after restart\n");
    // The rules were rebuilt with the workspace in them: the host is still out of reach.
    let host = std::net::TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = host.local_addr().expect("addr").port();
    let reach = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &format!("perigee-{uid}"),
            "timeout",
            "3",
            "bash",
            "-c",
        ])
        .arg(format!("exec 3<>/dev/tcp/10.213.0.1/{port}"))
        .status()
        .expect("probe");
    assert!(
        !reach.success(),
        "after a restart the workspace reached a host service"
    );
    let _ = echo.kill();
    let _ = echo.wait();
}
