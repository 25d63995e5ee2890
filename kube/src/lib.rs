//! The Kubernetes provisioner (`perigee workspace-provider --provisioner kubernetes`).
//!
//! A workspace is four objects in the provider's namespace ([`spec`]): a Secret with the
//! agent token, a PersistentVolumeClaim for its home, a ServiceAccount when the provider
//! sets annotations, and the Pod. Stopping deletes the pod and keeps the rest; deleting
//! removes all. The pod's phase and container states become the workspace's state
//! (`ErrImagePull`, an unschedulable pod: failed with the reason).

mod client;
pub mod spec;

pub use client::{state_of, KubeProvisioner};
