//! The objects the Kubernetes provisioner makes for a workspace, for a provider with each
//! documented setting: checked field by field, then every one validated against the
//! Kubernetes API schema (`kubernetes-validate --strict`, installed by `.ci/run`).

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use perigee_api::provider_settings::ProviderSettings;
use perigee_kube::spec::{self, PodConfig};
use perigee_provision::WorkspaceSpec;
use relay_core::token::Secret;
use serde_json::{json, Value};

fn workspace(settings: Value) -> WorkspaceSpec {
    let s: ProviderSettings = serde_json::from_value(settings).unwrap();
    WorkspaceSpec {
        owner: String::new(),
        id: "0123456789abcdef0123456789abcdef".into(),
        name: "dev".into(),
        owner_email: "ada@example.com".into(),
        agent_token: Secret::new("pga_secret"),
        agent_url: "https://eu.example.com".into(),
        pod_settings: s.pod_settings("ada@example.com"),
    }
}

fn cfg() -> PodConfig {
    PodConfig {
        namespace: "workspaces".into(),
        ..PodConfig::default()
    }
}

/// Every object of the workspace, as JSON.
fn objects(ws: &WorkspaceSpec) -> Vec<Value> {
    let c = cfg();
    let mut out = vec![
        serde_json::to_value(spec::secret(&c, ws)).unwrap(),
        serde_json::to_value(spec::pvc(&c, ws)).unwrap(),
        serde_json::to_value(spec::pod(&c, ws).unwrap()).unwrap(),
    ];
    if let Some(sa) = spec::service_account(&c, ws).unwrap() {
        out.push(serde_json::to_value(sa).unwrap());
    }
    out
}

fn validator() -> PathBuf {
    if let Some(p) = std::env::var_os("PERIGEE_KUBE_VALIDATE") {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("kubernetes-validate"))
                .find(|p| p.is_file())
        })
        .expect(
            "kubernetes-validate not found: `.ci/run` installs it, or set PERIGEE_KUBE_VALIDATE",
        )
}

/// Validates every object against the Kubernetes schema, strictly (no unknown fields).
fn validate(case: &str, objs: &[Value]) {
    let docs: Vec<String> = objs
        .iter()
        .map(|o| serde_json::to_string_pretty(o).unwrap())
        .collect();
    let file =
        std::env::temp_dir().join(format!("perigee-kube-{case}-{}.yaml", std::process::id()));
    std::fs::write(&file, docs.join("\n---\n")).unwrap();
    let out = std::process::Command::new(validator())
        .args(["--strict", "--quiet"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{case}: {}{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        docs.join("\n---\n")
    );
    let _ = std::fs::remove_file(file);
}

fn pod(objs: &[Value]) -> &Value {
    objs.iter().find(|o| o["kind"] == "Pod").unwrap()
}

fn kind<'a>(objs: &'a [Value], k: &str) -> Option<&'a Value> {
    objs.iter().find(|o| o["kind"] == k)
}

