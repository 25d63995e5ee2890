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

/// The schema of the names that appear in host names (workspaces, organizations, users,
/// providers, satellites): a DNS label of 1-32 lowercase letters, digits and single hyphens,
/// as the control plane checks them.
#[cfg(feature = "schema")]
pub(crate) fn label_schema(_: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    use schemars::schema::{InstanceType, SchemaObject, StringValidation};
    SchemaObject {
        instance_type: Some(InstanceType::String.into()),
        string: Some(Box::new(StringValidation {
            max_length: Some(32),
            min_length: Some(1),
            pattern: Some("^[a-z0-9]+(-[a-z0-9]+)*$".into()),
        })),
        ..Default::default()
    }
    .into()
}
