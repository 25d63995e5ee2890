//! `perigee config-ssh` on a config file with the user's own hosts, comments and an
//! `Include`, under a home path with a space: a dry run that writes nothing, one marked block,
//! idempotent, the file's mode kept, the key made and uploaded, plain OpenSSH `ssh
//! perigee.WS` and `perigee ssh WS -- CMD` through it, and `--remove` restoring the original
//! byte for byte.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{free_port, Server, TempDir, BIN};
use crate::ssh::{start_sshd_in, user};

const ORIGINAL: &str =
    "# my hosts\nInclude ~/.ssh/config.d/*\n\nHost work\n  HostName 10.0.0.5\n  User me\n";

#[test]
fn config_ssh_writes_one_block_and_plain_ssh_uses_it() {
    let tmp = TempDir::new("config-ssh");
    let server = Server::start();
    let home = tmp.0.join("home dir");
    let cfg = home.join(".ssh/config");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    std::fs::write(&cfg, ORIGINAL).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o640)).unwrap();
    let sshd_dir = tmp.0.join("sshd");
    std::fs::create_dir_all(&sshd_dir).unwrap();
    let sshd = start_sshd_in(&sshd_dir, &[], free_port("127.0.0.1"));
    let port = sshd.port.to_string();
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
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };

    let out = ok(perigee(&["config-ssh", "--ssh-port", &port, "--dry-run"]));
    assert!(
        out.contains("+Host perigee.*") && out.contains("dry run"),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), ORIGINAL);

    let o = perigee(&["config-ssh", "--ssh-port", &port]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
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
    let out = ok(perigee(&["config-ssh", "--ssh-port", &port]));
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), written);

    // The workspace's sshd trusts the key config-ssh made and uploaded.
    let public = std::fs::read_to_string(home.join(".config/perigee/ssh/id_ed25519.pub")).unwrap();
    let mut keys = std::fs::read_to_string(sshd_dir.join("authorized_keys")).unwrap();
    keys.push_str(&public);
    std::fs::write(sshd_dir.join("authorized_keys"), keys).unwrap();

    // Plain OpenSSH with the user's config.
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg(&cfg)
        .args(["-o", "BatchMode=yes"])
        .arg(format!("{}@perigee.ws", user()))
        .arg("echo ok-$((40+2))")
        .stdin(Stdio::null());
    env(&mut c);
    let o = c.output().unwrap();
    assert!(
        o.status.success(),
        "ssh: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok-42");
    // `perigee ssh WS -- CMD` runs OpenSSH the same way.
    let out = ok(perigee(&[
        "ssh",
        "ws",
        "--port",
        &port,
        "--",
        "echo",
        "via-perigee-ssh",
    ]));
    assert_eq!(out.trim(), "via-perigee-ssh");

    // --remove: the original, byte for byte.
    let out = ok(perigee(&["config-ssh", "--remove"]));
    assert!(out.contains("Removed"), "{out}");
    assert_eq!(std::fs::read_to_string(&cfg).unwrap(), ORIGINAL);
    let out = ok(perigee(&["config-ssh", "--remove"]));
    assert!(out.contains("nothing to remove"), "{out}");
    drop(sshd);
}