#[test]
fn defaults_run_the_agent_with_its_home_token_and_the_default_affinity() {
    let ws = workspace(json!({}));
    let objs = objects(&ws);
    validate("defaults", &objs);
    let p = pod(&objs);
    let c = &p["spec"]["containers"][0];
    assert_eq!(
        p["metadata"]["name"],
        "perigee-ws-0123456789abcdef0123456789abcdef"
    );
    assert_eq!(p["metadata"]["namespace"], "workspaces");
    assert_eq!(p["metadata"]["labels"]["com.perigee.resource"], "true");
    assert_eq!(c["args"], json!(["agent"]));
    let env: Vec<(String, String)> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().into(),
                e["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(env.contains(&("PERIGEE_AGENT_URL".into(), "https://eu.example.com".into())));
    assert!(env.contains(&(
        "PERIGEE_AGENT_TOKEN_FILE".into(),
        "/var/run/perigee/agent-token".into()
    )));
    // The token lives in a Secret, mounted read-only; never in the pod spec.
    assert!(!p.to_string().contains("pga_secret"));
    let secret = kind(&objs, "Secret").unwrap();
    assert_eq!(secret["stringData"]["agent-token"], "pga_secret");
    assert_eq!(
        p["spec"]["volumes"][1]["secret"]["secretName"],
        secret["metadata"]["name"]
    );
    assert_eq!(p["spec"]["volumes"][1]["secret"]["defaultMode"], 0o400);
    // Home on its claim; no storage class: the cluster's default.
    let pvc = kind(&objs, "PersistentVolumeClaim").unwrap();
    assert_eq!(
        p["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        pvc["metadata"]["name"]
    );
    assert!(pvc["spec"].get("storageClassName").is_none());
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "10Gi");
    // The documented default affinity, no tolerations or selector, no service account.
    assert_eq!(
        p["spec"]["affinity"],
        perigee_api::k8s_schema::default_affinity()
    );
    assert!(p["spec"].get("tolerations").is_none() && p["spec"].get("nodeSelector").is_none());
    assert!(p["spec"].get("serviceAccountName").is_none());
    assert_eq!(p["spec"]["automountServiceAccountToken"], false);
    assert!(kind(&objs, "ServiceAccount").is_none());
    assert_eq!(p["spec"]["securityContext"]["runAsNonRoot"], true);
    assert_eq!(
        p["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let c = &p["spec"]["containers"][0]["securityContext"];
    assert_eq!(c["allowPrivilegeEscalation"], false);
    assert_eq!(c["privileged"], false);
    assert_eq!(c["capabilities"]["drop"], json!(["ALL"]));
    assert!(c["capabilities"].get("add").is_none());
    assert_eq!(c["seccompProfile"]["type"], "RuntimeDefault");
}

#[test]
fn each_documented_setting_lands_where_kubernetes_reads_it() {
    // Tolerations and node selector.
    let tolerations = json!([
        { "key": "dedicated", "operator": "Equal", "value": "workspaces", "effect": "NoSchedule" },
        { "key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30 }
    ]);
    let objs = objects(&workspace(json!({ "kubernetes": {
        "pod_tolerations": tolerations, "pod_node_selector": { "pool": "workspaces", "disk": "ssd" }
    }})));
    validate("tolerations", &objs);
    assert_eq!(pod(&objs)["spec"]["tolerations"], tolerations);
    assert_eq!(
        pod(&objs)["spec"]["nodeSelector"],
        json!({ "pool": "workspaces", "disk": "ssd" })
    );

    // Annotations: a per-workspace service account, `{{.UserEmail}}` rendered for the owner.
    let objs = objects(&workspace(
        json!({ "kubernetes": { "service_account_annotations": {
            "iam.gke.io/gcp-service-account": "ws-{{ .UserEmail }}",
            "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/{{.UserEmail}}"
        }}}),
    ));
    validate("annotations", &objs);
    let sa = kind(&objs, "ServiceAccount").expect("a per-workspace service account");
    assert_eq!(
        sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"],
        "ws-ada@example.com"
    );
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        "arn:aws:iam::1:role/ada@example.com"
    );
    assert_eq!(
        pod(&objs)["spec"]["serviceAccountName"],
        sa["metadata"]["name"]
    );
    assert_eq!(pod(&objs)["spec"]["automountServiceAccountToken"], true);

    // `{}` affinity: none at all.
    let objs = objects(&workspace(json!({ "kubernetes": { "affinity": {} } })));
    validate("no-affinity", &objs);
    assert!(pod(&objs)["spec"].get("affinity").is_none());

    // A custom affinity as given.
    let affinity = json!({ "nodeAffinity": { "requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{ "matchExpressions": [{ "key": "zone", "operator": "In", "values": ["a", "b"] }] }] } } });
    let objs = objects(&workspace(
        json!({ "kubernetes": { "affinity": affinity } }),
    ));
    validate("affinity", &objs);
    assert_eq!(pod(&objs)["spec"]["affinity"], affinity);

    // Storage class on the home claim.
    let objs = objects(&workspace(
        json!({ "features": { "storage_class": "fast-ssd" } }),
    ));
    validate("storage-class", &objs);
    assert_eq!(
        kind(&objs, "PersistentVolumeClaim").unwrap()["spec"]["storageClassName"],
        "fast-ssd"
    );

    // A named service account (no annotations): used as is, none made.
    let objs = objects(&workspace(
        json!({ "features": { "service_account": "workspace-runner" } }),
    ));
    validate("service-account", &objs);
    assert_eq!(pod(&objs)["spec"]["serviceAccountName"], "workspace-runner");
    assert!(kind(&objs, "ServiceAccount").is_none());
    // No Kubernetes API token without annotations, even under a named account.
    assert_eq!(pod(&objs)["spec"]["automountServiceAccountToken"], false);
}

#[test]
fn a_workspace_never_runs_as_the_provisioners_own_account() {
    let own = PodConfig {
        own_service_account: Some("perigee-provider".into()),
        ..cfg()
    };
    // The attack: a site manager names the provider's account for every workspace.
    let ws = workspace(json!({ "features": { "service_account": "perigee-provider" } }));
    let e = spec::pod(&own, &ws).expect_err("the provider's own account");
    assert_eq!(e.field, "service_account");
    assert!(
        e.reason.contains("provider's own service account"),
        "{}",
        e.reason
    );
    // Any other account is the provider's setting to choose.
    let ws = workspace(json!({ "features": { "service_account": "workspace-runner" } }));
    assert!(spec::pod(&own, &ws).is_ok());
}
