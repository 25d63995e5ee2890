//! The rules admins rely on, through the CLI, on SQLite and on PostgreSQL (two replicas on one
//! database): allowlists, placement, cordon, the single default, settings validated as a
//! whole, rename, delete, and 20 remove-org / create-workspace races.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{free_port, wait_until, Server, TempDir};
use crate::providers::{create_provider, start_provider};

/// Two servers: on SQLite both are the same one; on PostgreSQL two replicas.
struct Deployment {
    a: Server,
    b: Option<Server>,
    port: u16,
    _pg: Option<testkit::Postgres>,
}

impl Deployment {
    fn sqlite(tmp: &TempDir) -> Self {
        let port = free_port("127.0.0.1");
        let a = start(tmp, "a", port, &[]);
        Self {
            a,
            b: None,
            port,
            _pg: None,
        }
    }

    fn postgres(tmp: &TempDir) -> Self {
        let pg = testkit::Postgres::start();
        let url = pg.create_database();
        let port = free_port("127.0.0.1");
        let a = start(tmp, "a", port, &["--postgres-url", &url]);
        let b = start(tmp, "b", free_port("127.0.0.1"), &["--postgres-url", &url]);
        // The first replica created the admin; the CLI finds the token in the data dir.
        std::fs::write(b.data().join("admin-token"), a.token()).unwrap();
        Self {
            a,
            b: Some(b),
            port,
            _pg: Some(pg),
        }
    }

    /// The replica that did not take the last write (the same server on SQLite).
    fn other(&self) -> &Server {
        self.b.as_ref().unwrap_or(&self.a)
    }
}

fn start(tmp: &TempDir, tag: &str, port: u16, extra: &[&str]) -> Server {
    let dir = tmp.0.join(tag);
    std::fs::create_dir_all(&dir).unwrap();
    // Providers' hostnames are subdomains of the access URL: `localhost` has them.
    let access = format!("https://localhost:{port}");
    let mut args = vec!["--access-url", access.as_str()];
    args.extend_from_slice(extra);
    Server::start_full(&dir, &format!("127.0.0.1:{port}"), &[], &[], &args)
}

