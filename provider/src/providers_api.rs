//! REST API for workspace providers: list, create, edit, delete, cordon (admins and site
//! managers), and the heartbeat of a provider's own deployment.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use perigee_api::providers::{
    AgentTokenAnswer, AgentTokenRequest, AssignedWorkspace, CordonRequest, CreateProvider, Desired,
    HeartbeatAnswer, ProviderCreated, ProviderDeleted,
};

use crate::provider_settings::ProviderEdit;
use crate::request::{Body, Caller};
use crate::store_provider_edit::Edited;
use crate::store_providers::{NewProvider, Provider};
use crate::{ApiError, ControlPlane};

/// Roles that manage providers.
pub const MANAGERS: &[&str] = &["admin", "site-manager"];

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/api/v2/providers", get(list).post(create))
        .route("/api/v2/providers/heartbeat", post(heartbeat))
        .route("/api/v2/providers/agent-token", post(agent_token))
        .route(
            "/api/v2/providers/{name}",
            get(show).patch(edit).delete(remove),
        )
        .route("/api/v2/providers/{name}/cordon", post(cordon))
        .route("/api/v2/providers/{name}/uncordon", post(uncordon))
        .with_state(cp)
}

fn url_parts(url: &str) -> Option<(String, String, bool)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_owned();
    let host = uri.host()?.trim_matches(['[', ']']).to_ascii_lowercase();
    let bare = uri
        .path_and_query()
        .is_none_or(|p| p.as_str() == "/" || p.as_str().is_empty());
    Some((scheme, host, bare))
}

/// Checks a provider's hostname against the deployment's access URL: an absolute URL with no
/// path, the same scheme, and a host that is a subdomain of the access URL's host by whole
/// labels (`ws.perigee.example.com` for `perigee.example.com`; not `evilperigee.example.com`).
pub fn check_hostname(access_url: &str, hostname: &str) -> Result<(), String> {
    let (a_scheme, a_host, _) = url_parts(access_url)
        .ok_or_else(|| format!("the access URL {access_url:?} is not a URL"))?;
    let Some((scheme, host, bare)) = url_parts(hostname) else {
        return Err(format!(
            "{hostname:?} is not an absolute URL like https://ws.{a_host}"
        ));
    };
    if !matches!(scheme.as_str(), "http" | "https") || !bare {
        return Err(format!(
            "{hostname:?} must be http(s)://HOST[:PORT] with no path"
        ));
    }
    if scheme != a_scheme {
        return Err(format!(
            "{hostname:?} uses {scheme} but the deployment's access URL {access_url} uses {a_scheme}"
        ));
    }
    if a_host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "the deployment's access URL {access_url} names an IP address, which has no subdomains; give the server an --access-url with a DNS name"
        ));
    }
    let prefix = host
        .strip_suffix(&a_host)
        .and_then(|p| p.strip_suffix('.'))
        .filter(|p| !p.is_empty());
    let Some(prefix) = prefix else {
        return Err(format!(
            "the host {host:?} is not a subdomain of the deployment's host {a_host:?} (e.g. ws.{a_host})"
        ));
    };
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if !prefix.split('.').all(label_ok) {
        return Err(format!("the host {host:?} has an invalid DNS label"));
    }
    Ok(())
}

/// Checks a cluster address: an absolute http(s) URL.
pub fn check_cluster_address(url: &str) -> Result<(), String> {
    match url_parts(url) {
        Some((scheme, host, _))
            if matches!(scheme.as_str(), "http" | "https") && !host.is_empty() =>
        {
            Ok(())
        }
        _ => Err(format!(
            "{url:?} is not a valid URL (e.g. https://10.0.0.1:6443 or https://k8s.example.com)"
        )),
    }
}

