//! `perigee providers …` (admins and site managers).

use perigee_api::providers::{
    CordonRequest, CreateProvider, Edited, Provider, ProviderCreated, ProviderDeleted,
};
use perigee_api::workspaces::Empty;
use serde_json::{json, Value};

use crate::workspaces::Output;
use perigee_client::api::Client;

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
    /// Show one provider with its features and Kubernetes settings, as JSON.
    Show {
        /// Provider name.
        name: String,
    },
    /// Change a provider: name, organization allowlist, default, features and Kubernetes
    /// settings. The whole edit applies, or nothing does.
    ///
    /// Kubernetes settings are JSON checked against the Kubernetes v1 schema; `null` resets
    /// one (the affinity to the default anti-affinity), `{}` as affinity means none.
    /// Annotation values may use {{.UserEmail}}.
    #[command(after_help = EDIT_EXAMPLES)]
    Edit(Box<EditArgs>),
    /// Delete a remote provider; refused while it holds workspaces (it says whose).
    Rm {
        /// Provider name.
        name: String,
    },
    /// Stop new workspaces from going to a provider; existing ones keep working.
    Cordon {
        /// Provider name.
        name: String,
        /// Why, shown to users whose create is refused.
        #[arg(long)]
        reason: String,
    },
    /// Let a cordoned provider take new workspaces again.
    Uncordon {
        /// Provider name.
        name: String,
    },
}

const EDIT_EXAMPLES: &str = "Examples:
  perigee providers edit eu --org-add eng --default
  perigee providers edit eu --orgs eng,research --e2e-encryption on --external-ssh off
  perigee providers edit eu --affinity '{}' --pod-node-selector '{\"pool\":\"workspaces\"}'
  perigee providers edit eu --service-account-annotations \\
      '{\"iam.gke.io/gcp-service-account\":\"{{.UserEmail}}\"}'
  perigee providers edit eu --k8s-file eu-k8s.json   # keys: pod_tolerations, pod_node_selector,
                                                     # service_account_annotations, affinity";

/// Flags of `perigee providers edit`.
#[derive(clap::Args)]
pub(crate) struct EditArgs {
    /// Provider name.
    name: String,
    /// New name.
    #[arg(long = "name", value_name = "NEW_NAME")]
    new_name: Option<String>,
    /// Add an organization to the allowlist (repeatable).
    #[arg(long, value_name = "ORG")]
    org_add: Vec<String>,
    /// Remove an organization from the allowlist (repeatable); refused while it has
    /// workspaces there.
    #[arg(long, value_name = "ORG")]
    org_remove: Vec<String>,
    /// Set the whole allowlist (comma-separated; '' for none).
    #[arg(long, value_name = "ORG,ORG", conflicts_with_all = ["org_add", "org_remove"])]
    orgs: Option<String>,
    /// Make this the default provider (the only one).
    #[arg(long)]
    default: bool,
    /// End-to-end encryption of tunnels between the CLI and the agent.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    e2e_encryption: Option<bool>,
    /// SSH to this provider's workspaces.
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    external_ssh: Option<bool>,
    /// Peer-to-peer WebRTC connections (else the relayed path only).
    #[arg(long, value_name = "on|off", value_parser = on_off)]
    networking_v2: Option<bool>,
    /// URL this provider's agents use to reach the control plane ('' to unset).
    #[arg(long, value_name = "URL")]
    access_url: Option<String>,
    /// Storage class of workspace volumes ('' for the cluster default).
    #[arg(long)]
    storage_class: Option<String>,
    /// Service account of workspace pods ('' to unset).
    #[arg(long)]
    service_account: Option<String>,
    /// Pod tolerations: a JSON list of core/v1 Toleration.
    #[arg(long, value_name = "JSON")]
    pod_tolerations: Option<String>,
    /// Pod node selector: a JSON object of label to value.
    #[arg(long, value_name = "JSON")]
    pod_node_selector: Option<String>,
    /// Annotations of the per-workspace service account (JSON object; values may use
    /// {{.UserEmail}}).
    #[arg(long, value_name = "JSON")]
    service_account_annotations: Option<String>,
    /// Pod affinity: a core/v1 Affinity; `null` for the default, `{}` for none.
    #[arg(long, value_name = "JSON")]
    affinity: Option<String>,
    /// A JSON file with any of pod_tolerations, pod_node_selector,
    /// service_account_annotations, affinity (flags given as well win).
    #[arg(long, value_name = "FILE")]
    k8s_file: Option<std::path::PathBuf>,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value = "table")]
    output: Output,
}

fn on_off(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!("{s:?}: say on or off")),
    }
}

fn json_arg(flag: &str, text: &str) -> anyhow::Result<Value> {
    serde_json::from_str(text).map_err(|e| anyhow::anyhow!("--{flag}: not valid JSON: {e}"))
}

