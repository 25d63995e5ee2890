//! The Kubernetes settings admins give a provider, checked against the Kubernetes v1 schema
//! for the fields they may hold (tolerations, node selector, annotations, affinity), and the
//! one template field annotation values may use.
//!
//! The types mirror `core/v1` with unknown fields refused, so a typo such as `topologyKy`
//! is an error at edit time with its path, not a pod the cluster rejects later.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Template fields annotation values may use, rendered per workspace.
pub const TEMPLATE_FIELDS: &[&str] = &[".UserEmail"];

/// The label the default anti-affinity spreads workspace pods by.
pub const RESOURCE_LABEL: &str = "com.perigee.resource";

/// The pod affinity used when a provider sets none: prefer not to put two workspace pods on
/// one node (Coder's documented default with its label renamed).
pub fn default_affinity() -> Value {
    serde_json::json!({
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{
                "weight": 1,
                "podAffinityTerm": {
                    "labelSelector": {
                        "matchExpressions": [{
                            "key": RESOURCE_LABEL,
                            "operator": "In",
                            "values": ["true"]
                        }]
                    },
                    "topologyKey": "kubernetes.io/hostname"
                }
            }]
        }
    })
}

/// `core/v1.Toleration`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Toleration {
    key: Option<String>,
    operator: Option<TolerationOperator>,
    value: Option<String>,
    effect: Option<TaintEffect>,
    toleration_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, Serialize)]
enum TolerationOperator {
    Exists,
    Equal,
}

#[derive(Debug, Deserialize, Serialize)]
enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

