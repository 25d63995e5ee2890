//! An SSH session outlives a restart of the satellite it entered through: plain OpenSSH
//! (after `perigee config-ssh`) enters through satellite `eu`; the satellite is killed and
//! started again while one session streams output and another uploads; both finish with every
//! byte in order, and the resumed streams crossed the restarted satellite.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use crate::config_ssh::SshUser;
use crate::harness::{free_port, pseudo_random, satellite_args, Satellite};
use crate::satellites::{both_cas, wait_health};
use crate::ssh::sha256;

const TICKS: usize = 60;

#[test]
fn an_ssh_session_outlives_a_satellite_restart() {
    let u = SshUser::new("ssh-resume");
    let server = &u.server;
    let root = u._tmp.0.clone();
    let port = free_port("127.0.0.1");
    let access = format!("https://127.0.0.1:{port}");
    let token = server.create_satellite("eu", "Europe", &access);
    let sat_dir = root.join("sat");
    std::fs::create_dir_all(&sat_dir).unwrap();
    let args = satellite_args(server, &token, port, &sat_dir);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut sat = Satellite::start(&root, &[], &args);
    wait_health(server, "eu", "ok", Duration::from_secs(10));
    let cas = both_cas(server, &sat_dir, &root);
    let ssh = || {
        let mut c = u.ssh();
        c.env("PERIGEE_CA_CERT", &cas)
            .env("PERIGEE_REGION", "eu")
            .arg(&u.target)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    };

    // Downlink: a line every 100 ms.
    let mut ticks = ssh()
        .arg(format!(
            "i=0; while [ $i -lt {TICKS} ]; do echo tick $i; i=$((i+1)); sleep 0.1; done"
        ))
        .spawn()
        .unwrap();
    let (line_tx, line_rx) = mpsc::channel();
    let out = ticks.stdout.take().unwrap();
    let lines = std::thread::spawn(move || {
        let mut all = Vec::new();
        for l in BufReader::new(out).lines() {
            let l = l.unwrap();
            let _ = line_tx.send(l.clone());
            all.push(l);
        }
        all
    });
    // Uplink: 12 MiB written in 64 KiB steps every 25 ms (about 5 s), hashed remotely.
    let data = pseudo_random(21, 12 * 1024 * 1024);
    let file = root.join("upload.bin");
    std::fs::write(&file, &data).unwrap();
    let mut up = ssh()
        .arg("sha256sum")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = up.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for c in data.chunks(64 * 1024) {
            stdin.write_all(c).unwrap();
            std::thread::sleep(Duration::from_millis(25));
        }
    });

    // Both sessions are flowing: restart the satellite under them.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let l = line_rx
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .expect("ticks before the restart");
        if l == "tick 10" {
            break;
        }
    }
    sat.kill();
    // The outage itself: half a second with nothing on the satellite's port.
    std::thread::sleep(Duration::from_millis(500));
    let sat = Satellite::start(&root, &[], &args);

    writer.join().unwrap();
    let up = up.wait_with_output().unwrap();
    let up_err = String::from_utf8_lossy(&up.stderr).into_owned();
    assert!(up.status.success(), "upload session ended: {up_err}");
    let remote_hash = String::from_utf8_lossy(&up.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_owned();
    assert_eq!(remote_hash, sha256(&file), "{up_err}");

    let status = ticks.wait().unwrap();
    let mut tick_err = String::new();
    std::io::Read::read_to_string(&mut ticks.stderr.take().unwrap(), &mut tick_err).unwrap();
    assert!(status.success(), "tick session ended: {tick_err}");
    let want: Vec<String> = (0..TICKS).map(|i| format!("tick {i}")).collect();
    assert_eq!(lines.join().unwrap(), want, "{tick_err}");

    for err in [&up_err, &tick_err] {
        assert!(err.contains("dropped"), "{err}");
        assert!(err.contains("the SSH session goes on"), "{err}");
    }
    // The resumed sessions entered through the restarted satellite: each as a byte stream
    // over the mesh, or (the path race may pick WebRTC for a reconnect) as a signaling
    // stream over it.
    let metrics = crate::satellites::fetch(&format!("{}/metrics", sat.url), &cas);
    let count = |series: &str| crate::harness::metric_value(&metrics, series);
    let entered = count("perigee_edge_streams_total{path=\"mesh_out\"}")
        + count("perigee_edge_signal_streams_total{path=\"mesh_out\"}");
    assert!(entered >= 2, "{metrics}");
}
