//! REST API v2. Authentication: `Authorization: Bearer <API token>` (never a query parameter).

use axum::extract::{Path, State};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use relay_core::ticket::{Claims, MAX_PORTS};
use serde::Deserialize;

use crate::request::{bearer, validate_label, Body, Caller};
use perigee_api::users::{NewToken, TokenRequest};
pub use perigee_api::workspaces::{
    CreateWorkspace, Deleted, IceServer, TicketRequest, TicketResponse, WorkspaceView,
};

use crate::store::{User, Workspace};
use crate::{ApiError, ControlPlane};

/// The port SSH tunnels reach (`ssh -o ProxyCommand='perigee tunnel WS %p'`); refused on
/// providers with external SSH off.
pub const SSH_PORT: u16 = 22;

/// Lifetime of connection tickets (the format allows at most 5 minutes).
pub const TICKET_LIFETIME_SECS: u64 = 240;

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/api/v2/buildinfo", get(buildinfo))
        .route(
            "/api/v2/openapi.json",
            get(|| async { Json(crate::openapi::document()) }),
        )
        .route("/api/v2/users/me", get(me))
        .route(
            "/api/v2/users/me/password",
            put(crate::signin::set_password),
        )
        .route(
            "/api/v2/users/me/tokens",
            post(create_token).get(crate::tokens_api::list_tokens),
        )
        .route(
            "/api/v2/workspaces",
            get(list_workspaces).post(create_workspace),
        )
        .route(
            "/api/v2/workspaces/{name}",
            get(show_workspace).delete(delete_workspace),
        )
        .route("/api/v2/workspaces/{name}/ticket", post(create_ticket))
        .route("/api/v2/workspaces/{name}/stop", post(stop_workspace))
        .route("/api/v2/workspaces/{name}/start", post(start_workspace))
        .route("/api/v2/workspaceagent/e2e-key", post(agent_e2e_key))
        .with_state(cp)
}

async fn buildinfo() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "version": env!("CARGO_PKG_VERSION") }))
}

async fn me(Caller(user): Caller) -> Json<User> {
    Json(user)
}

async fn create_token(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Body(req): Body<TokenRequest>,
) -> Result<Json<NewToken>, ApiError> {
    if req.name.is_empty() || req.name.len() > 64 {
        return Err(ApiError::bad_request("token name must be 1-64 characters"));
    }
    let secret = cp.store.create_api_token(&user.id, &req.name).await?;
    Ok(Json(NewToken {
        token: secret.expose().to_owned(),
    }))
}

fn view(cp: &ControlPlane, ws: Workspace) -> WorkspaceView {
    let agent = if ws.home_edge == cp.primary.name {
        cp.hooks.agent_status(&ws.id)
    } else {
        cp.remote_agent(&ws.id, &ws.home_edge)
    };
    let agent_pid = cp.provisioner.agent_pid(&ws.id);
    WorkspaceView {
        agent_connected: agent.is_some(),
        agent,
        agent_pid,
        workspace: ws,
    }
}

async fn list_workspaces(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
) -> Result<Json<Vec<WorkspaceView>>, ApiError> {
    let list = cp.store.workspaces_of(&user.id).await?;
    Ok(Json(list.into_iter().map(|ws| view(&cp, ws)).collect()))
}

