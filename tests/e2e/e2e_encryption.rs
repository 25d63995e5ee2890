//! End-to-end encryption: with the provider's feature on, what an edge relays is ciphertext.
//!
//! The server speaks plain HTTP here, so the bytes a recording relay sees between the CLI and
//! the edge are exactly what the edge itself reads from the tunnel. Edge → CLI WebSocket
//! frames are unmasked: without end-to-end encryption the echoed marker shows in them.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{run_with_stdin, wait_until, Server, TempDir};

/// Most bytes a recording keeps per direction.
const RECORD_LIMIT: usize = 8 << 20;

/// A TCP relay on `l` to `target` that records what the target sends back.
fn recording_relay(l: TcpListener, target: SocketAddr) -> Arc<Mutex<Vec<u8>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let rec = seen.clone();
    std::thread::spawn(move || {
        for client in l.incoming().flatten() {
            let Ok(up) = TcpStream::connect(target) else {
                continue;
            };
            let (mut c_rd, mut c_wr) = (client.try_clone().unwrap(), client);
            let (mut u_rd, mut u_wr) = (up.try_clone().unwrap(), up);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_rd, &mut u_wr);
                let _ = u_wr.shutdown(std::net::Shutdown::Write);
            });
            let rec = rec.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16384];
                loop {
                    let n = match u_rd.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if let Ok(mut r) = rec.lock() {
                        if r.len() + n <= RECORD_LIMIT {
                            r.extend_from_slice(&buf[..n]);
                        }
                    }
                    if c_wr.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = c_wr.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    seen
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn an_edge_relays_only_ciphertext_when_the_provider_encrypts_end_to_end() {
    let tmp = TempDir::new("e2e");
    // Users reach the server through the relay: it is the access URL tickets name.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let relay = l.local_addr().unwrap();
    let server = Server::start_plain(&tmp.0, &["--access-url", &format!("http://{relay}")]);
    let seen = recording_relay(l, server.addr);
    server.ok(&["create", "dev"]);
    server.wait_agent("dev", Duration::from_secs(20), None);
    let echo = server.echo_in("dev").to_string();
    let through_relay = |args: &[&str]| server.cmd(args);
    let marker = b"perigee-e2e-marker-0123456789".repeat(64);

    // Control: without the feature the edge sees the payload.
    let out = run_with_stdin(through_relay(&["tunnel", "dev", &echo]), &marker);
    assert_eq!(
        out.stdout,
        marker,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        contains(&seen.lock().unwrap(), b"perigee-e2e-marker"),
        "control: the marker should be visible without end-to-end encryption"
    );

    // On: new tunnels carry an inner session keyed to the agent.
    server.ok(&["providers", "edit", "built-in", "--e2e-encryption", "on"]);
    // The switch applies to tickets issued from now on; drop the CLI's cached one.
    let _ = std::fs::remove_file(server.dir.join("config/tickets.json"));
    seen.lock().unwrap().clear();
    let mut last = String::new();
    wait_until("an end-to-end tunnel", Duration::from_secs(20), || {
        let out = run_with_stdin(through_relay(&["tunnel", "-v", "dev", &echo]), &marker);
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        out.stdout == marker
    });
    assert!(last.contains("e2e=on"), "{last}");
    let recorded = seen.lock().unwrap().clone();
    assert!(recorded.len() > marker.len(), "the relay saw the tunnel");
    assert!(
        !contains(&recorded, b"perigee-e2e-marker"),
        "the edge relayed plaintext"
    );

    // The agent restarts with a new key: a cached ticket's key no longer matches, and the
    // CLI fetches a fresh one instead of failing (the server restarts the agent).
    let (pid, _) = server.wait_agent("dev", Duration::from_secs(5), None);
    crate::harness::signal(u32::try_from(pid).unwrap(), "-KILL");
    server.wait_agent("dev", Duration::from_secs(20), Some(pid));
    wait_until(
        "a tunnel to the restarted agent",
        Duration::from_secs(20),
        || run_with_stdin(server.cmd(&["tunnel", "dev", &echo]), b"again").stdout == b"again",
    );
}
