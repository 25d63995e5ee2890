//! Roles started in process on port 0, without the binary: a server (control plane and
//! built-in edge) and a satellite that registers with it by token, heartbeats and turns
//! `ok`; both stop cleanly on their shutdown tokens. A satellite whose token is wrong is
//! refused with the control plane's reason rather than retrying forever.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

use perigee_api::satellites::{CreateSatellite, SatelliteCreated, SatelliteList};
use perigee_isolate::Mode;
use perigee_provision::isolation_decision::IsolationSettings;
use perigee_server::{Listeners, Provisioning, ServerConfig, Tls};
use satellite::role::{SatelliteConfig, SatelliteError, TlsSource};
use tokio_util::sync::CancellationToken;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("perigee-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn server_config(data_dir: PathBuf) -> ServerConfig {
    let isolation = IsolationSettings {
        mode: Mode::Off,
        uid_range: "200000-200009".parse().unwrap(),
        home_root: data_dir.join("homes"),
        dns: None,
        uid_registry: data_dir.join("uids"),
    };
    ServerConfig {
        data_dir,
        access_url: None,
        tls: Tls::SelfSigned,
        region: "default".into(),
        postgres_url: None,
        turn: turn::binding::TurnSettings {
            udp_address: Some("off".into()),
            ..Default::default()
        },
        http: satellite::HttpSettings::default(),
        admin_workspace_access: false,
        devurl_host: None,
        devurl_max_access: provider::devurls_api::Access::Public,
        replica: None,
        provisioning: Provisioning::Local {
            isolation: isolation.decide(false).unwrap(),
            exec_prefix: Vec::new(),
            agent_exe: PathBuf::from("/bin/false"),
        },
    }
}

fn satellite_config(
    primary_url: &str,
    token: &str,
    access_url: &str,
    data_dir: PathBuf,
    ca: &std::path::Path,
) -> SatelliteConfig {
    SatelliteConfig {
        primary_url: primary_url.to_owned(),
        token: token.to_owned(),
        access_url: access_url.to_owned(),
        tls: TlsSource::LocalCa,
        roots: relay_core::tls::roots(Some(ca)).unwrap(),
        data_dir,
        heartbeat: Duration::from_secs(1),
        turn: turn::binding::TurnSettings::default(),
        http: satellite::HttpSettings::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_and_a_satellite_run_in_process_and_stop_on_their_tokens() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = temp_dir("roles");
    let data = dir.join("data");

    // The server, on port 0.
    let (tcp, udp) = satellite::bind_pair("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let stop_server = CancellationToken::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    // Driven beside the test rather than spawned: the server's future is not `Send` for
    // every lifetime yet (some control-plane futures hold borrows across awaits).
    let server = perigee_server::run(
        server_config(data.clone()),
        Listeners { tcp, udp },
        stop_server.clone(),
        Some(tx),
    );
    let test = async {
        let ready = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("the server is ready in time")
            .unwrap();
        let primary = ready.access_url.clone();
        assert!(primary.starts_with("https://127.0.0.1:"), "{primary}");

        // An admin registers a satellite whose listener is bound already (port 0).
        let admin = std::fs::read_to_string(data.join("admin-token")).unwrap();
        let http = perigee_api::http::role_http(
            relay_core::tls::roots(Some(&data.join("tls/ca.pem"))).unwrap(),
        )
        .unwrap();
        let (sat_tcp, sat_udp) = satellite::bind_pair("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let access = format!("https://{}", sat_tcp.local_addr().unwrap());
        let created: SatelliteCreated = perigee_api::http::json_limited(
            http.post(format!("{primary}/api/v2/satellites"))
                .bearer_auth(admin.trim())
                .json(&CreateSatellite {
                    name: "eu".into(),
                    region: "eu-west".into(),
                    access_url: access.clone(),
                    devurl_host: None,
                })
                .send()
                .await
                .unwrap(),
            1 << 20,
        )
        .await
        .unwrap();

        // The satellite role, in process (it shares the server's local CA, as on one host).
        let stop_sat = CancellationToken::new();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let sat = tokio::spawn(satellite::role::run(
            satellite_config(
                &primary,
                &created.token,
                &access,
                data.clone(),
                &data.join("tls/ca.pem"),
            ),
            satellite::role::Listeners {
                tcp: sat_tcp,
                udp: sat_udp,
                turn: None,
            },
            stop_sat.clone(),
            Some(tx),
        ));
        let sat_ready = tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .expect("the satellite registers in time")
            .unwrap();
        assert_eq!(
            (sat_ready.edge.as_str(), sat_ready.region.as_str()),
            ("eu", "eu-west")
        );

        // Its heartbeats make it `ok` on the control plane.
        let mut health = String::new();
        for _ in 0..100 {
            let list: SatelliteList = perigee_api::http::json_limited(
                http.get(format!("{primary}/api/v2/satellites"))
                    .bearer_auth(admin.trim())
                    .send()
                    .await
                    .unwrap(),
                1 << 20,
            )
            .await
            .unwrap();
            health = list.satellites[0].health.as_str().to_owned();
            if health == "ok" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(health, "ok");

        // A satellite with a wrong token is refused with the reason, at once.
        let (bad_tcp, bad_udp) = satellite::bind_pair("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let refused = tokio::time::timeout(
            Duration::from_secs(20),
            satellite::role::run(
                satellite_config(
                    &primary,
                    "pgs_not-a-token",
                    &access,
                    dir.join("bad"),
                    &data.join("tls/ca.pem"),
                ),
                satellite::role::Listeners {
                    tcp: bad_tcp,
                    udp: bad_udp,
                    turn: None,
                },
                CancellationToken::new(),
                None,
            ),
        )
        .await
        .expect("a refusal is final, not retried");
        assert!(
            matches!(refused, Err(SatelliteError::Refused { .. })),
            "{refused:?}"
        );

        // Both stop on their tokens and end cleanly.
        stop_sat.cancel();
        tokio::time::timeout(Duration::from_secs(10), sat)
            .await
            .expect("the satellite stops")
            .unwrap()
            .unwrap();
        stop_server.cancel();
    };
    let (stopped, ()) = tokio::time::timeout(Duration::from_secs(120), async {
        tokio::join!(server, test)
    })
    .await
    .expect("the server stops");
    stopped.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
