//! `perigee tunnel` and `perigee port-forward`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::api::Client;
use crate::dial::{self, Ws};
use crate::regions;
use crate::ticket::{ticket_cache, Ticket, WHY_V2_OFF};
use crate::webrtc::{self, PathChoice};
use perigee_api::workspaces::{TicketRequest, TicketResponse};

/// How a tunnel is opened.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Describe the path taken and setup timings ([`Tunnel::describe`]).
    pub verbose: bool,
    /// Enter through this region (edge name or region label) instead of the fastest one.
    pub region: Option<String>,
    /// Which path streams take when the provider has Networking v2 on.
    pub path: PathChoice,
}

impl Options {
    /// Quiet, region and path from `PERIGEE_REGION` and `PERIGEE_PATH` (what `perigee ssh
    /// --stdio` uses, like the flags of `perigee tunnel`).
    pub fn from_env() -> Self {
        Self {
            verbose: false,
            region: std::env::var("PERIGEE_REGION")
                .ok()
                .filter(|r| !r.is_empty()),
            path: match std::env::var("PERIGEE_PATH").as_deref() {
                Ok("webrtc") => PathChoice::Webrtc,
                Ok("envproxy") => PathChoice::Envproxy,
                _ => PathChoice::Auto,
            },
        }
    }
}

/// Checks a workspace name, or `OWNER.WORKSPACE` (admins, where the deployment allows).
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let label = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let ok = match name.split_once('.') {
        Some((owner, ws)) => !owner.is_empty() && !owner.contains('.') && label(ws),
        None => label(name),
    };
    anyhow::ensure!(ok, "invalid workspace name {name:?}");
    Ok(())
}

/// The edge a tunnel enters through, and why.
#[derive(Clone)]
struct Entry {
    name: String,
    url: String,
    how: &'static str,
}

/// A ticket for one port, reused until shortly before it expires, and the edge to use.
struct Tickets {
    client: Client,
    workspace: String,
    port: u16,
    pin: Option<String>,
    cached: tokio::sync::Mutex<Option<Ticket>>,
    entry: tokio::sync::Mutex<Option<Entry>>,
}

impl Tickets {
    async fn get(&self) -> anyhow::Result<Ticket> {
        let mut cached = self.cached.lock().await;
        let fresh_after = relay_core::unix_now() + 30;
        if let Some(t) = cached.as_ref() {
            if t.expires_at > fresh_after {
                return Ok(t.clone());
            }
        }
        if let Some(t) =
            ticket_cache::get(&self.client.base, &self.workspace, self.port, fresh_after)
        {
            *cached = Some(t.clone());
            return Ok(t);
        }
        let r: TicketResponse = self
            .client
            .post(
                &format!("/api/v2/workspaces/{}/ticket", self.workspace),
                &TicketRequest {
                    ports: vec![self.port],
                },
            )
            .await?;
        let t = Ticket {
            ticket: r.ticket,
            expires_at: r.expires_at,
            edge_url: r.edge_url,
            home_edge: r.home_edge,
            workspace_id: r.workspace_id,
            e2e_fingerprint: r.e2e_fingerprint,
            ice_servers: r
                .ice_servers
                .into_iter()
                .map(|s| crate::ticket::EdgeIce {
                    edge: s.edge,
                    server: perigee_webrtc::IceServer {
                        urls: s.urls,
                        username: s.username,
                        credential: s.credential,
                    },
                })
                .collect(),
        };
        ticket_cache::put(&self.client.base, &self.workspace, self.port, &t);
        *cached = Some(t.clone());
        Ok(t)
    }

