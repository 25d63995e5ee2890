//! Isolation on a remote provider's host: `perigee workspace-provider --provisioner local`
//! run as root isolates its workspaces like the server does (the control plane elsewhere —
//! in a namespace of the test's — reached over the network); run as another user it is the
//! admins' alone, and the control plane refuses members with the reason.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::{wait_ready, wait_until, LinkedNetns, Server, TempDir, BIN};

/// A namespace for the control plane, joined to the host by a veth, where `cp.pg.test`
/// names its address.
fn elsewhere(n: u32) -> LinkedNetns {
    let net = LinkedNetns::new(
        &format!("pcp{n}"),
        &format!("vc{n}"),
        &format!("10.78.{}", 10 + n % 200),
    );
    let etc = format!("/etc/netns/{}", net.ns);
    std::fs::create_dir_all(&etc).expect("/etc/netns");
    std::fs::write(
        format!("{etc}/hosts"),
        format!("127.0.0.1 localhost\n{} cp.pg.test\n", net.addr),
    )
    .expect("hosts");
    net
}

/// `providers create NAME` on `server`; returns the REMOTE token.
fn create(server: &Server, name: &str, hostname: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&server.ok(&[
        "providers",
        "create",
        name,
        "--hostname",
        hostname,
        "--cluster-address",
        "https://10.0.0.1:6443",
        "-o",
        "json",
    ]))
    .expect("json");
    v["token"].as_str().expect("token").to_owned()
}

/// A `perigee workspace-provider` process, killed with its agents.
struct Deployment {
    child: std::process::Child,
    data: std::path::PathBuf,
}

impl Deployment {
    fn start(
        prefix: &[&str],
        primary: &str,
        token: &str,
        ca: &std::path::Path,
        data: &std::path::Path,
        extra: &[&str],
    ) -> Self {
        let mut words: Vec<&str> = prefix.to_vec();
        words.push(BIN);
        let mut child = Command::new(words[0])
            .args(&words[1..])
            .args([
                "workspace-provider",
                "--primary-url",
                primary,
                "--token",
                token,
            ])
            .args(["--heartbeat-secs", "1", "--ca-cert"])
            .arg(ca)
            .arg("--data-dir")
            .arg(data)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(format!("{}.log", data.display())).expect("log"))
            .spawn()
            .expect("workspace-provider");
        wait_ready(&mut child, "perigee workspace-provider ready: ", data);
        Self {
            child,
            data: data.to_owned(),
        }
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in crate::harness::agent_pids_in(&self.data.join("workspaces")) {
            crate::harness::signal_group(pid, "-KILL");
        }
        let table = perigee_isolate::net::table_name(&self.data);
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &table])
            .stderr(Stdio::null())
            .status();
    }
}

#[test]
fn a_remote_providers_local_workspaces_are_isolated_too() {
    let tmp = TempDir::new("iso-provider");
    let cp = elsewhere(std::process::id() % 1000);
    let port = 7443;
    let server = Server::start_full(
        &tmp.0,
        &format!("{}:{port}", cp.addr),
        &["ip", "netns", "exec", &cp.ns],
        &[],
        &["--access-url", &format!("https://cp.pg.test:{port}")],
    );
    let token = create(&server, "eu", &format!("https://eu.cp.pg.test:{port}"));
    // Agents dial the control plane's address (this host has no name for it).
    let direct = format!("https://{}:{port}", cp.addr);
    server.ok(&[
        "providers",
        "edit",
        "eu",
        "--org-add",
        "default",
        "--access-url",
        &direct,
    ]);
    let data = tmp.0.join("eu");
    let ca = tmp.0.join("cp-ca.pem");
    std::fs::copy(server.data().join("tls/ca.pem"), &ca).expect("ca");
    let home_root = tmp.0.join("eu-homes");
    let _deployment = Deployment::start(
        &[],
        &direct,
        &token,
        &ca,
        &data,
        &[
            "--workspace-isolation",
            "on",
            "--workspace-home-root",
            home_root.to_str().expect("path"),
        ],
    );
    server.ok(&["create", "w", "--provider", "eu"]);
    wait_until("w's agent to link", Duration::from_secs(30), || {
        server.workspace("w")["agent_connected"] == true
    });
    let id = server.workspace("w")["id"].as_str().expect("id").to_owned();
    let uid = std::fs::read_to_string(data.join("workspaces").join(&id).join("uid"))
        .expect("the provider's workspace has a uid of its own");
    let uid: u32 = uid.trim().parse().expect("uid");
    assert!(uid >= 200_000, "uid {uid}");
    assert!(
        home_root.join(&id).join("home").is_dir(),
        "its home is under the home root"
    );
    // A service inside it, reached through the control plane's edge and the agent's link.
    let echo =
        crate::harness::python_echo(&["ip", "netns", "exec", &format!("perigee-{uid}")], 7070);
    let out = crate::harness::tunnel_roundtrip(&server, "w", 7070, b"through the provider\n");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "through the provider\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut echo = echo;
    let _ = echo.kill();
    let _ = echo.wait();
}

#[test]
fn a_providers_local_provisioner_without_root_is_for_admins_only() {
    let tmp = TempDir::new("provider-single");
    let (server, port) = crate::providers::start_named(&tmp);
    let token = crate::providers::create_provider(&server, port, "eu", "https://10.0.0.1:6443");
    server.ok(&["providers", "edit", "eu", "--org-add", "default"]);
    // The deployment runs as nobody: it cannot isolate, and says so with its heartbeat.
    let data = tmp.0.join("eu");
    std::fs::create_dir_all(&data).expect("data");
    let ca = tmp.0.join("cp-ca.pem");
    std::fs::copy(server.data().join("tls/ca.pem"), &ca).expect("ca");
    let chown = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(&data)
        .status();
    assert!(chown.is_ok_and(|s| s.success()));
    let _deployment = Deployment::start(
        &[
            "setpriv",
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
        ],
        &server.url,
        &token,
        &ca,
        &data.join("p"),
        &["--workspace-isolation", "auto"],
    );
    wait_until(
        "the provider reports it is admins-only",
        Duration::from_secs(15),
        || {
            let list: serde_json::Value =
                serde_json::from_str(&server.ok(&["providers", "ls", "-o", "json"])).expect("json");
            list.as_array().is_some_and(|l| {
                l.iter()
                    .any(|p| p["name"] == "eu" && p["admins_only"] == true)
            })
        },
    );
    let bob = server.ok(&["users", "create", "bob", "--org", "default"]);
    let out = server
        .cmd(&["create", "mine", "--provider", "eu"])
        .env("PERIGEE_TOKEN", bob.trim())
        .stdin(Stdio::null())
        .output()
        .expect("create");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a member got a workspace running as the provider's user"
    );
    assert!(
        err.contains("only admins may create workspaces on it"),
        "{err}"
    );
    server.ok(&["create", "adm", "--provider", "eu"]);
}
