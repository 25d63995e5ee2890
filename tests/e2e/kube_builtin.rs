//! `perigee server --provisioner kubernetes` (what the perigee chart runs): the built-in
//! provider's workspaces are pods in the control plane's own cluster — here a server
//! speaking the Kubernetes API (kube/tests/common) — never processes of the control plane;
//! and no provider's workspaces may run as the provider's own service account.

use std::time::Duration;

use crate::fake_k8s::FakeApi;
use crate::harness::{wait_until, Server, TempDir};

fn kubeconfig(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\n"
        ),
    )
    .expect("kubeconfig");
    path
}

#[test]
fn built_in_workspaces_are_pods_in_the_control_planes_cluster() {
    let tmp = TempDir::new("kube-builtin");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let (api, url) = rt.block_on(FakeApi::start());
    let kc = kubeconfig(&tmp.0, &url);
    let kc = kc.to_str().expect("path");
    let server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[
            ("KUBECONFIG", kc),
            ("PERIGEE_SERVICE_ACCOUNT", "perigee-cp"),
        ],
        &[
            "--provisioner",
            "kubernetes",
            "--workspace-namespace",
            "dev-ws",
        ],
    );
    // A member creates one: pods are isolated by the cluster, so anyone may.
    let bob = server.ok(&["users", "create", "bob", "--org", "default"]);
    let as_bob = |args: &[&str]| {
        let o = server
            .cmd(args)
            .env("PERIGEE_TOKEN", bob.trim())
            .stdin(std::process::Stdio::null())
            .output()
            .expect("perigee");
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    as_bob(&["create", "w"]);
    let list: serde_json::Value = serde_json::from_str(&as_bob(&["ls", "-o", "json"])).expect("ls");
    let w = &list[0];
    let id = w["id"].as_str().expect("id").to_owned();
    assert!(
        w["agent_pid"].is_null(),
        "no agent process on the control plane's host: {w}"
    );
    let pod_name = format!("perigee-ws-{id}");
    let mut pod = None;
    wait_until("the workspace's pod", Duration::from_secs(10), || {
        pod = api.object("pods", "dev-ws", &pod_name);
        pod.is_some()
    });
    let pod = pod.expect("pod");
    let c = &pod["spec"]["containers"][0];
    assert!(
        c["env"].to_string().contains(&server.url),
        "the agent dials the control plane's access URL: {}",
        c["env"]
    );
    assert_eq!(
        c["securityContext"]["capabilities"]["drop"],
        serde_json::json!(["ALL"])
    );
    assert_eq!(pod["spec"]["automountServiceAccountToken"], false);
    assert!(api
        .object("secrets", "dev-ws", &format!("perigee-ws-{id}-agent"))
        .is_some());
    let local = server.data().join("workspaces");
    assert!(
        std::fs::read_dir(&local).map_or(true, |mut d| d.next().is_none()),
        "nothing of the workspace runs in the control plane's data directory"
    );

    // The attack: an admin (or a site manager) names the control plane's own account for
    // workspaces; the API refuses, saying why.
    server.refused(
        &[
            "providers",
            "edit",
            "built-in",
            "--service-account",
            "perigee-cp",
        ],
        "is the service account the provider itself runs as",
    );
    server.ok(&[
        "providers",
        "edit",
        "built-in",
        "--service-account",
        "workspace-runner",
    ]);

    // Stop and delete reach the cluster.
    as_bob(&["stop", "w"]);
    wait_until("the pod to go on stop", Duration::from_secs(10), || {
        api.object("pods", "dev-ws", &pod_name).is_none()
    });
    assert!(
        api.object("secrets", "dev-ws", &format!("perigee-ws-{id}-agent"))
            .is_some(),
        "the token stays"
    );
    as_bob(&["start", "w"]);
    wait_until("the pod to come back", Duration::from_secs(10), || {
        api.object("pods", "dev-ws", &pod_name)
            .is_some_and(|p| p["spec"]["serviceAccountName"] == "workspace-runner")
    });
    as_bob(&["delete", "w"]);
    wait_until("everything of w to go", Duration::from_secs(10), || {
        api.object("pods", "dev-ws", &pod_name).is_none()
            && api
                .object("secrets", "dev-ws", &format!("perigee-ws-{id}-agent"))
                .is_none()
    });
}
