//! `perigee urls`: share a workspace's web ports as dev URLs.

use perigee_api::devurls::{DevUrl, ShareRequest, Unshared};

use crate::workspaces::Output;
use perigee_client::api::Client;

/// Share workspace ports in the browser (dev URLs).
#[derive(clap::Subcommand)]
pub(crate) enum UrlsCmd {
    /// Share PORT of WORKSPACE at `PORT--WORKSPACE--USER.<dev URL host>` (again: change its
    /// level or name). Unshared ports are private to you already.
    Create {
        /// Workspace name.
        workspace: String,
        /// Port inside the workspace.
        port: u16,
        /// Also reachable as `NAME--USER.<dev URL host>`.
        #[arg(long)]
        name: Option<String>,
        /// Who may open it: private (you), org (your workspace's organization), authed
        /// (anyone signed in), public (anyone) — up to the deployment's maximum.
        #[arg(long, default_value = "private", value_parser = ["private", "org", "authed", "public"])]
        access: String,
        /// The port speaks HTTPS (the edge connects to it with TLS).
        #[arg(long)]
        https: bool,
    },
    /// List your shared dev URLs (of one workspace, or all).
    Ls {
        /// Only this workspace.
        workspace: Option<String>,
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Stop sharing a port (it is private to you again).
    Rm {
        /// Workspace name.
        workspace: String,
        /// Port inside the workspace.
        port: u16,
    },
}

pub(crate) async fn run(cmd: UrlsCmd) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    match cmd {
        UrlsCmd::Create {
            workspace,
            port,
            name,
            access,
            https,
        } => {
            let v: DevUrl = c
                .post(
                    &format!("/api/v2/workspaces/{workspace}/urls"),
                    &ShareRequest {
                        port,
                        name,
                        access: Some(access.clone()),
                        https,
                    },
                )
                .await?;
            match &v.url {
                Some(url) => println!("{url}"),
                None => eprintln!(
                    "Shared port {port} of {workspace} ({access}); this deployment has no dev URL host yet (`perigee server --devurl-host`)."
                ),
            }
        }
        UrlsCmd::Ls { workspace, output } => {
            let path = match &workspace {
                Some(w) => format!("/api/v2/workspaces/{w}/urls"),
                None => "/api/v2/urls".to_owned(),
            };
            let v: Vec<DevUrl> = c.get(&path).await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => {
                    let rows: Vec<Vec<String>> = v
                        .iter()
                        .map(|u| {
                            vec![
                                u.workspace.clone(),
                                u.port.to_string(),
                                u.access.as_str().to_owned(),
                                u.name.clone().unwrap_or_else(|| "-".into()),
                                u.url.clone().unwrap_or_else(|| "-".into()),
                            ]
                        })
                        .collect();
                    print!(
                        "{}",
                        crate::table::render(
                            &["WORKSPACE", "PORT", "ACCESS", "NAME", "URL"],
                            &rows
                        )
                    );
                }
            }
        }
        UrlsCmd::Rm { workspace, port } => {
            let _: Unshared = c
                .delete(&format!("/api/v2/workspaces/{workspace}/urls/{port}"))
                .await?;
            eprintln!("Port {port} of {workspace} is private again.");
        }
    }
    Ok(())
}
