//! The edges of each deployment as its last regions list named them
//! (`<config-dir>/known-edges.json`): where the API is tried when the session's URL cannot
//! be reached, since every edge serves it.

use std::path::PathBuf;

fn path() -> anyhow::Result<PathBuf> {
    Ok(crate::session::config_dir()?.join("known-edges.json"))
}

/// The edge URLs of a deployment (by session URL) from its last regions list.
pub fn urls(deployment: &str) -> Vec<String> {
    let all: std::collections::BTreeMap<String, Vec<String>> = path()
        .ok()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    all.get(deployment).cloned().unwrap_or_default()
}

/// Remembers a deployment's edge URLs.
pub fn store(deployment: &str, urls: Vec<String>) {
    let Ok(path) = path() else { return };
    let mut all: std::collections::BTreeMap<String, Vec<String>> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if all.get(deployment) == Some(&urls) {
        return;
    }
    all.insert(deployment.to_owned(), urls);
    if let Ok(bytes) = serde_json::to_vec_pretty(&all) {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = relay_core::tls::write_private(&path, &bytes);
    }
}
