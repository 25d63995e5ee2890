//! `rtc`: data-channel throughput between two perigee WebRTC peers on loopback (in one
//! process, signaling through channels), next to direct TCP on loopback in the same run.
//!
//! Usage: rtc [--secs S] [--streams N] [--relay TURN_ADDR:SECRET]
//! Run it inside a network namespace with an nftables loss rule to measure under loss
//! (`benches/rtc.sh` does both).

use std::time::{Duration, Instant};

use perigee_webrtc::{self as rtc, PeerConfig, Role};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const CHUNK: usize = 256 * 1024;

async fn pump<W: tokio::io::AsyncWrite + Unpin>(mut w: W, until: Instant) -> anyhow::Result<u64> {
    let buf = vec![0x5au8; CHUNK];
    let mut n = 0u64;
    while Instant::now() < until {
        w.write_all(&buf).await?;
        n += CHUNK as u64;
    }
    w.shutdown().await?;
    Ok(n)
}

async fn drain<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> anyhow::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut n = 0u64;
    loop {
        let k = r.read(&mut buf).await?;
        if k == 0 {
            return Ok(n);
        }
        n += k as u64;
    }
}

async fn tcp(secs: f64) -> anyhow::Result<f64> {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    let rx = tokio::spawn(async move {
        let (s, _) = l.accept().await?;
        drain(s).await
    });
    let s = tokio::net::TcpStream::connect(addr).await?;
    let start = Instant::now();
    pump(s, start + Duration::from_secs_f64(secs)).await?;
    let n = rx.await??;
    Ok(n as f64 / start.elapsed().as_secs_f64() / 1e6)
}

async fn webrtc(secs: f64, streams: usize) -> anyhow::Result<(f64, String)> {
    let cfg = |role| PeerConfig {
        role,
        ice_servers: vec![],
        peer_ice_servers: vec![],
        relay_only: false,
        connect_timeout: perigee_webrtc::CONNECT_TIMEOUT,
    };
    let (o, _a, mut incoming) =
        rtc::in_process_pair(cfg(Role::Offerer), cfg(Role::Answerer)).await?;
    let path = o.connected().await.map_err(anyhow::Error::msg)?;
    let sinks = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let Some(i) = incoming.recv().await else {
                break;
            };
            tasks.push(tokio::spawn(drain(i.stream)));
        }
        let mut total = 0u64;
        for t in tasks {
            total += t.await??;
        }
        anyhow::Ok(total)
    });
    let start = Instant::now();
    let until = start + Duration::from_secs_f64(secs);
    let mut senders = Vec::new();
    for k in 0..streams {
        let s = o.open(&format!("bench:{k}")).await?;
        senders.push(tokio::spawn(pump(s, until)));
    }
    for s in senders {
        s.await??;
    }
    let n = sinks.await??;
    Ok((
        n as f64 / start.elapsed().as_secs_f64() / 1e6,
        path.to_string(),
    ))
}

fn main() -> anyhow::Result<()> {
    let mut secs = 3.0;
    let mut streams = 1usize;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => secs = it.next().unwrap_or_default().parse()?,
            "--streams" => streams = it.next().unwrap_or_default().parse()?,
            "--help" | "-h" => {
                println!("rtc [--secs S] [--streams N]: data-channel MB/s between two perigee peers on loopback, and direct TCP");
                return Ok(());
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let direct = tcp(secs).await?;
        let (dc, path) = webrtc(secs, streams).await?;
        println!("| workload | MB/s | ratio to direct TCP |");
        println!("|---|---|---|");
        println!("| direct TCP, loopback | {direct:.0} | 1.00 |");
        println!(
            "| perigee data channel, {streams} stream(s), {path} | {dc:.0} | {:.3} |",
            dc / direct
        );
        anyhow::Ok(())
    })
}
