//! Choosing the edge a tunnel enters through: measured (`perigee ping`), pinned
//! (`--region`) or cached.
//!
//! For each healthy region the CLI measures its own round trip to the region's
//! `/latency-check` (the median of several probes on one warm connection) and adds the round
//! trip the region reports over the mesh to the workspace's home edge. The lowest total wins;
//! the choice is cached for [`CACHE_SECS`] per deployment and home edge.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
pub use perigee_api::satellites::Region;
use serde::{Deserialize, Serialize};

use crate::api::Client;

/// How long a measured choice is reused.
pub const CACHE_SECS: u64 = 300;
/// Probes per region (after one that warms the connection).
const PROBES: usize = 5;
/// Longest wait for one region's probes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// An edge's `/latency-check` answer: its mesh round trips to the other edges, ms.
#[derive(Deserialize)]
struct LatencyCheck {
    #[serde(default)]
    mesh_rtt_ms: std::collections::HashMap<String, f64>,
}

/// A region and what measuring it gave.
#[derive(Debug, Clone)]
pub struct Measured {
    pub region: Region,
    /// Median round trip from here, ms.
    pub rtt_ms: Option<f64>,
    /// Round trip the region reports to the home edge, ms (0 for the home edge itself).
    pub mesh_ms: Option<f64>,
    pub error: Option<String>,
}

impl Measured {
    pub fn total_ms(&self) -> Option<f64> {
        Some(self.rtt_ms? + self.mesh_ms?)
    }
}

pub async fn regions(c: &Client) -> anyhow::Result<Vec<Region>> {
    let list: Vec<Region> = c.get("/api/v2/regions").await.context("the regions list")?;
    // Primary first: it is the API's home when the session's satellite is down.
    let mut urls: Vec<String> = list
        .iter()
        .filter(|r| r.primary)
        .chain(list.iter().filter(|r| !r.primary))
        .map(|r| r.access_url.clone())
        .collect();
    urls.dedup();
    crate::known::store(&c.base, urls);
    Ok(list)
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
        .use_preconfigured_tls(crate::api::tls_config(&[b"http/1.1"])?)
        .pool_max_idle_per_host(1)
        .tcp_nodelay(true)
        .build()?;
    let mut samples = Vec::with_capacity(PROBES);
    let mut mesh = None;
    for i in 0..=PROBES {
        let start = Instant::now();
        let resp = http.get(url).send().await?.error_for_status()?;
        let body = crate::api::read_limited(resp, 64 * 1024).await?;
        let rtt = start.elapsed().as_secs_f64() * 1e3;
        if i == 0 {
            mesh = serde_json::from_slice::<LatencyCheck>(&body)
                .ok()
                .and_then(|l| l.mesh_rtt_ms.get(home).copied());
            continue;
        }
        samples.push(rtt);
    }
    samples.sort_by(f64::total_cmp);
    Ok((samples[samples.len() / 2], mesh))
}

/// Measures every region concurrently; best total first, unreachable last.
pub async fn rank(regions: Vec<Region>, home: &str) -> Vec<Measured> {
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
pub fn pinned<'a>(regions: &'a [Region], pin: &str) -> anyhow::Result<&'a Region> {
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
pub fn cached(deployment: &str, home: &str) -> Option<(String, String)> {
    let now = relay_core::unix_now();
    read_cache()
        .into_iter()
        .find(|e| e.deployment == deployment && e.home == home && e.expires_at > now)
        .map(|e| (e.name, e.access_url))
}

/// Remembers (or, with `None`, forgets) the choice for this deployment and home edge.
pub fn store_cache(deployment: &str, home: &str, choice: Option<&Region>) {
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
