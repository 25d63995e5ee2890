//! Organizations, users and site roles through the CLI: who may do what, and refusals that
//! name the wrong field and change nothing.

use std::time::Duration;

use crate::harness::Server;

/// Runs a command as another user; returns (success, stdout, stderr).
fn as_user(server: &Server, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = server
        .cmd(args)
        .env("PERIGEE_TOKEN", token)
        .output()
        .expect("run perigee");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).expect("json")
}

#[test]
fn organizations_users_and_roles() {
    let server = Server::start();
    server.ok(&["orgs", "create", "eng"]);
    server.refused(
        &["orgs", "create", "eng"],
        "name: an organization named \"eng\" exists",
    );
    server.refused(&["orgs", "create", "Bad_Name"], "invalid organization name");

    let bob = server.ok(&["users", "create", "bob", "--org", "eng"]);
    let bob = bob.trim();
    assert!(bob.starts_with("pgt_"), "{bob}");
    server.refused(
        &["users", "create", "x", "--role", "king"],
        "role: \"king\" is not a site role",
    );
    server.refused(
        &["users", "create", "y", "--org", "nope"],
        "orgs: no organization named \"nope\"",
    );
    server.refused(
        &["users", "create", "bob"],
        "username: a user named \"bob\" exists",
    );
    let users = json(&server.ok(&["users", "ls", "-o", "json"]));
    let names: Vec<&str> = users
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(names, ["admin", "bob"], "refused requests created nothing");
    let b = users
        .as_array()
        .expect("list")
        .iter()
        .find(|u| u["username"] == "bob")
        .cloned();
    assert_eq!(b.expect("bob")["orgs"], serde_json::json!(["eng"]));

    // A member: creates workspaces in their org only, manages nothing.
    let (ok, _, err) = as_user(&server, bob, &["create", "dev"]);
    assert!(ok, "{err}");
    let (ok, out, _) = as_user(&server, bob, &["ls", "-o", "json"]);
    assert!(ok);
    assert_eq!(json(&out)[0]["org"], "eng");
    let (ok, _, err) = as_user(&server, bob, &["create", "dev2", "--org", "default"]);
    assert!(
        !ok && err.contains("not a member of organization \"default\""),
        "{err}"
    );
    let (ok, _, err) = as_user(&server, bob, &["orgs", "create", "mine"]);
    assert!(
        !ok && err.contains("only admin can create organizations") && err.contains("403"),
        "{err}"
    );
    let (ok, _, err) = as_user(&server, bob, &["users", "ls"]);
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, out, _) = as_user(&server, bob, &["orgs", "ls", "-o", "json"]);
    assert!(ok);
    assert_eq!(
        json(&out).as_array().map(Vec::len),
        Some(1),
        "members see their orgs: {out}"
    );

    // The admin is in "default" only: workspaces go there; in two orgs they must choose.
    server.ok(&["create", "ops"]);
    assert_eq!(server.workspace("ops")["org"], "default");
    server.ok(&["orgs", "add-member", "eng", "admin"]);
    server.refused(&["create", "w2"], "several organizations (default, eng)");
    server.ok(&["create", "w2", "--org", "eng"]);
    let orgs = json(&server.ok(&["orgs", "ls", "-o", "json"]));
    let eng = orgs
        .as_array()
        .and_then(|a| a.iter().find(|o| o["name"] == "eng").cloned())
        .expect("eng");
    assert_eq!(
        (eng["members"].as_i64(), eng["workspaces"].as_i64()),
        (Some(2), Some(2))
    );
    server.wait_agent("w2", Duration::from_secs(20), None);
}