/// The PATCH body for `perigee providers edit`.
fn edit_body(a: &EditArgs) -> anyhow::Result<Value> {
    let mut k8s = serde_json::Map::new();
    if let Some(path) = &a.k8s_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| anyhow::anyhow!("--k8s-file {}: {e}", path.display()))?;
        match json_arg("k8s-file", &text)? {
            Value::Object(m) => k8s.extend(m),
            _ => anyhow::bail!("--k8s-file {}: must hold a JSON object", path.display()),
        }
    }
    for (flag, key, v) in [
        ("pod-tolerations", "pod_tolerations", &a.pod_tolerations),
        (
            "pod-node-selector",
            "pod_node_selector",
            &a.pod_node_selector,
        ),
        (
            "service-account-annotations",
            "service_account_annotations",
            &a.service_account_annotations,
        ),
        ("affinity", "affinity", &a.affinity),
    ] {
        if let Some(text) = v {
            k8s.insert(key.to_owned(), json_arg(flag, text)?);
        }
    }
    let mut features = serde_json::Map::new();
    for (key, v) in [
        ("e2e_encryption", a.e2e_encryption),
        ("external_ssh", a.external_ssh),
        ("networking_v2", a.networking_v2),
    ] {
        if let Some(b) = v {
            features.insert(key.to_owned(), Value::Bool(b));
        }
    }
    for (key, v) in [
        ("access_url", &a.access_url),
        ("storage_class", &a.storage_class),
        ("service_account", &a.service_account),
    ] {
        if let Some(t) = v {
            features.insert(key.to_owned(), Value::String(t.clone()));
        }
    }
    let mut body = serde_json::Map::new();
    if let Some(n) = &a.new_name {
        body.insert("name".into(), json!(n));
    }
    if !a.org_add.is_empty() {
        body.insert("orgs_add".into(), json!(a.org_add));
    }
    if !a.org_remove.is_empty() {
        body.insert("orgs_remove".into(), json!(a.org_remove));
    }
    if let Some(set) = &a.orgs {
        let set: Vec<&str> = set
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        body.insert("orgs_set".into(), json!(set));
    }
    if a.default {
        body.insert("default".into(), json!(true));
    }
    if !features.is_empty() {
        body.insert("features".into(), Value::Object(features));
    }
    if !k8s.is_empty() {
        body.insert("kubernetes".into(), Value::Object(k8s));
    }
    anyhow::ensure!(
        !body.is_empty(),
        "nothing to change: give at least one flag (see `perigee providers edit --help`)"
    );
    Ok(Value::Object(body))
}

fn path_of(name: &str) -> anyhow::Result<String> {
    anyhow::ensure!(
        !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "{name:?} is not a provider name"
    );
    Ok(format!("/api/v2/providers/{name}"))
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
            let v: ProviderCreated = c
                .post(
                    "/api/v2/providers",
                    &CreateProvider {
                        name: name.clone(),
                        hostname,
                        cluster_address,
                        namespace,
                    },
                )
                .await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => {
                    println!("{}", v.helm_command);
                    eprintln!(
                        "Created provider {name} (pending until it registers). Run the command above against the cluster; the REMOTE token in it is shown only once."
                    );
                }
            }
        }
        ProvidersCmd::Ls { output } => {
            let v: Vec<Provider> = c.get("/api/v2/providers").await?;
            match output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v)?),
                Output::Table => {
                    let rows: Vec<Vec<String>> = v.iter().map(row).collect();
                    print!("{}", crate::table::render(&COLUMNS, &rows));
                }
            }
        }
        ProvidersCmd::Show { name } => {
            let v: Provider = c.get(&path_of(&name)?).await?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
        ProvidersCmd::Edit(a) => {
            let body = edit_body(&a)?;
            let v: Edited = c.patch(&path_of(&a.name)?, &body).await?;
            for w in &v.warnings {
                eprintln!("warning: {w}");
            }
            match a.output {
                Output::Json => println!("{}", serde_json::to_string_pretty(&v.provider)?),
                Output::Table => {
                    print!("{}", crate::table::render(&COLUMNS, &[row(&v.provider)]));
                    eprintln!("Updated provider {}.", v.provider.name);
                }
            }
        }
        ProvidersCmd::Rm { name } => {
            let _: ProviderDeleted = c.delete(&path_of(&name)?).await?;
            eprintln!("Deleted provider {name}; its REMOTE token no longer works.");
        }
        ProvidersCmd::Cordon { name, reason } => {
            let _: Provider = c
                .post(
                    &format!("{}/cordon", path_of(&name)?),
                    &CordonRequest { reason },
                )
                .await?;
            eprintln!("Cordoned provider {name}: new workspaces are refused there; existing ones keep running.");
        }
        ProvidersCmd::Uncordon { name } => {
            let _: Provider = c
                .post(&format!("{}/uncordon", path_of(&name)?), &Empty {})
                .await?;
            eprintln!("Uncordoned provider {name}: it takes new workspaces again.");
        }
    }
    Ok(())
}

const COLUMNS: [&str; 6] = [
    "NAME",
    "STATUS",
    "DEFAULT",
    "ORGS",
    "WORKSPACES",
    "HOSTNAME",
];

fn row(p: &Provider) -> Vec<String> {
    let mut status = p.status.clone();
    if let Some(m) = &p.status_message {
        status = format!("{status}: {m}");
    }
    if let Some(r) = &p.cordon_reason {
        status = format!("{status}, cordoned: {r}");
    }
    vec![
        p.name.clone(),
        status,
        if p.default { "default" } else { "" }.to_owned(),
        if p.orgs.is_empty() {
            "(none)".to_owned()
        } else {
            p.orgs.join(",")
        },
        p.workspaces.to_string(),
        p.hostname.clone().unwrap_or_default(),
    ]
}
