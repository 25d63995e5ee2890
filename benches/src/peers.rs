//! Starting the relays under test as real processes.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::load::wait_echo;

/// Child processes killed (by PID, ours only) on drop.
pub struct Procs(pub Vec<Child>);

impl Procs {
    pub fn pids(&self) -> Vec<u32> {
        self.0.iter().map(Child::id).collect()
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A port the kernel just handed out (peers' configs need fixed ports).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn spawn(cmd: &mut Command, log: &Path) -> anyhow::Result<Child> {
    Ok(cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log)?)
        .stderr(std::fs::File::create(log.with_extension("err"))?)
        .spawn()?)
}

/// A certificate for 127.0.0.1 from a throwaway local CA; returns (ca.pem, cert.pem, key.pem).
pub fn cert(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    std::fs::create_dir_all(dir)?;
    use rustls::pki_types::pem::PemObject as _;
    let ca = relay_core::tls::LocalCa::load_or_create(&dir.join("ca"))?;
    let id = ca.issue(&["127.0.0.1".into(), "localhost".into()])?;
    let mut chain = String::new();
    for c in &id.chain {
        chain.push_str(&pem("CERTIFICATE", c.as_ref()));
    }
    let key = pem("PRIVATE KEY", id.key.secret_der());
    let _ = rustls::pki_types::CertificateDer::from_pem_slice(chain.as_bytes())?;
    std::fs::write(dir.join("cert.pem"), &chain)?;
    std::fs::write(dir.join("key.pem"), &key)?;
    std::fs::write(dir.join("combined.pem"), format!("{chain}{key}"))?;
    Ok((
        ca.cert_path.clone(),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    ))
}

fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or(""));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Two haproxy processes: plain TCP in, TLS 1.3 between them, plain TCP to the target.
pub fn haproxy_pair(dir: &Path, target: u16) -> anyhow::Result<(Procs, String)> {
    let (_, _, _) = cert(dir)?;
    let (pa, pb) = (free_port(), free_port());
    let common =
        "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n";
    let a = format!(
        "global\n  maxconn 8000\n{common}frontend fa\n  bind 127.0.0.1:{pa}\n  default_backend ba\nbackend ba\n  server b 127.0.0.1:{pb} ssl verify none sni str(localhost)\n"
    );
    let b = format!(
        "global\n  maxconn 8000\n{common}frontend fb\n  bind 127.0.0.1:{pb} ssl crt {}\n  default_backend bb\nbackend bb\n  server t 127.0.0.1:{target}\n",
        dir.join("combined.pem").display()
    );
    std::fs::write(dir.join("a.cfg"), a)?;
    std::fs::write(dir.join("b.cfg"), b)?;
    let mut procs = Procs(Vec::new());
    for n in ["a", "b"] {
        let cfg = dir.join(format!("{n}.cfg"));
        procs.0.push(spawn(
            Command::new("haproxy").args(["-db", "-f"]).arg(&cfg),
            &dir.join(format!("haproxy-{n}.log")),
        )?);
    }
    Ok((procs, format!("127.0.0.1:{pa}")))
}

/// rathole server + client with the TLS transport; `None` when rathole is not installed.
pub fn rathole_pair(dir: &Path, target: u16, bin: &Path) -> anyhow::Result<(Procs, String)> {
    let (ca, cert, key) = cert(dir)?;
    let pfx = dir.join("identity.pfx");
    let st = Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:bench", "-out"])
        .arg(&pfx)
        .arg("-inkey")
        .arg(&key)
        .arg("-in")
        .arg(&cert)
        .status()?;
    anyhow::ensure!(st.success(), "openssl pkcs12 failed");
    let (ctrl, svc) = (free_port(), free_port());
    let server = format!(
        "[server]\nbind_addr = \"127.0.0.1:{ctrl}\"\n[server.transport]\ntype = \"tls\"\n[server.transport.tls]\npkcs12 = \"{}\"\npkcs12_password = \"bench\"\n[server.services.bench]\ntoken = \"bench-token\"\nbind_addr = \"127.0.0.1:{svc}\"\nnodelay = true\n",
        pfx.display()
    );
    let client = format!(
        "[client]\nremote_addr = \"127.0.0.1:{ctrl}\"\n[client.transport]\ntype = \"tls\"\n[client.transport.tls]\ntrusted_root = \"{}\"\nhostname = \"localhost\"\n[client.services.bench]\ntoken = \"bench-token\"\nlocal_addr = \"127.0.0.1:{target}\"\nnodelay = true\n",
        ca.display()
    );
    std::fs::write(dir.join("server.toml"), server)?;
    std::fs::write(dir.join("client.toml"), client)?;
    let mut procs = Procs(Vec::new());
    procs.0.push(spawn(
        Command::new(bin).arg("-s").arg(dir.join("server.toml")),
        &dir.join("rathole-server.log"),
    )?);
    procs.0.push(spawn(
        Command::new(bin).arg("-c").arg(dir.join("client.toml")),
        &dir.join("rathole-client.log"),
    )?);
    Ok((procs, format!("127.0.0.1:{svc}")))
}

/// A running perigee deployment with one workspace.
pub struct Perigee {
    pub procs: Procs,
    pub url: String,
    pub addr: String,
    pub token: String,
    pub ca: PathBuf,
    pub bin: PathBuf,
    pub agent_pid: u32,
    pub workspace_id: String,
}

