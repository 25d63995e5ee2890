//! Starting servers and running CLI commands against them.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use crate::netkit::{bind_in_netns, drop_udp_in, ip, LinkedNetns};

pub const BIN: &str = env!("CARGO_BIN_EXE_perigee");

/// A fresh directory under the target dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let base = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
        let dir = base.join(format!(
            "e2e-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running `perigee server` with TLS from its own local CA.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub addr: SocketAddr,
    pub dir: PathBuf,
    /// Words run before `perigee` for CLI commands (e.g. `ip netns exec NS`).
    pub prefix: Vec<String>,
    /// Processes started in workspaces, killed with the server.
    spawned: std::sync::Mutex<Vec<Child>>,
    _tmp: Option<TempDir>,
}

impl Server {
    pub fn start() -> Self {
        let tmp = TempDir::new("srv");
        let dir = tmp.0.clone();
        let mut s = Self::start_in(&dir, "127.0.0.1:0", &[]);
        s._tmp = Some(tmp);
        s
    }

    /// [`Server::start`] with workspaces not isolated: for tests whose agents must reach
    /// something on the host's loopback (a satellite they home on), which an isolated
    /// workspace cannot by design.
    pub fn start_unisolated() -> Self {
        let tmp = TempDir::new("srv");
        let dir = tmp.0.clone();
        let mut s = Self::start_extra(&dir, &["--workspace-isolation", "off"]);
        s._tmp = Some(tmp);
        s
    }

    /// Starts a server whose data lives in `dir`, listening on `address`, with the command
    /// prefixed by `prefix` (which is also used for CLI calls).
    pub fn start_in(dir: &Path, address: &str, prefix: &[&str]) -> Self {
        Self::start_with_env(dir, address, prefix, &[])
    }

    /// As [`Server::start_in`], with extra environment (inherited by local agents).
    pub fn start_with_env(
        dir: &Path,
        address: &str,
        prefix: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        Self::start_full(dir, address, prefix, env, &[])
    }

    /// As [`Server::start_with_env`], with extra `perigee server` arguments.
    pub fn start_full(
        dir: &Path,
        address: &str,
        prefix: &[&str],
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Self {
        let mut args = vec!["--tls-self-signed"];
        args.extend_from_slice(extra);
        Self::start_args(dir, address, prefix, env, &args)
    }

    /// A self-signed server on loopback with extra `perigee server` arguments.
    pub fn start_extra(dir: &Path, extra: &[&str]) -> Self {
        Self::start_full(dir, "127.0.0.1:0", &[], &[], extra)
    }

    /// A server speaking plain HTTP (what an edge reads is then what the wire carries).
    pub fn start_plain(dir: &Path, extra: &[&str]) -> Self {
        Self::start_args(dir, "127.0.0.1:0", &[], &[], extra)
    }

    fn start_args(
        dir: &Path,
        address: &str,
        prefix: &[&str],
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Self {
        let mut words: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        words.push(BIN.into());
        let mut cmd = Command::new(&words[0]);
        cmd.args(&words[1..])
            .args(["server", "--address", address, "--data-dir"])
            .arg(dir.join("data"))
            .args(extra);
        // Workspaces are isolated (the tests run as root) unless a test says otherwise or
        // places agents itself with an exec prefix; services "in the workspace" are started
        // inside it (`Server::in_workspace`).
        if !extra.iter().any(|a| a.starts_with("--workspace-isolation")) {
            let mode = if prefix.is_empty() { "on" } else { "auto" };
            cmd.args(["--workspace-isolation", mode]);
        }
        // Isolated homes live beside the data directory, so removing the test's directory
        // removes them (and ends their agents).
        if !extra.contains(&"--workspace-home-root") {
            cmd.arg("--workspace-home-root").arg(dir.join("homes"));
        }
        // Parallel tests cannot all have UDP 3478: each TURN server takes a free port.
        if !extra.contains(&"--turn-address") {
            let ip = address.rsplit_once(':').map_or("127.0.0.1", |(ip, _)| ip);
            cmd.args(["--turn-address", &format!("{ip}:0")]);
        }
        cmd.env("PERIGEE_LOG", "info,satellite=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::create(dir.join(format!("server-{}.log", now_ms())))
                    .expect("log file"),
            );
        if !prefix.is_empty() && !env.iter().any(|(k, _)| *k == "PERIGEE_AGENT_EXEC_PREFIX") {
            cmd.env("PERIGEE_AGENT_EXEC_PREFIX", prefix.join(" "));
        }
        let mut child = cmd.spawn().expect("spawn perigee server");
        let line = wait_ready(&mut child, "perigee server ready: ", dir);
        let (url, addr) = parse_ready(&line);
        Self {
            child: Some(child),
            url,
            addr,
            dir: dir.to_path_buf(),
            prefix: words[..words.len() - 1].to_vec(),
            spawned: std::sync::Mutex::new(Vec::new()),
            _tmp: None,
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    pub fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data().join("admin-token"))
            .expect("admin-token")
            .trim()
            .to_owned()
    }

    /// A `perigee` command with this server's session in the environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut words = self.prefix.clone();
        words.push(BIN.into());
        let mut c = Command::new(&words[0]);
        c.args(&words[1..]).args(args);
        self.session_env(&mut c);
        c
    }

    pub fn session_env(&self, c: &mut Command) {
        c.env("PERIGEE_URL", &self.url)
            .env("PERIGEE_TOKEN", self.token())
            .env("PERIGEE_CA_CERT", self.data().join("tls/ca.pem"))
            .env("PERIGEE_CONFIG_DIR", self.dir.join("config"))
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy");
    }

    /// Runs a CLI command, returning its output.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args)
            .stdin(Stdio::null())
            .output()
            .expect("run perigee")
    }

    /// Runs a CLI command that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "perigee {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn workspace(&self, name: &str) -> serde_json::Value {
        let list: serde_json::Value =
            serde_json::from_str(&self.ok(&["ls", "-o", "json"])).expect("ls json");
        list.as_array()
            .and_then(|a| a.iter().find(|w| w["name"] == name).cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Runs a CLI command that must fail with `needle` in its error.
    pub fn refused(&self, args: &[&str], needle: &str) {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            err.contains(needle),
            "{args:?}: expected {needle:?} in {err}"
        );
    }

    /// Registers a satellite; returns its token.
    pub fn create_satellite(&self, name: &str, region: &str, access_url: &str) -> String {
        self.create_satellite_with(name, region, access_url, &[])
    }

    /// [`Server::create_satellite`] with extra `satellites create` arguments.
    pub fn create_satellite_with(
        &self,
        name: &str,
        region: &str,
        access_url: &str,
        extra: &[&str],
    ) -> String {
        let mut args = vec![
            "satellites",
            "create",
            name,
            "--region",
            region,
            "--access-url",
            access_url,
        ];
        args.extend_from_slice(extra);
        let token = self.ok(&args).trim().to_owned();
        assert!(token.starts_with("pgs_"), "token on stdout: {token}");
        token
    }

    /// Waits until the workspace's agent is connected; returns (pid, transport).
    pub fn wait_agent(&self, name: &str, timeout: Duration, not_pid: Option<u64>) -> (u64, String) {
        let deadline = Instant::now() + timeout;
        loop {
            let w = self.workspace(name);
            if let (Some(pid), Some(t)) =
                (w["agent_pid"].as_u64(), w["agent"]["transport"].as_str())
            {
                if Some(pid) != not_pid {
                    return (pid, t.to_owned());
                }
            }
            assert!(
                Instant::now() < deadline,
                "agent of {name} not connected within {timeout:?}: {w}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The home directory of workspace `name` (under the home root when isolated).
    pub fn home_of(&self, name: &str) -> PathBuf {
        let id = self.workspace(name)["id"]
            .as_str()
            .expect("workspace id")
            .to_owned();
        let plain = self.data().join("workspaces").join(&id).join("home");
        if plain.exists() {
            plain
        } else {
            self.dir.join("homes").join(id).join("home")
        }
    }

    /// The network namespace of workspace `name` when it is isolated.
    pub fn netns_of(&self, name: &str) -> Option<String> {
        let id = self.workspace(name)["id"].as_str()?.to_owned();
        let uid =
            std::fs::read_to_string(self.data().join("workspaces").join(id).join("uid")).ok()?;
        Some(format!("perigee-{}", uid.trim()))
    }

    /// Command words that run a program inside workspace `name`: in its network namespace
    /// when isolated (as the workspace image's own services would run), else as they are.
    pub fn in_workspace(&self, name: &str) -> Vec<String> {
        let id = self.workspace(name)["id"].as_str().map(str::to_owned);
        let uid = id.and_then(|id| {
            std::fs::read_to_string(self.data().join("workspaces").join(id).join("uid")).ok()
        });
        match uid {
            Some(uid) => ["ip", "netns", "exec", &format!("perigee-{}", uid.trim())]
                .map(str::to_owned)
                .to_vec(),
            None => Vec::new(),
        }
    }

    /// A TCP echo server on 127.0.0.1 inside workspace `name` (stopped with the server);
    /// returns its port.
    pub fn echo_in(&self, name: &str) -> u16 {
        let prefix = self.in_workspace(name);
        let words: Vec<&str> = prefix.iter().map(String::as_str).collect();
        let port = free_port("127.0.0.1");
        let child = python_echo(&words, port);
        if let Ok(mut s) = self.spawned.lock() {
            s.push(child);
        }
        port
    }

    /// The PIDs of every local agent this server started.
    pub fn agent_pids(&self) -> Vec<u32> {
        agent_pids_in(&self.data().join("workspaces"))
    }

    /// Stops the server (SIGTERM, then SIGKILL), leaving its agents running.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "-TERM");
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(mut spawned) = self.spawned.lock() {
            for c in spawned.iter_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        self.stop();
        for pid in self.agent_pids() {
            signal(pid, "-KILL");
            // The agent's process group (isolated: `unshare` and the agent under it).
            signal_group(pid, "-KILL");
        }
        // Its workspaces are gone: so may their namespaces and this server's rules be (left,
        // they would pile up over a machine's test runs and slow every packet).
        if let Ok(rd) = std::fs::read_dir(self.data().join("workspaces")) {
            for e in rd.flatten() {
                if let Ok(uid) = std::fs::read_to_string(e.path().join("uid")) {
                    let ns = format!("perigee-{}", uid.trim());
                    let _ = Command::new("ip")
                        .args(["netns", "del", &ns])
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        let table = perigee_isolate::net::table_name(&self.data());
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &table])
            .stderr(Stdio::null())
            .status();
    }
}

/// The PIDs of the local agents whose workspaces are under `root`.
pub fn agent_pids_in(root: &Path) -> Vec<u32> {
    let mut pids = Vec::new();
    if let Ok(rd) = std::fs::read_dir(root) {
        for e in rd.flatten() {
            if let Ok(s) = std::fs::read_to_string(e.path().join("agent.pid")) {
                pids.extend(s.trim().parse::<u32>().ok());
            }
        }
    }
    pids
}

/// Waits for the readiness line starting with `prefix` on the child's stdout; returns the rest.
pub fn wait_ready(child: &mut Child, prefix: &'static str, logs: &Path) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(prefix) {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(l) => l,
        Err(_) => {
            let _ = child.kill();
            panic!("{prefix:?} never printed; logs in {}", logs.display());
        }
    }
}

/// `URL (listening on ADDR, ...)` → (URL, ADDR).
pub fn parse_ready(line: &str) -> (String, SocketAddr) {
    let url = line.split_whitespace().next().expect("url").to_owned();
    let addr = line
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .expect("listening address")
        .parse()
        .expect("addr");
    (url, addr)
}

/// The usual `perigee satellite` arguments for a satellite of `server` serving
/// `https://127.0.0.1:PORT` with its data in `data_dir` (heartbeat every second).
pub fn satellite_args(server: &Server, token: &str, port: u16, data_dir: &Path) -> Vec<String> {
    satellite_args_at(
        server,
        token,
        port,
        &format!("https://127.0.0.1:{port}"),
        data_dir,
    )
}

/// The same with another access URL (a satellite registered under a different one).
pub fn satellite_args_at(
    server: &Server,
    token: &str,
    port: u16,
    access: &str,
    data_dir: &Path,
) -> Vec<String> {
    let ca = server.data().join("tls/ca.pem");
    [
        "--primary-url",
        &server.url,
        "--token",
        token,
        "--address",
        &format!("127.0.0.1:{port}"),
        "--access-url",
        access,
        "--ca-cert",
        ca.to_str().expect("path"),
        "--data-dir",
        data_dir.to_str().expect("path"),
        "--heartbeat-secs",
        "1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A running `perigee satellite`.
pub struct Satellite {
    child: Option<Child>,
    pub url: String,
}

impl Satellite {
    /// Starts a satellite with `args` after `perigee satellite` (run under `prefix`), its log
    /// in `dir`; waits for its readiness line.
    pub fn start(dir: &Path, prefix: &[&str], args: &[&str]) -> Self {
        let mut c = Self::command(dir, prefix, args);
        let mut child = c.spawn().expect("spawn perigee satellite");
        let line = wait_ready(&mut child, "perigee satellite ready: ", dir);
        let (url, _) = parse_ready(&line);
        Self {
            child: Some(child),
            url,
        }
    }

    /// The command [`Satellite::start`] runs (for tests that expect it to fail).
    pub fn command(dir: &Path, prefix: &[&str], args: &[&str]) -> Command {
        let mut words: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
        words.push(BIN.into());
        let mut c = Command::new(&words[0]);
        c.args(&words[1..]).arg("satellite").args(args);
        // Parallel tests cannot all have UDP 3478: each TURN server takes a free port.
        if !args.contains(&"--turn-address") {
            let address = args
                .iter()
                .position(|a| *a == "--address")
                .and_then(|i| args.get(i + 1))
                .copied()
                .unwrap_or("127.0.0.1:0");
            let ip = address.rsplit_once(':').map_or("127.0.0.1", |(ip, _)| ip);
            c.args(["--turn-address", &format!("{ip}:0")]);
        }
        c.env("PERIGEE_LOG", "info,satellite=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::create(dir.join(format!("satellite-{}.log", now_ms())))
                    .expect("log file"),
            );
        c
    }

    /// Runs a satellite that must refuse to start; asserts its error mentions `needle`.
    pub fn assert_refused(dir: &Path, args: &[&str], needle: &str) {
        let out = Self::command(dir, &[], args)
            .stderr(Stdio::piped())
            .output()
            .expect("run perigee satellite");
        assert!(!out.status.success(), "the satellite started");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
    }

    /// Whether the satellite process has ended by itself.
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Kills the satellite at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Satellite {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` every 100 ms until it is true; fails the test after `within`.
pub fn wait_until(what: &str, within: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    start.elapsed()
}

/// A Python TCP echo service on 127.0.0.1:`port`, run under `prefix` (e.g. inside a network
/// namespace); returns once it listens.
pub fn python_echo(prefix: &[&str], port: u16) -> Child {
    let src = format!("import socket,threading\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('127.0.0.1',{port}));s.listen(16)\ndef h(c):\n  while True:\n    d=c.recv(65536)\n    if not d: break\n    c.sendall(d)\n  c.close()\nprint('ready',flush=True)\nwhile True:\n  c,_=s.accept();threading.Thread(target=h,args=(c,),daemon=True).start()\n");
    let mut words: Vec<&str> = prefix.to_vec();
    words.extend(["python3", "-c", &src]);
    let mut child = Command::new(words[0])
        .args(&words[1..])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 echo");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("echo ready");
    assert_eq!(line.trim(), "ready");
    child
}

/// Dials `addr` over QUIC with `alpn` (trusting `ca`), sends `bytes` on the first stream and
/// returns the frame answered, if any.
pub async fn quic_exchange(
    addr: SocketAddr,
    ca: &Path,
    alpn: &[u8],
    bytes: &[u8],
) -> Option<relay_core::wire::Frame> {
    let roots = relay_core::tls::roots(Some(ca)).expect("roots");
    let cfg = relay_core::tls::client_config(roots, &[alpn]).expect("tls");
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(cfg).expect("quic tls");
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
    ep.set_default_client_config(quinn::ClientConfig::new(std::sync::Arc::new(crypto)));
    let conn = ep
        .connect(addr, "127.0.0.1")
        .expect("connect")
        .await
        .expect("handshake");
    let (mut send, mut recv) = conn.open_bi().await.expect("stream");
    send.write_all(bytes).await.expect("write");
    let _ = send.finish();
    tokio::time::timeout(
        Duration::from_secs(10),
        relay_core::wire::read_frame(&mut recv),
    )
    .await
    .expect("answer in time")
    .ok()
}

/// A TCP port free on `ip` for both TCP and UDP right now.
pub fn free_port(ip: &str) -> u16 {
    for _ in 0..50 {
        let t = std::net::TcpListener::bind((ip, 0)).expect("bind tcp");
        let port = t.local_addr().expect("addr").port();
        if std::net::UdpSocket::bind((ip, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair on {ip}");
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Signals the process group `pgid` leads.
pub fn signal_group(pgid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", &format!("-{pgid}")])
        .stderr(Stdio::null())
        .status();
}

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A TCP echo server on loopback, on a thread per connection; returns its port.
pub fn echo_server() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind echo");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = s.try_clone().expect("clone");
                let mut w = s;
                let _ = std::io::copy(&mut r, &mut w);
                let _ = w.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// Sends `data` through `perigee tunnel` and returns what came back.
pub fn tunnel_roundtrip(server: &Server, ws: &str, port: u16, data: &[u8]) -> Output {
    run_with_stdin(server.cmd(&["tunnel", ws, &port.to_string()]), data)
}

/// Runs a command with `data` on stdin (written from another thread), collecting its output.
pub fn run_with_stdin(mut cmd: Command, data: &[u8]) -> Output {
    use std::io::Write as _;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data);
    });
    let out = child.wait_with_output().expect("output");
    let _ = writer.join();
    out
}

/// Deterministic pseudo-random bytes (xorshift), so failures are reproducible.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The value of series `series` (e.g. `name{label="x"}`) in a Prometheus text page; 0 when
/// absent.
pub fn metric_value(page: &str, series: &str) -> u64 {
    page.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}
