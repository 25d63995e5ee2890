//! End-to-end tests: real `perigee` processes, real OpenSSH, network namespaces.
//!
//! Each test starts its own server on port 0 in its own directory; readiness comes from the
//! server's stdout line, never from sleeping.

#![allow(unreachable_pub, clippy::unwrap_used)]

mod admin_ui;
mod api_fuzz;
mod bad_input;
mod cdp;
mod charts;
mod config_ssh;
mod delay;
mod devurl_app;
mod devurl_browser;
mod devurl_satellite;
mod devurls;
mod e2e_encryption;
#[path = "../../kube/tests/common/mod.rs"]
mod fake_k8s;
mod forward;
mod harness;
mod isolation;
mod isolation_provider;
mod isolation_restart;
mod isolation_rules;
mod kube_builtin;
mod kube_provider;
mod netkit;
mod netns;
mod orgs;
mod provider_rules;
mod providers;
mod proxy;
mod regions;
mod replicas;
mod resilience;
mod restart;
mod satellites;
mod ssh;
mod ssh_resume;
mod stop_start;
mod turn_edge;
mod webrtc;
mod webrtc_netns;
