//! The built-in edge's TURN server with the credentials a connection ticket carries: coturn's
//! `turnutils_uclient` allocates and relays with them; with Networking v2 off the ticket
//! carries none.

use std::process::Command;

use crate::harness::{Server, TempDir};

fn ticket(server: &Server, ws: &str, port: u16) -> serde_json::Value {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let roots = relay_core::tls::roots(Some(&server.data().join("tls/ca.pem"))).unwrap();
        let tls = relay_core::tls::client_config(roots, &[b"http/1.1"]).unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap()
            .post(format!("{}/api/v2/workspaces/{ws}/ticket", server.url))
            .bearer_auth(server.token())
            .json(&serde_json::json!({ "ports": [port] }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
}

#[test]
fn the_edge_relays_for_ticket_holders_and_refuses_its_own_networks() {
    let tmp = TempDir::new("turn-edge");
    let turn_port = crate::harness::free_port("127.0.0.1");
    let turn_addr = format!("127.0.0.1:{turn_port}");
    // The two test clients relay to each other on loopback: allowed here explicitly.
    let server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[],
        &[
            "--turn-address",
            &turn_addr,
            "--turn-allow-peers",
            "127.0.0.0/8",
        ],
    );
    server.ok(&["create", "dev"]);
    let t = ticket(&server, "dev", 8080);
    let ice = &t["ice_servers"][0];
    assert_eq!(
        ice["urls"],
        serde_json::json!([
            format!("stun:{turn_addr}"),
            format!("turn:{turn_addr}?transport=udp")
        ])
    );
    let (user, pass) = (
        ice["username"].as_str().unwrap(),
        ice["credential"].as_str().unwrap(),
    );
    let port = turn_port.to_string();
    let out = Command::new("turnutils_uclient")
        .args([
            "-y", "-c", "-m", "2", "-n", "20", "-l", "200", "-u", user, "-w", pass,
        ])
        .args(["-p", &port, "127.0.0.1"])
        .output()
        .expect("turnutils_uclient (Debian's coturn package; `.ci/run` installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Total lost packets 0 ("), "{text}");
    let (sent, received) = testkit::uclient_totals(&text).unwrap_or_default();
    assert!(sent > 0 && sent == received, "{text}");
    // The edge's own network stays off limits: the metadata address is refused.
    let out = Command::new("turnutils_uclient")
        .args([
            "-c",
            "-n",
            "1",
            "-e",
            "169.254.169.254",
            "-u",
            user,
            "-w",
            pass,
        ])
        .args(["-p", &port, "127.0.0.1"])
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("error 403"), "{text}");
    // Networking v2 off: no ICE servers in tickets.
    server.ok(&["providers", "edit", "built-in", "--networking-v2", "off"]);
    assert!(ticket(&server, "dev", 8080).get("ice_servers").is_none());
}
