//! perigee's REST API types (`/api/v2`): the requests and responses the control plane serves
//! and the CLI reads, written once. The control plane (`provider`) and the Kubernetes
//! provisioner (`perigee-kube`, which reads a provider's pod settings) depend on this crate;
//! it depends on no other perigee crate but `relay-core` (for TLS, with the `client` feature).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod devurls;
#[cfg(feature = "client")]
pub mod http;
pub mod k8s_schema;
pub mod orgs;
pub mod provider_settings;
pub mod providers;
pub mod satellites;
pub mod users;
pub mod workspaces;
