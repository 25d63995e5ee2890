//! Workloads, each bounded in count and time.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Throughput of one stream uploading for `dur` (bytes/s, as counted by the sink).
pub fn throughput_tcp(addr: &str, dur: Duration) -> anyhow::Result<f64> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let buf = vec![0x5au8; 128 * 1024];
    let start = Instant::now();
    while start.elapsed() < dur {
        s.write_all(&buf)?;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut n = [0u8; 8];
    s.read_exact(&mut n)?;
    Ok(u64::from_be_bytes(n) as f64 / start.elapsed().as_secs_f64())
}

/// Round-trip times of 64-byte ping-pongs (after warm-up), sorted, in microseconds.
pub fn pingpong_tcp(addr: &str, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let mut out = Vec::with_capacity(samples);
    for i in 0..(samples + samples / 10) {
        let t = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        if i >= samples / 10 {
            out.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// The `q` quantile of sorted samples.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Opens `n` connections, proves each works end to end with one ping-pong, and keeps them.
pub fn open_idle(addr: &str, n: usize) -> anyhow::Result<Vec<TcpStream>> {
    let mut conns = Vec::with_capacity(n);
    let deadline = Instant::now() + Duration::from_secs(120);
    for _ in 0..n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "opening {n} connections took over 120 s"
        );
        let mut s = TcpStream::connect(addr)?;
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        s.write_all(b"x")?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        conns.push(s);
    }
    Ok(conns)
}

/// Resident memory of a process, in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Waits until `addr` answers an echo (a relay is ready only when the whole path is).
pub fn wait_echo(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    wait_until(addr, timeout, |s| {
        s.write_all(b"r")?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b)?;
        Ok(())
    })
}

/// Waits until `addr` reaches the sink end to end (one byte sent, count 1 returned).
pub fn wait_sink(addr: &str, timeout: Duration) -> anyhow::Result<()> {
    wait_until(addr, timeout, |s| {
        s.write_all(b"r")?;
        s.shutdown(std::net::Shutdown::Write)?;
        let mut n = [0u8; 8];
        s.read_exact(&mut n)?;
        anyhow::ensure!(
            u64::from_be_bytes(n) == 1,
            "sink counted {}",
            u64::from_be_bytes(n)
        );
        Ok(())
    })
}

fn wait_until(
    addr: &str,
    timeout: Duration,
    probe: impl Fn(&mut TcpStream) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let ok = TcpStream::connect(addr)
            .map_err(anyhow::Error::from)
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                probe(&mut s)
            });
        if ok.is_ok() {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{addr} not ready: {:?}",
            ok.err()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