/// The organization a new workspace of `user` goes to.
async fn workspace_org(
    cp: &ControlPlane,
    user: &User,
    asked: Option<&str>,
) -> Result<crate::store_orgs::Org, ApiError> {
    let mine = cp.store.orgs_of(&user.id).await?;
    match asked {
        Some(name) => {
            if let Some(o) = mine.iter().find(|o| o.name == name) {
                return Ok(o.clone());
            }
            match cp.store.org_by_name(name).await? {
                Some(o) if user.role == "admin" => Ok(o),
                Some(_) => Err(ApiError::forbidden(format!(
                    "org: you are not a member of organization {name:?}"
                ))),
                None => Err(ApiError::bad_request(format!(
                    "org: no organization named {name:?} (see `perigee orgs ls`)"
                ))),
            }
        }
        None => match mine.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(ApiError::forbidden(
                "org: you belong to no organization; an admin adds you with `perigee users create` or `perigee orgs add-member`",
            )),
            many => Err(ApiError::bad_request(format!(
                "org: you belong to several organizations ({}); choose one with --org",
                many.iter().map(|o| o.name.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        },
    }
}

/// Workspace names are DNS labels (they appear in dev URL host names).
pub fn validate_name(name: &str) -> Result<(), ApiError> {
    validate_label("workspace name", name)
}

async fn create_workspace(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Body(req): Body<CreateWorkspace>,
) -> Result<Json<WorkspaceView>, ApiError> {
    validate_name(&req.name).map_err(|e| e.on("name"))?;
    if cp
        .store
        .workspace_by_name(&user.id, &req.name)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "you already have a workspace named {:?}",
            req.name
        )));
    }
    // An agent may home on a satellite (near the workspace): it dials that edge.
    let home = match req.edge.as_deref() {
        None => None,
        Some(e) if e == cp.primary.name => None,
        Some(e) => match cp.store.satellite_by_name(e).await? {
            Some(_) => Some(e),
            None => {
                return Err(ApiError::bad_request(format!(
                    "no edge named {e:?} (see `perigee satellites ls`)"
                )))
            }
        },
    };
    let org = workspace_org(&cp, &user, req.org.as_deref()).await?;
    let new = crate::store_provider_edit::NewWorkspace {
        owner: &user,
        org: &org,
        name: &req.name,
        home_edge: home,
        provider: req.provider.as_deref(),
    };
    let (ws, agent_token, provider) = cp.store.create_workspace(&new).await?;
    if !provider.built_in {
        if provider.admins_only && user.role != "admin" {
            let _ = cp.store.delete_workspace(&ws.id).await;
            return Err(ApiError::forbidden(format!(
                "provider {:?} runs workspaces as its own user on its host (its \
                 `perigee workspace-provider` is not root on Linux, so workspaces cannot be \
                 isolated there): only admins may create workspaces on it; choose another \
                 provider with --provider, or ask an admin to run it as root or on Kubernetes",
                provider.name
            ))
            .on("provider"));
        }
        // A remote provider's own `perigee workspace-provider` provisions it.
        return Ok(Json(view(&cp, ws)));
    }
    if let Some(why) = cp.provisioner.admins_only() {
        if user.role != "admin" {
            let _ = cp.store.delete_workspace(&ws.id).await;
            return Err(ApiError::forbidden(why).on("provider"));
        }
    }
    let created = match cp.builtin_spec(&ws, Some(agent_token)).await {
        Ok(spec) => cp
            .provisioner
            .create(&spec)
            .await
            .map_err(|e| ApiError::internal(format!("creating workspace {}: {e}", ws.name))),
        Err(e) => Err(e),
    };
    if let Err(e) = created {
        let _ = cp.store.delete_workspace(&ws.id).await;
        return Err(e);
    }
    Ok(Json(view(&cp, ws)))
}

async fn find(cp: &ControlPlane, user: &User, name: &str) -> Result<Workspace, ApiError> {
    cp.store
        .workspace_by_name(&user.id, name)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no workspace named {name:?} (see `perigee ls`)"))
        })
}

