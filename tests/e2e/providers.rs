//! Workspace providers through the CLI: the built-in provider, creating a remote one (with
//! the hostname, scheme and cluster-address rules), the Helm command, and refusals that name
//! the field and change nothing.

use std::time::Duration;

use crate::harness::{free_port, wait_until, Server, TempDir};

#[test]
fn providers_are_created_by_the_rules() {
    creation_rules(&[]);
}

#[test]
fn providers_are_created_by_the_rules_on_postgres() {
    let pg = testkit::Postgres::start();
    let url = pg.create_database();
    creation_rules(&["--postgres-url", &url]);
}

fn creation_rules(extra: &[&str]) {
    let tmp = TempDir::new("providers");
    // Providers need a DNS name to be subdomains of: `localhost` resolves here.
    let port = free_port("127.0.0.1");
    let access = format!("https://localhost:{port}");
    let mut args = vec!["--access-url", access.as_str()];
    args.extend_from_slice(extra);
    let server = Server::start_full(&tmp.0, &format!("127.0.0.1:{port}"), &[], &[], &args);
    let ls = |s: &Server| -> serde_json::Value {
        serde_json::from_str(&s.ok(&["providers", "ls", "-o", "json"])).expect("json")
    };
    let list = ls(&server);
    let b = &list[0];
    assert_eq!(
        (&b["name"], &b["built_in"], &b["default"], &b["status"]),
        (
            &serde_json::json!("built-in"),
            &serde_json::json!(true),
            &serde_json::json!(true),
            &serde_json::json!("ready")
        )
    );
    assert_eq!(b["orgs"], serde_json::json!(["default"]));
    server.ok(&["orgs", "create", "eng"]);
    assert_eq!(
        ls(&server)[0]["orgs"],
        serde_json::json!(["default", "eng"])
    );

    let hostname = format!("https://eu.localhost:{port}");
    let create = |name: &str, hostname: &str, cluster: &str| -> Vec<String> {
        [
            "providers",
            "create",
            name,
            "--hostname",
            hostname,
            "--cluster-address",
            cluster,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let args = create("eu", &hostname, "https://10.0.0.1:6443");
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend(["--namespace", "perigee", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&server.ok(&args)).expect("json");
    let token = v["token"].as_str().expect("token");
    assert!(token.starts_with("pgp_"));
    assert_eq!(v["provider"]["status"], "pending");
    assert_eq!(v["provider"]["default"], false);
    let cmd = v["helm_command"].as_str().expect("command");
    let expected = format!(
        "helm upgrade perigee-workspace-provider perigee/workspace-provider --version={} --atomic --install --set provider.token={token} --set provider.accessURL={hostname} --set ingress.host=eu.localhost --set provider.clusterAddress=https://10.0.0.1:6443 --set controlPlane.accessURL={access} --set provider.namespace=perigee",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(cmd, expected);
    assert_eq!(v["helm"]["set"]["ingress.host"], "eu.localhost");

    let check = |name: &str, host: &str, cluster: &str, needle: &str| {
        let a = create(name, host, cluster);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        server.refused(&a, needle);
    };
    check(
        "eu",
        &hostname,
        "https://10.0.0.1:6443",
        "name: a provider named \"eu\" exists",
    );
    check(
        "evil",
        &format!("https://evillocalhost:{port}"),
        "https://10.0.0.1:6443",
        "hostname: the host \"evillocalhost\" is not a subdomain",
    );
    check(
        "plain",
        &format!("http://eu2.localhost:{port}"),
        "https://10.0.0.1:6443",
        "hostname: \"http://eu2.localhost",
    );
    check(
        "nocluster",
        &format!("https://x.localhost:{port}"),
        "nope",
        "cluster_address:",
    );
    check(
        "Bad_Name",
        &format!("https://x.localhost:{port}"),
        "https://k",
        "invalid name",
    );

    // Members do not manage providers.
    let bob = server.ok(&["users", "create", "bob", "--org", "eng"]);
    let args = create("mine", &format!("https://m.localhost:{port}"), "https://k");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = server
        .cmd(&args)
        .env("PERIGEE_TOKEN", bob.trim())
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("403"), "{err}");

    let names: Vec<String> = ls(&server)
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|p| p["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        names,
        ["built-in", "eu"],
        "refused requests created nothing"
    );
    let table = server.ok(&["providers", "ls"]);
    assert!(
        table.contains("built-in") && table.contains("default") && table.contains("pending"),
        "{table}"
    );
}

/// A running `perigee workspace-provider`; dropping it stops the process and the agents it
/// started (they are built to outlive it, so a test must end them).
pub(crate) struct ProviderProcess {
    child: std::process::Child,
    data: std::path::PathBuf,
}

impl ProviderProcess {
    /// Stops the process only (its agents keep running, as after a crash).
    pub(crate) fn kill(&mut self) -> std::io::Result<()> {
        self.child.kill()
    }

    pub(crate) fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.child.wait()
    }
}

impl Drop for ProviderProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in crate::harness::agent_pids_in(&self.data.join("workspaces")) {
            crate::harness::signal(pid, "-KILL");
        }
    }
}