/// A provider's deployment reports in with its REMOTE token (the first report registers it:
/// `pending → ready`, or `error` with the failure it reports).
async fn heartbeat(
    State(cp): State<ControlPlane>,
    headers: http::HeaderMap,
    Body(hb): Body<crate::store_providers::ProviderHeartbeat>,
) -> Result<Json<HeartbeatAnswer>, ApiError> {
    let p = provider_caller(&cp, &headers).await?;
    if hb.heartbeat_secs == 0 || hb.heartbeat_secs > 3600 {
        return Err(ApiError::bad_request("heartbeat_secs: must be 1-3600").on("heartbeat_secs"));
    }
    use crate::store_providers::{MAX_REPORTS, REPORT_STATES};
    if hb.workspaces.len() > MAX_REPORTS {
        return Err(ApiError::bad_request(format!(
            "workspaces: at most {MAX_REPORTS} reports per heartbeat"
        )));
    }
    if let Some(w) = hb
        .workspaces
        .iter()
        .find(|w| !REPORT_STATES.contains(&w.state.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "workspaces: state {:?} of {:?} is not one of {}",
            w.state,
            w.id,
            REPORT_STATES.join(", ")
        )));
    }
    cp.store.provider_heartbeat(&p.id, &hb).await?;
    if p.status != "ready" || hb.error.is_some() {
        tracing::info!(provider = %p.name, error = ?hb.error, "provider reported in");
    }
    // What it should run, and where each agent dials: the provider's access URL override
    // when set, else the workspace's home edge.
    let override_url = p.settings.features.access_url.clone();
    let mut workspaces = Vec::new();
    for w in cp.store.provider_workspaces(&p.id).await? {
        let agent_url = match &override_url {
            Some(u) => u.clone(),
            None => cp.edge_url(&w.home_edge).await?,
        };
        workspaces.push(AssignedWorkspace {
            kubernetes: p.settings.pod_settings(&w.owner_email),
            id: w.id,
            name: w.name,
            agent_url,
            desired: if w.stopped {
                Desired::Stopped
            } else {
                Desired::Running
            },
        });
    }
    Ok(Json(HeartbeatAnswer {
        name: p.name,
        control_plane_version: env!("CARGO_PKG_VERSION").to_owned(),
        workspaces,
    }))
}

/// The provider's REMOTE token from the `Authorization` header.
async fn provider_caller(
    cp: &ControlPlane,
    headers: &http::HeaderMap,
) -> Result<Provider, ApiError> {
    let token = crate::request::bearer(headers)
        .ok_or_else(|| ApiError::unauthorized("missing provider token (Authorization: Bearer)"))?;
    cp.store.provider_by_token(token.trim()).await?.ok_or_else(|| {
        ApiError::unauthorized(
            "provider token not recognised: the provider was removed, or the token is for another deployment",
        )
    })
}

/// A provider's deployment asks for the agent token of a workspace it is about to start.
async fn agent_token(
    State(cp): State<ControlPlane>,
    headers: http::HeaderMap,
    Body(req): Body<AgentTokenRequest>,
) -> Result<Json<AgentTokenAnswer>, ApiError> {
    let p = provider_caller(&cp, &headers).await?;
    match cp.store.issue_agent_token(&p.id, &req.workspace_id).await? {
        Some(t) => Ok(Json(AgentTokenAnswer {
            token: t.expose().to_owned(),
        })),
        None => Err(ApiError::not_found(format!(
            "workspace_id: no workspace {:?} on provider {:?}",
            req.workspace_id, p.name
        ))),
    }
}

async fn list(
    State(cp): State<ControlPlane>,
    Caller(_): Caller,
) -> Result<Json<Vec<Provider>>, ApiError> {
    Ok(Json(cp.store.providers().await?))
}

/// The Helm command that installs a provider, and the same as data.
fn helm(cp: &ControlPlane, p: &Provider, token: &str) -> (String, serde_json::Value) {
    let hostname = p.hostname.clone().unwrap_or_default();
    let host = url_parts(&hostname).map(|(_, h, _)| h).unwrap_or_default();
    let mut sets = vec![
        ("provider.token", token.to_owned()),
        ("provider.accessURL", hostname),
        ("ingress.host", host),
        (
            "provider.clusterAddress",
            p.cluster_address.clone().unwrap_or_default(),
        ),
        ("controlPlane.accessURL", cp.primary.access_url.clone()),
    ];
    if let Some(ns) = &p.namespace {
        sets.push(("provider.namespace", ns.clone()));
    }
    let version = env!("CARGO_PKG_VERSION");
    let mut cmd = format!(
        "helm upgrade perigee-workspace-provider perigee/workspace-provider --version={version} --atomic --install"
    );
    for (k, v) in &sets {
        cmd.push_str(&format!(" --set {k}={v}"));
    }
    let values: serde_json::Map<String, serde_json::Value> = sets
        .into_iter()
        .map(|(k, v)| (k.to_owned(), serde_json::Value::String(v)))
        .collect();
    (
        cmd,
        serde_json::json!({
            "release": "perigee-workspace-provider",
            "chart": "perigee/workspace-provider",
            "version": version,
            "set": values,
        }),
    )
}

