//! Test support: a real PostgreSQL server started for one test process, on loopback, in a
//! temporary directory, and stopped (by its PID) when dropped; reading coturn's test client;
//! a listener inside another network namespace (an isolated workspace's).
#![forbid(unsafe_code)]

use std::io::{BufRead as _, BufReader};
use std::net::TcpListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A running PostgreSQL server owned by this test process.
pub struct Postgres {
    child: Child,
    dir: PathBuf,
    port: u16,
    next_db: AtomicU32,
}

fn bin_dir() -> Option<PathBuf> {
    // Debian keeps the server binaries out of PATH, one directory per major version.
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, b)| b)
}

/// The uid and gid of the `postgres` user when running as root (the server refuses root).
fn postgres_ids() -> Option<(u32, u32)> {
    let me = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid_line = me.lines().find(|l| l.starts_with("Uid:"))?;
    if uid_line.split_whitespace().nth(1)? != "0" {
        return None;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    let line = passwd.lines().find(|l| l.starts_with("postgres:"))?;
    let f: Vec<&str> = line.split(':').collect();
    Some((f.get(2)?.parse().ok()?, f.get(3)?.parse().ok()?))
}

fn command(bin: &Path, name: &str, ids: Option<(u32, u32)>) -> Command {
    let mut c = Command::new(bin.join(name));
    if let Some((uid, gid)) = ids {
        c.uid(uid).gid(gid);
    }
    c
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Postgres {
    /// Initialises a cluster in a temporary directory and starts it on a free loopback port.
    /// Panics with the server's own words when that fails: a test cannot go on without it.
    pub fn start() -> Self {
        match Self::try_start() {
            Ok(pg) => pg,
            Err(e) => panic!("cannot start PostgreSQL for the test: {e} (`.ci/run` installs Debian's postgresql package)"),
        }
    }

    fn try_start() -> Result<Self, String> {
        let bin = bin_dir().ok_or("no /usr/lib/postgresql/*/bin/postgres")?;
        let ids = postgres_ids();
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "perigee-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
        }
        let data = dir.join("data");
        let out = command(&bin, "initdb", ids)
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "perigee",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ])
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        for _ in 0..5 {
            let port = free_port().map_err(|e| e.to_string())?;
            let mut child = command(&bin, "postgres", ids)
                .arg("-D")
                .arg(&data)
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
                .arg(&dir)
                .args([
                    "-c",
                    "fsync=off",
                    "-c",
                    "synchronous_commit=off",
                    "-c",
                    "full_page_writes=off",
                ])
                .args(["-c", "max_connections=200"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("postgres: {e}"))?;
            let Some(stderr) = child.stderr.take() else {
                return Err("postgres: no stderr".into());
            };
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    let ready = line.contains("ready to accept connections");
                    let _ = tx.send((ready, line));
                }
            });
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut log = String::new();
            loop {
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok((true, _)) => {
                        return Ok(Self {
                            child,
                            dir,
                            port,
                            next_db: AtomicU32::new(0),
                        })
                    }
                    Ok((false, line)) => {
                        log.push_str(&line);
                        log.push('\n');
                    }
                    Err(_) => break,
                }
            }
            let _ = child.kill();
            let _ = child.wait();
            if !log.contains("could not bind") && !log.contains("Address already in use") {
                return Err(format!("postgres did not become ready:\n{log}"));
            }
        }
        Err("postgres: no free port after 5 tries".into())
    }

    /// The URL of the cluster's `postgres` database.
    pub fn admin_url(&self) -> String {
        format!("postgres://perigee@127.0.0.1:{}/postgres", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Creates a fresh, empty database and returns its URL.
    pub fn create_database(&self) -> String {
        let n = self.next_db.fetch_add(1, Ordering::Relaxed);
        let name = format!("perigee_{n}");
        let Some(bin) = bin_dir() else {
            panic!("PostgreSQL binaries vanished")
        };
        let psql = if bin.join("psql").exists() {
            bin.join("psql")
        } else {
            PathBuf::from("psql")
        };
        let out = Command::new(psql)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "perigee",
            ])
            .args(["-d", "postgres", "-v", "ON_ERROR_STOP=1", "-c"])
            .arg(format!("CREATE DATABASE {name}"))
            .output();
        match out {
            Ok(o) if o.status.success() => {}
            Ok(o) => panic!("CREATE DATABASE: {}", String::from_utf8_lossy(&o.stderr)),
            Err(e) => panic!("psql: {e}"),
        }
        format!("postgres://perigee@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT is PostgreSQL's fast shutdown: backends end, the postmaster exits.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The totals coturn's `turnutils_uclient` prints at the end
/// (`start_mclient: tot_send_msgs=N, tot_recv_msgs=M`): `(N, M)`.
pub fn uclient_totals(out: &str) -> Option<(u64, u64)> {
    let line = out
        .lines()
        .rev()
        .find(|l| l.contains("start_mclient: tot_send_msgs="))?;
    let num = |key: &str| -> Option<u64> {
        let rest = line.split(key).nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    Some((num("tot_send_msgs=")?, num("tot_recv_msgs=")?))
}

/// A TCP listener on 127.0.0.1 (port 0) inside network namespace `ns` (none: this
/// process's own), for an in-process server standing in for a workspace's program. The
/// socket is made on a thread that entered the namespace, and stays in it wherever used.
pub fn bind_in_netns(ns: Option<&str>) -> std::io::Result<TcpListener> {
    let Some(ns) = ns else {
        return TcpListener::bind("127.0.0.1:0");
    };
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let f = std::fs::File::open(&path)?;
            rustix::thread::move_into_link_name_space(
                std::os::fd::AsFd::as_fd(&f),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            TcpListener::bind("127.0.0.1:0")
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the bind thread panicked")))
    })
}
