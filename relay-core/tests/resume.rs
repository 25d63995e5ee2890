//! Resumable streams: 8 MB each way through an echo service survive transports cut at random
//! moments, byte for byte; an unknown session is answered as such; a session nobody resumes
//! ends after the grace period and its service sees the end of its stream.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use relay_core::resume::{hello, End, Registry, Session, Welcome};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _, DuplexStream};
use tokio::task::JoinHandle;

fn echo_service(local: DuplexStream) {
    tokio::spawn(async move {
        let (mut r, mut w) = tokio::io::split(local);
        let _ = tokio::io::copy(&mut r, &mut w).await;
        let _ = w.shutdown().await;
    });
}

/// A transport through a middle task the test can abort (both ends then see the cut).
fn link(reg: &Arc<Registry>) -> (DuplexStream, JoinHandle<()>) {
    let (client, mut a) = tokio::io::duplex(64 * 1024);
    let (mut b, server) = tokio::io::duplex(64 * 1024);
    let middle = tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    });
    let reg = reg.clone();
    tokio::spawn(async move {
        let _ = reg.accept(server, echo_service).await;
    });
    (client, middle)
}

fn pattern(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_survives_cut_transports() {
    let reg = Registry::new(8, Duration::from_secs(10));
    let data = pattern(8 * 1024 * 1024);
    let (mut feed, local_rd) = tokio::io::duplex(128 * 1024);
    let (local_wr, mut out) = tokio::io::duplex(128 * 1024);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        // Paced (10 ms every 256 KiB) so the cuts land while bytes flow both ways.
        for (i, c) in sent.chunks(7919).enumerate() {
            feed.write_all(c).await.unwrap();
            if i % 33 == 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        feed.shutdown().await.unwrap();
    });
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        out.read_to_end(&mut got).await.unwrap();
        got
    });
    let mut s = Session::new(local_rd, local_wr);
    let mut resume = None;
    let mut cuts = 0;
    loop {
        let (mut t, middle) = link(&reg);
        let (code, id, their) = hello(&mut t, resume).await.unwrap();
        assert_eq!(code, Welcome::Ok, "after {cuts} cuts");
        // Cut the first five transports after a few milliseconds of traffic.
        let cutter = (cuts < 5).then(|| {
            let m = middle.abort_handle();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(15 + 10 * cuts)).await;
                m.abort();
            })
        });
        let end = s.attach(t, their).await;
        match end {
            End::Finished => break,
            End::Lost(_) => {
                cuts += 1;
                resume = Some((id, s.received()));
            }
            End::Failed(e) => panic!("session failed: {e}"),
        }
        if let Some(c) = cutter {
            c.abort();
        }
        assert!(cuts < 50, "no progress");
    }
    writer.await.unwrap();
    let got = reader.await.unwrap();
    assert!(cuts >= 3, "only {cuts} transports were cut");
    assert_eq!(got.len(), data.len(), "after {cuts} cuts");
    assert!(got == data, "bytes differ after {cuts} cuts");
    // The agent's side ends too once both directions are done.
    for _ in 0..100 {
        if reg.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the agent still holds the finished session");
}

#[tokio::test]
async fn unknown_sessions_and_the_grace_period() {
    let reg = Registry::new(1, Duration::from_millis(300));
    let (mut t, _m) = link(&reg);
    let (code, _, _) = hello(&mut t, Some(([7; 16], 0))).await.unwrap();
    assert_eq!(code, Welcome::Unknown);

    // A session whose transport dies is kept, then ended after the grace period; its
    // service sees the end of the stream.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let (client, mut a) = tokio::io::duplex(1024);
    let (mut b, server) = tokio::io::duplex(1024);
    let middle = tokio::spawn(async move {
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    });
    let r2 = reg.clone();
    tokio::spawn(async move {
        r2.accept(server, move |mut local| {
            tokio::spawn(async move {
                let mut sink = Vec::new();
                let _ = local.read_to_end(&mut sink).await;
                let _ = done_tx.send(());
            });
        })
        .await
        .unwrap();
    });
    let mut t = client;
    let (code, _, _) = hello(&mut t, None).await.unwrap();
    assert_eq!(code, Welcome::Ok);
    assert_eq!(reg.len(), 1);
    // The registry is full: another new session is refused.
    let (mut t2, _m2) = link(&reg);
    assert_eq!(hello(&mut t2, None).await.unwrap().0, Welcome::Refused);
    middle.abort();
    drop(t);
    tokio::time::timeout(Duration::from_secs(5), done_rx)
        .await
        .expect("the service saw the end")
        .unwrap();
    assert!(reg.is_empty());
}
