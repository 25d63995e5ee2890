//! Choosing the edge a tunnel enters through: `perigee ping`, `--region` and the cache.
//!
//! For each healthy region the CLI measures its own round trip to the region's
//! `/latency-check` (the median of several probes on one warm connection) and adds the round
//! trip the region reports over the mesh to the workspace's home edge. The lowest total wins;
//! the choice is cached for [`CACHE_SECS`] per deployment and home edge.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::Client;

/// How long a measured choice is reused.
pub(crate) const CACHE_SECS: u64 = 300;
/// Probes per region (after one that warms the connection).
const PROBES: usize = 5;
/// Longest wait for one region's probes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// A region from `GET /api/v2/regions`.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub(crate) struct Region {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) access_url: String,
    pub(crate) latency_check_url: String,
    #[serde(default)]
    pub(crate) primary: bool,
}

/// A region and what measuring it gave.
#[derive(Debug, Clone)]
pub(crate) struct Measured {
    pub(crate) region: Region,
    /// Median round trip from here, ms.
    pub(crate) rtt_ms: Option<f64>,
    /// Round trip the region reports to the home edge, ms (0 for the home edge itself).
    pub(crate) mesh_ms: Option<f64>,
    pub(crate) error: Option<String>,
}

impl Measured {
    pub(crate) fn total_ms(&self) -> Option<f64> {
        Some(self.rtt_ms? + self.mesh_ms?)
    }
}

#[derive(clap::Args)]
pub(crate) struct PingArgs {
    /// Workspace whose home edge the totals are computed for [default: the primary edge].
    workspace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: crate::workspaces::Output,
    /// Use this region (edge name or region label) instead of the fastest.
    #[arg(long, env = "PERIGEE_REGION")]
    region: Option<String>,
    /// With a workspace: the port whose path (direct, relay or envproxy) is reported, found
    /// by connecting as `perigee tunnel` would.
    #[arg(long, default_value_t = 22)]
    port: u16,
}

pub(crate) async fn regions(c: &Client) -> anyhow::Result<Vec<Region>> {
    let v = c.get("/api/v2/regions").await?;
    let list: Vec<Region> = serde_json::from_value(v).context("unexpected regions list")?;
    // Primary first: it is the API's home when the session's satellite is down.
    let mut urls: Vec<String> = list
        .iter()
        .filter(|r| r.primary)
        .chain(list.iter().filter(|r| !r.primary))
        .map(|r| r.access_url.clone())
        .collect();
    urls.dedup();
    store_known_urls(&c.base, urls);
    Ok(list)
}

fn known_path() -> anyhow::Result<PathBuf> {
    Ok(crate::session::config_dir()?.join("known-edges.json"))
}

/// The edge URLs of a deployment (by session URL) from its last regions list.
pub(crate) fn known_urls(deployment: &str) -> Vec<String> {
    let all: std::collections::BTreeMap<String, Vec<String>> = known_path()
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    all.get(deployment).cloned().unwrap_or_default()
}

fn store_known_urls(deployment: &str, urls: Vec<String>) {
    let Ok(path) = known_path() else { return };
    let mut all: std::collections::BTreeMap<String, Vec<String>> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if all.get(deployment) == Some(&urls) {
        return;
    }
    all.insert(deployment.to_owned(), urls);
    if let Ok(bytes) = serde_json::to_vec_pretty(&all) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = relay_core::tls::write_private(&path, &bytes);
    }
}

/// Measures one region: RTT median and the reported mesh RTT to `home`.
async fn measure(region: Region, home: &str) -> Measured {
    let r = tokio::time::timeout(PROBE_TIMEOUT, probe(&region.latency_check_url, home)).await;
    let (rtt_ms, mut mesh_ms, error) = match r {
        Ok(Ok((rtt, mesh))) => (Some(rtt), mesh, None),
        Ok(Err(e)) => (None, None, Some(format!("{e:#}"))),
        Err(_) => (
            None,
            None,
            Some(format!("no answer within {PROBE_TIMEOUT:?}")),
        ),
    };
    if region.name == home {
        mesh_ms = Some(0.0);
    }
    let error = error.or_else(|| mesh_ms.is_none().then(|| format!("no mesh link to {home}")));
    Measured {
        region,
        rtt_ms,
        mesh_ms,
        error,
    }
}

async fn probe(url: &str, home: &str) -> anyhow::Result<(f64, Option<f64>)> {
    // One connection (HTTP/1.1 keep-alive) so the probes measure round trips, not handshakes.
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(crate::client::tls_config(&[b"http/1.1"])?)
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()?;
    let mut samples = Vec::with_capacity(PROBES);
    let mut mesh = None;
    for i in 0..=PROBES {
        let start = Instant::now();
        let resp = http.get(url).send().await?.error_for_status()?;
        let body = crate::client::read_limited(resp, 64 * 1024).await?;
        let rtt = start.elapsed().as_secs_f64() * 1e3;
        if i == 0 {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            mesh = v["mesh_rtt_ms"][home].as_f64();
            continue;
        }
        samples.push(rtt);
    }
    samples.sort_by(f64::total_cmp);
    Ok((samples[samples.len() / 2], mesh))
}