/// Starts `perigee workspace-provider`; waits for its readiness line.
pub(crate) fn start_provider(
    server: &Server,
    token: &str,
    data: &std::path::Path,
) -> ProviderProcess {
    start_provider_with(server, token, data, &[], &[])
}

/// [`start_provider`] with more arguments and environment.
pub(crate) fn start_provider_with(
    server: &Server,
    token: &str,
    data: &std::path::Path,
    extra: &[&str],
    env: &[(&str, &std::path::Path)],
) -> ProviderProcess {
    let mut child = std::process::Command::new(crate::harness::BIN)
        .args([
            "workspace-provider",
            "--primary-url",
            &server.url,
            "--token",
            token,
        ])
        .args(["--heartbeat-secs", "1", "--ca-cert"])
        .arg(server.data().join("tls/ca.pem"))
        .arg("--data-dir")
        .arg(data)
        // Its agents dial the control plane on the host's loopback, which an isolated
        // workspace cannot reach by design (tests/e2e/isolation_provider.rs isolates).
        .args(
            if extra.iter().any(|a| a.starts_with("--workspace-isolation")) {
                &[][..]
            } else {
                &["--workspace-isolation", "off"][..]
            },
        )
        .args(extra)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(
            std::fs::File::create(format!("{}.log", data.display())).expect("provider log file"),
        )
        .spawn()
        .expect("spawn workspace-provider");
    crate::harness::wait_ready(&mut child, "perigee workspace-provider ready: ", data);
    ProviderProcess {
        child,
        data: data.to_path_buf(),
    }
}

fn status(server: &Server, name: &str) -> (String, String) {
    let v: serde_json::Value =
        serde_json::from_str(&server.ok(&["providers", "ls", "-o", "json"])).expect("json");
    let p = v
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_default();
    (
        p["status"].as_str().unwrap_or("").to_owned(),
        p["status_message"].as_str().unwrap_or("").to_owned(),
    )
}

