//! `mesh`: what a satellite costs, in one run.
//!
//! * Latency: 64-byte ping-pongs to an echo in the workspace, entering at the primary edge
//!   directly, through a satellite (satellite → QUIC mesh → primary edge), and through one
//!   haproxy hop in front of the primary edge (plain TCP pass-through), plus direct TCP and
//!   one haproxy hop in front of the echo itself. The mesh hop's added latency is
//!   `satellite − primary`; a haproxy hop's is `haproxy → primary − primary`.
//! * Idle tunnels: N concurrent tunnels through the satellite, each proven end to end by one
//!   echo; the satellite's resident memory and CPU time, and errors.
//!
//! Usage: mesh --perigee PATH [--samples N] [--tunnels N] [--label L] [--latency-only]

#[path = "load.rs"]
#[allow(dead_code)]
mod load;
#[path = "peers.rs"]
#[allow(dead_code)]
mod peers;
#[path = "targets.rs"]
#[allow(dead_code)]
mod targets;
#[path = "wsclient.rs"]
#[allow(dead_code)]
mod wsclient;

use std::io::BufRead as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use load::{quantile, rss};
use peers::{free_port, Perigee, Procs};
use tokio_tungstenite::tungstenite::Message;

struct Args {
    perigee: PathBuf,
    samples: usize,
    tunnels: usize,
    label: String,
    latency_only: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        perigee: PathBuf::from("target/release/perigee"),
        samples: 5000,
        tunnels: 10_000,
        label: "unpinned".into(),
        latency_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--perigee" => a.perigee = val()?.into(),
            "--samples" => a.samples = val()?.parse()?,
            "--tunnels" => a.tunnels = val()?.parse()?,
            "--label" => a.label = val()?,
            "--latency-only" => a.latency_only = true,
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// CPU time (user + system) of a process, in seconds.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; here indices 11 and 12.
    (ticks(11) + ticks(12)) / 100.0
}

/// Runs haproxy with `cfg` (written to `dir/hop.cfg`).
fn run_haproxy(dir: &std::path::Path, cfg: &str) -> anyhow::Result<Procs> {
    std::fs::write(dir.join("hop.cfg"), cfg)?;
    let child = Command::new("haproxy")
        .args(["-db", "-f"])
        .arg(dir.join("hop.cfg"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("haproxy.log"))?)
        .spawn()?;
    Ok(Procs(vec![child]))
}

/// One haproxy process forwarding plain TCP from a new port to `target`.
fn haproxy_hop(dir: &std::path::Path, target: u16) -> anyhow::Result<(Procs, String)> {
    std::fs::create_dir_all(dir)?;
    let port = free_port();
    let cfg = format!(
        "global\n  maxconn 8000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\nfrontend f\n  bind 127.0.0.1:{port}\n  default_backend b\nbackend b\n  server t 127.0.0.1:{target}\n"
    );
    Ok((run_haproxy(dir, &cfg)?, format!("127.0.0.1:{port}")))
}

/// One haproxy process terminating TLS (its own certificate) and re-encrypting to `target`:
/// an encrypted hop, like the mesh hop. Returns it, its address and the CA to trust.
fn haproxy_tls_hop(dir: &std::path::Path, target: u16) -> anyhow::Result<(Procs, String, PathBuf)> {
    let (ca, _, _) = peers::cert(dir)?;
    let port = free_port();
    let cfg = format!(
        "global\n  maxconn 8000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\nfrontend f\n  bind 127.0.0.1:{port} ssl crt {} alpn http/1.1\n  default_backend b\nbackend b\n  server t 127.0.0.1:{target} ssl verify none sni str(localhost) alpn http/1.1\n",
        dir.join("combined.pem").display()
    );
    Ok((run_haproxy(dir, &cfg)?, format!("127.0.0.1:{port}"), ca))
}

/// Starts a satellite registered with `pg` (sharing its CA); returns it and its address.
fn satellite(pg: &Perigee, dir: &std::path::Path) -> anyhow::Result<(Procs, String)> {
    std::fs::create_dir_all(dir)?;
    let port = free_port();
    let access = format!("https://127.0.0.1:{port}");
    let out = pg
        .cli(&[
            "satellites",
            "create",
            "bench-sat",
            "--region",
            "bench",
            "--access-url",
            &access,
        ])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "satellites create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let data = pg
        .ca
        .parent()
        .and_then(|p| p.parent())
        .ok_or_else(|| anyhow::anyhow!("data dir"))?;
    let mut child = Command::new(&pg.bin)
        .args(["satellite", "--primary-url", &pg.url, "--token", &token])
        .args(["--address", &format!("127.0.0.1:{port}")])
        .args([
            "--access-url",
            &access,
            "--turn-address",
            "127.0.0.1:0",
            "--ca-cert",
        ])
        .arg(&pg.ca)
        .arg("--data-dir")
        .arg(data)
        .env("PERIGEE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.join("satellite.log"))?)
        .spawn()?;
    // The TURN server's readiness line comes first.
    let line = line_starting(&mut child, "perigee satellite ready")?;
    anyhow::ensure!(
        line.starts_with("perigee satellite ready"),
        "satellite did not start: {line:?}"
    );
    Ok((Procs(vec![child]), format!("127.0.0.1:{port}")))
}

/// The first line a child prints on stdout (its readiness line).
fn first_line(child: &mut std::process::Child) -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("stdout"))?,
    )
    .read_line(&mut line)?;
    Ok(line)
}

