//! Real OpenSSH through `perigee tunnel` as a ProxyCommand, to a real sshd in the workspace.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{pseudo_random, Server, TempDir};

pub(crate) struct Sshd {
    child: Child,
    pub(crate) port: u16,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
}

fn free_port() -> u16 {
    // sshd cannot report a port-0 choice, so pick one the kernel just handed out.
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts sshd on loopback accepting `client_key.pub`.
/// sshd "in the workspace" `ws` (its network namespace when isolated, as a workspace
/// image's own sshd would run).
fn start_sshd(dir: &Path, server: &Server, ws: &str) -> Sshd {
    let prefix = server.in_workspace(ws);
    let words: Vec<&str> = prefix.iter().map(String::as_str).collect();
    start_sshd_in(dir, &words, free_port())
}

/// Starts sshd on loopback port `port`, run with `prefix` (e.g. `ip netns exec NS`),
/// accepting `client_key.pub`; ready when its log says it listens.
pub(crate) fn start_sshd_in(dir: &Path, prefix: &[&str], port: u16) -> Sshd {
    keygen(&dir.join("host_key"));
    keygen(&dir.join("client_key"));
    std::fs::copy(dir.join("client_key.pub"), dir.join("authorized_keys"))
        .expect("authorized_keys");
    let _ = std::fs::create_dir_all("/run/sshd");
    let config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
         PidFile {d}/sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n",
        d = dir.display()
    );
    std::fs::write(dir.join("sshd_config"), config).expect("sshd_config");
    let sshd = ["/usr/sbin/sshd", "/usr/bin/sshd"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .expect("sshd installed (apt install openssh-server)");
    let mut words: Vec<&str> = prefix.to_vec();
    words.push(sshd);
    let child = Command::new(words[0])
        .args(&words[1..])
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stderr(std::fs::File::create(dir.join("sshd.log")).expect("log"))
        .spawn()
        .expect("spawn sshd");
    // Readiness: the log says it listens (the port may be in another namespace).
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(dir.join("sshd.log"))
        .unwrap_or_default()
        .contains("Server listening on 127.0.0.1")
    {
        assert!(
            Instant::now() < deadline,
            "sshd did not start; see {}",
            dir.join("sshd.log").display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Sshd { child, port }
}

fn ssh_opts(server: &Server, dir: &Path, port: u16) -> Vec<String> {
    let proxy = format!("ProxyCommand={} tunnel ws %p", crate::harness::BIN);
    let _ = server;
    vec![
        "-F".into(),
        "/dev/null".into(),
        "-i".into(),
        dir.join("client_key").display().to_string(),
        "-o".into(),
        "StrictHostKeyChecking=no".into(),
        "-o".into(),
        "UserKnownHostsFile=/dev/null".into(),
        "-o".into(),
        "BatchMode=yes".into(),
        "-o".into(),
        proxy,
        "-o".into(),
        format!("Port={port}"),
    ]
    .into_iter()
    .take(12)
    .collect()
}

pub(crate) fn user() -> String {
    let out = Command::new("id").arg("-un").output().expect("id");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

pub(crate) fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
fn openssh_command_and_scp_50mb_through_the_tunnel() {
    let server = Server::start();
    let tmp = TempDir::new("ssh");
    let dir = &tmp.0;
    server.ok(&["create", "ws"]);
    server.wait_agent("ws", Duration::from_secs(20), None);
    let sshd = start_sshd(dir, &server, "ws");

    // A command over ssh with perigee as the ProxyCommand.
    let mut c = Command::new("ssh");
    c.args(ssh_opts(&server, dir, sshd.port))
        .args(["-p", &sshd.port.to_string()])
        .arg(format!("{}@ws", user()))
        .arg("echo perigee-$((40+2))");
    server.session_env(&mut c);
    let out = c.output().expect("ssh");
    assert!(
        out.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "perigee-42");

    // scp of 50 MB of random data arrives intact.
    let src = dir.join("src.bin");
    std::fs::write(&src, pseudo_random(7, 50 * 1024 * 1024)).expect("write src");
    let dst = dir.join("dst.bin");
    let mut c = Command::new("scp");
    c.args(ssh_opts(&server, dir, sshd.port))
        .args(["-P", &sshd.port.to_string()])
        .arg(&src)
        .arg(format!("{}@ws:{}", user(), dst.display()))
        .stdin(Stdio::null());
    server.session_env(&mut c);
    let out = c.output().expect("scp");
    assert!(
        out.status.success(),
        "scp failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sha256(&src), sha256(&dst));
    assert_eq!(
        std::fs::metadata(&dst).map(|m| m.len()).unwrap_or(0),
        50 * 1024 * 1024
    );
}
