//! `perigee login` (the session itself is `perigee_client::session`).

use std::io::BufRead as _;

use anyhow::Context as _;
use perigee_client::session::Session;

/// Arguments of `perigee login`.
#[derive(clap::Args)]
pub(crate) struct LoginArgs {
    /// The deployment's URL, e.g. https://perigee.example.com.
    #[arg(env = "PERIGEE_URL")]
    url: String,
    /// An API token (else read from stdin; the first admin's is in <data-dir>/admin-token).
    #[arg(long, env = "PERIGEE_TOKEN", hide_env_values = true)]
    token: Option<String>,
}

pub(crate) async fn login(a: LoginArgs) -> anyhow::Result<()> {
    let url = a.url.trim_end_matches('/').to_owned();
    anyhow::ensure!(
        url.starts_with("http://") || url.starts_with("https://"),
        "{url:?} is not an http:// or https:// URL"
    );
    let token = match a.token {
        Some(t) => t,
        None => {
            eprint!("API token for {url}: ");
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line
        }
    };
    let session = Session {
        url,
        token: token.trim().to_owned(),
    };
    let me: perigee_api::workspaces::User = perigee_client::api::Client::new(&session)?
        .get("/api/v2/users/me")
        .await
        .context("checking the token")?;
    let path = perigee_client::session::save(&session)?;
    eprintln!(
        "Logged in to {} as {}. Session saved in {}.",
        session.url,
        me.username,
        path.display()
    );
    Ok(())
}
