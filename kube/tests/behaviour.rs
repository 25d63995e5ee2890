//! One behaviour suite for every provisioner: the local one (a directory and an agent
//! process) and the Kubernetes one (through a server speaking the Kubernetes API). Both
//! create, report running, stop keeping the workspace, start again and delete, every step
//! idempotent; the Kubernetes one also reports a pod stuck on its image or unschedulable.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use perigee_kube::spec::PodConfig;
use perigee_kube::KubeProvisioner;
use perigee_provision::{Provisioner, WorkspaceSpec, WorkspaceState};
use relay_core::token::Secret;
use serde_json::json;

fn spec(id: &str, settings: serde_json::Value) -> WorkspaceSpec {
    WorkspaceSpec {
        owner: String::new(),
        id: id.into(),
        name: format!("ws-{id}"),
        owner_email: "ada@example.com".into(),
        agent_token: Secret::new("pga_test_token"),
        agent_url: "https://eu.example.com".into(),
        pod_settings: settings,
    }
}

async fn wait_state(p: &dyn Provisioner, id: &str, want: &str) -> WorkspaceState {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = p.state(id).await.unwrap();
        if s.as_str() == want {
            return s;
        }
        assert!(Instant::now() < deadline, "{id}: {s:?}, not {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The suite every provisioner passes.
async fn behaviour(p: &dyn Provisioner) {
    let ws = spec("a1b2c3", json!({}));
    assert_eq!(p.state("a1b2c3").await.unwrap(), WorkspaceState::Missing);
    p.create(&ws).await.unwrap();
    p.create(&ws).await.unwrap();
    wait_state(p, "a1b2c3", "running").await;
    assert_eq!(p.list().await.unwrap(), vec!["a1b2c3".to_owned()]);

    p.stop("a1b2c3").await.unwrap();
    wait_state(p, "a1b2c3", "stopped").await;
    p.stop("a1b2c3").await.unwrap();
    assert_eq!(
        p.list().await.unwrap(),
        vec!["a1b2c3".to_owned()],
        "kept while stopped"
    );

    p.start(&ws).await.unwrap();
    p.start(&ws).await.unwrap();
    wait_state(p, "a1b2c3", "running").await;

    p.delete("a1b2c3").await.unwrap();
    wait_state(p, "a1b2c3", "missing").await;
    p.delete("a1b2c3").await.unwrap();
    assert!(p.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_local_provisioner_passes_the_suite() {
    let root = std::env::temp_dir().join(format!("perigee-kube-local-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    // An "agent" that just runs: the suite is about the provisioner's bookkeeping.
    let exe = root.join("fake-perigee");
    std::fs::write(&exe, "#!/bin/sh\nexec sleep 60\n").unwrap();
    std::fs::set_permissions(&exe, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let p = perigee_provision::LocalProvisioner::new(perigee_provision::LocalProvisionerConfig {
        root: root.join("workspaces"),
        exe,
        agent_url: "https://127.0.0.1:1".into(),
        ca_cert: None,
        exec_prefix: Vec::new(),
        isolation: None,
        single_user: false,
    });
    std::fs::create_dir_all(root.join("workspaces")).unwrap();
    behaviour(&p).await;
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn the_kubernetes_provisioner_passes_the_suite() {
    let (api, url) = common::FakeApi::start().await;
    let cfg = PodConfig {
        namespace: "workspaces".into(),
        ..PodConfig::default()
    };
    let p = KubeProvisioner::new(common::client(&url), cfg);
    behaviour(&p).await;
    // Stopping deleted the pod only; deleting removed everything.
    let calls = api.calls.lock().unwrap().clone();
    let deletes: Vec<&String> = calls.iter().filter(|c| c.starts_with("DELETE")).collect();
    assert!(
        deletes
            .iter()
            .any(|c| c.contains("persistentvolumeclaims/perigee-ws-a1b2c3-home")),
        "{calls:?}"
    );
    for kind in [
        "pods",
        "secrets",
        "persistentvolumeclaims",
        "serviceaccounts",
    ] {
        assert!(
            api.names(kind).is_empty(),
            "{kind} left: {:?}",
            api.names(kind)
        );
    }
}

#[tokio::test]
async fn a_pod_that_cannot_run_is_a_failed_workspace_with_the_reason() {
    let (_api, url) = common::FakeApi::start().await;
    let bad_image = KubeProvisioner::new(
        common::client(&url),
        PodConfig {
            namespace: "ws".into(),
            image: "registry.example.com/no-such-image:1".into(),
            ..PodConfig::default()
        },
    );
    bad_image.create(&spec("img", json!({}))).await.unwrap();
    let s = wait_state(&bad_image, "img", "failed").await;
    assert!(
        s.message()
            .unwrap()
            .starts_with("ErrImagePull: failed to pull image"),
        "{s:?}"
    );

    let p = KubeProvisioner::new(
        common::client(&url),
        PodConfig {
            namespace: "ws".into(),
            ..PodConfig::default()
        },
    );
    p.create(&spec(
        "sched",
        json!({ "pod_node_selector": { "pool": "nowhere" } }),
    ))
    .await
    .unwrap();
    let s = wait_state(&p, "sched", "failed").await;
    assert!(
        s.message().unwrap().starts_with("Unschedulable: 0/3 nodes"),
        "{s:?}"
    );
}

#[tokio::test]
async fn an_unreachable_api_server_is_an_error_not_a_state() {
    let p = KubeProvisioner::new(common::client("http://127.0.0.1:1"), PodConfig::default());
    let e = p.state("x").await.unwrap_err();
    assert!(e.to_string().contains("reading the pod"), "{e}");
    let e = p.create(&spec("x", json!({}))).await.unwrap_err();
    assert!(
        e.to_string().contains("creating the agent token secret"),
        "{e}"
    );
}
