//! The CLI's session: which deployment and which API token, kept with mode 0600.

use std::io::BufRead as _;
use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

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

#[derive(Serialize, Deserialize)]
pub(crate) struct Session {
    pub(crate) url: String,
    pub(crate) token: String,
}

pub(crate) fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("PERIGEE_CONFIG_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(d).join("perigee"));
    }
    let home = std::env::var_os("HOME")
        .context("neither PERIGEE_CONFIG_DIR, XDG_CONFIG_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".config/perigee"))
}

fn session_path() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("session.json"))
}

/// The session: `PERIGEE_URL`/`PERIGEE_TOKEN` override the stored one.
pub(crate) fn load() -> anyhow::Result<Session> {
    let env = |k| std::env::var(k).ok().filter(|v: &String| !v.is_empty());
    let stored: Option<Session> = session_path()
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let url = env("PERIGEE_URL").or_else(|| stored.as_ref().map(|s| s.url.clone()));
    let token = env("PERIGEE_TOKEN").or_else(|| stored.as_ref().map(|s| s.token.clone()));
    match (url, token) {
        (Some(url), Some(token)) => Ok(Session { url: url.trim_end_matches('/').to_owned(), token }),
        _ => anyhow::bail!("not logged in: run `perigee login URL --token TOKEN` (or set PERIGEE_URL and PERIGEE_TOKEN)"),
    }
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
    let client = crate::client::Client::new(&session)?;
    let me = client
        .get("/api/v2/users/me")
        .await
        .context("checking the token")?;
    let dir = config_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = session_path()?;
    relay_core::tls::write_private(&path, &serde_json::to_vec_pretty(&session)?)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "Logged in to {} as {}. Session saved in {}.",
        session.url,
        me["username"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(())
}
