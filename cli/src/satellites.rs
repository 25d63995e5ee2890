//! `perigee satellites create|ls|rm` and `perigee keys rotate` (admins).

use perigee_api::satellites::{CreateSatellite, KeyRotated, SatelliteCreated, SatelliteList};
use perigee_api::workspaces::{Deleted, Empty};

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
            let v: SatelliteCreated = c
                .post(
                    "/api/v2/satellites",
                    &CreateSatellite {
                        name: a.name.clone(),
                        region: a.region.clone(),
                        access_url: a.access_url.clone(),
                        devurl_host: a.devurl_host.clone(),
                    },
                )
                .await?;
            println!("{}", v.token);
            eprintln!(
                "Created satellite {} (region {}). The token above is shown only once.\n\
                 Start the satellite on a host in that region with:\n\n  {}\n",
                a.name, a.region, v.command
            );
        }
        SatellitesCmd::Ls(a) => {
            let v: SatelliteList = c.get("/api/v2/satellites").await?;
            match a.output {
                crate::workspaces::Output::Json => {
                    println!("{}", serde_json::to_string_pretty(&v)?)
                }
                crate::workspaces::Output::Table => print_table(&v),
            }
        }
        SatellitesCmd::Rm(a) => {
            let _: Deleted = c.delete(&format!("/api/v2/satellites/{}", a.name)).await?;
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

fn print_table(v: &SatelliteList) {
    let cp_version = &v.control_plane_version;
    let mut warnings = Vec::new();
    let rows: Vec<Vec<String>> = v
        .satellites
        .iter()
        .map(|s| {
            let sat = &s.satellite;
            let mut version = sat.version.clone().unwrap_or_else(|| "-".into());
            if s.version_mismatch {
                version.push_str(" (!)");
                warnings.push(format!(
                    "warning: satellite {} runs {} but the control plane runs {cp_version}",
                    sat.name,
                    sat.version.as_deref().unwrap_or("")
                ));
            }
            let health = match &s.error {
                Some(e) => format!("{}: {e}", s.health.as_str()),
                None => s.health.as_str().to_owned(),
            };
            vec![
                sat.name.clone(),
                sat.region.clone(),
                sat.access_url.clone(),
                version,
                ago(sat.last_heartbeat_at),
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
            let v: KeyRotated = c.post("/api/v2/keys/rotate", &Empty {}).await?;
            eprintln!("New ticket-signing key {}. {}", v.kid, v.note);
        }
    }
    Ok(())
}