/// Runs `perigee` as another user (a token from `perigee users create`).
fn as_user(s: &Server, token: &str, args: &[&str]) -> std::process::Output {
    s.cmd(args)
        .env("PERIGEE_TOKEN", token)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn ok_as(s: &Server, token: &str, args: &[&str]) -> String {
    let out = as_user(s, token, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused_as(s: &Server, token: &str, args: &[&str], needle: &str) {
    let out = as_user(s, token, args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} was accepted");
    assert!(
        err.contains(needle),
        "{args:?}: expected {needle:?} in {err}"
    );
}

fn provider(s: &Server, name: &str) -> Value {
    serde_json::from_str(&s.ok(&["providers", "show", name])).unwrap()
}

fn providers(s: &Server) -> Vec<Value> {
    let v: Value = serde_json::from_str(&s.ok(&["providers", "ls", "-o", "json"])).unwrap();
    v.as_array().cloned().unwrap_or_default()
}

fn rules(d: &Deployment) {
    let (a, b) = (&d.a, d.other());
    a.ok(&["orgs", "create", "eng"]);
    a.ok(&["orgs", "create", "research"]);
    let bob = a
        .ok(&["users", "create", "bob", "--org", "eng"])
        .trim()
        .to_owned();
    let carol = a
        .ok(&["users", "create", "carol", "--org", "research"])
        .trim()
        .to_owned();
    let token = create_provider(a, d.port, "eu", "https://10.0.0.1:6443");

    // Placement: pending, then ready but not allowed, then allowed.
    let create = |ws: &str| ["create", ws, "--provider", "eu"].map(str::to_owned);
    fn args(v: &[String; 4]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    refused_as(b, &bob, &args(&create("w1")), "provider \"eu\" is pending");
    let tmp_data = a.dir.join("eu-provider");
    let mut eu = start_provider(a, &token, &tmp_data);
    wait_until(
        "eu ready on the other replica",
        Duration::from_secs(15),
        || provider(b, "eu")["status"] == "ready",
    );
    refused_as(
        b,
        &bob,
        &args(&create("w1")),
        "organization \"eng\" is not on the allowlist of provider \"eu\"",
    );
    a.refused(
        &["providers", "edit", "eu", "--org-add", "nope"],
        "orgs_add: no organization named \"nope\"",
    );
    a.ok(&["providers", "edit", "eu", "--org-add", "eng"]);
    let out = as_user(b, &bob, &args(&create("w1")));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("on provider eu"));

    // An org with workspaces there stays on the allowlist.
    for edit in [
        vec!["providers", "edit", "eu", "--org-remove", "eng"],
        vec!["providers", "edit", "eu", "--orgs", ""],
        vec!["providers", "edit", "eu", "--orgs", "research"],
    ] {
        b.refused(
            &edit,
            "organization \"eng\" still has 1 workspace on provider \"eu\" (bob/w1)",
        );
    }
    assert_eq!(
        provider(a, "eu")["orgs"],
        json!(["eng"]),
        "refusals changed nothing"
    );
    let out = a.run(&["providers", "edit", "eu", "--orgs", "eng,research"]);
    assert!(out.status.success());

    // Cordon: new workspaces refused with the reason, existing ones stay.
    a.ok(&["providers", "cordon", "eu", "--reason", "node upgrade"]);
    refused_as(
        b,
        &carol,
        &args(&create("w2")),
        "provider \"eu\" is cordoned: node upgrade",
    );
    a.refused(
        &["providers", "edit", "eu", "--default"],
        "default: provider \"eu\" is cordoned",
    );
    assert_eq!(provider(b, "eu")["workspaces"], 1);
    b.ok(&["providers", "uncordon", "eu"]);
    ok_as(a, &carol, &args(&create("w2")));

    // Exactly one default; workspaces without --provider go there.
    b.ok(&["providers", "edit", "eu", "--default"]);
    let defaults: Vec<String> = providers(a)
        .iter()
        .filter(|p| p["default"] == true)
        .map(|p| p["name"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(defaults, ["eu"]);
    ok_as(b, &carol, &["create", "w3"]);
    assert_eq!(provider(a, "eu")["workspaces"], 3);

    // Settings: every feature and Kubernetes field, then refusals that name the field and
    // leave everything as it was.
    let annotations = r#"{"iam.gke.io/gcp-service-account":"{{ .UserEmail }}"}"#;
    let tolerations = r#"[{"key":"gpu","operator":"Equal","value":"yes","effect":"NoSchedule"}]"#;
    a.ok(&[
        "providers",
        "edit",
        "eu",
        "--e2e-encryption",
        "on",
        "--external-ssh",
        "off",
        "--networking-v2",
        "off",
        "--access-url",
        "https://eu-cp.localhost:8443",
        "--storage-class",
        "fast-ssd",
        "--service-account",
        "workspaces",
        "--pod-tolerations",
        tolerations,
        "--pod-node-selector",
        r#"{"pool":"workspaces"}"#,
        "--service-account-annotations",
        annotations,
        "--affinity",
        "{}",
    ]);
    let p = provider(b, "eu");
    let f = &p["settings"]["features"];
    assert_eq!(
        (
            &f["e2e_encryption"],
            &f["external_ssh"],
            &f["networking_v2"]
        ),
        (&json!(true), &json!(false), &json!(false))
    );
    assert_eq!(f["access_url"], "https://eu-cp.localhost:8443");
    assert_eq!(
        (&f["storage_class"], &f["service_account"]),
        (&json!("fast-ssd"), &json!("workspaces"))
    );
    // External SSH off: SSH tunnels to its workspaces are refused, other ports are not.
    refused_as(
        b,
        &bob,
        &["tunnel", "w1", "22"],
        "provider \"eu\" has external SSH turned off",
    );
    let k = &p["settings"]["kubernetes"];
    assert_eq!(
        k["pod_tolerations"],
        serde_json::from_str::<Value>(tolerations).unwrap()
    );
    assert_eq!(k["pod_node_selector"], json!({"pool": "workspaces"}));
    assert_eq!(
        k["service_account_annotations"],
        serde_json::from_str::<Value>(annotations).unwrap()
    );
    assert_eq!(p["effective_affinity"], json!({}));
    let k8s_file = a.dir.join("k8s.json");
    std::fs::write(&k8s_file, r#"{"affinity": null}"#).unwrap();
    a.ok(&[
        "providers",
        "edit",
        "eu",
        "--k8s-file",
        k8s_file.to_str().unwrap(),
    ]);
    let p = provider(b, "eu");
    let term = &p["effective_affinity"]["podAntiAffinity"]
        ["preferredDuringSchedulingIgnoredDuringExecution"][0];
    assert_eq!(term["weight"], 1);
    assert_eq!(
        term["podAffinityTerm"]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        term["podAffinityTerm"]["labelSelector"]["matchExpressions"][0]["key"],
        "com.perigee.resource"
    );
    let stable = |p: Value| {
        json!([
            p["name"],
            p["orgs"],
            p["default"],
            p["settings"],
            p["effective_affinity"]
        ])
    };
    let before = stable(provider(a, "eu"));
    for (flags, needle) in [
        (
            vec![
                "--name",
                "eu2",
                "--affinity",
                r#"{"podAntiAffinity":{"bogus":1}}"#,
            ],
            "kubernetes.affinity.podAntiAffinity",
        ),
        (
            vec!["--service-account-annotations", r#"{"a":"{{.UserName}}"}"#],
            "unknown template field {{.UserName}}",
        ),
        (
            vec!["--pod-tolerations", "not json"],
            "--pod-tolerations: not valid JSON",
        ),
        (
            vec!["--pod-node-selector", r#"{"bad key":"x"}"#],
            "kubernetes.pod_node_selector",
        ),
        (vec!["--access-url", "ftp://x"], "features.access_url"),
        (
            vec!["--storage-class", "Fast SSD"],
            "features.storage_class",
        ),
        (
            vec!["--name", "built-in"],
            "name: a provider named \"built-in\" already exists",
        ),
        (
            vec!["--name", "Bad_Name"],
            "name: invalid name \"Bad_Name\"",
        ),
    ] {
        let mut args = vec!["providers", "edit", "eu"];
        args.extend(flags);
        a.refused(&args, needle);
    }
    assert_eq!(
        stable(provider(b, "eu")),
        before,
        "refused edits changed nothing"
    );

    // Rename; delete refused while it holds workspaces, saying whose; built-in never.
    a.ok(&["providers", "edit", "eu", "--name", "europe"]);
    b.refused(
        &["providers", "rm", "europe"],
        "provider \"europe\" has 3 workspaces (bob/w1, carol/w2, carol/w3)",
    );
    b.refused(
        &["providers", "rm", "built-in"],
        "the built-in provider cannot be deleted",
    );
    ok_as(a, &bob, &["delete", "w1"]);
    ok_as(a, &carol, &["delete", "w2"]);
    ok_as(a, &carol, &["delete", "w3"]);
    b.ok(&["providers", "rm", "europe"]);
    let list = providers(a);
    assert_eq!(list.len(), 1);
    assert_eq!(
        list[0]["default"], true,
        "the default returns to the built-in provider"
    );
    let _ = eu.kill();
    let _ = eu.wait();
}

/// 20 rounds of "remove eng from the allowlist" racing "create a workspace of eng there":
/// after each, either the workspace exists and eng is still allowed, or neither.
fn races(d: &Deployment) {
    let (a, b) = (&d.a, d.other());
    a.ok(&["orgs", "create", "racers"]);
    let dan = a
        .ok(&["users", "create", "dan", "--org", "racers"])
        .trim()
        .to_owned();
    let token = create_provider(a, d.port, "race", "https://10.0.0.2:6443");
    let mut p = start_provider(a, &token, &a.dir.join("race-provider"));
    wait_until("race provider ready", Duration::from_secs(15), || {
        provider(b, "race")["status"] == "ready"
    });
    let (mut created, mut removed) = (0, 0);
    for i in 0..20 {
        a.ok(&["providers", "edit", "race", "--org-add", "racers"]);
        let name = format!("r{i}");
        let spawn_remove = || {
            a.cmd(&["providers", "edit", "race", "--org-remove", "racers"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let spawn_create = || {
            b.cmd(&["create", &name, "--provider", "race"])
                .env("PERIGEE_TOKEN", &dan)
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        // Alternate who starts first, so both orders of arrival are exercised.
        let (mut remove, mut create) = if i % 2 == 0 {
            let r = spawn_remove();
            (r, spawn_create())
        } else {
            let c = spawn_create();
            (spawn_remove(), c)
        };
        let create = create.wait().unwrap();
        let removed_ok = remove.wait().unwrap().success();
        let p = provider(a, "race");
        let allowed = p["orgs"]
            .as_array()
            .is_some_and(|o| o.contains(&json!("racers")));
        let count = p["workspaces"].as_i64().unwrap_or(-1);
        assert!(
            count == 0 || allowed,
            "round {i}: a workspace sits in a provider its org may not use"
        );
        assert!(
            create.success() != removed_ok,
            "round {i}: exactly one of the racers wins (create {}, remove {removed_ok})",
            create.success()
        );
        if create.success() {
            created += 1;
            ok_as(a, &dan, &["delete", &name]);
        } else {
            removed += 1;
        }
    }
    eprintln!("races: create won {created}, remove won {removed}");
    let _ = p.kill();
    let _ = p.wait();
}

#[test]
fn provider_rules_on_sqlite() {
    let tmp = TempDir::new("rules-sqlite");
    let d = Deployment::sqlite(&tmp);
    rules(&d);
    races(&d);
}

#[test]
fn provider_rules_on_postgres_with_two_replicas() {
    let tmp = TempDir::new("rules-pg");
    let d = Deployment::postgres(&tmp);
    rules(&d);
    races(&d);
}
