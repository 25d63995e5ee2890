//! The Helm charts: `helm lint --strict` and `helm template` for each chart, with default
//! values and (the workspace provider) with the values `perigee providers create` prints;
//! every rendered manifest validated against the Kubernetes API schema
//! (`kubernetes-validate --strict`); chart versions follow the binary's. Also the provider's
//! probe endpoints.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::harness::{free_port, wait_until, TempDir};
use crate::providers::{create_provider, start_named};

/// A tool from `env` (set by `.ci/run`), else on the PATH.
fn tool(env: &str, name: &str) -> PathBuf {
    match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => {
            let found = std::env::var_os("PATH").and_then(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            });
            found.unwrap_or_else(|| panic!("{name} not found: `.ci/run` installs it, or set {env}"))
        }
    }
}

fn charts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts")
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Renders `chart` with `sets` and validates every manifest; returns the manifests.
fn render_and_validate(tmp: &Path, chart: &str, sets: &[(String, String)]) -> String {
    let helm = tool("PERIGEE_HELM", "helm");
    let mut c = Command::new(&helm);
    c.args(["template", "perigee-test"])
        .arg(charts().join(chart))
        .args(["--namespace", "perigee"]);
    for (k, v) in sets {
        c.arg("--set-string").arg(format!("{k}={v}"));
    }
    let yaml = run(&mut c);
    let file = tmp.join(format!("{chart}-{}.yaml", sets.len()));
    std::fs::write(&file, &yaml).unwrap();
    let out = Command::new(tool("PERIGEE_KUBE_VALIDATE", "kubernetes-validate"))
        .args(["--strict", "--quiet"])
        .arg(&file)
        .output()
        .expect("kubernetes-validate");
    assert!(
        out.status.success(),
        "{chart} does not validate:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let kinds = yaml.matches("\nkind: ").count();
    assert!(kinds >= 2, "{chart}: {kinds} manifests\n{yaml}");
    yaml
}

#[test]
fn charts_lint_render_and_validate_with_defaults_and_the_printed_values() {
    let tmp = TempDir::new("charts");
    let helm = tool("PERIGEE_HELM", "helm");
    let version = env!("CARGO_PKG_VERSION");
    for chart in ["perigee", "satellite", "workspace-provider"] {
        let meta = std::fs::read_to_string(charts().join(chart).join("Chart.yaml")).unwrap();
        assert!(
            meta.contains(&format!("\nversion: {version}\n"))
                && meta.contains(&format!("\nappVersion: \"{version}\"\n")),
            "{chart}'s Chart.yaml does not follow the binary's version {version}:\n{meta}"
        );
        run(Command::new(&helm)
            .args(["lint", "--strict"])
            .arg(charts().join(chart)));
        let yaml = render_and_validate(&tmp.0, chart, &[]);
        // Hardened by default: non-root, no privilege escalation, read-only root, probes,
        // resource requests.
        for needle in [
            "runAsNonRoot: true",
            "allowPrivilegeEscalation: false",
            "readOnlyRootFilesystem: true",
            "readinessProbe:",
            "livenessProbe:",
            "requests:",
            &format!("ghcr.io/perigee-dev/perigee:{version}"),
        ] {
            assert!(yaml.contains(needle), "{chart}: no {needle:?}\n{yaml}");
        }
    }

    // The control plane with PostgreSQL from a Secret and two replicas; two replicas on
    // SQLite are refused with the reason.
    let yaml = render_and_validate(
        &tmp.0,
        "perigee",
        &[
            ("replicaCount".into(), "2".into()),
            ("postgres.existingSecret".into(), "perigee-db".into()),
        ],
    );
    assert!(
        yaml.contains("replicas: 2") && yaml.contains("name: perigee-db"),
        "{yaml}"
    );
    // Each replica tells the others where it is: its pod's own address.
    assert!(
        yaml.contains("name: PERIGEE_REPLICA_URL\n              value: \"https://$(POD_IP):8443\"")
            && yaml.contains("fieldPath: status.podIP"),
        "{yaml}"
    );
    assert!(
        !yaml.contains("PersistentVolumeClaim"),
        "no SQLite volume with PostgreSQL"
    );
    let out = Command::new(&helm)
        .args(["template", "t"])
        .arg(charts().join("perigee"))
        .args(["--set", "replicaCount=2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs PostgreSQL"));

    // The satellite's Service carries TCP 443 and UDP 443 (QUIC) and 3478 (TURN).
    let yaml = render_and_validate(
        &tmp.0,
        "satellite",
        &[
            ("satellite.token".into(), "pgs_test".into()),
            ("ingress.enabled".into(), "true".into()),
            ("ingress.host".into(), "eu.example.com".into()),
        ],
    );
    for port in [
        "port: 443\n      targetPort: https\n      protocol: TCP",
        "port: 443\n      targetPort: quic\n      protocol: UDP",
        "port: 3478\n      targetPort: turn\n      protocol: UDP",
        "kind: Ingress",
    ] {
        assert!(yaml.contains(port), "satellite: no {port:?}\n{yaml}");
    }

    // The workspace provider with exactly what `perigee providers create` prints.
    let (server, port) = start_named(&tmp);
    let printed: serde_json::Value = serde_json::from_str(&server.ok(&[
        "providers",
        "create",
        "eu",
        "--hostname",
        &format!("https://eu.localhost:{port}"),
        "--cluster-address",
        "https://10.0.0.1:6443",
        "--namespace",
        "workspaces",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(printed["helm"]["version"], version);
    let sets: Vec<(String, String)> = printed["helm"]["set"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect();
    for key in [
        "provider.token",
        "provider.accessURL",
        "ingress.host",
        "provider.clusterAddress",
        "controlPlane.accessURL",
        "provider.namespace",
    ] {
        assert!(
            sets.iter().any(|(k, _)| k == key),
            "{key} not printed: {sets:?}"
        );
    }
    let mut with_ingress = sets.clone();
    with_ingress.push(("ingress.enabled".into(), "true".into()));
    let yaml = render_and_validate(&tmp.0, "workspace-provider", &with_ingress);
    let token = printed["token"].as_str().unwrap();
    assert!(
        yaml.contains(&format!("token: \"{token}\"")),
        "token in the Secret"
    );
    assert!(
        yaml.contains(&format!("value: \"{}\"", server.url)),
        "control plane URL"
    );
    assert!(
        yaml.contains("host: \"eu.localhost\""),
        "ingress host\n{yaml}"
    );
    assert!(yaml.contains("https://10.0.0.1:6443"), "cluster address");
    // It runs workspaces as pods in the namespace the command names.
    assert!(
        yaml.contains("name: PERIGEE_PROVISIONER\n              value: kubernetes")
            && yaml
                .contains("name: PERIGEE_WORKSPACE_NAMESPACE\n              value: \"workspaces\""),
        "{yaml}"
    );
    assert!(yaml.contains(&format!("ghcr.io/perigee-dev/workspace:{version}")));
    // RBAC: a Role in the workspaces' namespace, limited to what the provider needs.
    assert!(
        yaml.contains("kind: Role\nmetadata:\n  name: perigee-test\n  namespace: workspaces"),
        "{yaml}"
    );
    assert!(yaml.contains(
        r#"resources: ["pods", "persistentvolumeclaims", "serviceaccounts", "secrets"]"#
    ));
    assert!(
        yaml.contains(r#"verbs: ["get", "list", "create", "delete"]"#),
        "{yaml}"
    );
    assert!(!yaml.contains("ClusterRole"), "no cluster-wide rights");
    // The printed command itself names the chart and the version.
    let command = printed["helm_command"].as_str().unwrap();
    assert!(command.contains(&format!("perigee/workspace-provider --version={version}")));
    // Its workspace pods get the NetworkPolicy, in the workspaces' namespace.
    workspace_policy_holds(&manifests(&yaml), "workspaces", "perigee");
}

/// Every manifest in `yaml`, as JSON (parsed by the PyYAML that kubernetes-validate brings).
fn manifests(yaml: &str) -> Vec<serde_json::Value> {
    let validate = tool("PERIGEE_KUBE_VALIDATE", "kubernetes-validate");
    let python = validate.with_file_name("python3");
    let mut c = Command::new(if python.exists() {
        python
    } else {
        "python3".into()
    });
    c.args([
        "-c",
        "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
    ]);
    let out = crate::harness::run_with_stdin(c, yaml.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("manifests as JSON")
}

fn find<'a>(docs: &'a [serde_json::Value], kind: &str, name_suffix: &str) -> &'a serde_json::Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.ends_with(name_suffix))
        })
        .unwrap_or_else(|| panic!("no {kind} *{name_suffix}"))
}

/// The workspaces' NetworkPolicy, field by field: workspace pods only; ingress only from
/// outside the cluster; egress to DNS, to the edges' pods and to the internet, never to the
/// cluster's ranges or metadata.
fn workspace_policy_holds(docs: &[serde_json::Value], ns: &str, edges_ns: &str) {
    let p = find(docs, "NetworkPolicy", "-workspaces");
    assert_eq!(p["metadata"]["namespace"], ns, "{p}");
    let spec = &p["spec"];
    assert_eq!(
        spec["podSelector"],
        serde_json::json!({ "matchLabels": { "app.kubernetes.io/name": "perigee-workspace" } })
    );
    assert_eq!(
        spec["policyTypes"],
        serde_json::json!(["Ingress", "Egress"])
    );
    let internal = serde_json::json!([
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "100.100.100.200/32"
    ]);
    let ingress = spec["ingress"].as_array().expect("ingress");
    assert_eq!(ingress.len(), 1, "{p}");
    assert_eq!(ingress[0]["from"][0]["ipBlock"]["cidr"], "0.0.0.0/0");
    assert_eq!(ingress[0]["from"][0]["ipBlock"]["except"], internal);
    assert!(
        ingress[0]["from"][0].get("podSelector").is_none(),
        "no pod may reach a workspace"
    );
    let egress = spec["egress"].as_array().expect("egress");
    assert_eq!(egress.len(), 3, "{p}");
    assert_eq!(
        egress[0],
        serde_json::json!({ "ports": [
            { "port": 53, "protocol": "UDP" }, { "port": 53, "protocol": "TCP" }
        ]})
    );
    assert_eq!(
        egress[1]["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        edges_ns
    );
    assert!(
        egress[1]["to"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/instance"].is_string()
    );
    assert_eq!(egress[2]["to"][0]["ipBlock"]["cidr"], "0.0.0.0/0");
    assert_eq!(egress[2]["to"][0]["ipBlock"]["except"], internal);
}

#[test]
fn the_control_plane_chart_runs_built_in_workspaces_as_pods() {
    let tmp = TempDir::new("charts-builtin");
    let yaml = render_and_validate(
        &tmp.0,
        "perigee",
        &[("workspaces.namespace".into(), "dev-workspaces".into())],
    );
    let docs = manifests(&yaml);
    let d = find(&docs, "Deployment", "perigee-test");
    let pod = &d["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "perigee-test");
    assert_eq!(pod["automountServiceAccountToken"], true);
    let env = pod["containers"][0]["env"].as_array().expect("env");
    let var = |name: &str| {
        env.iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no {name}"))
            .clone()
    };
    assert_eq!(var("PERIGEE_PROVISIONER")["value"], "kubernetes");
    assert_eq!(
        var("PERIGEE_WORKSPACE_NAMESPACE")["value"],
        "dev-workspaces"
    );
    assert_eq!(
        var("PERIGEE_SERVICE_ACCOUNT")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.serviceAccountName"
    );
    // The control plane's rights: workspace objects in the workspaces' namespace only.
    let role = find(&docs, "Role", "-workspaces");
    assert_eq!(role["metadata"]["namespace"], "dev-workspaces");
    assert_eq!(
        role["rules"],
        serde_json::json!([{ "apiGroups": [""],
            "resources": ["pods", "persistentvolumeclaims", "serviceaccounts", "secrets"],
            "verbs": ["get", "list", "create", "delete"] }])
    );
    let binding = find(&docs, "RoleBinding", "-workspaces");
    assert_eq!(binding["subjects"][0]["name"], "perigee-test");
    assert_eq!(binding["subjects"][0]["namespace"], "perigee");
    assert!(!docs
        .iter()
        .any(|d| d["kind"] == "ClusterRole" || d["kind"] == "ClusterRoleBinding"));
    workspace_policy_holds(&docs, "dev-workspaces", "perigee");
    // The policy can be turned off (a cluster without a NetworkPolicy controller).
    let yaml = render_and_validate(
        &tmp.0,
        "perigee",
        &[("networkPolicy.enabled".into(), "false".into())],
    );
    assert!(!yaml.contains("kind: NetworkPolicy"));
}

#[test]
fn the_providers_probes_follow_its_heartbeats() {
    let tmp = TempDir::new("provider-probes");
    let (mut server, port) = start_named(&tmp);
    let token = create_provider(&server, port, "eu", "https://10.0.0.1:6443");
    let health = free_port("127.0.0.1");
    let data = tmp.0.join("eu");
    let address = format!("127.0.0.1:{health}");
    let mut deployment = crate::providers::start_provider_with(
        &server,
        &token,
        &data,
        &["--health-address", &address],
        &[],
    );
    // Plain HTTP/1.0 as a kubelet probe sends it.
    let get = |path: &str| -> (u16, String) {
        use std::io::{Read as _, Write as _};
        let Ok(mut c) = std::net::TcpStream::connect(("127.0.0.1", health)) else {
            return (0, "refused".into());
        };
        let _ = write!(c, "GET {path} HTTP/1.0\r\nHost: probe\r\n\r\n");
        let mut answer = String::new();
        let _ = c.read_to_string(&mut answer);
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (status, body)
    };
    assert_eq!(get("/livez").0, 200);
    wait_until("healthz 200", Duration::from_secs(5), || {
        get("/healthz").0 == 200
    });
    // The control plane goes away: not ready after three missed intervals, still alive.
    server.stop();
    wait_until("healthz 503", Duration::from_secs(10), || {
        get("/healthz").0 == 503
    });
    let (_, why) = get("/healthz");
    assert!(why.contains("last answered"), "{why}");
    assert_eq!(get("/livez").0, 200);
    let _ = deployment.kill();
    let _ = deployment.wait();
}
