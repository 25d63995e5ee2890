//! Workspace providers through the CLI: the built-in provider, creating a remote one (with
//! the hostname, scheme and cluster-address rules), the Helm command, and refusals that name
//! the field and change nothing.

use crate::harness::{free_port, Server, TempDir};

#[test]
fn providers_are_created_by_the_rules() {
    let tmp = TempDir::new("providers");
    // Providers need a DNS name to be subdomains of: `localhost` resolves here.
    let port = free_port("127.0.0.1");
    let access = format!("https://localhost:{port}");
    let server = Server::start_full(
        &tmp.0,
        &format!("127.0.0.1:{port}"),
        &[],
        &[],
        &["--access-url", &access],
    );
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
