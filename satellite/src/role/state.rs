//! What a satellite remembers across restarts (it has no database): the last configuration
//! the control plane gave it and the agents the control plane vouched for. With it, a
//! satellite restarted while the control plane is down still serves tunnels and accepts its
//! agents back. Kept in `<data-dir>/satellite-state.json`, mode 0600 (it holds the mesh key).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::AgentIdentity;
use relay_core::mesh::EdgeConfig;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Saved {
    config: Option<EdgeConfig>,
    /// Agent token hash → (workspace id, workspace name).
    agents: BTreeMap<String, (String, String)>,
}

/// The state file and its contents.
pub(super) struct SatelliteState {
    path: PathBuf,
    saved: Mutex<Saved>,
}

impl SatelliteState {
    /// Loads the state kept in `path` (empty when missing or unreadable).
    pub(super) fn load(path: PathBuf) -> Self {
        let saved = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            path,
            saved: Mutex::new(saved),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Saved) -> T) -> T {
        match self.saved.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    fn persist(&self, s: &Saved) {
        match serde_json::to_vec(s) {
            Ok(bytes) => {
                if let Err(e) = relay_core::tls::write_private(&self.path, &bytes) {
                    tracing::warn!(path = %self.path.display(), error = %e, "cannot save satellite state");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot encode satellite state"),
        }
    }

    /// The configuration received last, if any.
    pub(super) fn config(&self) -> Option<EdgeConfig> {
        self.with(|s| s.config.clone())
    }

    /// Remembers a configuration (written only when it changed).
    pub(super) fn set_config(&self, cfg: &EdgeConfig) {
        self.with(|s| {
            let changed = s
                .config
                .as_ref()
                .and_then(|c| serde_json::to_string(c).ok())
                != serde_json::to_string(cfg).ok();
            if changed {
                s.config = Some(cfg.clone());
                self.persist(s);
            }
        });
    }

    /// The agent the control plane vouched for under this token hash.
    pub(super) fn agent(&self, token_hash: &str) -> Option<AgentIdentity> {
        self.with(|s| {
            s.agents.get(token_hash).map(|(id, name)| AgentIdentity {
                workspace_id: id.clone(),
                workspace_name: name.clone(),
            })
        })
    }

    /// Remembers (or, with `None`, forgets) an agent.
    pub(super) fn set_agent(&self, token_hash: &str, id: Option<&AgentIdentity>) {
        self.with(|s| {
            let new = id.map(|i| (i.workspace_id.clone(), i.workspace_name.clone()));
            if s.agents.get(token_hash) != new.as_ref() {
                match new {
                    Some(v) => s.agents.insert(token_hash.to_owned(), v),
                    None => s.agents.remove(token_hash),
                };
                self.persist(s);
            }
        });
    }
}
