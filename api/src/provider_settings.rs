//! A provider's features and Kubernetes settings (stored as one JSON column), and the edit
//! request that changes them, validated as a whole before anything is written.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::k8s_schema::{self, SchemaError};

fn yes() -> bool {
    true
}

/// What a provider's workspaces get.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Features {
    /// Tunnels carry an inner channel encrypted between the CLI and the agent.
    #[serde(default)]
    pub e2e_encryption: bool,
    /// SSH to its workspaces is allowed.
    #[serde(default = "yes")]
    pub external_ssh: bool,
    /// URL its agents use to reach the control plane and their home edge, instead of the
    /// deployment's access URL.
    #[serde(default)]
    pub access_url: Option<String>,
    /// Storage class of workspace volumes (cluster default when unset).
    #[serde(default)]
    pub storage_class: Option<String>,
    /// Service account workspace pods run as (per-workspace account when annotations are set).
    #[serde(default)]
    pub service_account: Option<String>,
    /// Peer-to-peer WebRTC connections (else the envproxy path only).
    #[serde(default = "yes")]
    pub networking_v2: bool,
}

impl Default for Features {
    fn default() -> Self {
        Self {
            e2e_encryption: false,
            external_ssh: true,
            access_url: None,
            storage_class: None,
            service_account: None,
            networking_v2: true,
        }
    }
}

/// Kubernetes settings, as JSON that has passed [`k8s_schema`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Kubernetes {
    /// `core/v1.Toleration` list.
    #[serde(default)]
    pub pod_tolerations: Vec<Value>,
    /// Node labels the pod must match.
    #[serde(default)]
    pub pod_node_selector: Map<String, Value>,
    /// Annotations of the per-workspace service account; values may use `{{.UserEmail}}`.
    #[serde(default)]
    pub service_account_annotations: Map<String, Value>,
    /// `core/v1.Affinity`; `None` means the default affinity, `{}` none.
    #[serde(default)]
    pub affinity: Option<Value>,
}

impl Kubernetes {
    /// The affinity pods get: the configured one, else the documented default.
    pub fn effective_affinity(&self) -> Value {
        self.affinity
            .clone()
            .unwrap_or_else(k8s_schema::default_affinity)
    }
}

/// Everything stored in `providers.settings`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProviderSettings {
    /// Features.
    #[serde(default)]
    pub features: Features,
    /// Kubernetes settings.
    #[serde(default)]
    pub kubernetes: Kubernetes,
}

impl ProviderSettings {
    /// What a provisioner applies to one workspace's pod: the Kubernetes settings with the
    /// affinity resolved and annotation templates rendered for the workspace's owner.
    pub fn pod_settings(&self, user_email: &str) -> Value {
        let annotations: Map<String, Value> = self
            .kubernetes
            .service_account_annotations
            .iter()
            .map(|(k, v)| {
                let text = v.as_str().unwrap_or_default();
                (
                    k.clone(),
                    Value::String(k8s_schema::render_template(text, user_email)),
                )
            })
            .collect();
        serde_json::json!({
            "storage_class": self.features.storage_class,
            "service_account": self.features.service_account,
            "pod_tolerations": self.kubernetes.pod_tolerations,
            "pod_node_selector": self.kubernetes.pod_node_selector,
            "affinity": self.kubernetes.effective_affinity(),
            "service_account_annotations": annotations,
        })
    }

    /// Parses the stored column (an unreadable value falls back to the defaults, logged).
    pub fn from_column(s: &str) -> Self {
        serde_json::from_str(s).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "unreadable provider settings; using defaults");
            Self::default()
        })
    }
}

/// Feature changes; absent fields stay as they are, `""` clears a text field.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct FeaturesEdit {
    /// See [`Features::e2e_encryption`].
    pub e2e_encryption: Option<bool>,
    /// See [`Features::external_ssh`].
    pub external_ssh: Option<bool>,
    /// See [`Features::access_url`].
    pub access_url: Option<String>,
    /// See [`Features::storage_class`].
    pub storage_class: Option<String>,
    /// See [`Features::service_account`].
    pub service_account: Option<String>,
    /// See [`Features::networking_v2`].
    pub networking_v2: Option<bool>,
}

/// `PATCH /api/v2/providers/{name}`: every field optional; the whole edit applies or none.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ProviderEdit {
    /// New name.
    #[serde(default)]
    #[cfg_attr(feature = "schema", schemars(schema_with = "crate::label_schema"))]
    pub name: Option<String>,
    /// Organizations to add to the allowlist.
    #[serde(default)]
    pub orgs_add: Vec<String>,
    /// Organizations to remove from the allowlist.
    #[serde(default)]
    pub orgs_remove: Vec<String>,
    /// The whole allowlist (instead of add/remove).
    pub orgs_set: Option<Vec<String>>,
    /// `true` makes this the default provider (the default moves; it is never unset).
    pub default: Option<bool>,
    /// Feature changes.
    pub features: Option<FeaturesEdit>,
    /// Kubernetes settings by key (`pod_tolerations`, `pod_node_selector`,
    /// `service_account_annotations`, `affinity`); `null` resets one to its default.
    pub kubernetes: Option<Map<String, Value>>,
}

/// The Kubernetes setting keys, as the API and `--k8s-file` name them.
pub const KUBERNETES_KEYS: &[&str] = &[
    "pod_tolerations",
    "pod_node_selector",
    "service_account_annotations",
    "affinity",
];

