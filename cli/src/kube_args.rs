//! `--provisioner kubernetes` and its settings, shared by `perigee server` (the built-in
//! provider in the control plane's own cluster) and `perigee workspace-provider`.

use tracing::info;

/// Settings of workspace pods.
#[derive(clap::Args)]
pub(crate) struct KubeArgs {
    /// Namespace of workspace pods [default: this pod's namespace, else the kubeconfig's].
    #[arg(long, env = "PERIGEE_WORKSPACE_NAMESPACE")]
    pub(crate) workspace_namespace: Option<String>,
    /// Image of workspace pods: the developer's tools with `perigee` on its PATH
    /// [default: ghcr.io/perigee-dev/workspace:VERSION].
    #[arg(long, env = "PERIGEE_WORKSPACE_IMAGE")]
    pub(crate) workspace_image: Option<String>,
    /// Size of each workspace's home volume (a Kubernetes quantity).
    #[arg(long, env = "PERIGEE_HOME_SIZE", default_value = "10Gi")]
    pub(crate) home_size: String,
    /// The service account this process runs as (the charts set it from the pod): no
    /// workspace may be given it, and the control plane is told so.
    #[arg(
        long = "service-account",
        value_name = "NAME",
        env = "PERIGEE_SERVICE_ACCOUNT"
    )]
    pub(crate) own_service_account: Option<String>,
}

impl KubeArgs {
    /// The Kubernetes provisioner (in-cluster service account or KUBECONFIG), or why not.
    pub(crate) async fn provisioner(&self) -> Result<perigee_kube::KubeProvisioner, String> {
        let mut cfg = perigee_kube::spec::PodConfig {
            home_size: self.home_size.clone(),
            own_service_account: self.own_service_account.clone().filter(|s| !s.is_empty()),
            ..perigee_kube::spec::PodConfig::default()
        };
        if let Some(image) = &self.workspace_image {
            cfg.image = image.clone();
        }
        let image = cfg.image.clone();
        let k =
            perigee_kube::KubeProvisioner::from_environment(cfg, self.workspace_namespace.clone())
                .await
                .map_err(|e| format!("startup failed: {e}"))?;
        info!(namespace = %k.namespace(), %image, "running workspaces as Kubernetes pods");
        Ok(k)
    }
}
