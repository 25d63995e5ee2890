//! Dev URLs served by a satellite: its own wildcard host, sign-in through the control plane,
//! sharing decided there, and the stream carried over the mesh to the agent's home edge.

use std::time::Duration;

use crate::devurls::{client_to, set_password, Browser};
use crate::harness::{free_port, Satellite, Server, TempDir};

use crate::harness::metric_value as counter;

#[test]
fn a_satellite_serves_its_dev_urls_over_the_mesh() {
    let tmp = TempDir::new("devurl-sat");
    let server = Server::start_extra(&tmp.0, &["--devurl-host", "*.dev.test"]);
    let sat_dir = tmp.0.join("sat");
    std::fs::create_dir_all(&sat_dir).unwrap();
    let port = free_port("127.0.0.1");
    let access = format!("https://127.0.0.1:{port}");
    // A one-label wildcard cannot have a certificate: refused with the reason.
    let out = server.run(&[
        "satellites",
        "create",
        "bad",
        "--region",
        "x",
        "--access-url",
        &access,
        "--devurl-host",
        "*.test",
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("at least two labels"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token =
        server.create_satellite_with("eu", "Europe", &access, &["--devurl-host", "*.eu.test"]);
    let args = crate::harness::satellite_args(&server, &token, port, &sat_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let sat = Satellite::start(&tmp.0, &[], &args);
    crate::satellites::wait_health(&server, "eu", "ok", Duration::from_secs(10));

    // The workspace's agent links to the control plane's edge; the browser is near `eu`.
    server.ok(&["create", "ws"]);
    server.wait_agent("ws", Duration::from_secs(30), None);
    let app = crate::devurl_app::App::start(server.netns_of("ws"));
    let host = format!("{}--ws--admin.eu.test", app.port);
    let url = format!("https://{host}:{port}/");
    let cas = crate::satellites::both_cas(&server, &sat_dir, &tmp.0);
    let sat_addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let to_sat = client_to(&cas, sat_addr, &[&host], b"http/1.1");

    // Unshared: private. An anonymous browser goes to the control plane's sign-in page,
    // with this satellite's URL as where to come back.
    let r = to_sat.get(&url).send().unwrap();
    assert_eq!(r.status(), 303);
    let to = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        to.starts_with(&format!(
            "{}/login?redirect=https%3A%2F%2F{host}%3A{port}",
            server.url
        )),
        "{to}"
    );
    // Signing in: the control plane accepts the satellite's host as a redirect, the
    // satellite redeems the one-time code there and sets its own cookie.
    set_password(&server, &server.token(), "admin");
    let mut owner = Browser::with_client(to_sat.clone());
    assert_eq!(owner.open(&server, &url, "admin"), 200);
    let body = owner.get(&url).text().unwrap();
    assert!(body.contains(&format!("host={host}")), "{body}");
    assert!(body.contains(&format!("xfh={host}")), "{body}");
    let r = owner.get(&url);
    let timing = r.headers()["server-timing"].to_str().unwrap().to_owned();
    assert!(timing.contains("edge;desc=\"eu\""), "{timing}");

    // Another signed-in user is refused (private), until the owner shares it publicly.
    let bob = server
        .ok(&["users", "create", "bob", "--org", "default"])
        .trim()
        .to_owned();
    set_password(&server, &bob, "bob");
    let mut other = Browser::with_client(to_sat.clone());
    assert_eq!(other.open(&server, &url, "bob"), 403);
    crate::devurls::share(&server, app.port, "public");
    crate::harness::wait_until(
        "the public share reaches eu",
        Duration::from_secs(5),
        || to_sat.get(&url).send().unwrap().status() == 200,
    );

    // Large bodies both ways over the mesh.
    let big = to_sat
        .get(format!("{url}big"))
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(big.len(), 320 * 65536);
    let up = crate::harness::pseudo_random(3, 8 * 1024 * 1024);
    let got = to_sat
        .post(format!("{url}upload"))
        .body(up.clone())
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(got.starts_with(&format!("{} ", up.len())), "{got}");

    // The satellite reached the workspace over the mesh (the agent is not linked to it).
    let metrics = crate::satellites::fetch(&format!("{}/metrics", sat.url), &cas);
    assert!(
        counter(
            &metrics,
            "perigee_edge_devurl_connections_total{path=\"mesh_out\"}"
        ) >= 1,
        "{metrics}"
    );
    assert_eq!(
        counter(
            &metrics,
            "perigee_edge_devurl_connections_total{path=\"envproxy\"}"
        ),
        0
    );

    // A dev URL host of the control plane's base is not this satellite's: not served here
    // (the satellite's certificate does not name it; asked by `Host` alone, no workspace).
    let primary_host = format!("{}--ws--admin.dev.test", app.port);
    let c = client_to(&cas, sat_addr, &[], b"http/1.1");
    let r = c
        .get(format!("https://127.0.0.1:{port}/"))
        .header("host", &primary_host)
        .send()
        .unwrap();
    assert_ne!(r.status(), 200, "the satellite served another edge's host");
    assert!(!r.text().unwrap().contains("host="));
}
