//! `perigee orgs …`, `perigee users …` and `perigee tokens …`.

use perigee_api::orgs::{
    AddMember, CreateOrg, CreateUser, MemberAdded, Org, OrgView, PasswordRequest, PasswordSet,
    UserCreated, UserView,
};
use perigee_api::users::{NewToken, Revoked, TokenRequest, TokenView};

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
            let t: NewToken = c
                .post(
                    "/api/v2/users/me/tokens",
                    &TokenRequest { name: name.clone() },
                )
                .await?;
            println!("{}", t.token);
            eprintln!("Created API token {name:?}. It is shown only once.");
        }
        TokensCmd::Ls { output } => {
            let list: Vec<TokenView> = c.get("/api/v2/users/me/tokens").await?;
            print(output, &list, &["ID", "NAME", "CREATED", ""], |t| {
                vec![
                    t.token.id.clone(),
                    t.token.name.clone(),
                    t.token.created_at.to_string(),
                    if t.current { "*" } else { "" }.to_owned(),
                ]
            });
        }
        TokensCmd::Rm { id } => {
            let _: Revoked = c.delete(&format!("/api/v2/users/me/tokens/{id}")).await?;
            eprintln!("Revoked API token {id}.");
        }
    }
    Ok(())
}

/// `items` as JSON or as a table of `row`s.
fn print<T: serde::Serialize>(
    output: Output,
    items: &[T],
    header: &[&str],
    row: impl Fn(&T) -> Vec<String>,
) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        ),
        Output::Table => {
            let rows: Vec<Vec<String>> = items.iter().map(row).collect();
            print!("{}", crate::table::render(header, &rows));
        }
    }
}

pub(crate) async fn orgs(cmd: OrgsCmd) -> anyhow::Result<()> {
    let c = Client::from_session()?;
    match cmd {
        OrgsCmd::Create { name } => {
            let _: Org = c
                .post("/api/v2/orgs", &CreateOrg { name: name.clone() })
                .await?;
            eprintln!("Created organization {name}. It may use the built-in provider.");
        }
        OrgsCmd::Ls { output } => {
            let list: Vec<OrgView> = c.get("/api/v2/orgs").await?;
            print(output, &list, &["NAME", "MEMBERS", "WORKSPACES"], |o| {
                vec![
                    o.org.name.clone(),
                    o.members.to_string(),
                    o.workspaces.to_string(),
                ]
            });
        }
        OrgsCmd::AddMember { org, username } => {
            let _: MemberAdded = c
                .post(
                    &format!("/api/v2/orgs/{org}/members"),
                    &AddMember {
                        username: username.clone(),
                    },
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
            let u: UserCreated = c
                .post(
                    "/api/v2/users",
                    &CreateUser {
                        username: username.clone(),
                        role: role.clone(),
                        orgs,
                        email,
                    },
                )
                .await?;
            println!("{}", u.token);
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
            let password = line.trim_end_matches(['\r', '\n']).to_owned();
            let v: PasswordSet = c
                .put("/api/v2/users/me/password", &PasswordRequest { password })
                .await?;
            eprintln!(
                "Password set for {}; sign in to dev URLs with it.",
                v.updated
            );
        }
        UsersCmd::Ls { output } => {
            let list: Vec<UserView> = c.get("/api/v2/users").await?;
            print(output, &list, &["USERNAME", "ROLE", "ORGS"], |u| {
                vec![
                    u.user.username.clone(),
                    u.user.role.clone(),
                    u.orgs.join(","),
                ]
            });
        }
    }
    Ok(())
}
