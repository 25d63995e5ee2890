//! The session: which deployment and which API token, kept with mode 0600 in the config
//! directory (`PERIGEE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/perigee`); `PERIGEE_URL` and
//! `PERIGEE_TOKEN` override it.

use std::path::PathBuf;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// A deployment and an API token.
#[derive(Serialize, Deserialize)]
pub struct Session {
    /// The deployment's URL (no trailing slash).
    pub url: String,
    /// The API token.
    pub token: String,
}

/// The config directory.
pub fn config_dir() -> anyhow::Result<PathBuf> {
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
pub fn load() -> anyhow::Result<Session> {
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

/// Stores `session`, mode 0600; answers where.
pub fn save(session: &Session) -> anyhow::Result<PathBuf> {
    let dir = config_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = session_path()?;
    relay_core::tls::write_private(&path, &serde_json::to_vec_pretty(session)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
