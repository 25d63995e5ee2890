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

use crate::harness::{echo_server, pseudo_random, run_with_stdin, Server, TempDir, BIN};
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
    let echo = echo_server();
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