/// `core/v1.Affinity`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Affinity {
    node_affinity: Option<NodeAffinity>,
    pod_affinity: Option<PodAffinity>,
    pod_anti_affinity: Option<PodAffinity>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NodeAffinity {
    required_during_scheduling_ignored_during_execution: Option<NodeSelector>,
    #[serde(default)]
    preferred_during_scheduling_ignored_during_execution: Vec<PreferredSchedulingTerm>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NodeSelector {
    node_selector_terms: Vec<NodeSelectorTerm>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NodeSelectorTerm {
    #[serde(default)]
    match_expressions: Vec<NodeSelectorRequirement>,
    #[serde(default)]
    match_fields: Vec<NodeSelectorRequirement>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NodeSelectorRequirement {
    key: String,
    operator: NodeSelectorOperator,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
enum NodeSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PreferredSchedulingTerm {
    weight: i32,
    preference: NodeSelectorTerm,
}

/// `core/v1.PodAffinity` and `PodAntiAffinity` (same shape).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodAffinity {
    #[serde(default)]
    required_during_scheduling_ignored_during_execution: Vec<PodAffinityTerm>,
    #[serde(default)]
    preferred_during_scheduling_ignored_during_execution: Vec<WeightedPodAffinityTerm>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct WeightedPodAffinityTerm {
    weight: i32,
    pod_affinity_term: PodAffinityTerm,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PodAffinityTerm {
    label_selector: Option<LabelSelector>,
    namespace_selector: Option<LabelSelector>,
    #[serde(default)]
    namespaces: Vec<String>,
    topology_key: String,
    #[serde(default)]
    match_label_keys: Vec<String>,
    #[serde(default)]
    mismatch_label_keys: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LabelSelector {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    match_expressions: Vec<LabelSelectorRequirement>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct LabelSelectorRequirement {
    key: String,
    operator: LabelSelectorOperator,
    #[serde(default)]
    values: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
enum LabelSelectorOperator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

/// A setting that does not fit the schema: `field` names it (with the path inside), `reason`
/// says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SchemaError {
    /// e.g. `kubernetes.affinity.podAntiAffinity`.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn typed<T: serde::de::DeserializeOwned>(field: &str, v: &Value) -> Result<T, SchemaError> {
    serde_path_to_error::deserialize::<_, T>(v).map_err(|e| {
        let path = e.path().to_string();
        SchemaError {
            field: if path == "." || path.is_empty() {
                field.to_owned()
            } else {
                format!("{field}.{path}")
            },
            reason: e.into_inner().to_string(),
        }
    })
}

/// Checks `pod_tolerations`: a list of `core/v1.Toleration`.
pub fn check_tolerations(field: &str, v: &Value) -> Result<(), SchemaError> {
    let list: Vec<Toleration> = typed(field, v)?;
    for (i, t) in list.iter().enumerate() {
        if matches!(t.operator, Some(TolerationOperator::Exists)) && t.value.is_some() {
            return Err(SchemaError {
                field: format!("{field}[{i}].value"),
                reason: "must be empty when operator is Exists".into(),
            });
        }
        if t.toleration_seconds.is_some() && !matches!(t.effect, Some(TaintEffect::NoExecute)) {
            return Err(SchemaError {
                field: format!("{field}[{i}].tolerationSeconds"),
                reason: "only applies with effect NoExecute".into(),
            });
        }
    }
    Ok(())
}

/// Checks `affinity`: a `core/v1.Affinity` (`{}` is valid and means none).
pub fn check_affinity(field: &str, v: &Value) -> Result<(), SchemaError> {
    let a: Affinity = typed(field, v)?;
    let weights = a
        .pod_affinity
        .iter()
        .chain(a.pod_anti_affinity.iter())
        .flat_map(|p| {
            p.preferred_during_scheduling_ignored_during_execution
                .iter()
        })
        .map(|w| w.weight)
        .chain(a.node_affinity.iter().flat_map(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .iter()
                .map(|p| p.weight)
        }));
    for w in weights {
        if !(1..=100).contains(&w) {
            return Err(SchemaError {
                field: format!("{field}: weight {w}"),
                reason: "weights must be in 1-100".into(),
            });
        }
    }
    Ok(())
}

/// Checks a map of label or annotation keys to string values (`pod_node_selector`,
/// `service_account_annotations`); annotation values may use [`TEMPLATE_FIELDS`].
pub fn check_string_map(
    field: &str,
    v: &Value,
    templated: bool,
) -> Result<BTreeMap<String, String>, SchemaError> {
    let map: BTreeMap<String, String> = typed(field, v)?;
    for (k, val) in &map {
        check_qualified_name(k).map_err(|reason| SchemaError {
            field: format!("{field}[{k:?}]"),
            reason,
        })?;
        if templated {
            check_template(val).map_err(|reason| SchemaError {
                field: format!("{field}[{k:?}]"),
                reason,
            })?;
        } else if val.len() > 63 {
            return Err(SchemaError {
                field: format!("{field}[{k:?}]"),
                reason: "label values are at most 63 characters".into(),
            });
        }
    }
    Ok(map)
}

/// A Kubernetes qualified name: optional DNS-subdomain prefix and `/`, then a name of 1-63
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric.
fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let ok = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !ok {
            return Err(format!("key prefix {p:?} must be a DNS subdomain"));
        }
    }
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && edge_ok(name.bytes().next())
        && edge_ok(name.bytes().last());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "key name {name:?} must be 1-63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
        ))
    }
}

/// Checks every `{{ … }}` in `s` names a known template field.
pub fn check_template(s: &str) -> Result<(), String> {
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err("unclosed \"{{\" in template".into());
        };
        let field = after[..end].trim();
        if !TEMPLATE_FIELDS.contains(&field) {
            return Err(format!(
                "unknown template field {{{{{field}}}}} (known: {})",
                TEMPLATE_FIELDS
                    .iter()
                    .map(|f| format!("{{{{{f}}}}}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

/// Renders a checked template for one workspace's owner.
pub fn render_template(s: &str, user_email: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) if after[..end].trim() == ".UserEmail" => {
                out.push_str(user_email);
                rest = &after[end + 2..];
            }
            _ => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_default_affinity_is_valid_and_typos_are_refused_with_their_path() {
        check_affinity("affinity", &default_affinity()).unwrap();
        check_affinity("affinity", &json!({})).unwrap();
        let mut bad = default_affinity();
        let term = &mut bad["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            [0]["podAffinityTerm"];
        let key = term.as_object_mut().unwrap().remove("topologyKey").unwrap();
        term["topologyKy"] = key;
        let e = check_affinity("affinity", &bad).unwrap_err();
        assert!(e.field.starts_with("affinity.podAntiAffinity"), "{e}");
        assert!(e.reason.contains("topologyKy"), "{e}");
        let e = check_affinity("affinity", &json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 0, "podAffinityTerm": {"topologyKey": "x"}}]}})).unwrap_err();
        assert!(e.reason.contains("1-100"), "{e}");
    }

    #[test]
    fn tolerations_maps_and_templates() {
        check_tolerations(
            "t",
            &json!([{"key": "gpu", "operator": "Equal", "value": "yes", "effect": "NoSchedule"}]),
        )
        .unwrap();
        assert!(check_tolerations("t", &json!([{"operator": "Maybe"}])).is_err());
        assert!(check_tolerations("t", &json!({"key": "x"})).is_err());
        assert!(check_tolerations("t", &json!([{"operator": "Exists", "value": "v"}])).is_err());
        check_string_map("s", &json!({"topology.kubernetes.io/zone": "eu-1a"}), false).unwrap();
        assert!(check_string_map("s", &json!({"bad key": "x"}), false).is_err());
        assert!(check_string_map("s", &json!({"k": 1}), false).is_err());
        let a = json!({"iam.gke.io/gcp-service-account": "{{ .UserEmail }}"});
        check_string_map("a", &a, true).unwrap();
        let e = check_string_map("a", &json!({"k": "{{.UserName}}"}), true).unwrap_err();
        assert!(
            e.reason.contains("unknown template field {{.UserName}}"),
            "{e}"
        );
        assert!(check_template("{{.UserEmail").is_err());
        assert_eq!(
            render_template("sa-{{ .UserEmail }}-x", "ada@example.com"),
            "sa-ada@example.com-x"
        );
    }
}
