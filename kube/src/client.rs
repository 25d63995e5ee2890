//! [`KubeProvisioner`]: the workspace objects of [`crate::spec`] made, read and removed
//! through the Kubernetes API (kube-rs).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, ServiceAccount};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, Client};
use perigee_provision::{
    ProvisionError, ProvisionFuture, Provisioner, WorkspaceSpec, WorkspaceState,
};
use tracing::info;

use crate::spec::{self, PodConfig};

/// Runs workspaces as pods through a Kubernetes API server.
pub struct KubeProvisioner {
    client: Client,
    cfg: PodConfig,
}

/// Container waiting reasons that will not resolve by waiting.
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

fn err(what: &str, e: impl std::fmt::Display) -> ProvisionError {
    ProvisionError::new(format!("{what}: {e}"))
}

fn status_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

impl KubeProvisioner {
    /// A provisioner using `client` (in-cluster configuration, a kubeconfig, or a test
    /// server) with `cfg`.
    pub fn new(client: Client, cfg: PodConfig) -> Self {
        Self { client, cfg }
    }

    /// The client from the environment: in-cluster service account, else `KUBECONFIG`.
    /// Without `namespace`, workspaces go to the client's default namespace (in a cluster:
    /// the provider pod's own; else the kubeconfig context's).
    pub async fn from_environment(
        mut cfg: PodConfig,
        namespace: Option<String>,
    ) -> Result<Self, ProvisionError> {
        let client = Client::try_default()
            .await
            .map_err(|e| err("Kubernetes client configuration", e))?;
        cfg.namespace = namespace.unwrap_or_else(|| client.default_namespace().to_owned());
        Ok(Self::new(client, cfg))
    }

    /// The namespace workspaces go to.
    pub fn namespace(&self) -> &str {
        &self.cfg.namespace
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), &self.cfg.namespace)
    }

    /// Creates `obj` unless it exists.
    async fn ensure<K>(&self, what: &str, obj: &K) -> Result<(), ProvisionError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        match self.api::<K>().create(&PostParams::default(), obj).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(409) => Ok(()),
            Err(e) => Err(err(&format!("creating {what}"), e)),
        }
    }

    /// Deletes `name` unless it is gone.
    async fn remove<K>(&self, what: &str, name: &str) -> Result<(), ProvisionError>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        <K as kube::Resource>::DynamicType: Default,
    {
        match self.api::<K>().delete(name, &DeleteParams::default()).await {
            Ok(_) => Ok(()),
            Err(e) if status_code(&e) == Some(404) => Ok(()),
            Err(e) => Err(err(&format!("deleting {what} {name}"), e)),
        }
    }

    async fn create_parts(&self, ws: &WorkspaceSpec) -> Result<(), ProvisionError> {
        self.ensure("the agent token secret", &spec::secret(&self.cfg, ws))
            .await?;
        self.ensure("the home volume claim", &spec::pvc(&self.cfg, ws))
            .await?;
        if let Some(sa) =
            spec::service_account(&self.cfg, ws).map_err(|e| err("service account", e))?
        {
            self.ensure("the service account", &sa).await?;
        }
        Ok(())
    }

    async fn start_pod(&self, ws: &WorkspaceSpec) -> Result<(), ProvisionError> {
        let pod = spec::pod(&self.cfg, ws).map_err(|e| err("pod", e))?;
        self.ensure("the workspace pod", &pod).await?;
        info!(workspace = %ws.name, pod = %spec::pod_name(&ws.id), "workspace pod created");
        Ok(())
    }

    async fn pod_state(&self, id: &str) -> Result<WorkspaceState, ProvisionError> {
        let pod = self
            .api::<Pod>()
            .get_opt(&spec::pod_name(id))
            .await
            .map_err(|e| err("reading the pod", e))?;
        let Some(pod) = pod else {
            let kept = self
                .api::<Secret>()
                .get_opt(&spec::secret_name(id))
                .await
                .map_err(|e| err("reading the secret", e))?;
            return Ok(if kept.is_some() {
                WorkspaceState::Stopped
            } else {
                WorkspaceState::Missing
            });
        };
        Ok(state_of(&pod))
    }
}

