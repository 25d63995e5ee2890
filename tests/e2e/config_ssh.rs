//! `perigee config-ssh` on a config file with the user's own hosts, comments and an
//! `Include`, under a home path with a space: a dry run that writes nothing, one marked block,
//! idempotent, the file's mode kept, the key made and uploaded; then plain OpenSSH to the
//! agent's own SSH server (no sshd in the workspace): `ssh perigee.WS`, its exit status, scp
//! and sftp of 50 MB with the same SHA-256, stdio forwarding to a workspace port, `perigee ssh
//! WS -- CMD`, a removed key refused at once; and `--remove` restoring the original byte for
//! byte.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{pseudo_random, run_with_stdin, Server, TempDir, BIN};
use crate::ssh::{sha256, user};

const ORIGINAL: &str =
    "# my hosts\nInclude ~/.ssh/config.d/*\n\nHost work\n  HostName 10.0.0.5\n  User me\n";

/// A call to the API as the admin.
fn api(server: &Server, method: reqwest::Method, path: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let roots = relay_core::tls::roots(Some(&server.data().join("tls/ca.pem"))).unwrap();
        let tls = relay_core::tls::client_config(roots, &[b"http/1.1"]).unwrap();
        let r = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap()
            .request(method, format!("{}{path}", server.url))
            .bearer_auth(server.token())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.text().await.unwrap()
    })
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn config_ssh_then_openssh_to_the_agents_ssh_server() {
    let tmp = TempDir::new("config-ssh");
    let server = Server::start();
    let home = tmp.0.join("home dir");
    let cfg = home.join(".ssh/config");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(&cfg, ORIGINAL).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    server.ok(&["create", "ws"]);
    server.wait_agent("ws", Duration::from_secs(30), None);

    // The user's environment: HOME with a space, perigee's config (and key) under it.
    let env = |c: &mut Command| {
        server.session_env(c);
        c.env("HOME", &home)
            .env("PERIGEE_CONFIG_DIR", home.join(".config/perigee"));
    };
    let perigee = |args: &[&str]| -> Output {
        let mut c = Command::new(BIN);
        c.args(args).stdin(Stdio::null());
        env(&mut c);
        c.output().unwrap()
    };
    let ok = |o: Output| -> String {
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    let out = ok(perigee(&["config-ssh", "--dry-run"]));
    assert!(
        out.contains("+Host perigee.*") && out.contains("dry run"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), ORIGINAL);

    let o = perigee(&["config-ssh"]);
    let err = stderr(&o);
    ok(o);
    assert!(err.contains("uploaded public key SHA256:"), "{err}");
    let written = std::fs::read_to_string(&cfg).unwrap();
    assert!(written.starts_with(ORIGINAL), "{written}");
    assert_eq!(
        written
            .matches("# ------------START-PERIGEE-----------\n")
            .count(),
        1
    );
    assert!(
        written.ends_with("# ------------END-PERIGEE------------\n"),
        "{written}"
    );
    assert!(
        written.contains("IdentityFile \""),
        "a path with a space is quoted: {written}"
    );
    let mode = std::fs::metadata(&cfg).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "the file keeps its permissions");
    // Twice: nothing changes.
    let out = ok(perigee(&["config-ssh"]));
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), written);

    // Plain OpenSSH with the user's config, to the agent's SSH server (the uploaded key).
    let openssh = |prog: &str, args: &[&str]| -> Output {
        let mut c = Command::new(prog);
        c.arg("-F")
            .arg(&cfg)
            .args(["-o", "BatchMode=yes"])
            .args(args)
            .stdin(Stdio::null());
        env(&mut c);
        c.output().unwrap()
    };
    let target = format!("{}@perigee.ws", user());
    let o = openssh("ssh", &[&target, "echo ok-$((40+2)); pwd"]);
    assert!(o.status.success(), "ssh: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        out.starts_with("ok-42\n") && out.trim_end().ends_with("/home"),
        "{out}"
    );
    let o = openssh("ssh", &[&target, "exit 7"]);
    assert_eq!(o.status.code(), Some(7), "exit status: {}", stderr(&o));

    // scp up and sftp back, 50 MB: the same bytes.
    let src = tmp.0.join("src.bin");
    std::fs::write(&src, pseudo_random(9, 50 * 1024 * 1024)).unwrap();
    let o = openssh(
        "scp",
        &[src.to_str().unwrap(), &format!("{target}:big.bin")],
    );
    assert!(o.status.success(), "scp: {}", stderr(&o));
    let back = tmp.0.join("back.bin");
    let batch = tmp.0.join("batch");
    std::fs::write(&batch, format!("get big.bin \"{}\"\n", back.display())).unwrap();
    let o = openssh("sftp", &["-b", batch.to_str().unwrap(), &target]);
    assert!(o.status.success(), "sftp: {}", stderr(&o));
    assert_eq!(sha256(&src), sha256(&back));

    // Forwarding to a workspace port through the SSH connection (a direct-tcpip channel).
    let echo = server.echo_in("ws");
    let mut c = Command::new("ssh");
    c.arg("-F").arg(&cfg).args([
        "-o",
        "BatchMode=yes",
        "-W",
        &format!("127.0.0.1:{echo}"),
        &target,
    ]);
    env(&mut c);
    let o = run_with_stdin(c, b"forwarded\n");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "forwarded\n",
        "{}",
        stderr(&o)
    );

    // `perigee ssh WS -- CMD` runs OpenSSH the same way.
    let out = ok(perigee(&["ssh", "ws", "--", "echo", "via-perigee-ssh"]));
    assert_eq!(out.trim(), "via-perigee-ssh");

    // A removed key stops new sessions at once (the agent asks at every login).
    let keys: serde_json::Value = serde_json::from_str(&api(
        &server,
        reqwest::Method::GET,
        "/api/v2/users/me/ssh-keys",
    ))
    .unwrap();
    let fp = keys[0]["fingerprint"].as_str().unwrap();
    let encoded = fp.replace('/', "%2F").replace('+', "%2B");
    api(
        &server,
        reqwest::Method::DELETE,
        &format!("/api/v2/users/me/ssh-keys/{encoded}"),
    );
    let o = openssh("ssh", &[&target, "true"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("Permission denied"), "{}", stderr(&o));

    // --remove: the original, byte for byte.
    let out = ok(perigee(&["config-ssh", "--remove"]));
    assert!(out.contains("Removed"), "{out}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), ORIGINAL);
    let out = ok(perigee(&["config-ssh", "--remove"]));
    assert!(out.contains("nothing to remove"), "{out}");
}

/// A user set up with `perigee config-ssh` (HOME with a space), for OpenSSH tools.
pub(crate) struct SshUser {
    // Fields drop in order: the server (which stops its agents, found through the data
    // directory) before the directory goes.
    pub(crate) server: Server,
    pub(crate) home: std::path::PathBuf,
    pub(crate) cfg: std::path::PathBuf,
    pub(crate) target: String,
    pub(crate) _tmp: TempDir,
}

impl SshUser {
    pub(crate) fn new(tag: &str) -> Self {
        Self::with_server_args(tag, &[])
    }

    pub(crate) fn with_server_args(tag: &str, extra: &[&str]) -> Self {
        let tmp = TempDir::new(tag);
        let srv_dir = tmp.0.join("srv");
        std::fs::create_dir_all(&srv_dir).unwrap();
        let server = Server::start_full(&srv_dir, "127.0.0.1:0", &[], &[], extra);
        let home = tmp.0.join("home dir");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        server.ok(&["create", "ws"]);
        server.wait_agent("ws", Duration::from_secs(30), None);
        let u = Self {
            cfg: home.join(".ssh/config"),
            home,
            server,
            _tmp: tmp,
            target: format!("{}@perigee.ws", user()),
        };
        let o = u.cmd(BIN).arg("config-ssh").output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        u
    }

    /// `prog` with the user's environment (for OpenSSH tools: `-F CONFIG`, batch mode).
    pub(crate) fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        self.server.session_env(&mut c);
        c.env("HOME", &self.home)
            .env("PERIGEE_CONFIG_DIR", self.home.join(".config/perigee"))
            .stdin(Stdio::null());
        c
    }

    pub(crate) fn ssh(&self) -> Command {
        let mut c = self.cmd("ssh");
        c.arg("-F").arg(&self.cfg).args(["-o", "BatchMode=yes"]);
        c
    }

    /// `prog` as another user (their token, home and perigee config).
    fn as_user(&self, prog: &str, token: &str, home: &std::path::Path) -> Command {
        let mut c = self.cmd(prog);
        c.env("PERIGEE_TOKEN", token)
            .env("HOME", home)
            .env("PERIGEE_CONFIG_DIR", home.join(".config/perigee"));
        c
    }

    /// Creates user bob with a workspace `bws` of his own; returns his token and home.
    fn bob_with_workspace(&self) -> (String, std::path::PathBuf) {
        let token = self
            .server
            .ok(&["users", "create", "bob", "--org", "default"])
            .trim()
            .to_owned();
        let home = self.home.parent().unwrap().join("bob");
        std::fs::create_dir_all(home.join(".ssh")).unwrap();
        let mut c = self.as_user(BIN, &token, &home);
        c.args(["create", "bws"]);
        self.run_ok(c);
        (token, home)
    }

    fn run_ok(&self, mut c: Command) -> String {
        let o = c.output().unwrap();
        assert!(o.status.success(), "{:?}: {}", c, stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

#[test]
fn rsync_forwarding_controlmaster_and_a_tmux_session() {
    let u = SshUser::new("ssh-session");
    let tmp = u.home.parent().unwrap().to_path_buf();
    let mut c = u.ssh();
    c.args([&u.target, "pwd"]);
    let ws_home = std::path::PathBuf::from(u.run_ok(c).trim());

    // rsync over `ssh perigee.ws`, both ways.
    let src = tmp.join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.bin"), pseudo_random(3, 3 << 20)).unwrap();
    std::fs::write(src.join("sub/b.txt"), "hello\n").unwrap();
    let rsh = format!("ssh -F '{}' -o BatchMode=yes", u.cfg.display());
    let mut c = u.cmd("rsync");
    c.args(["-a", "-e", &rsh])
        .arg(format!("{}/", src.display()))
        .arg(format!("{}:tree/", u.target));
    u.run_ok(c);
    assert_eq!(
        sha256(&src.join("a.bin")),
        sha256(&ws_home.join("tree/a.bin"))
    );
    assert_eq!(
        std::fs::read_to_string(ws_home.join("tree/sub/b.txt")).unwrap(),
        "hello\n"
    );

    // ssh -L: a local port to a workspace port.
    let echo = u.server.echo_in("ws");
    let local = crate::harness::free_port("127.0.0.1");
    let mut c = u.ssh();
    c.args([
        "-N",
        "-L",
        &format!("127.0.0.1:{local}:127.0.0.1:{echo}"),
        &u.target,
    ]);
    let mut fwd = c.spawn().unwrap();
    let mut conn = None;
    crate::harness::wait_until("ssh -L listening", Duration::from_secs(15), || {
        conn = std::net::TcpStream::connect(("127.0.0.1", local)).ok();
        conn.is_some()
    });
    let mut conn = conn.unwrap();
    use std::io::{Read as _, Write as _};
    conn.write_all(b"via -L\n").unwrap();
    let mut buf = [0u8; 7];
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"via -L\n");
    drop(conn);
    let _ = fwd.kill();
    let _ = fwd.wait();

    // Three sessions at once over one ControlMaster connection.
    let cm = tmp.join("cm");
    let mut c = u.ssh();
    c.args(["-o", "ControlMaster=yes", "-o"])
        .arg(format!("ControlPath={}", cm.display()))
        .args(["-N", &u.target]);
    let mut master = c.spawn().unwrap();
    crate::harness::wait_until("control socket", Duration::from_secs(15), || cm.exists());
    let sessions: Vec<_> = (0..3)
        .map(|i| {
            let mut c = u.ssh();
            c.arg("-o")
                .arg(format!("ControlPath={}", cm.display()))
                .args([&u.target, &format!("sleep 0.3; echo session-{i}")]);
            c.stdout(Stdio::piped()).spawn().unwrap()
        })
        .collect();
    for (i, s) in sessions.into_iter().enumerate() {
        let o = s.wait_with_output().unwrap();
        assert!(o.status.success(), "session {i}: {}", stderr(&o));
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            format!("session-{i}")
        );
    }
    let _ = master.kill();
    let _ = master.wait();

    // An interactive session in tmux: the prompt appears, and `stty size` follows a resize.
    let sock = tmp.join("tmux.sock");
    let tmux = |args: &[&str]| -> String {
        let o = Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .args(args)
            .output()
            .expect("tmux (`.ci/run` installs it)");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let mut env_words = String::new();
    let probe = u.cmd("true");
    for (k, v) in probe.get_envs() {
        if let (Some(v), Some(k)) = (v, k.to_str()) {
            env_words.push_str(&format!("{k}='{}' ", v.to_string_lossy()));
        }
    }
    let shell_cmd = format!(
        "env {env_words} ssh -F '{}' -o BatchMode=yes -t {}",
        u.cfg.display(),
        u.target
    );
    tmux(&["new-session", "-d", "-x", "100", "-y", "30", &shell_cmd]);
    let screen_has = |needle: &str| {
        let needle = needle.to_owned();
        crate::harness::wait_until(
            &format!("{needle:?} on the tmux screen"),
            Duration::from_secs(20),
            || tmux(&["capture-pane", "-p"]).contains(&needle),
        );
    };
    tmux(&["send-keys", "echo READY-$((40+2))", "Enter"]);
    screen_has("READY-42");
    let size = |w: &str| tmux(&["display", "-p", w]).trim().to_owned();
    let want = format!("{} {}", size("#{pane_height}"), size("#{pane_width}"));
    tmux(&["send-keys", "stty size", "Enter"]);
    screen_has(&want);
    tmux(&["resize-window", "-x", "120", "-y", "40"]);
    let want2 = format!("{} {}", size("#{pane_height}"), size("#{pane_width}"));
    assert_ne!(want, want2);
    tmux(&["send-keys", "clear; stty size", "Enter"]);
    screen_has(&want2);
    tmux(&["send-keys", "exit", "Enter"]);
    tmux(&["kill-server"]);
}

#[test]
fn refusals_reach_the_ssh_users_terminal() {
    let u = SshUser::new("ssh-refusals");
    // Another user, with a key of their own, asks for the admin's workspace.
    let (bob_token, bob_home) = u.bob_with_workspace();
    let bob = |prog: &str| u.as_user(prog, &bob_token, &bob_home);
    let mut c = bob(BIN);
    c.arg("config-ssh");
    u.run_ok(c);
    let mut c = bob("ssh");
    c.arg("-F").arg(bob_home.join(".ssh/config")).args([
        "-o",
        "BatchMode=yes",
        "bob@perigee.ws",
        "true",
    ]);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no workspace named \"ws\""),
        "{}",
        stderr(&o)
    );

    // Nor may the admin enter bob's workspace: this deployment does not allow it.
    let mut c = u.ssh();
    c.args(["root@perigee.bob.bws", "true"]);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("no workspace named \"bob.bws\""),
        "{}",
        stderr(&o)
    );

    // SSH turned off on the provider: the owner is told why.
    u.server
        .ok(&["providers", "edit", "built-in", "--external-ssh", "off"]);
    let mut c = u.ssh();
    c.args([&u.target, "true"]);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("external SSH turned off"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn admins_enter_other_users_workspaces_when_the_deployment_allows() {
    let u = SshUser::with_server_args("ssh-admin", &["--admin-workspace-access"]);
    let (_bob_token, _bob_home) = u.bob_with_workspace();
    // The admin's key (uploaded by config-ssh) is accepted by bob's agent; bob's workspace is
    // named OWNER.WORKSPACE. Bob's agent may still be starting: bounded retries.
    let mut last = String::new();
    crate::harness::wait_until(
        "admin ssh into bob's workspace",
        Duration::from_secs(30),
        || {
            let mut c = u.ssh();
            c.args([&format!("{}@perigee.bob.bws", user()), "echo admin-in"]);
            let o = c.output().unwrap();
            last = format!("{} {}", String::from_utf8_lossy(&o.stdout), stderr(&o));
            o.status.success() && last.contains("admin-in")
        },
    );
    assert!(last.contains("admin-in"), "{last}");
}

#[test]
fn a_revoked_token_stops_new_sessions_at_once() {
    let u = SshUser::new("ssh-token");
    let laptop = u
        .server
        .ok(&["tokens", "create", "laptop"])
        .trim()
        .to_owned();
    let with_laptop = |c: &mut Command| {
        c.env("PERIGEE_TOKEN", &laptop);
    };
    let mut c = u.ssh();
    with_laptop(&mut c);
    c.args([&u.target, "true"]);
    u.run_ok(c); // its ticket is now cached on disk

    // The admin's list marks the token in use and never shows secrets.
    let list: serde_json::Value =
        serde_json::from_str(&u.server.ok(&["tokens", "ls", "-o", "json"])).unwrap();
    let text = list.to_string();
    assert!(
        !text.contains(&laptop) && !text.contains(&u.server.token()),
        "{text}"
    );
    let id = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "laptop")
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_owned();
    assert!(list
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["current"] == true && t["name"] != "laptop"));
    u.server.ok(&["tokens", "rm", &id]);
    let drops_before = bad_ticket_drops(&u.server);

    // At once: the cached ticket is refused by the edge, and a fresh one by the API.
    let mut c = u.ssh();
    with_laptop(&mut c);
    c.args([&u.target, "true"]);
    let o = c.output().unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("API token not recognised (revoked"),
        "{}",
        stderr(&o)
    );
    assert_eq!(bad_ticket_drops(&u.server), drops_before + 1);
    // The token is gone from the list and cannot be revoked twice; the other still works.
    assert!(!u.server.ok(&["tokens", "ls"]).contains("laptop"));
    u.server.refused(&["tokens", "rm", &id], "no API token");
    let mut c = u.ssh();
    c.args([&u.target, "true"]);
    u.run_ok(c);
}

fn bad_ticket_drops(server: &Server) -> u64 {
    let m = crate::satellites::fetch(
        &format!("{}/metrics", server.url),
        &server.data().join("tls/ca.pem"),
    );
    m.lines()
        .find(|l| l.starts_with("perigee_edge_drops_total{reason=\"bad_ticket\",side=\"client\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
