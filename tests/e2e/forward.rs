//! `perigee port-forward` under concurrency.

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::Duration;

use crate::harness::{pseudo_random, Server};

struct Killer(std::process::Child);

impl Drop for Killer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn port_forward_carries_100_concurrent_connections_of_1mb() {
    let server = Server::start();
    server.ok(&["create", "fw"]);
    server.wait_agent("fw", Duration::from_secs(20), None);
    let echo = server.echo_in("fw");

    let mut child = server
        .cmd(&["port-forward", "fw", "--tcp", &format!("0:{echo}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("port-forward");
    let stdout = child.stdout.take().expect("stdout");
    let _guard = Killer(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("forward line");
    // "Forwarding 127.0.0.1:PORT -> fw:ECHO"
    let local = line.split_whitespace().nth(1).expect("address").to_owned();

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async move {
        let mut tasks = Vec::new();
        for i in 0..100u64 {
            let local = local.clone();
            tasks.push(tokio::spawn(async move {
                use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                let data = pseudo_random(i + 1, 1024 * 1024);
                let s = tokio::net::TcpStream::connect(&local)
                    .await
                    .expect("connect forward");
                let (mut r, mut w) = s.into_split();
                let expected = data.clone();
                let writer = tokio::spawn(async move {
                    w.write_all(&data).await.expect("write");
                    w.shutdown().await.expect("shutdown");
                });
                let mut got = Vec::with_capacity(expected.len());
                r.read_to_end(&mut got).await.expect("read");
                writer.await.expect("writer");
                assert_eq!(got.len(), expected.len(), "connection {i}: length");
                assert!(got == expected, "connection {i}: data differs");
            }));
        }
        let all = async {
            for t in tasks {
                t.await.expect("connection task");
            }
        };
        tokio::time::timeout(Duration::from_secs(180), all)
            .await
            .expect("100 connections finish in bounded time");
    });
}