/// A pod's status as a workspace state.
pub fn state_of(pod: &Pod) -> WorkspaceState {
    let Some(st) = &pod.status else {
        return WorkspaceState::Starting("Pending".into());
    };
    for c in st.container_statuses.iter().flatten() {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            let reason = w.reason.clone().unwrap_or_default();
            if STUCK.contains(&reason.as_str()) {
                let msg = w.message.clone().unwrap_or_default();
                return WorkspaceState::Failed(
                    format!("{reason}: {msg}")
                        .trim_end_matches([':', ' '])
                        .to_owned(),
                );
            }
        }
    }
    for c in st.conditions.iter().flatten() {
        if c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
        {
            return WorkspaceState::Failed(format!(
                "Unschedulable: {}",
                c.message.clone().unwrap_or_default()
            ));
        }
    }
    match st.phase.as_deref() {
        Some("Running") => {
            let ready = st.container_statuses.iter().flatten().all(|c| c.ready);
            if ready {
                WorkspaceState::Running
            } else {
                WorkspaceState::Starting("containers not ready".into())
            }
        }
        Some("Failed") => WorkspaceState::Failed(
            st.message
                .clone()
                .or_else(|| st.reason.clone())
                .unwrap_or_else(|| "the pod failed".into()),
        ),
        Some("Succeeded") => WorkspaceState::Failed("the workspace container exited".into()),
        other => {
            let waiting = st
                .container_statuses
                .iter()
                .flatten()
                .find_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone());
            WorkspaceState::Starting(
                waiting.unwrap_or_else(|| other.unwrap_or("Pending").to_owned()),
            )
        }
    }
}

impl Provisioner for KubeProvisioner {
    fn create<'a>(
        &'a self,
        ws: &'a WorkspaceSpec,
    ) -> ProvisionFuture<'a, Result<(), ProvisionError>> {
        // Creating and starting are the same: make what is missing, then the pod.
        self.start(ws)
    }

    fn start<'a>(
        &'a self,
        ws: &'a WorkspaceSpec,
    ) -> ProvisionFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            // A start also repairs missing parts (a volume deleted by hand, say).
            self.create_parts(ws).await?;
            self.start_pod(ws).await
        })
    }

    fn stop<'a>(&'a self, id: &'a str) -> ProvisionFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move { self.remove::<Pod>("pod", &spec::pod_name(id)).await })
    }

    fn delete<'a>(&'a self, id: &'a str) -> ProvisionFuture<'a, Result<(), ProvisionError>> {
        Box::pin(async move {
            self.remove::<Pod>("pod", &spec::pod_name(id)).await?;
            self.remove::<ServiceAccount>("service account", &spec::service_account_name(id))
                .await?;
            self.remove::<PersistentVolumeClaim>("volume claim", &spec::pvc_name(id))
                .await?;
            self.remove::<Secret>("secret", &spec::secret_name(id))
                .await
        })
    }

    fn state<'a>(
        &'a self,
        id: &'a str,
    ) -> ProvisionFuture<'a, Result<WorkspaceState, ProvisionError>> {
        Box::pin(self.pod_state(id))
    }

    fn list(&self) -> ProvisionFuture<'_, Result<Vec<String>, ProvisionError>> {
        Box::pin(async move {
            // Every workspace has its token secret for as long as it exists.
            let secrets = self
                .api::<Secret>()
                .list(&ListParams::default().labels("app.kubernetes.io/managed-by=perigee"))
                .await
                .map_err(|e| err("listing workspaces", e))?;
            Ok(secrets
                .items
                .iter()
                .filter_map(|s| {
                    s.metadata
                        .labels
                        .as_ref()?
                        .get(spec::WORKSPACE_LABEL)
                        .cloned()
                })
                .collect())
        })
    }
}
