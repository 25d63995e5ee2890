//! `perigee orgs …`, `perigee users …` and `perigee tokens …`.

use serde_json::{json, Value};

use crate::workspaces::Output;
use perigee_client::api::Client;

/// Manage organizations.
#[derive(clap::Subcommand)]
pub(crate) enum OrgsCmd {
    /// Create an organization (admins); it may use the built-in provider from the start.
    Create {
        /// Organization name (lowercase letters, digits, hyphens).
        name: String,
    },
    /// List organizations (admins and site managers see all; others see theirs).
    Ls {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Add a user to an organization (admins).
    AddMember {
        /// Organization name.
        org: String,
        /// User name.
        username: String,
    },
}

/// Manage users.
#[derive(clap::Subcommand)]
pub(crate) enum UsersCmd {
    /// Create a user (admins); prints their first API token once.
    Create {
        /// User name (lowercase letters, digits, hyphens).
        username: String,
        /// Site role: admin, site-manager (manages providers) or member.
        #[arg(long, default_value = "member")]
        role: String,
        /// Organization to add them to (repeatable).
        #[arg(long = "org")]
        orgs: Vec<String>,
        /// Their e-mail address (providers may render it into annotations: {{.UserEmail}}).
        #[arg(long)]
        email: Option<String>,
    },
    /// List users with their role and organizations (admins and site managers).
    Ls {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Set your password for browser sign-in (dev URLs), read from standard input
    /// (10-1024 characters; one line).
    Passwd,
}

/// Manage your API tokens.
#[derive(clap::Subcommand)]
pub(crate) enum TokensCmd {
    /// Create an API token (printed once; store it like a password).
    Create {
        /// A name to tell it by (1-64 characters), e.g. the machine it is for.
        name: String,
    },
    /// List your API tokens (never their secrets); `*` marks the one in use.
    Ls {
        /// Output format.
        #[arg(short = 'o', long, value_enum, default_value = "table")]
        output: Output,
    },
    /// Revoke an API token: it stops working at once, and tunnels and SSH sessions can no
    /// longer start with tickets issued to it (open ones keep running).
    Rm {
        /// The token's id (see `perigee tokens ls`).
        id: String,
    },
}

pub(crate) async fn tokens(cmd: TokensCmd) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    match cmd {
        TokensCmd::Create { name } => {
            let v = c
                .post("/api/v2/users/me/tokens", &json!({ "name": name }))
                .await?;
            println!("{}", v["token"].as_str().unwrap_or_default());
            eprintln!("Created API token {name:?}. It is shown only once.");
        }
        TokensCmd::Ls { output } => {
            let v = c.get("/api/v2/users/me/tokens").await?;
            print(output, &v, &["ID", "NAME", "CREATED", ""], |t| {
                let mark = if t["current"] == true { "*" } else { "" };
                vec![
                    s(t, "id"),
                    s(t, "name"),
                    s(t, "created_at"),
                    mark.to_owned(),
                ]
            });
        }
        TokensCmd::Rm { id } => {
            c.delete(&format!("/api/v2/users/me/tokens/{id}")).await?;
            eprintln!("Revoked API token {id}.");
        }
    }
    Ok(())
}

fn print(output: Output, v: &Value, header: &[&str], row: impl Fn(&Value) -> Vec<String>) {
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(v).unwrap_or_default()),
        Output::Table => {
            let rows: Vec<Vec<String>> = v
                .as_array()
                .map(|a| a.iter().map(&row).collect())
                .unwrap_or_default();
            print!("{}", crate::table::render(header, &rows));
        }
    }
}

fn s(v: &Value, k: &str) -> String {
    match &v[k] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

pub(crate) async fn orgs(cmd: OrgsCmd) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    match cmd {
        OrgsCmd::Create { name } => {
            c.post("/api/v2/orgs", &json!({ "name": name })).await?;
            eprintln!("Created organization {name}. It may use the built-in provider.");
        }
        OrgsCmd::Ls { output } => {
            let v = c.get("/api/v2/orgs").await?;
            print(output, &v, &["NAME", "MEMBERS", "WORKSPACES"], |o| {
                vec![s(o, "name"), s(o, "members"), s(o, "workspaces")]
            });
        }
        OrgsCmd::AddMember { org, username } => {
            c.post(
                &format!("/api/v2/orgs/{org}/members"),
                &json!({ "username": username }),
            )
            .await?;
            eprintln!("Added {username} to {org}.");
        }
    }
    Ok(())
}

pub(crate) async fn users(cmd: UsersCmd) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    match cmd {
        UsersCmd::Create {
            username,
            role,
            orgs,
            email,
        } => {
            let v = c
                .post(
                    "/api/v2/users",
                    &json!({ "username": username, "role": role, "orgs": orgs, "email": email }),
                )
                .await?;
            println!("{}", v["token"].as_str().unwrap_or_default());
            eprintln!(
                "Created {role} {username}. The API token above is shown only once; they log in with:\n\n  perigee login {} --token TOKEN\n",
                c.base
            );
        }
        UsersCmd::Passwd => {
            use std::io::IsTerminal as _;
            if std::io::stdin().is_terminal() {
                eprint!("New password (shown as you type; or pipe it in): ");
            }
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\r', '\n']);
            let v = c
                .put(
                    "/api/v2/users/me/password",
                    &json!({ "password": password }),
                )
                .await?;
            eprintln!(
                "Password set for {}; sign in to dev URLs with it.",
                v["updated"].as_str().unwrap_or_default()
            );
        }
        UsersCmd::Ls { output } => {
            let v = c.get("/api/v2/users").await?;
            print(output, &v, &["USERNAME", "ROLE", "ORGS"], |u| {
                let orgs: Vec<&str> = u["orgs"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                vec![s(u, "username"), s(u, "role"), orgs.join(",")]
            });
        }
    }
    Ok(())
}
