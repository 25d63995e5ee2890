//! `datapath`: the same workloads direct, through perigee and through peers, in one run.
//!
//! Usage: datapath --perigee PATH [--rathole PATH] [--latency-only] [--start-only] [--label L]
//! [--conns N] (see `benches/run.sh`, which runs it unpinned and pinned to one core).
//! `--start-only` measures only the time to a usable `perigee tunnel` stream on each path.

mod load;
mod peers;
mod targets;
mod wsclient;

use std::path::PathBuf;
use std::time::Duration;

use load::{quantile, rss};
use peers::{ready, Perigee};

struct Args {
    perigee: PathBuf,
    rathole: Option<PathBuf>,
    latency_only: bool,
    start_only: bool,
    label: String,
    conns: usize,
    secs: f64,
    samples: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        perigee: PathBuf::from("target/release/perigee"),
        rathole: None,
        latency_only: false,
        start_only: false,
        label: "unpinned".into(),
        conns: 2000,
        secs: 3.0,
        samples: 5000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--perigee" => a.perigee = val()?.into(),
            "--rathole" => a.rathole = Some(val()?.into()),
            "--latency-only" => a.latency_only = true,
            "--start-only" => a.start_only = true,
            "--label" => a.label = val()?,
            "--conns" => a.conns = val()?.parse()?,
            "--secs" => a.secs = val()?.parse()?,
            "--samples" => a.samples = val()?.parse()?,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

struct Row {
    name: String,
    mbps: Option<f64>,
    p50: f64,
    p99: f64,
    mem_per_conn: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let work = std::env::temp_dir().join(format!("perigee-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let (echo, sink) = (targets::echo(), targets::sink());
    let dur = Duration::from_secs_f64(a.secs);
    let mut rows = Vec::new();
    if a.start_only {
        let pg = Perigee::start(&work.join("perigee"), &a.perigee, &[])?;
        let starts = tunnel_starts(&pg, echo, 30)?;
        drop(pg);
        let _ = std::fs::remove_dir_all(&work);
        report_starts(&a, &starts);
        return Ok(());
    }

    let measure = |name: &str,
                   echo_addr: &str,
                   sink_addr: &str,
                   mem_pids: &[u32],
                   rows: &mut Vec<Row>|
     -> anyhow::Result<()> {
        ready(echo_addr)?;
        load::wait_sink(sink_addr, Duration::from_secs(30))?;
        let mbps = if a.latency_only {
            None
        } else {
            Some(load::throughput_tcp(sink_addr, dur)? / 1e6)
        };
        let lat = load::pingpong_tcp(echo_addr, a.samples)?;
        let mem_per_conn = if a.latency_only || mem_pids.is_empty() {
            None
        } else {
            let before: u64 = mem_pids.iter().map(|p| rss(*p)).sum();
            let conns = load::open_idle(echo_addr, a.conns)?;
            std::thread::sleep(Duration::from_millis(500));
            let after: u64 = mem_pids.iter().map(|p| rss(*p)).sum();
            drop(conns);
            Some(after.saturating_sub(before) as f64 / a.conns as f64)
        };
        eprintln!("measured {name}");
        rows.push(Row {
            name: name.into(),
            mbps,
            p50: quantile(&lat, 0.5),
            p99: quantile(&lat, 0.99),
            mem_per_conn,
        });
        Ok(())
    };

    let direct = |p: u16| format!("127.0.0.1:{p}");
    measure("direct TCP", &direct(echo), &direct(sink), &[], &mut rows)?;

    // perigee: edge + agent, entered by a client speaking the tunnel protocol itself.
    let mut pg = Perigee::start(&work.join("perigee"), &a.perigee, &[])?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (ticket, ws_id) =
        rt.block_on(wsclient::ticket(&pg.addr, &pg.ca, &pg.token, &[echo, sink]))?;
    let client = wsclient::Client::new(&pg.addr, &pg.ca, ticket, ws_id)?;
    // The agent link is `auto`: HTTP/2 over TCP to a near edge, as here on loopback.
    let name =
        "perigee edge+agent (WS/TLS client → edge → HTTP/2 link → agent, auto for a near edge)";
    rows.push(ws_row(&rt, &client, name, echo, sink, &a)?);
    let first = rt.block_on(wsclient::first_byte(&client, echo, 200))?;

    // The same with the agent on a QUIC link (what a far edge gets).
    if !a.latency_only {
        let h2 = Perigee::start(
            &work.join("perigee-quic"),
            &a.perigee,
            &[("PERIGEE_AGENT_LINK", "quic")],
        )?;
        let (ticket, ws_id) =
            rt.block_on(wsclient::ticket(&h2.addr, &h2.ca, &h2.token, &[echo, sink]))?;
        let c = wsclient::Client::new(&h2.addr, &h2.ca, ticket, ws_id)?;
        rows.push(ws_row(
            &rt,
            &c,
            "perigee edge+agent, QUIC link (--link quic; auto for a far edge)",
            echo,
            sink,
            &a,
        )?);
    }

    // perigee as users run it: `perigee port-forward` in front.
    let fwd = pg.port_forward(&[echo, sink])?;
    let mem_pids = [pg.edge_pid(), pg.agent_pid];
    measure(
        "perigee port-forward → edge → agent (full path)",
        &fwd[0],
        &fwd[1],
        &mem_pids,
        &mut rows,
    )?;
    let cold = cold_tunnels(&pg, echo, 20)?;
    let starts = tunnel_starts(&pg, echo, 20)?;

    // haproxy pair with TLS between the hops.
    if which("haproxy") {
        let (p1, e) = peers::haproxy_pair(&work.join("haproxy-echo"), echo)?;
        let (_p2, s) = peers::haproxy_pair(&work.join("haproxy-sink"), sink)?;
        measure(
            "haproxy pair (TLS 1.3 between)",
            &e,
            &s,
            &p1.pids(),
            &mut rows,
        )?;
    }
    if let Some(bin) = &a.rathole {
        let (p1, e) = peers::rathole_pair(&work.join("rathole-echo"), echo, bin)?;
        let (_p2, s) = peers::rathole_pair(&work.join("rathole-sink"), sink, bin)?;
        measure("rathole server+client (TLS)", &e, &s, &p1.pids(), &mut rows)?;
    }
    drop(pg);
    let _ = std::fs::remove_dir_all(&work);

    report(&a, &rows, &first, &cold);
    report_starts(&a, &starts);
    Ok(())
}

/// Time to a usable stream per `--path`, the paths interleaved so drift hits all alike.
fn tunnel_starts(
    pg: &Perigee,
    echo: u16,
    n: usize,
) -> anyhow::Result<Vec<(&'static str, Vec<f64>)>> {
    let paths = ["envproxy", "auto", "webrtc"];
    let mut out: Vec<(&'static str, Vec<f64>)> = paths.iter().map(|p| (*p, Vec::new())).collect();
    // The first tunnel fetches the ticket; it is not part of any path's figure.
    tunnel_once(pg, echo, "envproxy")?;
    for _ in 0..n {
        for (path, v) in out.iter_mut() {
            v.push(tunnel_once(pg, echo, path)?);
        }
    }
    for (_, v) in out.iter_mut() {
        v.sort_by(f64::total_cmp);
    }
    Ok(out)
}

fn report_starts(a: &Args, starts: &[(&'static str, Vec<f64>)]) {
    println!(
        "
Time to a usable `perigee tunnel` stream (`{}`; process start, cached ticket, path set up, first echoed byte), {} runs per path, interleaved:
",
        a.label,
        starts.first().map_or(0, |(_, v)| v.len())
    );
    println!("| --path | p50 ms | p90 ms | max ms | p50 × envproxy |");
    println!("|---|---|---|---|---|");
    let base = starts
        .iter()
        .find(|(p, _)| *p == "envproxy")
        .map(|(_, v)| quantile(v, 0.5))
        .unwrap_or(f64::NAN);
    for (p, v) in starts {
        println!(
            "| {p} | {:.1} | {:.1} | {:.1} | {:.2} |",
            quantile(v, 0.5) / 1e3,
            quantile(v, 0.9) / 1e3,
            quantile(v, 1.0) / 1e3,
            quantile(v, 0.5) / base
        );
    }
}

/// Throughput (unless latency-only) and ping-pong RTT through a tunnel-protocol client.
fn ws_row(
    rt: &tokio::runtime::Runtime,
    client: &wsclient::Client,
    name: &str,
    echo: u16,
    sink: u16,
    a: &Args,
) -> anyhow::Result<Row> {
    let dur = Duration::from_secs_f64(a.secs);
    let mbps = if a.latency_only {
        None
    } else {
        Some(rt.block_on(wsclient::throughput(client, sink, dur))? / 1e6)
    };
    let lat = rt.block_on(wsclient::pingpong(client, echo, a.samples))?;
    eprintln!("measured {name}");
    Ok(Row {
        name: name.into(),
        mbps,
        p50: quantile(&lat, 0.5),
        p99: quantile(&lat, 0.99),
        mem_per_conn: None,
    })
}

fn which(bin: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Wall-clock of one `perigee tunnel --path PATH` from process start to the first echoed
/// byte (µs).
fn tunnel_once(pg: &Perigee, echo: u16, path: &str) -> anyhow::Result<f64> {
    use std::io::{Read as _, Write as _};
    let t = std::time::Instant::now();
    let mut child = pg
        .cli(&["tunnel", "bench", &echo.to_string(), "--path", path])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let mut stdin = child.stdin.take().ok_or_else(|| anyhow::anyhow!("stdin"))?;
    stdin.write_all(b"x")?;
    let mut b = [0u8; 1];
    child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("stdout"))?
        .read_exact(&mut b)?;
    let us = t.elapsed().as_secs_f64() * 1e6;
    drop(stdin);
    let _ = child.wait();
    Ok(us)
}

/// Wall-clock of `perigee tunnel` (default path) from process start to the first echoed
/// byte (µs).
fn cold_tunnels(pg: &Perigee, echo: u16, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(tunnel_once(pg, echo, "auto")?);
    }
    // Keep the first (ticket from the control plane) first; sort the cached ones.
    if let Some(rest) = out.get_mut(1..) {
        rest.sort_by(f64::total_cmp);
    }
    Ok(out)
}

fn report(a: &Args, rows: &[Row], first: &[f64], cold: &[f64]) {
    let direct = &rows[0];
    let find = |needle: &str| rows.iter().find(|r| r.name.contains(needle));
    let rathole = find("rathole");
    let haproxy = find("haproxy");
    println!(
        "\n### Run `{}` ({} s upload per throughput sample, {} ping-pongs, {} idle connections)\n",
        a.label, a.secs, a.samples, a.conns
    );
    println!("| path | MB/s | × direct | × haproxy | × rathole | RTT p50 µs | RTT p99 µs | added p50 µs | p99/p50 | idle KB/conn |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let ratio = |other: Option<&Row>| match (r.mbps, other.and_then(|o| o.mbps)) {
            (Some(x), Some(y)) if y > 0.0 => format!("{:.2}", x / y),
            _ => "–".into(),
        };
        let mbps = r
            .mbps
            .map(|m| format!("{m:.0}"))
            .unwrap_or_else(|| "–".into());
        let mem = r
            .mem_per_conn
            .map(|m| format!("{:.1}", m / 1024.0))
            .unwrap_or_else(|| "–".into());
        println!(
            "| {} | {mbps} | {} | {} | {} | {:.1} | {:.1} | {:+.1} | {:.2} | {mem} |",
            r.name,
            ratio(Some(direct)),
            ratio(haproxy),
            ratio(rathole),
            r.p50,
            r.p99,
            r.p50 - direct.p50,
            r.p99 / r.p50
        );
    }
    println!(
        "\nNew tunnel over the existing agent link (TCP + TLS + upgrade + first echoed byte): p50 {:.0} µs, p99 {:.0} µs.",
        quantile(first, 0.5),
        quantile(first, 0.99)
    );
    println!("Cold `perigee tunnel` (process start, ticket — from the control plane the first time, then from the CLI's cache — TLS, upgrade, first byte): first {:.1} ms; then p50 {:.1} ms, max {:.1} ms.", cold.first().copied().unwrap_or(f64::NAN) / 1e3, quantile(cold.get(1..).unwrap_or(&[]), 0.5) / 1e3, quantile(cold.get(1..).unwrap_or(&[]), 1.0) / 1e3);
}
