//! `perigee providers …` (admins and site managers).

use serde_json::{json, Value};

use crate::client::Client;
use crate::workspaces::Output;

/// Manage workspace providers: the clusters workspaces run in.
#[derive(clap::Subcommand)]
pub(crate) enum ProvidersCmd {
    /// Add a remote provider (a Kubernetes cluster); prints its REMOTE token once and the
    /// Helm command that installs it.
    Create {
        /// Provider name (lowercase letters, digits, hyphens).
        name: String,
        /// URL of the provider's edge: a subdomain of the deployment's host with the same
        /// scheme, e.g. https://eu.perigee.example.com.
        #[arg(long)]
        hostname: String,
        /// The cluster's Kubernetes API address, e.g. https://10.0.0.1:6443.
        #[arg(long)]
        cluster_address: String,
        /// Namespace workspaces go to.
        #[arg(long)]
        namespace: Option<String>,
        /// Output format (`json`: the token and the Helm command as data).
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// List providers: status, default, allowed organizations, workspaces.
    Ls {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
}

pub(crate) async fn run(cmd: ProvidersCmd) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    match cmd {
        ProvidersCmd::Create {
            name,
            hostname,
            cluster_address,
            namespace,
            output,
        } => {
            let v = c
                .post(
                    "/api/v2/providers",
                    &json!({
                        "name": name,
                        "hostname": hostname,
                        "cluster_address": cluster_address,
                        "namespace": namespace,
                    }),
                )
                .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => {
                    println!("{}", v["helm_command"].as_str().unwrap_or_default());
                    eprintln!(
                        "Created provider {name} (pending until it registers). Run the command above against the cluster; the REMOTE token in it is shown only once."
                    );
                }
            }
        }
        ProvidersCmd::Ls { output } => {
            let v = c.get("/api/v2/providers").await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => {
                    let rows: Vec<Vec<String>> = v
                        .as_array()
                        .map(|a| a.iter().map(row).collect())
                        .unwrap_or_default();
                    print!(
                        "{}",
                        crate::table::render(
                            &[
                                "NAME",
                                "STATUS",
                                "DEFAULT",
                                "ORGS",
                                "WORKSPACES",
                                "HOSTNAME"
                            ],
                            &rows
                        )
                    );
                }
            }
        }
    }
    Ok(())
}

fn row(p: &Value) -> Vec<String> {
    let str_of = |k: &str| p[k].as_str().unwrap_or("").to_owned();
    let mut status = str_of("status");
    if let Some(m) = p["status_message"].as_str() {
        status = format!("{status}: {m}");
    }
    let orgs: Vec<&str> = p["orgs"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    vec![
        str_of("name"),
        status,
        if p["default"] == true { "default" } else { "" }.to_owned(),
        if orgs.is_empty() {
            "(none)".to_owned()
        } else {
            orgs.join(",")
        },
        p["workspaces"].to_string(),
        str_of("hostname"),
    ]
}
