//! The agent's SSH server against the real OpenSSH client: exec with exit status, stderr,
//! stdin to EOF, environment, a PTY, stdio forwarding (`-W`, a direct-tcpip channel), sftp,
//! agent forwarding (`-A`),
//! the host key kept across restarts, and a key that is not the owner's refused.
#![allow(clippy::unwrap_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use perigee_ssh::{serve, SshConfig, StaticKeys};

struct Fixture {
    dir: PathBuf,
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    rt: tokio::runtime::Runtime,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .output()
        .expect("ssh-keygen (openssh-client)");
    assert!(out.status.success());
    std::fs::read_to_string(path.with_extension("pub")).unwrap()
}

fn start() -> Fixture {
    // The server runs in this process: an agent setting it must not hand to sessions.
    std::env::set_var("PERIGEE_TEST_SECRET", "leaked");
    let dir = std::env::temp_dir().join(format!("perigee-ssh-{}", relay_core::token::random_id()));
    std::fs::create_dir_all(dir.join("work")).unwrap();
    let public = keygen(&dir.join("id"));
    keygen(&dir.join("other"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let cfg = SshConfig {
        host_key: dir.join("host_key"),
        workdir: dir.join("work"),
        shell: PathBuf::from("/bin/sh"),
        keys: Arc::new(StaticKeys(vec![public])),
        resume_grace: perigee_ssh::RESUME_GRACE,
    };
    rt.spawn(async move {
        serve(listener, cfg, async move {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Fixture {
        dir,
        port,
        stop: Some(tx),
        rt,
    }
}

impl Fixture {
    fn ssh(&self, key: &str, extra: &[&str], stdin: &[u8]) -> Output {
        let mut c = Command::new("ssh");
        c.args(["-F", "/dev/null", "-i"])
            .arg(self.dir.join(key))
            .args(["-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"])
            .args(["-o", "StrictHostKeyChecking=no", "-o"])
            .arg(format!(
                "UserKnownHostsFile={}",
                self.dir.join("known_hosts").display()
            ))
            .args(["-p", &self.port.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        // A refused connection ends ssh before it reads stdin.
        let _ = child.stdin.take().unwrap().write_all(stdin);
        child.wait_with_output().unwrap()
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exec_pty_forwarding_sftp_and_refusals_with_openssh() {
    let f = start();
    let work = std::fs::canonicalize(f.dir.join("work")).unwrap();

    // exec: stdout, stderr, exit status, the workspace directory.
    let o = f.ssh(
        "id",
        &["dev@127.0.0.1", "echo out; echo err >&2; pwd; exit 3"],
        b"",
    );
    assert_eq!(o.status.code(), Some(3), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout), format!("out\n{}\n", work.display()));
    assert!(text(&o.stderr).contains("err"), "{}", text(&o.stderr));

    // stdin to EOF, and environment variables.
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    // With the client's default cipher, and with every cipher an OpenSSH user may pin.
    for cipher in [
        None,
        Some("chacha20-poly1305@openssh.com"),
        Some("aes128-gcm@openssh.com"),
        Some("aes256-gcm@openssh.com"),
        Some("aes128-ctr"),
        Some("aes256-ctr"),
    ] {
        let mut args = cipher.map_or(vec![], |c| vec!["-c", c]);
        args.extend(["dev@127.0.0.1", "cat"]);
        let o = f.ssh("id", &args, &data);
        assert!(o.status.success(), "{cipher:?}: {}", text(&o.stderr));
        assert!(
            o.stdout == data,
            "{cipher:?}: {} of {} bytes back",
            o.stdout.len(),
            data.len()
        );
    }
    let o = f.ssh(
        "id",
        &[
            "-o",
            "SetEnv=PERIGEE_X=yes",
            "dev@127.0.0.1",
            "echo $PERIGEE_X",
        ],
        b"",
    );
    assert_eq!(text(&o.stdout).trim(), "yes", "{}", text(&o.stderr));

    // OpenSSH's connection variables are set; the agent's own settings are not passed on.
    let o = f.ssh(
        "id",
        &[
            "dev@127.0.0.1",
            "echo \"${SSH_CONNECTION:+set}|${PERIGEE_TEST_SECRET:-hidden}\"",
        ],
        b"",
    );
    assert_eq!(text(&o.stdout).trim(), "set|hidden", "{}", text(&o.stderr));

    // A PTY: the command sees a terminal of the default size.
    let o = f.ssh(
        "id",
        &["-tt", "dev@127.0.0.1", "stty size; tty; exit 5"],
        b"",
    );
    assert_eq!(o.status.code(), Some(5), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(
        out.contains("24 80") && out.contains("/dev/pts/"),
        "{out:?}"
    );

    // Stdio forwarding (a direct-tcpip channel) to a port in the workspace.
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = echo.accept() {
            let mut r = s.try_clone().unwrap();
            let _ = std::io::copy(&mut r, &mut s);
        }
    });
    let o = f.ssh(
        "id",
        &["-W", &format!("127.0.0.1:{echo_port}"), "dev@127.0.0.1"],
        b"through -W\n",
    );
    assert_eq!(text(&o.stdout), "through -W\n", "{}", text(&o.stderr));

    // sftp, when OpenSSH's sftp-server is installed (it is where openssh-server is).
    if Path::new("/usr/lib/openssh/sftp-server").exists() {
        let src = f.dir.join("src.bin");
        std::fs::write(&src, &data).unwrap();
        let batch = f.dir.join("batch");
        std::fs::write(&batch, format!("put {} copied.bin\n", src.display())).unwrap();
        let o = Command::new("sftp")
            .args(["-F", "/dev/null", "-i"])
            .arg(f.dir.join("id"))
            .args([
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
            ])
            .args(["-P", &f.port.to_string(), "-b"])
            .arg(&batch)
            .arg("dev@127.0.0.1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        assert!(std::fs::read(work.join("copied.bin")).unwrap() == data);
    }

    // Agent forwarding: the session's SSH_AUTH_SOCK reaches the client's agent.
    let agent_sock = f.dir.join("agent.sock");
    let mut agent = Command::new("ssh-agent")
        .args(["-D", "-a"])
        .arg(&agent_sock)
        .stdout(Stdio::null())
        .spawn()
        .expect("ssh-agent (openssh-client)");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !agent_sock.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "ssh-agent did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let added = Command::new("ssh-add")
        .arg(f.dir.join("other"))
        .env("SSH_AUTH_SOCK", &agent_sock)
        .output()
        .unwrap();
    assert!(added.status.success(), "{}", text(&added.stderr));
    let mut c = Command::new("ssh");
    c.args(["-F", "/dev/null", "-A", "-i"])
        .arg(f.dir.join("id"))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
        ])
        .args(["-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .args(["-p", &f.port.to_string(), "dev@127.0.0.1", "ssh-add -L"])
        .env("SSH_AUTH_SOCK", &agent_sock);
    let o = c.output().unwrap();
    let other = std::fs::read_to_string(f.dir.join("other.pub")).unwrap();
    let other_key = other.split_whitespace().nth(1).unwrap();
    assert!(
        text(&o.stdout).contains(other_key),
        "{} {}",
        text(&o.stdout),
        text(&o.stderr)
    );
    let _ = agent.kill();
    let _ = agent.wait();

    // Another key: refused.
    let o = f.ssh("other", &["dev@127.0.0.1", "true"], b"");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("Permission denied"),
        "{}",
        text(&o.stderr)
    );

    // The host key is made once and kept.
    let key = std::fs::read(f.dir.join("host_key")).unwrap();
    assert!(perigee_ssh::host_key(&f.dir.join("host_key")).is_ok());
    assert_eq!(std::fs::read(f.dir.join("host_key")).unwrap(), key);
    let _ = &f.rt;
}

/// OpenSSH's client never sends `signal` requests; other clients (and editors' remote
/// modes) do. russh's client sends TERM to a running command, which ends with 128+15.
#[test]
fn a_signal_request_reaches_the_command() {
    struct Trusting;
    impl russh::client::Handler for Trusting {
        type Error = russh::Error;
        async fn check_server_key(
            &mut self,
            _key: &russh::keys::PublicKeyOrCertificate,
        ) -> Result<bool, Self::Error> {
            Ok(true)
        }
    }
    let f = start();
    let key = russh::keys::load_secret_key(f.dir.join("id"), None).unwrap();
    let port = f.port;
    let code = f.rt.block_on(async move {
        let cfg = Arc::new(russh::client::Config::default());
        let mut s = russh::client::connect(cfg, ("127.0.0.1", port), Trusting)
            .await
            .unwrap();
        let auth = s
            .authenticate_publickey(
                "dev",
                russh::keys::PrivateKeyWithHashAlg::new(Arc::new(key), None),
            )
            .await
            .unwrap();
        assert!(auth.success());
        let mut ch = s.channel_open_session().await.unwrap();
        ch.exec(true, "echo started; exec sleep 30").await.unwrap();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut signalled = false;
        loop {
            let msg = tokio::time::timeout_at(deadline, ch.wait())
                .await
                .expect("the command ends within 20 s");
            match msg {
                Some(russh::ChannelMsg::Data { data }) if !signalled => {
                    assert!(String::from_utf8_lossy(&data).contains("started"));
                    ch.signal(russh::Sig::TERM).await.unwrap();
                    signalled = true;
                }
                Some(russh::ChannelMsg::ExitStatus { exit_status }) => return exit_status,
                Some(_) => {}
                None => panic!("channel closed without an exit status"),
            }
        }
    });
    assert_eq!(code, 128 + 15);
}
