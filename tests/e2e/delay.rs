//! A userspace delay proxy (no `tc netem` here): TCP and UDP on the same port, each byte or
//! datagram delivered half the link's round trip after it arrived, in order.
//!
//! Threads run until the test process exits (nextest runs each test in its own process).

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        thread::sleep(at - now);
    }
}

/// Starts a proxy on `listen` (TCP and UDP) to `target`, adding `rtt` to every round trip.
pub fn start(listen: SocketAddr, target: SocketAddr, rtt: Duration) {
    let one_way = rtt / 2;
    let tcp = TcpListener::bind(listen).unwrap_or_else(|e| panic!("bind {listen}: {e}"));
    thread::spawn(move || {
        for client in tcp.incoming().flatten() {
            let Ok(up) = TcpStream::connect(target) else {
                continue;
            };
            let _ = client.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let (c2, u2) = (
                client.try_clone().expect("clone"),
                up.try_clone().expect("clone"),
            );
            tcp_pipe(client, up, one_way);
            tcp_pipe(u2, c2, one_way);
        }
    });
    let udp = UdpSocket::bind(listen).unwrap_or_else(|e| panic!("bind udp {listen}: {e}"));
    thread::spawn(move || udp_proxy(udp, target, one_way));
}

/// Copies `from` → `to`, each chunk `delay` late; a read end becomes a write shutdown.
fn tcp_pipe(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        for (at, data) in rx {
            sleep_until(at);
            if data.is_empty() {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            if to.write_all(&data).is_err() {
                return;
            }
        }
    });
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send((Instant::now() + delay, Vec::new()));
                    return;
                }
                Ok(n) => {
                    if tx
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
}

/// Sends each queued datagram at its time.
fn delayed_sender<F: FnMut(&[u8]) + Send + 'static>(
    mut send: F,
) -> mpsc::Sender<(Instant, Vec<u8>)> {
    let (tx, rx) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        for (at, data) in rx {
            sleep_until(at);
            send(&data);
        }
    });
    tx
}

fn udp_proxy(listen: UdpSocket, target: SocketAddr, delay: Duration) {
    let mut sessions: HashMap<SocketAddr, mpsc::Sender<(Instant, Vec<u8>)>> = HashMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let Ok((n, client)) = listen.recv_from(&mut buf) else {
            return;
        };
        let at = Instant::now() + delay;
        let up = sessions.entry(client).or_insert_with(|| {
            let sock = UdpSocket::bind("0.0.0.0:0").expect("bind upstream");
            sock.connect(target).expect("connect upstream");
            // Answers go back to this client through the listening socket, delayed too.
            let back = listen.try_clone().expect("clone");
            let down = delayed_sender(move |d| {
                let _ = back.send_to(d, client);
            });
            let reader = sock.try_clone().expect("clone");
            thread::spawn(move || {
                let mut b = vec![0u8; 64 * 1024];
                while let Ok(n) = reader.recv(&mut b) {
                    if down
                        .send((Instant::now() + delay, b[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            });
            delayed_sender(move |d| {
                let _ = sock.send(d);
            })
        });
        let _ = up.send((at, buf[..n].to_vec()));
    }
}
