//! `perigee tunnel` honours `HTTPS_PROXY` by tunnelling through HTTP CONNECT.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::Server;

/// A minimal CONNECT proxy on loopback; returns its port and the targets it was asked for.
fn connect_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let port = l.local_addr().expect("addr").port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for client in l.incoming().flatten() {
            let log = log.clone();
            std::thread::spawn(move || {
                let mut rd = BufReader::new(client.try_clone().expect("clone"));
                let mut line = String::new();
                let _ = rd.read_line(&mut line);
                let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                loop {
                    let mut h = String::new();
                    if rd.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                }
                log.lock().expect("lock").push(line.trim().to_owned());
                let Ok(upstream) = TcpStream::connect(&target) else {
                    let _ = (&client).write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n");
                    return;
                };
                let _ = (&client).write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let (mut c2, mut u2) = (
                    client.try_clone().expect("clone"),
                    upstream.try_clone().expect("clone"),
                );
                let t = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut rd, &mut u2);
                    let _ = u2.shutdown(std::net::Shutdown::Write);
                });
                let mut u = upstream;
                let _ = std::io::copy(&mut u, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
                let _ = t.join();
            });
        }
    });
    (port, seen)
}

#[test]
fn tunnel_goes_through_https_proxy_with_connect() {
    let server = Server::start();
    server.ok(&["create", "px"]);
    server.wait_agent("px", Duration::from_secs(20), None);
    let echo = server.echo_in("px");
    let (proxy, seen) = connect_proxy();

    let mut cmd = server.cmd(&["tunnel", "px", &echo.to_string()]);
    cmd.env("HTTPS_PROXY", format!("http://127.0.0.1:{proxy}"))
        .env("NO_PROXY", "");
    let out = crate::harness::run_with_stdin(cmd, b"via-proxy");
    assert_eq!(
        out.stdout,
        b"via-proxy",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The API call for the ticket and the tunnel itself both go through the proxy.
    let through_proxy = seen.lock().expect("lock").clone();
    let expected = format!("CONNECT {} HTTP/1.1", server.addr);
    assert!(
        !through_proxy.is_empty() && through_proxy.iter().all(|l| *l == expected),
        "{through_proxy:?}"
    );

    // NO_PROXY exempts the host: the proxy sees nothing more.
    let mut cmd = server.cmd(&["tunnel", "px", &echo.to_string()]);
    cmd.env("HTTPS_PROXY", format!("http://127.0.0.1:{proxy}"))
        .env("NO_PROXY", "127.0.0.1");
    let out = crate::harness::run_with_stdin(cmd, b"direct");
    assert_eq!(out.stdout, b"direct");
    assert_eq!(
        seen.lock().expect("lock").len(),
        through_proxy.len(),
        "NO_PROXY host bypassed the proxy"
    );
}