/// Creates remote provider `name` through `s`; returns its REMOTE token.
pub(crate) fn create_provider(s: &Server, port: u16, name: &str, cluster: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(&s.ok(&[
        "providers",
        "create",
        name,
        "--hostname",
        &format!("https://{name}.localhost:{port}"),
        "--cluster-address",
        cluster,
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        v["provider"]["orgs"],
        serde_json::json!([]),
        "a new provider allows nobody yet"
    );
    v["token"].as_str().unwrap().to_owned()
}

/// A server whose access URL has a DNS name (`localhost`), so providers' hostnames can be
/// its subdomains; returns it and its port.
pub(crate) fn start_named(tmp: &TempDir) -> (Server, u16) {
    let port = free_port("127.0.0.1");
    let server = Server::start_full(
        &tmp.0,
        &format!("127.0.0.1:{port}"),
        &[],
        &[],
        &["--access-url", &format!("https://localhost:{port}")],
    );
    (server, port)
}

#[test]
fn provider_status_follows_its_deployment() {
    let tmp = TempDir::new("provider-status");
    let (server, port) = start_named(&tmp);
    let token = create_provider(&server, port, "eu", "https://10.0.0.1:6443");
    assert_eq!(status(&server, "eu").0, "pending");

    // pending → ready when it registers.
    let mut p = start_provider(&server, &token, &tmp.0.join("eu"));
    wait_until("ready", Duration::from_secs(10), || {
        status(&server, "eu").0 == "ready"
    });
    // Stopped: error once 3 heartbeats are missed; back to ready when it returns.
    let _ = p.kill();
    let _ = p.wait();
    wait_until(
        "error after missed heartbeats",
        Duration::from_secs(10),
        || status(&server, "eu").0 == "error",
    );
    assert!(status(&server, "eu").1.contains("missed heartbeats"));
    let mut p = start_provider(&server, &token, &tmp.0.join("eu"));
    wait_until("ready again", Duration::from_secs(10), || {
        status(&server, "eu").0 == "ready"
    });
    let _ = p.kill();
    let _ = p.wait();

    // A startup failure is reported, with its message.
    let file = tmp.0.join("not-a-dir");
    std::fs::write(&file, b"x").expect("file");
    let mut p = start_provider(&server, &token, &file);
    wait_until(
        "error with the startup failure",
        Duration::from_secs(10),
        || {
            let (s, m) = status(&server, "eu");
            s == "error" && m.contains("startup failed")
        },
    );
    let _ = p.kill();
    let _ = p.wait();

    // Someone else's token: refused with a clear error, the process exits.
    let out = std::process::Command::new(crate::harness::BIN)
        .args([
            "workspace-provider",
            "--primary-url",
            &server.url,
            "--token",
            "pgp_nope",
        ])
        .arg("--ca-cert")
        .arg(server.data().join("tls/ca.pem"))
        .arg("--data-dir")
        .arg(tmp.0.join("x"))
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("provider token not recognised"),
        "{err}"
    );
}

/// A remote provider's deployment runs the workspaces placed on it (local provisioner), its
/// agents dial the provider's access URL override, and a deleted workspace is removed.
#[test]
fn a_remote_provider_runs_its_workspaces_through_its_access_url() {
    let tmp = TempDir::new("provider-runs");
    let (server, port) = start_named(&tmp);
    let token = create_provider(&server, port, "eu", "https://10.0.0.1:6443");
    // The override: a TCP+UDP relay in front of the server (as a regional load balancer).
    let relay_port = free_port("127.0.0.1");
    let relay: std::net::SocketAddr = format!("127.0.0.1:{relay_port}").parse().unwrap();
    crate::delay::start(relay, server.addr, Duration::ZERO);
    let override_url = format!("https://127.0.0.1:{relay_port}");
    server.ok(&[
        "providers",
        "edit",
        "eu",
        "--org-add",
        "default",
        "--access-url",
        &override_url,
        "--storage-class",
        "fast-ssd",
        "--pod-node-selector",
        r#"{"pool":"workspaces"}"#,
        "--service-account-annotations",
        r#"{"iam.gke.io/gcp-service-account":"ws-{{ .UserEmail }}"}"#,
    ]);
    let ada = server
        .ok(&[
            "users",
            "create",
            "ada",
            "--email",
            "ada@example.com",
            "--org",
            "default",
        ])
        .trim()
        .to_owned();
    server.refused(
        &["users", "create", "bad", "--email", "not an address"],
        "email: \"not an address\" is not an e-mail address",
    );
    let data = tmp.0.join("eu");
    let mut p = start_provider(&server, &token, &data);
    wait_until("eu ready", Duration::from_secs(15), || {
        status(&server, "eu").0 == "ready"
    });
    let as_ada = |args: &[&str]| {
        let mut c = server.cmd(args);
        c.env("PERIGEE_TOKEN", &ada);
        c
    };
    let out = as_ada(&["create", "far", "--provider", "eu"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ada_ws = || -> serde_json::Value {
        let out = as_ada(&["ls", "-o", "json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .and_then(|a| a.iter().find(|w| w["name"] == "far").cloned())
            .unwrap_or_default()
    };
    wait_until(
        "the provider's agent connects",
        Duration::from_secs(20),
        || ada_ws()["agent_connected"] == true,
    );
    let w = ada_ws();
    assert_eq!(
        (&w["provider"], &w["status"]),
        (&serde_json::json!("eu"), &serde_json::json!("running"))
    );
    let id = w["id"].as_str().unwrap().to_owned();
    let url_file = data.join("workspaces").join(&id).join("agent-url");
    assert_eq!(std::fs::read_to_string(&url_file).unwrap(), override_url);
    // The settings reach the provisioner, the annotation rendered for the owner.
    let pod_file = data.join("workspaces").join(&id).join("kubernetes.json");
    wait_until("kubernetes.json", Duration::from_secs(10), || {
        pod_file.exists()
    });
    let pod: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(data.join("workspaces").join(&id).join("kubernetes.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(pod["storage_class"], "fast-ssd");
    assert_eq!(
        pod["pod_node_selector"],
        serde_json::json!({"pool": "workspaces"})
    );
    assert_eq!(
        pod["service_account_annotations"]["iam.gke.io/gcp-service-account"],
        "ws-ada@example.com"
    );
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
            ["weight"],
        1
    );
    // A tunnel reaches a port next to that agent.
    let echo = crate::harness::echo_server();
    let out =
        crate::harness::run_with_stdin(as_ada(&["tunnel", "far", &echo.to_string()]), b"via eu");
    assert_eq!(
        out.stdout,
        b"via eu",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Deleted on the control plane: the provider removes it.
    let out = as_ada(&["delete", "far"]).output().unwrap();
    assert!(out.status.success());
    wait_until(
        "workspace removed by the provider",
        Duration::from_secs(15),
        || !data.join("workspaces").join(&id).exists(),
    );
    let _ = p.kill();
    let _ = p.wait();
}