async fn show_workspace(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Json<WorkspaceView>, ApiError> {
    let ws = find(&cp, &user, &name).await?;
    Ok(Json(view(&cp, ws)))
}

async fn delete_workspace(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Json<Deleted>, ApiError> {
    let ws = find(&cp, &user, &name).await?;
    // Revoke first (the agent token stops working), then cut the link, then clean up.
    cp.store.delete_workspace(&ws.id).await?;
    cp.hooks.disconnect(&ws.id);
    cp.provisioner
        .delete(&ws.id)
        .await
        .map_err(|e| ApiError::internal(format!("removing workspace {}: {e}", ws.name)))?;
    Ok(Json(Deleted { deleted: ws.name }))
}

/// Stops a workspace: its home and token stay, its agent (process or pod) goes; a remote
/// provider stops it at its next heartbeat.
async fn stop_workspace(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Json<WorkspaceView>, ApiError> {
    set_running(&cp, &user, &name, false).await
}

/// Starts a stopped workspace again (a remote provider at its next heartbeat).
async fn start_workspace(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Json<WorkspaceView>, ApiError> {
    set_running(&cp, &user, &name, true).await
}

async fn set_running(
    cp: &ControlPlane,
    user: &User,
    name: &str,
    run: bool,
) -> Result<Json<WorkspaceView>, ApiError> {
    let ws = find(cp, user, name).await?;
    let status = if run { "running" } else { "stopped" };
    cp.store.set_workspace_status(&ws.id, status).await?;
    // The built-in provider acts now; a remote one at its next heartbeat.
    if ws.provider == crate::store::BUILT_IN_PROVIDER {
        if run {
            cp.start_builtin(&ws).await?;
        } else {
            cp.stop_builtin(&ws).await?;
        }
    }
    let ws = find(cp, user, name).await?;
    Ok(Json(view(cp, ws)))
}

/// How long TURN credentials in a ticket answer last (allocations are refreshed with them).
pub const TURN_CREDENTIAL_SECS: u64 = 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentKey {
    fingerprint: String,
}

/// An agent reports its end-to-end key (agent token), at every start.
async fn agent_e2e_key(
    State(cp): State<ControlPlane>,
    headers: http::HeaderMap,
    Body(req): Body<AgentKey>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let token = bearer(&headers)
        .ok_or_else(|| ApiError::unauthorized("missing agent token (Authorization: Bearer)"))?;
    let ws = cp
        .store
        .workspace_by_agent_token(token.trim())
        .await?
        .ok_or_else(|| ApiError::unauthorized("agent token not accepted"))?;
    if !relay_core::e2e::is_fingerprint(&req.fingerprint) {
        return Err(ApiError::bad_request(
            "fingerprint: expected 64 lowercase hex digits (SHA-256 of the certificate)",
        ));
    }
    cp.store.set_agent_key(&ws.id, &req.fingerprint).await?;
    Ok(Json(serde_json::json!({ "workspace_id": ws.id })))
}

/// The workspace a ticket is for: one of the caller's, or `OWNER.WORKSPACE` for a site admin
/// when the deployment allows admins into other users' workspaces.
async fn find_for_connection(
    cp: &ControlPlane,
    user: &User,
    name: &str,
) -> Result<Workspace, ApiError> {
    let Some((owner, ws)) = name.split_once('.') else {
        return find(cp, user, name).await;
    };
    let not_found =
        || ApiError::not_found(format!("no workspace named {name:?} (see `perigee ls`)"));
    if user.role != "admin" || !cp.admin_workspace_access {
        return Err(not_found());
    }
    let owner = cp.store.user_by_name(owner).await?.ok_or_else(not_found)?;
    let found = cp
        .store
        .workspace_by_name(&owner.id, ws)
        .await?
        .ok_or_else(not_found)?;
    tracing::info!(admin = %user.username, owner = %owner.username, workspace = %ws, "admin ticket for another user's workspace");
    Ok(found)
}

async fn create_ticket(
    State(cp): State<ControlPlane>,
    crate::request::TokenCaller(user, token_id): crate::request::TokenCaller,
    Path(name): Path<String>,
    Body(req): Body<TicketRequest>,
) -> Result<Json<TicketResponse>, ApiError> {
    if req.ports.is_empty() || req.ports.len() > MAX_PORTS || req.ports.contains(&0) {
        return Err(ApiError::bad_request(format!(
            "ports must list 1-{MAX_PORTS} ports, each 1-65535"
        )));
    }
    let ws = find_for_connection(&cp, &user, &name).await?;
    if ws.status == "stopped" {
        return Err(ApiError::conflict(format!(
            "workspace {name:?} is stopped: start it with `perigee start {name}`"
        )));
    }
    let provider = cp.store.provider_by_name(&ws.provider).await?;
    if let Some(p) = provider
        .as_ref()
        .filter(|p| !p.settings.features.external_ssh)
    {
        if req.ports.contains(&SSH_PORT) {
            return Err(ApiError::forbidden(format!(
                "ports: provider {:?} has external SSH turned off, so SSH (port {SSH_PORT}) to workspace {name:?} is refused; an admin can allow it with `perigee providers edit {} --external-ssh on`",
                p.name, p.name
            )));
        }
    }
    let ice_servers = match (&cp.turn_secret, provider.as_ref()) {
        (Some(secret), Some(p)) if p.settings.features.networking_v2 => {
            let username = relay_core::turn_creds::ephemeral_username(
                relay_core::unix_now() + TURN_CREDENTIAL_SECS,
                &user.id,
            );
            let credential = relay_core::turn_creds::ephemeral_password(secret, &username);
            cp.healthy_edges()
                .await?
                .into_iter()
                .filter(|e| !e.turn_urls.is_empty())
                .map(|e| IceServer {
                    urls: e.turn_urls,
                    username: username.clone(),
                    credential: credential.clone(),
                    edge: e.name,
                })
                .collect()
        }
        _ => Vec::new(),
    };
    let e2e =
        match provider {
            Some(p) if p.settings.features.e2e_encryption => {
                match cp.store.agent_key(&ws.id).await? {
                Some(fp) => Some(fp),
                None => {
                    return Err(ApiError::conflict(format!(
                        "workspace {name:?} is on provider {:?}, which encrypts tunnels end to end, but its agent has not reported its key yet (is it running? see `perigee ls`)",
                        p.name
                    )))
                }
            }
            }
            _ => None,
        };
    let now = relay_core::unix_now();
    let exp = now + TICKET_LIFETIME_SECS;
    let claims = Claims {
        kid: String::new(),
        sub: user.id.clone(),
        ws: ws.id.clone(),
        ports: req.ports,
        iat: now,
        exp,
        sid: relay_core::token::random_id(),
        home: ws.home_edge.clone(),
        e2e: e2e.is_some(),
        tid: token_id,
    };
    let edge_url = cp.edge_url(&ws.home_edge).await?;
    Ok(Json(TicketResponse {
        ticket: cp.signer().sign(claims),
        expires_at: exp,
        workspace_id: ws.id,
        edge_url,
        home_edge: ws.home_edge,
        e2e_fingerprint: e2e,
        ice_servers,
    }))
}
