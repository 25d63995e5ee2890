//! `perigee create`, `ls`, `delete`.

use perigee_api::workspaces::{CreateWorkspace, Deleted, Empty, WorkspaceView};

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
    let ws: WorkspaceView = c
        .post(
            "/api/v2/workspaces",
            &CreateWorkspace {
                name: a.name.clone(),
                edge: a.edge,
                org: a.org,
                provider: a.provider,
            },
        )
        .await?;
    eprintln!(
        "Created workspace {} on provider {}. Connect with: perigee tunnel {} PORT",
        ws.workspace.name, ws.workspace.provider, a.name
    );
    Ok(())
}

pub(crate) async fn ls(a: LsArgs) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    let list: Vec<WorkspaceView> = c.get("/api/v2/workspaces").await?;
    match a.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Output::Table => print_table(&list),
    }
    Ok(())
}

fn print_table(list: &[WorkspaceView]) {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|v| {
            let w = &v.workspace;
            let agent = match &v.agent {
                Some(a) => format!("connected ({})", a.transport),
                None => "disconnected".into(),
            };
            // What the provider reports wins while it is not plainly running.
            let status = match w.provider_state.as_deref() {
                Some(st @ ("starting" | "failed" | "stopped" | "missing")) => st.to_owned(),
                _ => w.status.clone(),
            };
            vec![
                w.name.clone(),
                w.org.clone(),
                status,
                agent,
                w.home_edge.clone(),
                w.provider.clone(),
            ]
        })
        .collect();
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
    for v in list {
        let w = &v.workspace;
        if let (Some(st), Some(msg)) = (&w.provider_state, &w.provider_message) {
            if st != "running" {
                eprintln!("{}: {st}: {msg}", w.name);
            }
        }
    }
}

/// `perigee stop` / `perigee start`.
pub(crate) async fn stop_start(a: DeleteArgs, verb: &str) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    let w: WorkspaceView = c
        .post(&format!("/api/v2/workspaces/{}/{verb}", a.name), &Empty {})
        .await?;
    let remote = w.workspace.provider != "built-in";
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
    let _: Deleted = c.delete(&format!("/api/v2/workspaces/{}", a.name)).await?;
    eprintln!("Deleted workspace {}.", a.name);
    Ok(())
}
