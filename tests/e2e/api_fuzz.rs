//! The OpenAPI document against the implementation: schemathesis (from PyPI) generates
//! requests from `/api/v2/openapi.json`, valid and invalid, for every operation, as an admin;
//! no response may be a 5xx or break its documented schema, status code or content type.

use std::process::Command;
use std::time::Duration;

use crate::harness::{wait_until, TempDir};
use crate::providers::{create_provider, start_named, start_provider};

/// schemathesis: `PERIGEE_SCHEMATHESIS`, else on PATH (`.ci/run` installs it in a venv).
fn schemathesis() -> String {
    if let Ok(p) = std::env::var("PERIGEE_SCHEMATHESIS") {
        return p;
    }
    let found = Command::new("schemathesis").arg("--version").output();
    match found {
        Ok(o) if o.status.success() => "schemathesis".into(),
        _ => panic!(
            "schemathesis not found: `.ci/run` installs it (pip install schemathesis), or set PERIGEE_SCHEMATHESIS"
        ),
    }
}

#[test]
fn the_openapi_document_holds_under_schemathesis() {
    let st = schemathesis();
    let tmp = TempDir::new("api-fuzz");
    let (server, port) = start_named(&tmp);
    // Something to read and edit: a ready remote provider.
    let token = create_provider(&server, port, "eu", "https://10.0.0.1:6443");
    let mut p = start_provider(&server, &token, &tmp.0.join("eu"));
    wait_until("eu ready", Duration::from_secs(15), || {
        server.ok(&["providers", "ls"]).contains("ready")
    });

    // An admin of its own: the stateful phase follows links from the token list to
    // `DELETE …/tokens/{id}` and may revoke any token of the user it runs as; the test's
    // own calls below keep the first admin's.
    let st_token = server
        .ok(&[
            "users", "create", "fuzzer", "--role", "admin", "--org", "default",
        ])
        .trim()
        .to_owned();
    let out = Command::new(&st)
        .args(["run", &format!("{}/api/v2/openapi.json", server.url)])
        .args(["--url", &server.url])
        .arg("--tls-verify")
        .arg(server.data().join("tls/ca.pem"))
        .args(["-H", &format!("Authorization: Bearer {st_token}")])
        .args([
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance",
        ])
        // One worker: hypothesis parses lambdas with `ast` and CPython 3.11 can fail doing
        // that from two threads at once ("AST constructor recursion depth mismatch").
        .args(["--max-examples", "20", "--workers", "1"])
        .args(["--report-dir"])
        .arg(tmp.0.join("schemathesis"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let tail: Vec<&str> = stdout.lines().rev().take(200).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{}\n{}",
        tail.join("\n"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    // The server is still up.
    server.ok(&["providers", "ls"]);
    let _ = p.kill();
    let _ = p.wait();
}
