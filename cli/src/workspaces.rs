//! `perigee create`, `ls`, `delete`.

use serde_json::{json, Value};

use perigee_client::api::Client;

#[derive(clap::Args)]
pub(crate) struct CreateArgs {
    /// Workspace name (lowercase letters, digits, hyphens).
    name: String,
    /// The edge the workspace's agent links to (`primary`, or a satellite near the
    /// workspace); tunnels entering elsewhere reach it over the mesh.
    #[arg(long)]
    edge: Option<String>,
    /// The organization it belongs to [default: yours, when you belong to one].
    #[arg(long)]
    org: Option<String>,
    /// The workspace provider (cluster) it runs on [default: the default provider]. Your
    /// organization must be on its allowlist, and it must be ready and not cordoned.
    #[arg(long)]
    provider: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct LsArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Output {
    Table,
    Json,
}

#[derive(clap::Args)]
pub(crate) struct DeleteArgs {
    /// Workspace name (see `perigee ls`).
    name: String,
}

pub(crate) async fn create(a: CreateArgs) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    let ws = c
        .post(
            "/api/v2/workspaces",
            &json!({ "name": a.name, "edge": a.edge, "org": a.org, "provider": a.provider }),
        )
        .await?;
    eprintln!(
        "Created workspace {} on provider {}. Connect with: perigee tunnel {} PORT",
        ws["name"].as_str().unwrap_or("?"),
        ws["provider"].as_str().unwrap_or("?"),
        a.name
    );
    Ok(())
}

pub(crate) async fn ls(a: LsArgs) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    let list = c.get("/api/v2/workspaces").await?;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Output::Table => print_table(&list),
    }
    Ok(())
}

fn print_table(list: &Value) {
    let rows: Vec<Vec<String>> = list
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| {
                    let agent = match w["agent"]["transport"].as_str() {
                        Some(t) => format!("connected ({t})"),
                        None => "disconnected".into(),
                    };
                    let s = |k: &str| w[k].as_str().unwrap_or("").to_owned();
                    // What the provider reports wins while it is not plainly running.
                    let status = match w["provider_state"].as_str() {
                        Some(st @ ("starting" | "failed" | "stopped" | "missing")) => st.to_owned(),
                        _ => s("status"),
                    };
                    vec![
                        s("name"),
                        s("org"),
                        status,
                        agent,
                        s("home_edge"),
                        s("provider"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    print!(
        "{}",
        crate::table::render(
            &["NAME", "ORG", "STATUS", "AGENT", "HOME EDGE", "PROVIDER"],
            &rows
        )
    );
    if rows.is_empty() {
        eprintln!("No workspaces yet. Create one with: perigee create NAME");
    }
    // Why a workspace is not running, as its provider reported.
    for w in list.as_array().into_iter().flatten() {
        if let (Some(st), Some(msg)) =
            (w["provider_state"].as_str(), w["provider_message"].as_str())
        {
            if st != "running" {
                eprintln!("{}: {st}: {msg}", w["name"].as_str().unwrap_or("?"));
            }
        }
    }
}

/// `perigee stop` / `perigee start`.
pub(crate) async fn stop_start(a: DeleteArgs, verb: &str) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    let w = c
        .post(
            &format!("/api/v2/workspaces/{}/{verb}", a.name),
            &serde_json::json!({}),
        )
        .await?;
    let remote = w["provider"].as_str().is_some_and(|p| p != "built-in");
    let when = if remote {
        " (its provider acts on it at its next heartbeat)"
    } else {
        ""
    };
    eprintln!(
        "{} workspace {}{when}.",
        if verb == "stop" { "Stopped" } else { "Started" },
        a.name
    );
    Ok(())
}

pub(crate) async fn delete(a: DeleteArgs) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    c.delete(&format!("/api/v2/workspaces/{}", a.name)).await?;
    eprintln!("Deleted workspace {}.", a.name);
    Ok(())
}