/// Measures every region concurrently; best total first, unreachable last.
pub(crate) async fn rank(regions: Vec<Region>, home: &str) -> Vec<Measured> {
    let tasks: Vec<_> = regions
        .into_iter()
        .map(|r| {
            let home = home.to_owned();
            tokio::spawn(async move { measure(r, &home).await })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        if let Ok(m) = t.await {
            out.push(m);
        }
    }
    out.sort_by(|a, b| match (a.total_ms(), b.total_ms()) {
        (Some(x), Some(y)) => x.total_cmp(&y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    out
}

/// The region pinned by `--region` / `PERIGEE_REGION`, matched by edge name or region label.
pub(crate) fn pinned<'a>(regions: &'a [Region], pin: &str) -> anyhow::Result<&'a Region> {
    regions
        .iter()
        .find(|r| r.name == pin || r.region == pin)
        .with_context(|| {
            let names: Vec<String> = regions
                .iter()
                .map(|r| format!("{} ({})", r.name, r.region))
                .collect();
            format!("no healthy region {pin:?}; available: {}", names.join(", "))
        })
}

#[derive(Serialize, Deserialize)]
struct CacheEntry {
    deployment: String,
    home: String,
    name: String,
    access_url: String,
    expires_at: u64,
}

fn cache_path() -> anyhow::Result<PathBuf> {
    Ok(crate::session::config_dir()?.join("region-cache.json"))
}

fn read_cache() -> Vec<CacheEntry> {
    cache_path()
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// The cached choice for this deployment and home edge, if still fresh.
pub(crate) fn cached(deployment: &str, home: &str) -> Option<(String, String)> {
    let now = relay_core::unix_now();
    read_cache()
        .into_iter()
        .find(|e| e.deployment == deployment && e.home == home && e.expires_at > now)
        .map(|e| (e.name, e.access_url))
}

/// Remembers (or, with `None`, forgets) the choice for this deployment and home edge.
pub(crate) fn store_cache(deployment: &str, home: &str, choice: Option<&Region>) {
    let now = relay_core::unix_now();
    let mut entries: Vec<CacheEntry> = read_cache()
        .into_iter()
        .filter(|e| e.expires_at > now && !(e.deployment == deployment && e.home == home))
        .collect();
    if let Some(r) = choice {
        entries.push(CacheEntry {
            deployment: deployment.to_owned(),
            home: home.to_owned(),
            name: r.name.clone(),
            access_url: r.access_url.clone(),
            expires_at: now + CACHE_SECS,
        });
    }
    if let (Ok(path), Ok(bytes)) = (cache_path(), serde_json::to_vec_pretty(&entries)) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = relay_core::tls::write_private(&path, &bytes);
    }
}

/// `perigee ping [WORKSPACE]`.
pub(crate) async fn ping(a: PingArgs) -> anyhow::Result<()> {
    let pin = a.region.clone().filter(|r| !r.is_empty());
    let c = Client::from_session()?;
    let home = match &a.workspace {
        Some(ws) => {
            let w = c.get(&format!("/api/v2/workspaces/{ws}")).await?;
            w["home_edge"]
                .as_str()
                .unwrap_or(relay_core::mesh::PRIMARY_EDGE)
                .to_owned()
        }
        None => relay_core::mesh::PRIMARY_EDGE.to_owned(),
    };
    let list = regions(&c).await?;
    let ranked = rank(list.clone(), &home).await;
    let chosen = match &pin {
        Some(p) => Some(pinned(&list, p)?.name.clone()),
        None => ranked
            .first()
            .filter(|m| m.total_ms().is_some())
            .map(|m| m.region.name.clone()),
    };
    if let Some(name) = &chosen {
        if pin.is_none() {
            if let Some(m) = ranked.iter().find(|m| &m.region.name == name) {
                store_cache(&c.base, &home, Some(&m.region));
            }
        }
    }
    let path = match &a.workspace {
        Some(ws) => Some(crate::tunnel::probe_path(ws, a.port, pin.clone()).await?),
        None => None,
    };
    let ms = |v: Option<f64>| {
        v.map(|v| format!("{v:.1} ms"))
            .unwrap_or_else(|| "-".into())
    };
    match a.output {
        crate::workspaces::Output::Json => {
            let rows: Vec<Value> = ranked
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "name": m.region.name,
                        "region": m.region.region,
                        "access_url": m.region.access_url,
                        "rtt_ms": m.rtt_ms,
                        "mesh_ms": m.mesh_ms,
                        "total_ms": m.total_ms(),
                        "error": m.error,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "home_edge": home,
                    "regions": rows,
                    "chosen": chosen,
                    "pinned": pin.is_some(),
                    "path": path,
                }))?
            );
        }
        crate::workspaces::Output::Table => {
            let rows: Vec<Vec<String>> = ranked
                .iter()
                .map(|m| {
                    let mark = if Some(&m.region.name) == chosen.as_ref() {
                        "*"
                    } else {
                        ""
                    };
                    vec![
                        mark.to_owned(),
                        m.region.name.clone(),
                        m.region.region.clone(),
                        ms(m.rtt_ms),
                        ms(m.mesh_ms),
                        ms(m.total_ms()),
                        m.error.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            print!(
                "{}",
                crate::table::render(
                    &["", "EDGE", "REGION", "RTT", "TO HOME", "TOTAL", "NOTE"],
                    &rows
                )
            );
            match (&chosen, &pin) {
                (Some(n), Some(_)) => {
                    println!("Using {n} (pinned by --region/PERIGEE_REGION); home edge {home}.")
                }
                (Some(n), None) => println!("Using {n}: lowest total latency to home edge {home}."),
                (None, _) => println!("No region answered."),
            }
            if let (Some(p), Some(ws)) = (&path, &a.workspace) {
                let t = p
                    .connect_ms
                    .map(|t| format!(", connected in {t:.0} ms"))
                    .unwrap_or_default();
                println!(
                    "Port {} of {ws}: path={} why=\"{}\"{t}",
                    a.port, p.kind, p.why
                );
            }
        }
    }
    Ok(())
}
