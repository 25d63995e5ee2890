//! Agents are restarted when they die, and reconnect by themselves when the server restarts.

use std::time::{Duration, Instant};

use crate::harness::{signal, tunnel_roundtrip, Server};

#[test]
fn killed_agent_is_restarted_and_serves_within_2s_and_survives_a_server_restart() {
    let mut server = Server::start();
    server.ok(&["create", "rs"]);
    let (pid, _) = server.wait_agent("rs", Duration::from_secs(20), None);
    let echo = server.echo_in("rs");
    let out = tunnel_roundtrip(&server, "rs", echo, b"before");
    assert_eq!(
        out.stdout,
        b"before",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Kill the agent: the provisioner restarts it and a new tunnel works within 2 s.
    let killed = Instant::now();
    signal(pid as u32, "-KILL");
    let worked_after = loop {
        let out = tunnel_roundtrip(&server, "rs", echo, b"after-kill");
        if out.stdout == b"after-kill" {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no tunnel after agent kill: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    eprintln!("tunnel worked again {worked_after:?} after killing agent {pid}");
    assert!(
        worked_after <= Duration::from_secs(2),
        "tunnel worked only {worked_after:?} after the agent was killed"
    );
    let (new_pid, _) = server.wait_agent("rs", Duration::from_secs(5), Some(pid));
    assert_ne!(new_pid, pid);

    // Restart the server on the same address: the same agent process reconnects by itself.
    let (dir, addr) = (server.dir.clone(), server.addr);
    server.stop();
    assert!(!server.is_running());
    let agent_alive = std::path::Path::new(&format!("/proc/{new_pid}")).exists();
    assert!(agent_alive, "local agents outlive a server restart");
    let server2 = Server::start_in(&dir, &addr.to_string(), &[]);
    let restarted = Instant::now();
    let (pid_after, _) = server2.wait_agent("rs", Duration::from_secs(30), None);
    eprintln!(
        "agent {pid_after} reconnected {:?} after the server restarted",
        restarted.elapsed()
    );
    assert_eq!(
        pid_after, new_pid,
        "the running agent reconnected (not a new one started)"
    );
    let out = tunnel_roundtrip(&server2, "rs", echo, b"after-restart");
    assert_eq!(
        out.stdout,
        b"after-restart",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(server2);
    drop(server);
}