    /// Picks the entry edge: pinned, cached, the only one, or the fastest measured; never
    /// one in `exclude`.
    async fn choose(&self, t: &Ticket, exclude: &[String]) -> anyhow::Result<Entry> {
        let home_entry = || Entry {
            name: t.home_edge.clone(),
            url: t.edge_url.clone(),
            how: "home edge",
        };
        if let Some(pin) = &self.pin {
            let list = regions::regions(&self.client).await?;
            let r = regions::pinned(&list, pin)?;
            return Ok(Entry {
                name: r.name.clone(),
                url: r.access_url.clone(),
                how: "pinned",
            });
        }
        if exclude.is_empty() {
            if let Some((name, url)) = regions::cached(&self.client.base, &t.home_edge) {
                return Ok(Entry {
                    name,
                    url,
                    how: "cached choice",
                });
            }
        }
        // Without the control plane (or the regions list), the home edge always works.
        let list: Vec<_> = match regions::regions(&self.client).await {
            Ok(l) => l,
            Err(_) => return Ok(home_entry()),
        }
        .into_iter()
        .filter(|r| !exclude.contains(&r.name))
        .collect();
        if list.len() <= 1 {
            let Some(r) = list.into_iter().next() else {
                return Ok(home_entry());
            };
            // Cached too, so the next `perigee tunnel` makes no API call at all.
            regions::store_cache(&self.client.base, &t.home_edge, Some(&r));
            return Ok(Entry {
                name: r.name,
                url: r.access_url,
                how: "only region",
            });
        }
        let ranked = regions::rank(list, &t.home_edge).await;
        match ranked.into_iter().find(|m| m.total_ms().is_some()) {
            Some(best) => {
                regions::store_cache(&self.client.base, &t.home_edge, Some(&best.region));
                Ok(Entry {
                    name: best.region.name,
                    url: best.region.access_url,
                    how: "lowest latency",
                })
            }
            None => Ok(home_entry()),
        }
    }

    /// Opens a tunnel, moving to the next best edge when the chosen one cannot be reached.
    async fn dial(
        &self,
        tls: &Arc<rustls::ClientConfig>,
        signal: bool,
    ) -> anyhow::Result<(dial::Opened, Entry)> {
        let t = self.get().await?;
        let mut failed: Vec<String> = Vec::new();
        loop {
            let entry = match self.entry.lock().await.clone() {
                Some(e) if failed.is_empty() => e,
                _ => self.choose(&t, &failed).await?,
            };
            match dial::open(
                &entry.url,
                &t.ticket,
                &t.workspace_id,
                self.port,
                signal,
                tls,
            )
            .await
            {
                Ok(o) => {
                    *self.entry.lock().await = Some(entry.clone());
                    return Ok((o, entry));
                }
                Err(e) => {
                    let retryable = e
                        .downcast_ref::<dial::Refused>()
                        .is_none_or(|r| r.code == "mesh_error");
                    if !retryable || self.pin.is_some() || failed.len() >= 3 {
                        return Err(e);
                    }
                    eprintln!(
                        "perigee: edge {} ({}) failed: {e:#}; trying the next best",
                        entry.name, entry.url
                    );
                    regions::store_cache(&self.client.base, &t.home_edge, None);
                    *self.entry.lock().await = None;
                    failed.push(entry.name);
                }
            }
        }
    }
}

/// Where a tunnel went: the edge that accepted it and `local` or `mesh:HOME`.
struct Via {
    edge: String,
    path: String,
}

/// A tunnel ready for bytes: plain, or with the inner end-to-end session established.
/// One lives per tunnel, briefly on the stack before its splice: no point boxing a variant.
#[allow(clippy::large_enum_variant)]
enum Stream {
    Plain(Ws),
    E2e(crate::e2e_stream::E2eStream),
}

impl Stream {
    async fn splice<R, W>(self, rd: R, wr: W) -> anyhow::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        match self {
            Stream::Plain(ws) => crate::dial::splice(ws, rd, wr).await,
            Stream::E2e(s) => s.splice(rd, wr).await,
        }
    }
}

