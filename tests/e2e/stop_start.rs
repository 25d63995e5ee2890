//! `perigee stop` and `perigee start` on the built-in provider: the agent process goes and
//! comes back, the workspace's directory stays, connecting to a stopped workspace is refused
//! with what to do, and a restarted server leaves a stopped workspace stopped.

use std::time::Duration;

use crate::harness::{wait_until, Server, TempDir};

#[test]
fn a_stopped_workspace_keeps_its_home_and_starts_again() {
    let tmp = TempDir::new("stop-start");
    let mut server = Server::start_in(&tmp.0, "127.0.0.1:0", &[]);
    server.ok(&["create", "ws"]);
    let (pid, _) = server.wait_agent("ws", Duration::from_secs(30), None);
    let marker = server.home_of("ws").join("kept.txt");
    std::fs::write(&marker, "still here").unwrap();

    server.ok(&["stop", "ws"]);
    let w = server.workspace("ws");
    assert_eq!(w["status"], "stopped");
    wait_until("the agent process ends", Duration::from_secs(10), || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z"))
    });
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "still here");
    server.refused(
        &["tunnel", "ws", "22"],
        "is stopped: start it with `perigee start ws`",
    );

    // A restart of the server does not bring it back (workspaces resume before the server
    // says it is ready).
    server.stop();
    let server = Server::start_in(&tmp.0, "127.0.0.1:0", &[]);
    assert!(
        server.workspace("ws")["agent_pid"].is_null(),
        "started by the restart"
    );

    server.ok(&["start", "ws"]);
    let (again, _) = server.wait_agent("ws", Duration::from_secs(30), Some(pid));
    assert_ne!(again, pid);
    assert_eq!(server.workspace("ws")["status"], "running");
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "still here");
}
