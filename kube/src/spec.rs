//! The Kubernetes objects of one workspace, built from its spec and the provider's pod
//! settings: a Secret with the agent token, a PersistentVolumeClaim for its home, a
//! ServiceAccount when the provider sets annotations (rendered for the owner), and the Pod
//! running the workspace image with the agent.
//!
//! Names derive from the workspace id (`perigee-ws-ID…`), so every object is found again
//! without a database.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, Container, EnvVar, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, Pod, PodSecurityContext, PodSpec, ResourceRequirements,
    SeccompProfile, Secret, SecretVolumeSource, SecurityContext, ServiceAccount, Toleration,
    Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use perigee_provision::WorkspaceSpec;
use serde_json::Value;

/// Label every object of a workspace carries, with its id.
pub const WORKSPACE_LABEL: &str = "perigee.dev/workspace-id";
/// Where the agent token is mounted in the pod.
pub const TOKEN_DIR: &str = "/var/run/perigee";
/// The workspace user's home in the pod.
pub const HOME: &str = "/home/perigee";

/// How this provider runs workspace pods (`perigee workspace-provider` flags).
#[derive(Debug, Clone)]
pub struct PodConfig {
    /// Namespace of every workspace object.
    pub namespace: String,
    /// Image with the developer's tools and the `perigee` binary.
    pub image: String,
    /// Size of each home volume (a Kubernetes quantity, e.g. `10Gi`).
    pub home_size: String,
    /// CPU and memory each workspace asks for (requests).
    pub cpu_request: String,
    /// Memory request.
    pub memory_request: String,
    /// The service account the provisioner itself runs as: no workspace pod may run as it
    /// (it can make and delete pods and read every workspace's secret).
    pub own_service_account: Option<String>,
}

impl Default for PodConfig {
    fn default() -> Self {
        Self {
            namespace: "default".into(),
            image: format!(
                "ghcr.io/perigee-dev/workspace:{}",
                env!("CARGO_PKG_VERSION")
            ),
            home_size: "10Gi".into(),
            cpu_request: "250m".into(),
            memory_request: "512Mi".into(),
            own_service_account: None,
        }
    }
}

/// Why the pod settings cannot become objects (they are checked on the way in; this is for
/// a stored value the schema has since tightened).
#[derive(Debug, thiserror::Error)]
#[error("pod settings: {field}: {reason}")]
pub struct SpecError {
    /// The setting.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

/// Names of a workspace's objects.
pub fn pod_name(id: &str) -> String {
    format!("perigee-ws-{id}")
}
/// The agent token's Secret.
pub fn secret_name(id: &str) -> String {
    format!("perigee-ws-{id}-agent")
}
/// The home volume's claim.
pub fn pvc_name(id: &str) -> String {
    format!("perigee-ws-{id}-home")
}
/// The per-workspace service account.
pub fn service_account_name(id: &str) -> String {
    format!("perigee-ws-{id}")
}

fn labels(spec: &WorkspaceSpec) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("app.kubernetes.io/name".into(), "perigee-workspace".into());
    l.insert("app.kubernetes.io/managed-by".into(), "perigee".into());
    l.insert(WORKSPACE_LABEL.into(), spec.id.clone());
    // What the default anti-affinity spreads by.
    l.insert(
        perigee_api::k8s_schema::RESOURCE_LABEL.into(),
        "true".into(),
    );
    l
}

