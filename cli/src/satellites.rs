//! `perigee satellites create|ls|rm` and `perigee keys rotate` (admins).

use serde_json::{json, Value};

use perigee_client::api::Client;

/// Manage satellites: regional edges users connect through.
#[derive(clap::Subcommand)]
pub(crate) enum SatellitesCmd {
    /// Register a new satellite; prints its token (shown once) and the command that starts it.
    Create(CreateArgs),
    /// List satellites with their health and last heartbeat.
    Ls(LsArgs),
    /// Remove a satellite: its token stops working and the mesh key is rotated.
    Rm(RmArgs),
}

#[derive(clap::Args)]
pub(crate) struct CreateArgs {
    /// Satellite name (lowercase letters, digits, hyphens), e.g. `eu-west`.
    name: String,
    /// Region label users see, e.g. `Frankfurt`.
    #[arg(long)]
    region: String,
    /// The URL users of that region will use, e.g. https://perigee-eu.example.com (same
    /// scheme as the control plane's).
    #[arg(long)]
    access_url: String,
    /// Wildcard host of the satellite's dev URLs, e.g. '*.eu.example.com'.
    #[arg(long)]
    devurl_host: Option<String>,
}

#[derive(clap::Args)]
pub(crate) struct LsArgs {
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: crate::workspaces::Output,
}

#[derive(clap::Args)]
pub(crate) struct RmArgs {
    /// Satellite name.
    name: String,
}

/// Manage ticket-signing keys.
#[derive(clap::Subcommand)]
pub(crate) enum KeysCmd {
    /// Make a new ticket-signing key current. Edges receive it with their next heartbeat;
    /// tickets signed with the old key stay valid until they expire. No restart needed.
    Rotate,
}

pub(crate) async fn run(cmd: SatellitesCmd) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    match cmd {
        SatellitesCmd::Create(a) => {
            let v: Value = c
                .post(
                    "/api/v2/satellites",
                    &json!({
                        "name": a.name,
                        "region": a.region,
                        "access_url": a.access_url,
                        "devurl_host": a.devurl_host,
                    }),
                )
                .await?;
            println!("{}", v["token"].as_str().unwrap_or_default());
            eprintln!(
                "Created satellite {} (region {}). The token above is shown only once.\n\
                 Start the satellite on a host in that region with:\n\n  {}\n",
                a.name,
                a.region,
                v["command"].as_str().unwrap_or_default()
            );
        }
        SatellitesCmd::Ls(a) => {
            let v: Value = c.get("/api/v2/satellites").await?;
            match a.output {
                crate::workspaces::Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&v)?)
                }
                crate::workspaces::Output::Table => print_table(&v),
            }
        }
        SatellitesCmd::Rm(a) => {
            let _: Value = c.delete(&format!("/api/v2/satellites/{}", a.name)).await?;
            eprintln!(
                "Removed satellite {}. Its token no longer works; the mesh key was rotated.",
                a.name
            );
        }
    }
    Ok(())
}

fn ago(t: Option<i64>) -> String {
    match t {
        None => "never".into(),
        Some(t) => {
            let now = i64::try_from(relay_core::unix_now()).unwrap_or(i64::MAX);
            format!("{} s ago", (now - t).max(0))
        }
    }
}

fn print_table(v: &Value) {
    let cp_version = v["control_plane_version"].as_str().unwrap_or("?");
    let sats = v["satellites"].as_array().cloned().unwrap_or_default();
    let mut warnings = Vec::new();
    let rows: Vec<Vec<String>> = sats
        .iter()
        .map(|s| {
            let str_of = |k: &str| s[k].as_str().unwrap_or("").to_owned();
            let mut version = s["version"].as_str().unwrap_or("-").to_owned();
            if s["version_mismatch"].as_bool() == Some(true) {
                version.push_str(" (!)");
                warnings.push(format!(
                    "warning: satellite {} runs {} but the control plane runs {cp_version}",
                    str_of("name"),
                    str_of("version")
                ));
            }
            let health = match s["error"].as_str() {
                Some(e) => format!("{}: {e}", str_of("health")),
                None => str_of("health"),
            };
            vec![
                str_of("name"),
                str_of("region"),
                str_of("access_url"),
                version,
                ago(s["last_heartbeat_at"].as_i64()),
                health,
            ]
        })
        .collect();
    print!(
        "{}",
        crate::table::render(
            &[
                "NAME",
                "REGION",
                "URL",
                "VERSION",
                "LAST HEARTBEAT",
                "HEALTH"
            ],
            &rows
        )
    );
    for w in warnings {
        eprintln!("{w}");
    }
    if rows.is_empty() {
        eprintln!("No satellites. Add one with: perigee satellites create NAME --region REGION --access-url URL");
    }
}

pub(crate) async fn keys(cmd: KeysCmd) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    match cmd {
        KeysCmd::Rotate => {
            let v: Value = c.post("/api/v2/keys/rotate", &json!({})).await?;
            eprintln!(
                "New ticket-signing key {}. {}",
                v["kid"].as_str().unwrap_or("?"),
                v["note"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