fn text(v: &str) -> Option<String> {
    let v = v.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

fn check_access_url(v: &str) -> Result<(), SchemaError> {
    let bad = |reason: &str| SchemaError {
        field: "features.access_url".into(),
        reason: reason.into(),
    };
    let rest = v
        .strip_prefix("https://")
        .or_else(|| v.strip_prefix("http://"))
        .ok_or_else(|| bad("must be an http:// or https:// URL"))?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty() || host.contains('@') || v.chars().any(char::is_whitespace) {
        return Err(bad("must be a URL with a host and no credentials"));
    }
    Ok(())
}

fn check_k8s_name(field: &str, v: &str) -> Result<(), SchemaError> {
    let ok = v.len() <= 253
        && v.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(())
    } else {
        Err(SchemaError {
            field: field.into(),
            reason: format!("{v:?} is not a Kubernetes resource name (lowercase DNS subdomain)"),
        })
    }
}

impl ProviderSettings {
    /// The settings after `edit`, every value checked; `self` is untouched on error.
    pub fn edited(&self, edit: &ProviderEdit) -> Result<Self, SchemaError> {
        let mut next = self.clone();
        if let Some(f) = &edit.features {
            let nf = &mut next.features;
            if let Some(v) = f.e2e_encryption {
                nf.e2e_encryption = v;
            }
            if let Some(v) = f.external_ssh {
                nf.external_ssh = v;
            }
            if let Some(v) = f.networking_v2 {
                nf.networking_v2 = v;
            }
            if let Some(v) = &f.access_url {
                let v = text(v);
                if let Some(u) = &v {
                    check_access_url(u)?;
                }
                nf.access_url = v.map(|u| u.trim_end_matches('/').to_owned());
            }
            if let Some(v) = &f.storage_class {
                let v = text(v);
                if let Some(n) = &v {
                    check_k8s_name("features.storage_class", n)?;
                }
                nf.storage_class = v;
            }
            if let Some(v) = &f.service_account {
                let v = text(v);
                if let Some(n) = &v {
                    check_k8s_name("features.service_account", n)?;
                }
                nf.service_account = v;
            }
        }
        if let Some(k) = &edit.kubernetes {
            next.kubernetes = edited_kubernetes(&next.kubernetes, k)?;
        }
        Ok(next)
    }
}

fn edited_kubernetes(cur: &Kubernetes, k: &Map<String, Value>) -> Result<Kubernetes, SchemaError> {
    let mut next = cur.clone();
    for (key, v) in k {
        let field = format!("kubernetes.{key}");
        match (key.as_str(), v) {
            ("pod_tolerations", Value::Null) => next.pod_tolerations.clear(),
            ("pod_tolerations", v) => {
                k8s_schema::check_tolerations(&field, v)?;
                next.pod_tolerations = v.as_array().cloned().unwrap_or_default();
            }
            ("pod_node_selector", Value::Null) => next.pod_node_selector.clear(),
            ("pod_node_selector", v) => {
                k8s_schema::check_string_map(&field, v, false)?;
                next.pod_node_selector = v.as_object().cloned().unwrap_or_default();
            }
            ("service_account_annotations", Value::Null) => {
                next.service_account_annotations.clear()
            }
            ("service_account_annotations", v) => {
                k8s_schema::check_string_map(&field, v, true)?;
                next.service_account_annotations = v.as_object().cloned().unwrap_or_default();
            }
            ("affinity", Value::Null) => next.affinity = None,
            ("affinity", v) => {
                k8s_schema::check_affinity(&field, v)?;
                next.affinity = Some(v.clone());
            }
            _ => {
                return Err(SchemaError {
                    field,
                    reason: format!("unknown setting (known: {})", KUBERNETES_KEYS.join(", ")),
                })
            }
        }
    }
    Ok(next)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn edit(v: Value) -> ProviderEdit {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn edits_apply_as_a_whole_and_refusals_name_the_field() {
        let s = ProviderSettings::default();
        assert!(s.features.external_ssh && s.features.networking_v2);
        assert_eq!(
            s.kubernetes.effective_affinity(),
            k8s_schema::default_affinity()
        );
        let next = s
            .edited(&edit(json!({
                "features": {"e2e_encryption": true, "access_url": "https://eu.example.com/", "storage_class": "fast-ssd"},
                "kubernetes": {"affinity": {}, "pod_node_selector": {"pool": "ws"}}
            })))
            .unwrap();
        assert!(next.features.e2e_encryption);
        assert_eq!(
            next.features.access_url.as_deref(),
            Some("https://eu.example.com")
        );
        assert_eq!(next.kubernetes.effective_affinity(), json!({}));
        let reset = next
            .edited(&edit(
                json!({"kubernetes": {"affinity": null}, "features": {"storage_class": ""}}),
            ))
            .unwrap();
        assert_eq!(reset.kubernetes.affinity, None);
        assert_eq!(reset.features.storage_class, None);
        for (bad, field) in [
            (
                json!({"features": {"access_url": "ftp://x"}}),
                "features.access_url",
            ),
            (
                json!({"features": {"storage_class": "Fast SSD"}}),
                "features.storage_class",
            ),
            (json!({"kubernetes": {"affinty": {}}}), "kubernetes.affinty"),
            (
                json!({"kubernetes": {"service_account_annotations": {"a": "{{.Email}}"}}}),
                "kubernetes.service_account_annotations[\"a\"]",
            ),
        ] {
            let e = s.edited(&edit(bad)).unwrap_err();
            assert_eq!(e.field, field, "{e}");
        }
    }
}
