//! `ssh-bench`: OpenSSH through perigee (`ssh perigee.WS` after `perigee config-ssh`, to the
//! agent's own SSH server) against OpenSSH to a local sshd, in one run: the wall time of
//! `ssh HOST true` on a fresh connection, and scp throughput.
//!
//! Usage: ssh-bench --perigee PATH [--runs N] [--mb M] [--no-isolated]

#[path = "load.rs"]
#[allow(dead_code)]
mod load;
#[path = "peers.rs"]
#[allow(dead_code)]
mod peers;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use load::quantile;
use peers::Perigee;

struct Args {
    perigee: PathBuf,
    runs: usize,
    mb: usize,
    scp_runs: usize,
    isolated: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        perigee: PathBuf::from("target/release/perigee"),
        runs: 20,
        mb: 200,
        scp_runs: 3,
        isolated: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || {
            it.next()
                .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--perigee" => a.perigee = val()?.into(),
            "--runs" => a.runs = val()?.parse()?,
            "--mb" => a.mb = val()?.parse()?,
            "--scp-runs" => a.scp_runs = val()?.parse()?,
            "--no-isolated" => a.isolated = false,
            "--help" | "-h" => {
                println!(
                    "ssh-bench [--perigee PATH] [--runs N (ssh true, default 20)] [--mb MB (scp file, default 200)] [--scp-runs N (default 3)] [--no-isolated]\n\
                     Compares OpenSSH through perigee (config-ssh, the agent's SSH server) with a local sshd, interleaved;\n\
                     also through an isolated workspace (its own uid and namespaces; needs root) unless --no-isolated."
                );
                std::process::exit(0);
            }
            other => anyhow::bail!("unknown argument {other}"),
        }
    }
    Ok(a)
}

