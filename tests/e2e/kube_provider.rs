//! `perigee workspace-provider --provisioner kubernetes` against a server speaking the
//! Kubernetes API (kube/tests/common): a workspace created with `perigee create` becomes a
//! pod, a volume claim and a secret; the pod's state reaches `perigee ls`, including why a
//! pod cannot be scheduled; a deleted workspace takes its objects along.

use std::time::Duration;

use crate::fake_k8s::FakeApi;
use crate::harness::{wait_until, TempDir};
use crate::providers::{create_provider, start_named};

fn workspace(server: &crate::harness::Server, name: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(&server.ok(&["ls", "-o", "json"])).unwrap();
    v.as_array()
        .and_then(|a| a.iter().find(|w| w["name"] == name).cloned())
        .unwrap_or_default()
}

#[test]
fn workspaces_become_pods_and_their_state_reaches_the_cli() {
    let tmp = TempDir::new("kube-provider");
    let (server, port) = start_named(&tmp);
    let token = create_provider(&server, port, "k8s", "https://10.0.0.1:6443");
    server.ok(&[
        "providers",
        "edit",
        "k8s",
        "--org-add",
        "default",
        "--storage-class",
        "fast-ssd",
    ]);

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (api, url) = rt.block_on(FakeApi::start());
    let kubeconfig = tmp.0.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             users:\n- name: fake\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: workspaces\n\
             current-context: fake\n"
        ),
    )
    .unwrap();
    let data = tmp.0.join("k8s");
    let mut deployment = crate::providers::start_provider_with(
        &server,
        &token,
        &data,
        &[
            // No --workspace-namespace: the kubeconfig context's namespace.
            "--provisioner",
            "kubernetes",
            "--workspace-image",
            "registry.example.com/dev:1",
            "--home-size",
            "20Gi",
        ],
        &[
            ("KUBECONFIG", kubeconfig.as_path()),
            (
                "PERIGEE_SERVICE_ACCOUNT",
                std::path::Path::new("perigee-provider"),
            ),
        ],
    );

    server.ok(&["create", "w", "--provider", "k8s"]);
    let id = workspace(&server, "w")["id"].as_str().unwrap().to_owned();
    // The provider reported the account it runs as: no workspace may be given it.
    wait_until(
        "the provider's own account is known",
        Duration::from_secs(15),
        || {
            let list: serde_json::Value =
                serde_json::from_str(&server.ok(&["providers", "ls", "-o", "json"])).unwrap();
            list.as_array().is_some_and(|l| {
                l.iter()
                    .any(|p| p["own_service_account"] == "perigee-provider")
            })
        },
    );
    server.refused(
        &[
            "providers",
            "edit",
            "k8s",
            "--service-account",
            "perigee-provider",
        ],
        "is the service account the provider itself runs as",
    );
    wait_until(
        "the provider reports w running",
        Duration::from_secs(15),
        || workspace(&server, "w")["provider_state"] == "running",
    );
    let pod = api
        .object("pods", "workspaces", &format!("perigee-ws-{id}"))
        .expect("the pod");
    let c = &pod["spec"]["containers"][0];
    assert_eq!(c["image"], "registry.example.com/dev:1");
    assert!(
        c["env"].to_string().contains(&server.url),
        "the agent dials its home edge: {}",
        c["env"]
    );
    let pvc = api
        .object(
            "persistentvolumeclaims",
            "workspaces",
            &format!("perigee-ws-{id}-home"),
        )
        .expect("the home claim");
    assert_eq!(pvc["spec"]["storageClassName"], "fast-ssd");
    assert_eq!(pvc["spec"]["resources"]["requests"]["storage"], "20Gi");
    let secret = api
        .object("secrets", "workspaces", &format!("perigee-ws-{id}-agent"))
        .expect("the agent token secret");
    assert!(secret["data"]["agent-token"]
        .as_str()
        .is_some_and(|t| t.len() > 20));

    // Stopped: the pod goes, the home and the token stay; connecting is refused with what
    // to do. Started: the pod is back.
    server.ok(&["stop", "w"]);
    wait_until("w reported stopped", Duration::from_secs(15), || {
        workspace(&server, "w")["provider_state"] == "stopped"
    });
    assert!(!api.names("pods").iter().any(|n| n.contains(&id)));
    assert!(api
        .names("persistentvolumeclaims")
        .iter()
        .any(|n| n.contains(&id)));
    assert!(api.names("secrets").iter().any(|n| n.contains(&id)));
    server.refused(
        &["tunnel", "w", "22"],
        "is stopped: start it with `perigee start w`",
    );
    server.ok(&["start", "w"]);
    wait_until("w running again", Duration::from_secs(15), || {
        workspace(&server, "w")["provider_state"] == "running"
    });
    assert!(api.names("pods").iter().any(|n| n.contains(&id)));

    // A pod no node can take: failed, and `perigee ls` says why.
    server.ok(&[
        "providers",
        "edit",
        "k8s",
        "--pod-node-selector",
        r#"{"pool":"nowhere"}"#,
    ]);
    server.ok(&["create", "stuck", "--provider", "k8s"]);
    wait_until("stuck is reported failed", Duration::from_secs(15), || {
        workspace(&server, "stuck")["provider_state"] == "failed"
    });
    let out = server.run(&["ls"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let why = String::from_utf8_lossy(&out.stderr);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("stuck") && l.contains("failed")),
        "{table}"
    );
    assert!(
        why.contains("stuck: failed: Unschedulable: 0/3 nodes are available"),
        "{why}"
    );

    // Deleted on the control plane: every object goes.
    server.ok(&["delete", "w"]);
    wait_until("w's objects removed", Duration::from_secs(15), || {
        !api.names("pods").iter().any(|n| n.contains(&id))
            && !api.names("secrets").iter().any(|n| n.contains(&id))
            && !api
                .names("persistentvolumeclaims")
                .iter()
                .any(|n| n.contains(&id))
    });
    let _ = deployment.kill();
    let _ = deployment.wait();
}
