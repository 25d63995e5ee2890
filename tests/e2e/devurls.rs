//! `perigee urls`: sharing levels capped by the deployment's maximum, named URLs unique per
//! user, addresses under the edge's dev URL host, and shares gone with their workspace.

use crate::harness::{Server, TempDir};

#[test]
fn urls_are_shared_within_the_deployments_limits() {
    let tmp = TempDir::new("devurls");
    let server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[],
        &[
            "--devurl-host",
            "*.Dev.Test",
            "--devurl-max-access",
            "authed",
        ],
    );
    server.ok(&["create", "ws"]);
    server.ok(&["create", "ws2"]);
    let port = server.addr.port();

    // Private by default; the address is under the dev URL host, on the edge's port.
    let url = server.ok(&["urls", "create", "ws", "8080"]);
    assert_eq!(
        url.trim(),
        format!("https://8080--ws--admin.dev.test:{port}")
    );
    // Above the maximum: refused, and nothing changes.
    server.refused(
        &["urls", "create", "ws", "8080", "--access", "public"],
        "allows dev URLs up to \"authed\"",
    );
    let url = server.ok(&[
        "urls", "create", "ws", "3000", "--access", "org", "--name", "docs", "--https",
    ]);
    assert_eq!(url.trim(), format!("https://docs--admin.dev.test:{port}"));
    // A name is one per user: another workspace's port cannot take it.
    server.refused(
        &["urls", "create", "ws2", "3000", "--name", "docs"],
        "named \"docs\" already",
    );
    server.refused(
        &["urls", "create", "ws2", "3000", "--name", "a--b"],
        "single hyphens",
    );
    server.refused(&["urls", "create", "ws", "0"], "port must be 1-65535");
    server.ok(&["urls", "create", "ws2", "5000", "--access", "authed"]);

    let list: serde_json::Value =
        serde_json::from_str(&server.ok(&["urls", "ls", "-o", "json"])).unwrap();
    let got: Vec<(String, u64, String)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["workspace"].as_str().unwrap().to_owned(),
                u["port"].as_u64().unwrap(),
                u["access"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("ws".into(), 3000, "org".into()),
            ("ws".into(), 8080, "private".into()),
            ("ws2".into(), 5000, "authed".into()),
        ]
    );
    assert!(server
        .ok(&["urls", "ls", "ws"])
        .contains("docs--admin.dev.test"));

    // Removing: once, then 404; a deleted workspace takes its shares with it.
    server.ok(&["urls", "rm", "ws", "8080"]);
    server.refused(&["urls", "rm", "ws", "8080"], "is not shared");
    server.ok(&["delete", "ws2"]);
    let list = server.ok(&["urls", "ls"]);
    assert!(!list.contains("ws2"), "{list}");

    // Another user sees none of these and cannot share the admin's workspace.
    let bob = server
        .ok(&["users", "create", "bob", "--org", "default"])
        .trim()
        .to_owned();
    let out = server
        .cmd(&["urls", "ls", "-o", "json"])
        .env("PERIGEE_TOKEN", &bob)
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let out = server
        .cmd(&["urls", "create", "ws", "3000"])
        .env("PERIGEE_TOKEN", &bob)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no workspace named \"ws\""));
}