/// The first line of the child's stdout that starts with `prefix` (or the last line read).
fn line_starting(child: &mut std::process::Child, prefix: &str) -> anyhow::Result<String> {
    let mut out = std::io::BufReader::new(
        child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("stdout"))?,
    );
    let mut line = String::new();
    while !line.starts_with(prefix) {
        line.clear();
        if out.read_line(&mut line)? == 0 {
            break;
        }
    }
    Ok(line)
}

/// The echo target in a child process of its own: the bench process needs its file
/// descriptors (20,000 here, and the hard limit cannot be raised) for the client side.
fn echo_process() -> anyhow::Result<(Procs, u16)> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("--serve-echo")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()?;
    let port = first_line(&mut child)?.trim().parse()?;
    Ok((Procs(vec![child]), port))
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("--serve-echo") {
        println!("{}", targets::echo());
        loop {
            std::thread::park();
        }
    }
    let a = args()?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let work = std::env::temp_dir().join(format!("perigee-mesh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let (_echo_proc, echo) = echo_process()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;

    let pg = Perigee::start(&work.join("perigee"), &a.perigee, &[])?;
    let (sat_procs, sat_addr) = satellite(&pg, &work.join("satellite"))?;
    let sat_pid = sat_procs.pids()[0];
    let (ticket, ws_id) = rt.block_on(wsclient::ticket(&pg.addr, &pg.ca, &pg.token, &[echo]))?;
    let via = |addr: &str| wsclient::Client::new(addr, &pg.ca, ticket.clone(), ws_id.clone());
    let (_hp_edge, hp_edge_addr) = haproxy_hop(&work.join("hop-edge"), pg.port())?;
    let (_hp_echo, hp_echo_addr) = haproxy_hop(&work.join("hop-echo"), echo)?;
    let (_hp_tls, hp_tls_addr, hp_ca) = haproxy_tls_hop(&work.join("hop-tls"), pg.port())?;
    peers::ready(&hp_echo_addr)?;

    let mut rows: Vec<(&str, f64, f64)> = Vec::new();
    let direct = load::pingpong_tcp(&format!("127.0.0.1:{echo}"), a.samples)?;
    rows.push((
        "direct TCP",
        quantile(&direct, 0.5),
        quantile(&direct, 0.99),
    ));
    let hop = load::pingpong_tcp(&hp_echo_addr, a.samples)?;
    rows.push((
        "haproxy hop → echo (plain TCP)",
        quantile(&hop, 0.5),
        quantile(&hop, 0.99),
    ));
    for (name, addr) in [
        ("client → primary edge → agent", pg.addr.clone()),
        (
            "client → haproxy hop → primary edge → agent",
            hp_edge_addr.clone(),
        ),
        (
            "client → haproxy TLS hop (decrypt, re-encrypt) → primary edge → agent",
            hp_tls_addr.clone(),
        ),
        (
            "client → satellite → mesh (QUIC) → primary edge → agent",
            sat_addr.clone(),
        ),
    ] {
        let c = if addr == hp_tls_addr {
            wsclient::Client::new(&addr, &hp_ca, ticket.clone(), ws_id.clone())?
        } else {
            via(&addr)?
        };
        let lat = rt.block_on(wsclient::pingpong(&c, echo, a.samples))?;
        eprintln!("measured {name}");
        rows.push((name, quantile(&lat, 0.5), quantile(&lat, 0.99)));
    }
    let p50 = |needle: &str| {
        rows.iter()
            .find(|r| r.0 == needle)
            .map(|r| r.1)
            .unwrap_or(f64::NAN)
    };
    let primary = p50("client → primary edge → agent");
    let mesh_added = p50("client → satellite → mesh (QUIC) → primary edge → agent") - primary;
    let hop_edge_added = p50("client → haproxy hop → primary edge → agent") - primary;
    let hop_plain_added = p50("haproxy hop → echo (plain TCP)") - p50("direct TCP");
    let hop_tls_added =
        p50("client → haproxy TLS hop (decrypt, re-encrypt) → primary edge → agent") - primary;

    println!(
        "\n### Run `{}` ({} ping-pongs of 64 bytes)\n",
        a.label, a.samples
    );
    println!("| path | RTT p50 µs | RTT p99 µs |");
    println!("|---|---|---|");
    for (name, p50, p99) in &rows {
        println!("| {name} | {p50:.1} | {p99:.1} |");
    }
    println!(
        "\nAdded p50: mesh hop **{mesh_added:+.1} µs**; one haproxy hop in front of the edge {hop_edge_added:+.1} µs (plain TCP) / {hop_tls_added:+.1} µs (TLS re-encrypting); one haproxy hop in front of the echo {hop_plain_added:+.1} µs."
    );

    if !a.latency_only {
        let client = via(&sat_addr)?;
        let (rss0, cpu0) = (rss(sat_pid), cpu_secs(sat_pid));
        let (pg_rss0, agent_rss0) = (rss(pg.edge_pid()), rss(pg.agent_pid));
        let start = Instant::now();
        let (held, errors) = rt.block_on(open_idle(&client, echo, a.tunnels))?;
        let open_secs = start.elapsed().as_secs_f64();
        let cpu_open = cpu_secs(sat_pid) - cpu0;
        std::thread::sleep(Duration::from_secs(1));
        let rss1 = rss(sat_pid);
        let cpu_idle0 = cpu_secs(sat_pid);
        std::thread::sleep(Duration::from_secs(10));
        let cpu_idle = (cpu_secs(sat_pid) - cpu_idle0) / 10.0;
        let (pg_rss1, agent_rss1) = (rss(pg.edge_pid()), rss(pg.agent_pid));
        // Every tunnel still works after the idle period.
        let still = rt.block_on(echo_all(held))?;
        let mb = |b: u64| b as f64 / 1048576.0;
        println!(
            "\n{} concurrent idle tunnels through the satellite: opened in {open_secs:.1} s, {errors} errors, {still} of {} still echoing after 10 s idle.",
            a.tunnels, a.tunnels
        );
        println!(
            "Satellite RSS {:.1} MB → {:.1} MB (**{:.1} KB per tunnel**); CPU {cpu_open:.2} s to open them, **{:.2}% of a core** while idle.",
            mb(rss0),
            mb(rss1),
            rss1.saturating_sub(rss0) as f64 / 1024.0 / a.tunnels as f64,
            cpu_idle * 100.0
        );
        println!(
            "Behind it: primary edge RSS +{:.1} MB, agent RSS +{:.1} MB (the mesh streams and the workspace connections).",
            mb(pg_rss1.saturating_sub(pg_rss0)),
            mb(agent_rss1.saturating_sub(agent_rss0))
        );
    }
    drop(sat_procs);
    drop(pg);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// Opens `n` tunnels (64 at a time), each proven by one echo; returns them and the errors.
async fn open_idle(
    c: &wsclient::Client,
    echo: u16,
    n: usize,
) -> anyhow::Result<(Vec<wsclient::Ws>, usize)> {
    let c = std::sync::Arc::new(wsclient::Client {
        addr: c.addr.clone(),
        tls: c.tls.clone(),
        ticket: c.ticket.clone(),
        workspace_id: c.workspace_id.clone(),
    });
    let mut held = Vec::with_capacity(n);
    let mut errors = 0;
    let mut set = tokio::task::JoinSet::new();
    let mut started = 0;
    let deadline = Instant::now() + Duration::from_secs(180);
    while held.len() + errors < n {
        anyhow::ensure!(
            Instant::now() < deadline,
            "opening {n} tunnels took over 180 s"
        );
        while started < n && set.len() < 64 {
            let c = c.clone();
            set.spawn(async move {
                let mut ws = c.open(echo).await?;
                ws.send(Message::Binary(bytes::Bytes::from_static(b"x")))
                    .await?;
                match ws.next().await {
                    Some(Ok(Message::Binary(_))) => anyhow::Ok(ws),
                    other => anyhow::bail!("no echo: {other:?}"),
                }
            });
            started += 1;
        }
        match set.join_next().await {
            Some(Ok(Ok(ws))) => held.push(ws),
            Some(Ok(Err(e))) => {
                if errors == 0 {
                    eprintln!("first tunnel error: {e:#}");
                }
                errors += 1;
            }
            Some(Err(_)) => errors += 1,
            None => break,
        }
    }
    Ok((held, errors))
}

/// Echoes one byte on every held tunnel; returns how many answered.
async fn echo_all(held: Vec<wsclient::Ws>) -> anyhow::Result<usize> {
    let mut ok = 0;
    for mut ws in held {
        let r = tokio::time::timeout(Duration::from_secs(5), async {
            ws.send(Message::Binary(bytes::Bytes::from_static(b"y")))
                .await?;
            match ws.next().await {
                Some(Ok(Message::Binary(_))) => anyhow::Ok(()),
                other => anyhow::bail!("{other:?}"),
            }
        })
        .await;
        if matches!(r, Ok(Ok(()))) {
            ok += 1;
        }
    }
    Ok(ok)
}