async fn create(
    State(cp): State<ControlPlane>,
    caller: Caller,
    Body(req): Body<CreateProvider>,
) -> Result<Json<ProviderCreated>, ApiError> {
    caller.require(MANAGERS, "create providers")?;
    check_provider_name(&req.name)?;
    let hostname = req.hostname.trim_end_matches('/');
    check_hostname(&cp.primary.access_url, hostname)
        .map_err(|e| ApiError::bad_request(format!("hostname: {e}")).on("hostname"))?;
    check_cluster_address(&req.cluster_address).map_err(|e| {
        ApiError::bad_request(format!("cluster_address: {e}")).on("cluster_address")
    })?;
    if let Some(ns) = &req.namespace {
        crate::request::validate_label("namespace", ns).map_err(|e| e.on("namespace"))?;
    }
    let new = NewProvider {
        name: &req.name,
        hostname,
        cluster_address: &req.cluster_address,
        namespace: req.namespace.as_deref(),
    };
    let Some((p, token)) = cp.store.create_provider(&new).await? else {
        return Err(ApiError::conflict(format!(
            "name: a provider named {:?} exists (see `perigee providers ls`)",
            req.name
        ))
        .on("name"));
    };
    let (command, data) = helm(&cp, &p, token.expose());
    Ok(Json(ProviderCreated {
        provider: p,
        token: token.expose().to_owned(),
        helm_command: command,
        helm: data,
    }))
}

/// Path segments the provider routes use for themselves.
const RESERVED: &[&str] = &["heartbeat", "agent-token"];

fn check_provider_name(name: &str) -> Result<(), ApiError> {
    crate::request::validate_label("name", name).map_err(|e| e.on("name"))?;
    if RESERVED.contains(&name) {
        return Err(ApiError::bad_request(format!("name: {name:?} is reserved")).on("name"));
    }
    Ok(())
}

async fn show(
    State(cp): State<ControlPlane>,
    Caller(_): Caller,
    Path(name): Path<String>,
) -> Result<Json<Provider>, ApiError> {
    cp.store
        .provider_by_name(&name)
        .await?
        .map(Json)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no provider named {name:?} (see `perigee providers ls`)"
            ))
        })
}

async fn edit(
    State(cp): State<ControlPlane>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<ProviderEdit>,
) -> Result<Json<Edited>, ApiError> {
    caller.require(MANAGERS, "edit providers")?;
    if let Some(new) = &req.name {
        check_provider_name(new)?;
    }
    let edited = cp.store.edit_provider(&name, &req).await?;
    tracing::info!(provider = %edited.provider.name, by = %caller.0.username, "provider edited");
    Ok(Json(edited))
}

async fn remove(
    State(cp): State<ControlPlane>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<ProviderDeleted>, ApiError> {
    caller.require(MANAGERS, "delete providers")?;
    let p = cp.store.delete_provider(&name).await?;
    tracing::info!(provider = %p.name, by = %caller.0.username, "provider deleted");
    Ok(Json(ProviderDeleted { deleted: p.name }))
}

/// Longest cordon reason kept.
const MAX_REASON: usize = 500;

async fn cordon(
    State(cp): State<ControlPlane>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<CordonRequest>,
) -> Result<Json<Provider>, ApiError> {
    caller.require(MANAGERS, "cordon providers")?;
    let reason = req.reason.trim();
    if reason.is_empty() || reason.len() > MAX_REASON || reason.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "reason: say why, in 1-{MAX_REASON} characters on one line"
        ))
        .on("reason"));
    }
    Ok(Json(cp.store.cordon_provider(&name, Some(reason)).await?))
}

async fn uncordon(
    State(cp): State<ControlPlane>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Provider>, ApiError> {
    caller.require(MANAGERS, "uncordon providers")?;
    Ok(Json(cp.store.cordon_provider(&name, None).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_must_be_subdomains_by_whole_labels_with_the_same_scheme() {
        let a = "https://perigee.example.com";
        assert_eq!(check_hostname(a, "https://ws.perigee.example.com"), Ok(()));
        assert_eq!(
            check_hostname(a, "https://a.b.perigee.example.com:8443"),
            Ok(())
        );
        assert_eq!(check_hostname(a, "https://WS.Perigee.Example.com"), Ok(()));
        for (bad, why) in [
            ("https://evilperigee.example.com", "not a subdomain"),
            ("https://perigee.example.com", "not a subdomain"),
            ("https://perigee.example.com.evil.net", "not a subdomain"),
            ("http://ws.perigee.example.com", "uses http"),
            ("https://ws.perigee.example.com/path", "no path"),
            ("ws.perigee.example.com", "not an absolute URL"),
            ("https://-x.perigee.example.com", "invalid DNS label"),
            ("ftp://ws.perigee.example.com", "no path"),
        ] {
            let e = check_hostname(a, bad).expect_err(bad);
            assert!(e.contains(why), "{bad}: {e}");
        }
        let e = check_hostname("https://127.0.0.1:3000", "https://ws.127.0.0.1").expect_err("ip");
        assert!(e.contains("IP address"), "{e}");
        assert!(check_cluster_address("https://10.0.0.1:6443").is_ok());
        assert!(check_cluster_address("not a url").is_err());
        assert!(check_cluster_address("10.0.0.1:6443").is_err());
    }
}
