//! Two control-plane replicas on one PostgreSQL database: a workspace's agent links to one
//! of them, and a tunnel entering through the other is passed on over the replicas' mesh
//! (each proves the mesh key; neither trusts the other's self-signed certificate), and so is
//! a satellite's stream that reached the replica without the link.

use std::time::Duration;

use crate::harness::{free_port, tunnel_roundtrip, wait_until, Server, TempDir};

fn metric(server: &Server, series: &str) -> u64 {
    let text = crate::satellites::fetch(
        &format!("{}/metrics", server.url),
        &server.data().join("tls/ca.pem"),
    );
    crate::harness::metric_value(&text, series)
}

#[test]
fn a_tunnel_through_either_replica_reaches_the_agent() {
    let tmp = TempDir::new("replicas");
    let pg = testkit::Postgres::start();
    let db = pg.create_database();
    let start = |tag: &str| {
        let dir = tmp.0.join(tag);
        std::fs::create_dir_all(&dir).unwrap();
        let port = free_port("127.0.0.1");
        let me = format!("https://127.0.0.1:{port}");
        Server::start_full(
            &dir,
            &format!("127.0.0.1:{port}"),
            &[],
            &[],
            &[
                "--postgres-url",
                &db,
                "--replica-url",
                &me,
                "--replica-name",
                tag,
            ],
        )
    };
    let a = start("a");
    let b = start("b");
    // The first replica created the admin; the CLI finds the token in the data dir.
    std::fs::write(b.data().join("admin-token"), a.token()).unwrap();

    // Created through a: its agent links to a.
    a.ok(&["create", "ws"]);
    a.wait_agent("ws", Duration::from_secs(30), None);
    let echo = a.echo_in("ws");
    let out = tunnel_roundtrip(&a, "ws", echo, b"via a");
    assert_eq!(
        out.stdout,
        b"via a",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Through b, which has no link: passed on to a. (The replicas learn of each other within
    // a couple of seconds of starting.)
    let mut last = String::new();
    wait_until("a tunnel through b", Duration::from_secs(20), || {
        let out = tunnel_roundtrip(&b, "ws", echo, b"via b");
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        // Through b itself, not by falling back to another path.
        out.stdout == b"via b" && !last.contains("failed")
    });
    assert!(
        metric(&b, "perigee_edge_streams_total{path=\"mesh_out\"}") >= 1,
        "b did not pass the stream on ({last})"
    );
    assert!(metric(&a, "perigee_edge_mesh_links_open{direction=\"in\"}") >= 1);

    // A satellite registered through b forwards to "primary", which is b: b passes the
    // stream on to a.
    let sat_port = free_port("127.0.0.1");
    let sat_dir = tmp.0.join("sat");
    std::fs::create_dir_all(&sat_dir).unwrap();
    let token = b.create_satellite("eu", "Europe", &format!("https://127.0.0.1:{sat_port}"));
    let args = crate::harness::satellite_args(&b, &token, sat_port, &sat_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _sat = crate::harness::Satellite::start(&tmp.0, &[], &args);
    crate::satellites::wait_health(&b, "eu", "ok", Duration::from_secs(15));
    let cas = crate::satellites::both_cas(&b, &sat_dir, &tmp.0);
    wait_until(
        "a tunnel through the satellite",
        Duration::from_secs(20),
        || {
            let mut c = b.cmd(&["tunnel", "-v", "--region", "eu", "ws", &echo.to_string()]);
            c.env("PERIGEE_CA_CERT", &cas);
            let out = crate::harness::run_with_stdin(c, b"via eu");
            last = String::from_utf8_lossy(&out.stderr).into_owned();
            out.stdout == b"via eu" && last.contains("edge=eu") && !last.contains("failed")
        },
    );
    assert!(
        metric(&b, "perigee_edge_streams_total{path=\"mesh_relay\"}") >= 1,
        "b did not pass the satellite's stream on ({last})"
    );
    drop(pg);
}
