//! `perigee ping`: the round trip to each region and the one tunnels would use
//! (measuring and choosing are `perigee_client::regions`).

use perigee_client::api::Client;
use perigee_client::regions;
use serde_json::Value;

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

/// `perigee ping [WORKSPACE]`.
pub(crate) async fn ping(a: PingArgs) -> anyhow::Result<()> {
    let pin = a.region.clone().filter(|r| !r.is_empty());
    let c = Client::from_session()?;
    let home = match &a.workspace {
        Some(ws) => {
            let w: perigee_api::workspaces::WorkspaceView =
                c.get(&format!("/api/v2/workspaces/{ws}")).await?;
            w.workspace.home_edge
        }
        None => relay_core::mesh::PRIMARY_EDGE.to_owned(),
    };
    let list = regions::regions(&c).await?;
    let ranked = regions::rank(list.clone(), &home).await;
    let chosen = match &pin {
        Some(p) => Some(regions::pinned(&list, p)?.name.clone()),
        None => ranked
            .first()
            .filter(|m| m.total_ms().is_some())
            .map(|m| m.region.name.clone()),
    };
    if let Some(name) = &chosen {
        if pin.is_none() {
            if let Some(m) = ranked.iter().find(|m| &m.region.name == name) {
                regions::store_cache(&c.base, &home, Some(&m.region));
            }
        }
    }
    let path = match &a.workspace {
        Some(ws) => Some(perigee_client::tunnel::probe_path(ws, a.port, pin.clone()).await?),
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