fn meta(name: String, cfg: &PodConfig, spec: &WorkspaceSpec) -> ObjectMeta {
    let mut annotations = BTreeMap::new();
    annotations.insert("perigee.dev/workspace-name".into(), spec.name.clone());
    ObjectMeta {
        name: Some(name),
        namespace: Some(cfg.namespace.clone()),
        labels: Some(labels(spec)),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

fn parse<T: serde::de::DeserializeOwned>(field: &'static str, v: &Value) -> Result<T, SpecError> {
    serde_json::from_value(v.clone()).map_err(|e| SpecError {
        field,
        reason: e.to_string(),
    })
}

fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

/// The Secret holding the agent token.
pub fn secret(cfg: &PodConfig, spec: &WorkspaceSpec) -> Secret {
    let mut data = BTreeMap::new();
    data.insert("agent-token".into(), spec.agent_token.expose().to_owned());
    Secret {
        metadata: meta(secret_name(&spec.id), cfg, spec),
        type_: Some("Opaque".into()),
        string_data: Some(data),
        ..Secret::default()
    }
}

/// The home volume's claim, in the provider's storage class (the cluster's default when
/// unset).
pub fn pvc(cfg: &PodConfig, spec: &WorkspaceSpec) -> PersistentVolumeClaim {
    let mut requests = BTreeMap::new();
    requests.insert("storage".into(), Quantity(cfg.home_size.clone()));
    PersistentVolumeClaim {
        metadata: meta(pvc_name(&spec.id), cfg, spec),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: text(&spec.pod_settings["storage_class"]),
            resources: Some(VolumeResourceRequirements {
                requests: Some(requests),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

/// The per-workspace service account: only when the provider sets annotations, which are
/// rendered for the owner (`{{.UserEmail}}`).
pub fn service_account(
    cfg: &PodConfig,
    spec: &WorkspaceSpec,
) -> Result<Option<ServiceAccount>, SpecError> {
    let annotations: BTreeMap<String, String> = parse(
        "service_account_annotations",
        &spec.pod_settings["service_account_annotations"],
    )
    .or_else(|e| {
        if spec.pod_settings["service_account_annotations"].is_null() {
            Ok(BTreeMap::new())
        } else {
            Err(e)
        }
    })?;
    if annotations.is_empty() {
        return Ok(None);
    }
    let mut m = meta(service_account_name(&spec.id), cfg, spec);
    if let Some(a) = m.annotations.as_mut() {
        a.extend(annotations);
    }
    Ok(Some(ServiceAccount {
        metadata: m,
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }))
}

/// The workspace pod: the image with the agent, its home and token mounted, the provider's
/// tolerations, node selector and affinity (the resolved one: the default when unset,
/// none when `{}`), the service account it runs as.
pub fn pod(cfg: &PodConfig, spec: &WorkspaceSpec) -> Result<Pod, SpecError> {
    let s = &spec.pod_settings;
    let tolerations: Vec<Toleration> = if s["pod_tolerations"].is_null() {
        Vec::new()
    } else {
        parse("pod_tolerations", &s["pod_tolerations"])?
    };
    let node_selector: BTreeMap<String, String> = if s["pod_node_selector"].is_null() {
        BTreeMap::new()
    } else {
        parse("pod_node_selector", &s["pod_node_selector"])?
    };
    let affinity: Option<Affinity> = match &s["affinity"] {
        Value::Null => None,
        Value::Object(m) if m.is_empty() => None,
        v => Some(parse("affinity", v)?),
    };
    let per_workspace = service_account(cfg, spec)?.is_some();
    let account = if per_workspace {
        Some(service_account_name(&spec.id))
    } else {
        text(&s["service_account"])
    };
    if account.is_some() && account == cfg.own_service_account {
        return Err(SpecError {
            field: "service_account",
            reason: format!(
                "{:?} is the provider's own service account: a workspace may not act with its rights",
                account.unwrap_or_default()
            ),
        });
    }
    let env = |name: &str, value: &str| EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    };
    let mut requests = BTreeMap::new();
    requests.insert("cpu".into(), Quantity(cfg.cpu_request.clone()));
    requests.insert("memory".into(), Quantity(cfg.memory_request.clone()));
    let container = Container {
        name: "workspace".into(),
        image: Some(cfg.image.clone()),
        args: Some(vec!["agent".into()]),
        command: Some(vec!["perigee".into()]),
        env: Some(vec![
            env("PERIGEE_AGENT_URL", &spec.agent_url),
            env(
                "PERIGEE_AGENT_TOKEN_FILE",
                &format!("{TOKEN_DIR}/agent-token"),
            ),
            env("PERIGEE_AGENT_WORKSPACE_ID", &spec.id),
            env("HOME", HOME),
        ]),
        working_dir: Some(HOME.into()),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "home".into(),
                mount_path: HOME.into(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "agent-token".into(),
                mount_path: TOKEN_DIR.into(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(requests),
            ..ResourceRequirements::default()
        }),
        // The user's code runs here: no capability, no way to gain one, the runtime's
        // default system-call filter.
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            seccomp_profile: Some(runtime_default()),
            ..SecurityContext::default()
        }),
        ..Container::default()
    };
    Ok(Pod {
        metadata: meta(pod_name(&spec.id), cfg, spec),
        spec: Some(PodSpec {
            containers: vec![container],
            restart_policy: Some("Always".into()),
            service_account_name: account.clone(),
            // A Kubernetes API token only for the per-workspace account the provider's
            // annotations ask for (cloud workload identity); a named account without
            // annotations runs without one, as does the namespace's default.
            automount_service_account_token: Some(per_workspace),
            tolerations: (!tolerations.is_empty()).then_some(tolerations),
            node_selector: (!node_selector.is_empty()).then_some(node_selector),
            affinity,
            security_context: Some(PodSecurityContext {
                run_as_non_root: Some(true),
                run_as_user: Some(1000),
                run_as_group: Some(1000),
                fs_group: Some(1000),
                seccomp_profile: Some(runtime_default()),
                ..PodSecurityContext::default()
            }),
            volumes: Some(vec![
                Volume {
                    name: "home".into(),
                    persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                        claim_name: pvc_name(&spec.id),
                        ..PersistentVolumeClaimVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                Volume {
                    name: "agent-token".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(secret_name(&spec.id)),
                        default_mode: Some(0o400),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                },
            ]),
            ..PodSpec::default()
        }),
        ..Pod::default()
    })
}

/// The container runtime's default seccomp profile.
fn runtime_default() -> SeccompProfile {
    SeccompProfile {
        type_: "RuntimeDefault".into(),
        ..SeccompProfile::default()
    }
}