impl Perigee {
    /// Starts a server; `agent_env` is inherited by its local agents (e.g. to force HTTP/2).
    /// Workspaces are not isolated: the benchmark's targets listen on the host's loopback.
    pub fn start(dir: &Path, bin: &Path, agent_env: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_isolation(dir, bin, agent_env, "off")
    }

    /// [`Perigee::start`] with `--workspace-isolation MODE` (`on`: the workspace runs as its
    /// own uid in its own namespaces, so its targets must listen inside: [`Perigee::netns`]).
    pub fn start_isolation(
        dir: &Path,
        bin: &Path,
        agent_env: &[(&str, &str)],
        mode: &str,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let data = dir.join("data");
        let mut server = Command::new(bin)
            .args([
                "server",
                "--tls-self-signed",
                "--address",
                "127.0.0.1:0",
                // Two servers run at once in one bench: each its own TURN port.
                "--turn-address",
                "127.0.0.1:0",
                "--workspace-isolation",
                mode,
                "--workspace-home-root",
            ])
            .arg(dir.join("homes"))
            .arg("--data-dir")
            .arg(&data)
            .env("PERIGEE_LOG", "warn")
            .envs(agent_env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("server.log"))?)
            .spawn()?;
        // Other roles' readiness lines (TURN) come first.
        let mut out = BufReader::new(
            server
                .stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("stdout"))?,
        );
        let mut line = String::new();
        while !line.starts_with("perigee server ready:") {
            line.clear();
            if out.read_line(&mut line)? == 0 {
                anyhow::bail!("perigee server ended before its ready line (see server.log)");
            }
        }
        let url = line
            .split_whitespace()
            .nth(3)
            .ok_or_else(|| anyhow::anyhow!("no ready line: {line:?}"))?
            .to_owned();
        let token = std::fs::read_to_string(data.join("admin-token"))?
            .trim()
            .to_owned();
        let mut p = Self {
            procs: Procs(vec![server]),
            addr: url.trim_start_matches("https://").to_owned(),
            url,
            token,
            ca: data.join("tls/ca.pem"),
            bin: bin.to_path_buf(),
            agent_pid: 0,
            workspace_id: String::new(),
        };
        p.cli(&["create", "bench"]).status()?;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let out = p.cli(&["ls", "-o", "json"]).output()?;
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            let w = &v[0];
            if w["agent_connected"] == true {
                p.agent_pid = w["agent_pid"].as_u64().unwrap_or(0) as u32;
                p.workspace_id = w["id"].as_str().unwrap_or("").to_owned();
                break;
            }
            anyhow::ensure!(
                std::time::Instant::now() < deadline,
                "agent did not connect"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(p)
    }

    pub fn cli(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args)
            .env("PERIGEE_URL", &self.url)
            .env("PERIGEE_TOKEN", &self.token)
            .env("PERIGEE_CA_CERT", &self.ca)
            // The CLI's caches (tickets, region choice) stay in the bench's directory.
            .env(
                "PERIGEE_CONFIG_DIR",
                self.ca
                    .parent()
                    .unwrap_or(&self.ca)
                    .join("bench-cli-config"),
            )
            .env("PERIGEE_LOG", "error");
        c
    }

    /// `perigee port-forward` for each target port; returns local addresses in order.
    pub fn port_forward(&mut self, ports: &[u16]) -> anyhow::Result<Vec<String>> {
        let mut args = vec!["port-forward".to_owned(), "bench".to_owned()];
        for p in ports {
            args.push("--tcp".into());
            args.push(format!("0:{p}"));
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut child = self
            .cli(&refs)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut rd = BufReader::new(
            child
                .stdout
                .take()
                .ok_or_else(|| anyhow::anyhow!("stdout"))?,
        );
        let mut out = Vec::new();
        for _ in ports {
            let mut line = String::new();
            rd.read_line(&mut line)?;
            out.push(
                line.split_whitespace()
                    .nth(1)
                    .ok_or_else(|| anyhow::anyhow!("bad line {line:?}"))?
                    .to_owned(),
            );
        }
        self.procs.0.push(child);
        Ok(out)
    }

    /// The primary edge's TCP port (used by the mesh bench).
    #[allow(dead_code)]
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse().ok())
            .unwrap_or(0)
    }

    /// The network namespace of the workspace when it is isolated.
    #[allow(dead_code)] // the isolation benchmark's; other binaries include this file too
    pub fn netns(&self) -> Option<String> {
        let dir = self
            .ca
            .parent()?
            .parent()?
            .join("workspaces")
            .join(&self.workspace_id);
        let uid = std::fs::read_to_string(dir.join("uid")).ok()?;
        Some(format!("perigee-{}", uid.trim()))
    }

    pub fn edge_pid(&self) -> u32 {
        self.procs.0[0].id()
    }
}

impl Drop for Perigee {
    fn drop(&mut self) {
        // Local agents outlive the server by design; this one was started by our server.
        if self.agent_pid != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &self.agent_pid.to_string()])
                .status();
            // Its process group (isolated: `unshare` and the agent under it).
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.agent_pid)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Waits for a relay to carry an echo end to end.
pub fn ready(addr: &str) -> anyhow::Result<()> {
    wait_echo(addr, Duration::from_secs(30))
}