/// A local OpenSSH server trusting `authorized`; returns it and its port.
fn sshd(dir: &Path, authorized: &Path) -> anyhow::Result<(std::process::Child, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let key = dir.join("host_key");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()?;
    anyhow::ensure!(st.success(), "ssh-keygen failed");
    std::fs::create_dir_all("/run/sshd")?;
    let cfg = dir.join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nAuthorizedKeysFile {}\nStrictModes no\n\
             UsePAM no\nPasswordAuthentication no\nPermitRootLogin prohibit-password\n\
             Subsystem sftp internal-sftp\n",
            key.display(),
            authorized.display()
        ),
    )?;
    let log = dir.join("sshd.log");
    let child = Command::new("/usr/sbin/sshd")
        .args(["-D", "-e", "-f"])
        .arg(&cfg)
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)?.contains("Server listening") {
        anyhow::ensure!(
            Instant::now() < deadline,
            "sshd did not start: {}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, port))
}

fn timed(mut c: Command) -> anyhow::Result<f64> {
    let t = Instant::now();
    let o = c.stdin(Stdio::null()).output()?;
    anyhow::ensure!(
        o.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(t.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let a = args()?;
    let work = std::env::temp_dir().join(format!("perigee-ssh-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    // Both ways the built-in provider runs workspaces: as the server's user, and isolated
    // (its own uid and namespaces; when this host allows it).
    let mut servers = vec![(
        "perigee",
        Perigee::start(&work.join("perigee"), &a.perigee, &[])?,
    )];
    if a.isolated {
        servers.push((
            "perigee, isolated",
            Perigee::start_isolation(&work.join("perigee-iso"), &a.perigee, &[], "on")?,
        ));
    }
    let mut ways = Vec::new();
    for (label, pg) in &servers {
        let cfg = pg.ca.parent().unwrap_or(&pg.ca).join("ssh_config");
        let st = pg
            .cli(&[
                "config-ssh",
                "--ssh-config-file",
                cfg.to_str().unwrap_or_default(),
            ])
            .status()?;
        anyhow::ensure!(st.success(), "perigee config-ssh failed");
        let env: Vec<(std::ffi::OsString, std::ffi::OsString)> = pg
            .cli(&[])
            .get_envs()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned())))
            .collect();
        ways.push((*label, cfg, env));
    }
    let pg = &servers[0].1;
    let cli_dir = pg.ca.parent().unwrap_or(&pg.ca).join("bench-cli-config");
    let key = cli_dir.join("ssh/id_ed25519");
    let (mut sshd, port) = sshd(&work, &key.with_extension("pub"))?;
    let user = String::from_utf8(Command::new("id").arg("-un").output()?.stdout)?
        .trim()
        .to_owned();
    let via = |way: usize, extra: &[&str]| {
        let (_, cfg, env) = &ways[way];
        let mut ssh = Command::new(extra[0]);
        ssh.envs(env.iter().cloned())
            .arg("-F")
            .arg(cfg)
            .args(["-o", "BatchMode=yes", "-o", "Compression=no"])
            .args(&extra[1..]);
        ssh
    };
    let direct = |extra: &[&str]| {
        let mut ssh = Command::new(extra[0]);
        ssh.args(["-F", "/dev/null", "-i"])
            .arg(&key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "Compression=no",
                "-o",
                "StrictHostKeyChecking=no",
            ])
            .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
            .args(extra[1..].iter());
        ssh
    };
    let pg_host = format!("{user}@perigee.bench");
    let local = format!("{user}@127.0.0.1");
    let p = port.to_string();
    // Warm-up: host keys, tickets, the CLI's caches.
    for w in 0..ways.len() {
        timed(via(w, &["ssh", &pg_host, "true"]))?;
    }
    timed(direct(&["ssh", "-p", &p, &local, "true"]))?;
    let mut t_pg = vec![Vec::new(); ways.len()];
    let mut t_direct = Vec::new();
    for _ in 0..a.runs {
        for (w, t) in t_pg.iter_mut().enumerate() {
            t.push(timed(via(w, &["ssh", &pg_host, "true"]))? * 1e3);
        }
        t_direct.push(timed(direct(&["ssh", "-p", &p, &local, "true"]))? * 1e3);
    }
    t_pg.iter_mut().for_each(|t| t.sort_by(f64::total_cmp));
    t_direct.sort_by(f64::total_cmp);

    let file = work.join("payload.bin");
    std::fs::write(&file, vec![0x5au8; a.mb << 20])?;
    let f = file.to_str().unwrap_or_default();
    let mut s_pg = vec![Vec::new(); ways.len()];
    let mut s_direct = Vec::new();
    for _ in 0..a.scp_runs.max(1) {
        let dst = format!("{pg_host}:/dev/null");
        for (w, s) in s_pg.iter_mut().enumerate() {
            s.push(a.mb as f64 / timed(via(w, &["scp", f, &dst]))?);
        }
        let dst = format!("{local}:/dev/null");
        s_direct.push(a.mb as f64 / timed(direct(&["scp", "-P", &p, f, &dst]))?);
    }
    s_pg.iter_mut().for_each(|s| s.sort_by(f64::total_cmp));
    s_direct.sort_by(f64::total_cmp);
    let _ = sshd.kill();
    let _ = sshd.wait();
    drop(servers);
    let _ = std::fs::remove_dir_all(&work);

    for (w, (label, _, _)) in ways.iter().enumerate() {
        println!("\n| workload | through {label} | local sshd | ratio |");
        println!("|---|---|---|---|");
        let (t_pg, s_pg) = (&t_pg[w], &s_pg[w]);
        let (a50, b50) = (quantile(t_pg, 0.5), quantile(&t_direct, 0.5));
        println!(
            "| `ssh HOST true`, fresh connection, p50 of {} ms | {a50:.1} | {b50:.1} | {:.2}× |",
            a.runs,
            a50 / b50
        );
        let (a90, b90) = (quantile(t_pg, 0.9), quantile(&t_direct, 0.9));
        println!("| same, p90 ms | {a90:.1} | {b90:.1} | {:.2}× |", a90 / b90);
        let (sa, sb) = (quantile(s_pg, 0.5), quantile(&s_direct, 0.5));
        println!(
            "| `scp` {} MB to /dev/null, median of {}, MB/s | {sa:.0} | {sb:.0} | {:.2}× |",
            a.mb,
            s_pg.len(),
            sa / sb
        );
    }
    Ok(())
}