impl Tickets {
    /// Opens a tunnel and, for an end-to-end provider, the inner session. A key that no longer
    /// matches (the agent restarted since the ticket was cached) gets one fresh ticket.
    async fn open(&self, tls: &Arc<rustls::ClientConfig>) -> anyhow::Result<(Stream, Via, Entry)> {
        let mut attempt = 0;
        loop {
            let t = self.get().await?;
            let (dial::Opened { ws, edge, path }, entry) = match self.dial(tls, false).await {
                Ok(x) => x,
                // A ticket the edge refuses (revoked with its API token, signed by a key
                // rotated out) may be a cached one: one fresh ticket, asked with the
                // session's token, settles it.
                Err(e)
                    if attempt == 0
                        && e.downcast_ref::<dial::Refused>().is_some_and(|r| {
                            matches!(
                                r.code.as_str(),
                                "bad_ticket" | "expired_ticket" | "revoked_ticket"
                            )
                        }) =>
                {
                    attempt += 1;
                    tracing::debug!(error = %e, "the edge refused the ticket; fetching a fresh one");
                    *self.cached.lock().await = None;
                    ticket_cache::remove(&self.client.base, &self.workspace, self.port);
                    continue;
                }
                Err(e) => return Err(e),
            };
            let via = Via { edge, path };
            let Some(fp) = t.e2e_fingerprint.as_deref() else {
                return Ok((Stream::Plain(ws), via, entry));
            };
            match crate::e2e_stream::connect(ws, fp).await {
                Ok(s) => return Ok((Stream::E2e(s), via, entry)),
                Err(e) if attempt == 0 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "end-to-end session failed; fetching a fresh ticket");
                    *self.cached.lock().await = None;
                    ticket_cache::remove(&self.client.base, &self.workspace, self.port);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Connects a WebRTC peer to the agent, signaled through the entry edge; `Ok(None)`
    /// when the provider has Networking v2 off.
    async fn webrtc(
        &self,
        tls: &Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<Option<(perigee_webrtc::Peer, perigee_webrtc::PathInfo)>> {
        let t = self.get().await?;
        if !t.webrtc_allowed() {
            return Ok(None);
        }
        let (opened, entry) = self.dial(tls, true).await?;
        webrtc::connect(opened.ws, t.ice_for(&entry.name))
            .await
            .map(Some)
    }

    fn new(workspace: &str, port: u16, pin: Option<String>) -> anyhow::Result<Self> {
        Ok(Self {
            client: Client::from_session()?,
            workspace: workspace.to_owned(),
            port,
            pin: pin.filter(|p| !p.is_empty()),
            cached: Default::default(),
            entry: Default::default(),
        })
    }
}

/// Which path streams to a workspace port take now, and why (`perigee ping WORKSPACE`).
#[derive(serde::Serialize)]
pub struct PathReport {
    /// `direct`, `relay` or `envproxy`.
    pub kind: String,
    /// Why that path.
    pub why: String,
    /// Time to a connected WebRTC peer (none on envproxy).
    pub connect_ms: Option<f64>,
}

/// Connects a WebRTC peer to `workspace` as a tunnel would and reports the path it found.
pub async fn probe_path(
    workspace: &str,
    port: u16,
    region: Option<String>,
) -> anyhow::Result<PathReport> {
    let tls = Arc::new(crate::api::tls_config(&[b"http/1.1"])?);
    let tickets = Tickets::new(workspace, port, region)?;
    let t = tickets.get().await?;
    let envproxy = |why: &str| PathReport {
        kind: "envproxy".into(),
        why: why.into(),
        connect_ms: None,
    };
    if let Some(why) = t.no_webrtc_reason() {
        return Ok(envproxy(why));
    }
    let start = Instant::now();
    Ok(match tickets.webrtc(&tls).await {
        Ok(Some((_peer, path))) => PathReport {
            kind: path.kind().to_owned(),
            why: path.to_string(),
            connect_ms: Some(start.elapsed().as_secs_f64() * 1e3),
        },
        Ok(None) => envproxy(WHY_V2_OFF),
        Err(e) => envproxy(&format!("WebRTC failed: {e:#}")),
    })
}

/// `port-forward --path auto` moves new connections to WebRTC only when opening one over
/// the edge takes longer than this (a far edge, a mesh hop): on a near edge the edge path is
/// as fast to answer and carries ~10× what a data channel does (BENCHMARKS.md).
const WEBRTC_WORTH: Duration = Duration::from_millis(10);

/// How long the envproxy path runs alone before WebRTC joins the race (RFC 8305's
/// connection attempt delay).
const RACE_HEAD_START: Duration = Duration::from_millis(250);

/// A tunnel between `port` of the workspace and a local reader and writer: [`connect`],
/// then [`Tunnel::splice`] (with the path described on stderr when `verbose`).
pub async fn tunnel<R, W>(
    workspace: &str,
    port: u16,
    o: &Options,
    rd: R,
    wr: W,
) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let t = connect(workspace, port, o).await?;
    if o.verbose {
        eprintln!("{}", t.describe());
    }
    t.splice(rd, wr).await
}

/// A connected tunnel to a workspace port.
pub struct Tunnel {
    conn: Conn,
    describe: String,
}

/// What carries a tunnel's bytes. One lives per tunnel, briefly, before its splice: no point
/// boxing the larger variant.
#[allow(clippy::large_enum_variant)]
enum Conn {
    /// Through the edge (plain or end-to-end).
    Envproxy(Stream),
    /// A WebRTC data channel (the peer is kept for the stream's life).
    Webrtc(perigee_webrtc::Peer, tokio::io::DuplexStream),
}

impl Tunnel {
    /// The path taken, why, and setup timings, as `perigee tunnel -v` prints them.
    pub fn describe(&self) -> &str {
        &self.describe
    }

    /// Moves bytes between the tunnel and `rd`/`wr` until both directions end.
    pub async fn splice<R, W>(self, rd: R, wr: W) -> anyhow::Result<()>
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        match self.conn {
            Conn::Envproxy(stream) => stream.splice(rd, wr).await.context("tunnel"),
            Conn::Webrtc(peer, stream) => {
                let r = webrtc::splice(stream, rd, wr).await;
                drop(peer);
                r.context("tunnel")
            }
        }
    }
}

/// Opens a tunnel to `port` of `workspace`: a ticket (cached), the entry edge (pinned,
/// cached or measured), and the path (`auto` races the edge's envproxy path against WebRTC
/// with a head start for the edge, RFC 8305 style).
pub async fn connect(workspace: &str, port: u16, o: &Options) -> anyhow::Result<Tunnel> {
    check_name(workspace)?;
    let start = Instant::now();
    let tls = Arc::new(crate::api::tls_config(&[b"http/1.1"])?);
    let tickets = Tickets::new(workspace, port, o.region.clone())?;
    let t = tickets.get().await?;
    let t_ticket = start.elapsed();
    let v2 = t.webrtc_allowed();
    if o.path == PathChoice::Webrtc && !v2 {
        if t.e2e_fingerprint.is_some() {
            anyhow::bail!(
                "--path webrtc: the provider of workspace {:?} has end-to-end encryption on, which WebRTC does not carry yet; use --path auto or envproxy",
                workspace
            );
        }
        anyhow::bail!(
            "--path webrtc: the provider of workspace {:?} has Networking v2 off (an admin can turn it on with `perigee providers edit PROVIDER --networking-v2 on`)",
            workspace
        );
    }
    let timing = |label: &str| {
        format!(
            "(ticket {:.1} ms, {label} {:.1} ms)",
            t_ticket.as_secs_f64() * 1e3,
            (start.elapsed() - t_ticket).as_secs_f64() * 1e3
        )
    };
    let race = v2 && o.path == PathChoice::Auto;
    let why_envproxy = if let Some(why) = t.no_webrtc_reason() {
        why.to_owned()
    } else if o.path == PathChoice::Envproxy {
        "--path envproxy".to_owned()
    } else {
        String::new()
    };
    if v2 && o.path != PathChoice::Envproxy {
        let rtc = async {
            match tickets.webrtc(&tls).await {
                Ok(Some(p)) => Ok(p),
                Ok(None) => Err(WHY_V2_OFF.to_owned()),
                Err(e) => Err(format!("{e:#}")),
            }
        };
        tokio::pin!(rtc);
        let outcome = if race {
            // Happy eyeballs (RFC 8305): the edge path gets a head start and WebRTC (a lazy
            // future, not started yet) joins the race only if the edge is slow or fails.
            // WebRTC's own signaling crosses the same edge, so it cannot win a first stream
            // the edge serves promptly; starting it anyway cost 1.5× at p50 (DECISIONS.md).
            let env = tickets.open(&tls);
            tokio::pin!(env);
            let head_start = tokio::select! {
                r = &mut env => Some(r),
                _ = tokio::time::sleep(RACE_HEAD_START) => None,
            };
            match head_start {
                Some(Ok((stream, opened, entry))) => {
                    return Ok(envproxy(
                        (workspace, port),
                        stream,
                        opened,
                        entry,
                        "envproxy was ready within the head start",
                        &timing("edge choice + tunnel"),
                    ));
                }
                Some(Err(e)) => rtc.await.map_err(|why| format!("{why} (envproxy: {e:#})")),
                None => tokio::select! {
                    r = &mut rtc => r,
                    r = &mut env => match r {
                        Ok((stream, opened, entry)) => {
                            return Ok(envproxy((workspace, port), stream, opened, entry, "envproxy was ready first (WebRTC still connecting)", &timing("edge choice + tunnel")));
                        }
                        Err(e) => rtc.await.map_err(|why| format!("{why} (envproxy: {e:#})")),
                    },
                },
            }
        } else {
            rtc.await
        };
        match outcome {
            Ok((peer, _)) => {
                let stream = peer.open(&format!("tcp:{port}")).await?;
                let path = match peer.state() {
                    perigee_webrtc::PeerState::Connected(p) => p,
                    _ => anyhow::bail!("the WebRTC connection dropped"),
                };
                let describe = format!(
                    "perigee: {workspace}:{port} path={} why=\"{}\" {}",
                    path.kind(),
                    path,
                    timing("WebRTC")
                );
                return Ok(Tunnel {
                    conn: Conn::Webrtc(peer, stream),
                    describe,
                });
            }
            Err(why) if o.path == PathChoice::Webrtc => anyhow::bail!("{why}"),
            Err(why) => {
                let (stream, opened, entry) = tickets.open(&tls).await?;
                return Ok(envproxy(
                    (workspace, port),
                    stream,
                    opened,
                    entry,
                    &format!("WebRTC failed: {why}"),
                    &timing("edge choice + tunnel"),
                ));
            }
        }
    }
    let (stream, opened, entry) = tickets.open(&tls).await?;
    Ok(envproxy(
        (workspace, port),
        stream,
        opened,
        entry,
        &why_envproxy,
        &timing("edge choice + tunnel"),
    ))
}

/// A tunnel over the edge, described as `perigee tunnel -v` prints it.
fn envproxy(
    (workspace, port): (&str, u16),
    stream: Stream,
    opened: Via,
    entry: Entry,
    why: &str,
    timing: &str,
) -> Tunnel {
    let via = match opened.path.strip_prefix("mesh:") {
        Some(home) => format!("{} -> mesh -> {home}", opened.edge),
        None => opened.edge.clone(),
    };
    let e2e = if matches!(stream, Stream::E2e(_)) {
        " e2e=on"
    } else {
        ""
    };
    let why = if why.is_empty() {
        String::new()
    } else {
        format!(" why=\"{why}\"")
    };
    let describe = format!(
        "perigee: {workspace}:{port} path=envproxy{e2e}{why} edge={} via={via} url={} chosen-by={:?} {timing}",
        entry.name, entry.url, entry.how,
    );
    Tunnel {
        conn: Conn::Envproxy(stream),
        describe,
    }
}

/// Keeps a WebRTC connection to the agent for one forwarded port, reconnecting with backoff;
/// the watch holds the connected peer (or nothing while it is down).
fn background_peer(
    tickets: Arc<Tickets>,
    tls: Arc<rustls::ClientConfig>,
    port: u16,
) -> tokio::sync::watch::Receiver<Option<perigee_webrtc::Peer>> {
    let (tx, rx) = tokio::sync::watch::channel(None);
    tokio::spawn(async move {
        let mut backoff = relay_core::backoff::Backoff::new(
            std::time::Duration::from_secs(1),
            std::time::Duration::from_secs(60),
        );
        loop {
            match tickets.webrtc(&tls).await {
                Ok(Some((peer, path))) => {
                    eprintln!("perigee: port {port}: WebRTC connected, path={} ({path}); new connections use it where opening one over the edge takes over {} ms", path.kind(), WEBRTC_WORTH.as_millis());
                    backoff.reset();
                    tx.send_replace(Some(peer.clone()));
                    let _ = peer.connected().await;
                    while matches!(peer.state(), perigee_webrtc::PeerState::Connected(_)) {
                        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    }
                    tx.send_replace(None);
                    eprintln!("perigee: port {port}: WebRTC connection lost; new connections use the envproxy path");
                }
                Ok(None) => return,
                Err(e) => eprintln!("perigee: port {port}: WebRTC: {e:#}; using the envproxy path"),
            }
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(backoff.next_delay(relay_core::token::random_u64())).await;
        }
    });
    rx
}

/// Forwards each `(local address, workspace port)` of `specs` until `shutdown`: every
/// connection accepted locally gets its own tunnel (over the edge, or over a WebRTC
/// connection kept per port once it is up and the edge path has proved slow).
pub async fn port_forward(
    workspace: &str,
    specs: &[(SocketAddr, u16)],
    o: &Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    check_name(workspace)?;
    let tls = Arc::new(crate::api::tls_config(&[b"http/1.1"])?);
    let mut tasks = Vec::new();
    for &(local, remote) in specs {
        let listener = tokio::net::TcpListener::bind(local)
            .await
            .with_context(|| format!("listening on {local}"))?;
        let bound = listener.local_addr()?;
        let tickets = Arc::new(Tickets::new(workspace, remote, o.region.clone())?);
        // Fail fast on a bad workspace or token rather than on the first connection.
        let t = tickets.get().await?;
        println!("Forwarding {bound} -> {workspace}:{remote}");
        let tls = tls.clone();
        let rtc = if !t.webrtc_allowed() || o.path == PathChoice::Envproxy {
            None
        } else {
            Some(background_peer(tickets.clone(), tls.clone(), remote))
        };
        let only_webrtc = o.path == PathChoice::Webrtc;
        // The fastest envproxy open seen (µs): WebRTC takes new connections only where the
        // edge path is slow, since a data channel carries far less than the edge path.
        let env_open_us = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
        tasks.push(tokio::spawn(async move {
            loop {
                let Ok((sock, peer)) = listener.accept().await else {
                    continue;
                };
                let _ = sock.set_nodelay(true);
                let (tickets, tls) = (tickets.clone(), tls.clone());
                let env_open_us = env_open_us.clone();
                // u64::MAX: no connection has measured the edge path yet.
                let open_us = env_open_us.load(std::sync::atomic::Ordering::Relaxed);
                let edge_slow = open_us != u64::MAX && open_us > WEBRTC_WORTH.as_micros() as u64;
                let current = rtc
                    .as_ref()
                    .and_then(|r| r.borrow().clone())
                    .filter(|_| only_webrtc || edge_slow);
                tokio::spawn(async move {
                    let result = async {
                        // New connections take WebRTC once it is up and the edge path has
                        // proved slow (the first connection goes over the edge and measures
                        // it); `--path webrtc` always.
                        if let Some(peer) = current {
                            if let Ok(s) = peer.open(&format!("tcp:{remote}")).await {
                                let (rd, wr) = sock.into_split();
                                return webrtc::splice(s, rd, wr).await;
                            }
                        }
                        anyhow::ensure!(
                            !only_webrtc,
                            "--path webrtc: the WebRTC connection is not up"
                        );
                        let started = Instant::now();
                        let (stream, _, _) = tickets.open(&tls).await?;
                        env_open_us.fetch_min(
                            started.elapsed().as_micros() as u64,
                            std::sync::atomic::Ordering::Relaxed,
                        );
                        let (rd, wr) = sock.into_split();
                        stream.splice(rd, wr).await?;
                        anyhow::Ok(())
                    }
                    .await;
                    if let Err(e) = result {
                        eprintln!("perigee: connection from {peer} to port {remote}: {e:#}");
                    }
                });
            }
        }));
    }
    shutdown.await;
    for t in tasks {
        t.abort();
    }
    Ok(())
}
