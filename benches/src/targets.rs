//! The workspace-side services every path ends at: an echo server and a sink.
//! Both run on their own threads so the client's measurements do not share a runtime.

use std::io::{Read as _, Write as _};
use std::net::TcpListener;

/// Echoes every byte back; returns the port.
pub fn echo() -> u16 {
    echo_in(None)
}

/// [`echo`] on 127.0.0.1 inside network namespace `ns` (an isolated workspace's).
pub fn echo_in(ns: Option<&str>) -> u16 {
    serve(ns, |mut s| {
        let _ = s.set_nodelay(true);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Reads until EOF, then answers with the byte count (8 bytes, big-endian); returns the port.
pub fn sink() -> u16 {
    sink_in(None)
}

/// [`sink`] inside network namespace `ns`.
pub fn sink_in(ns: Option<&str>) -> u16 {
    serve(ns, |mut s| {
        let mut buf = vec![0u8; 256 * 1024];
        let mut total: u64 = 0;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        let _ = s.write_all(&total.to_be_bytes());
    })
}

fn serve(ns: Option<&str>, handler: fn(std::net::TcpStream)) -> u16 {
    let l = bind(ns);
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || handler(s));
        }
    });
    port
}

/// A listener on 127.0.0.1 (port 0) inside network namespace `ns`.
fn bind(ns: Option<&str>) -> TcpListener {
    testkit::bind_in_netns(ns).expect("bind target")
}
