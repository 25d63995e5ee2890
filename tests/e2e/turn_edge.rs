//! Every edge's TURN server with the credentials a connection ticket carries: coturn's
//! `turnutils_uclient` allocates and relays with them on the built-in edge (UDP) and on a
//! satellite (TCP: the secret reached it from the control plane); with Networking v2 off the
//! ticket carries none.

use std::process::Command;
use std::time::Duration;

use crate::harness::{free_port, Satellite, Server, TempDir};

/// Runs `turnutils_uclient` relaying between two of its clients; returns its output after
/// checking that every packet came back.
fn uclient_relays(args: &[&str], user: &str, pass: &str, port: u16) -> String {
    let port = port.to_string();
    let out = Command::new("turnutils_uclient")
        .args([
            "-y", "-c", "-m", "2", "-n", "20", "-l", "200", "-u", user, "-w", pass,
        ])
        .args(args)
        .args(["-p", &port, "127.0.0.1"])
        .output()
        .expect("turnutils_uclient (Debian's coturn package; `.ci/run` installs it)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Total lost packets 0 ("), "{text}");
    let (sent, received) = testkit::uclient_totals(&text).unwrap_or_default();
    assert!(sent > 0 && sent == received, "{text}");
    text
}

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
    assert_eq!(ice["edge"], "primary");
    let https = server.url.trim_start_matches("https://");
    assert_eq!(
        ice["urls"],
        serde_json::json!([
            format!("stun:{turn_addr}"),
            format!("turn:{turn_addr}?transport=udp"),
            format!("turn:{turn_addr}?transport=tcp"),
            format!("turns:{https}?transport=tcp"),
        ])
    );
    let (user, pass) = (
        ice["username"].as_str().unwrap(),
        ice["credential"].as_str().unwrap(),
    );
    let port = turn_port.to_string();
    uclient_relays(&[], user, pass, turn_port);
    // TURN over TLS on the edge's HTTPS port, for networks that only let 443 out: the
    // listener tells STUN from HTTP by the first byte.
    let https_port: u16 = https.rsplit_once(':').unwrap().1.parse().unwrap();
    uclient_relays(&["-t", "-S"], user, pass, https_port);
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

    // A satellite runs its own TURN server with the secret the control plane hands it;
    // tickets list it next to the built-in edge's, and its credentials work there.
    let sat_port = free_port("127.0.0.1");
    let sat_turn = free_port("127.0.0.1");
    let access = format!("https://127.0.0.1:{sat_port}");
    let token = server
        .ok(&[
            "satellites",
            "create",
            "eu",
            "--region",
            "Europe",
            "--access-url",
            &access,
        ])
        .trim()
        .to_owned();
    let sat_dir = tmp.0.join("sat");
    let sat_turn_addr = format!("127.0.0.1:{sat_turn}");
    let mut args = crate::harness::satellite_args(&server, &token, sat_port, &sat_dir);
    args.extend(
        [
            "--turn-address",
            &sat_turn_addr,
            "--turn-allow-peers",
            "127.0.0.0/8",
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _sat = Satellite::start(&tmp.0, &[], &args);
    crate::satellites::wait_health(&server, "eu", "ok", Duration::from_secs(10));
    let t = ticket(&server, "dev", 8080);
    let eu = t["ice_servers"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["edge"] == "eu"))
        .unwrap_or_else(|| panic!("no TURN server of the satellite in {t}"));
    assert!(
        eu["urls"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(format!(
                "turn:{sat_turn_addr}?transport=tcp"
            ))),
        "{eu}"
    );
    let (user, pass) = (
        eu["username"].as_str().unwrap(),
        eu["credential"].as_str().unwrap(),
    );
    uclient_relays(&["-t"], user, pass, sat_turn);

    // Networking v2 off: no ICE servers in tickets.
    server.ok(&["providers", "edit", "built-in", "--networking-v2", "off"]);
    assert!(ticket(&server, "dev", 8080).get("ice_servers").is_none());
}
