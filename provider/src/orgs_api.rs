//! REST API for organizations and users (site roles `admin`, `site-manager`, `member`).

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use perigee_api::orgs::{AddMember, CreateOrg, CreateUser, MemberAdded, OrgView, UserCreated};

use crate::request::{validate_label, Body, Caller};
use crate::store_orgs::ROLES;
use crate::{ApiError, ControlPlane};

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/api/v2/orgs", get(list_orgs).post(create_org))
        .route("/api/v2/orgs/{name}/members", post(add_member))
        .route("/api/v2/users", get(list_users).post(create_user))
        .with_state(cp)
}

async fn list_orgs(
    State(cp): State<ControlPlane>,
    caller: Caller,
) -> Result<Json<Vec<OrgView>>, ApiError> {
    let mine: Vec<String> = cp
        .store
        .orgs_of(&caller.0.id)
        .await?
        .into_iter()
        .map(|o| o.name)
        .collect();
    let all_visible = caller.require(&["admin", "site-manager"], "").is_ok();
    let out = cp
        .store
        .orgs()
        .await?
        .into_iter()
        .filter(|(o, _, _)| all_visible || mine.contains(&o.name))
        .map(|(org, members, workspaces)| OrgView {
            org,
            members,
            workspaces,
        })
        .collect();
    Ok(Json(out))
}

async fn create_org(
    State(cp): State<ControlPlane>,
    caller: Caller,
    Body(req): Body<CreateOrg>,
) -> Result<Json<crate::store_orgs::Org>, ApiError> {
    caller.require(&["admin"], "create organizations")?;
    validate_label("organization name", &req.name).map_err(|e| e.on("name"))?;
    if cp.store.org_by_name(&req.name).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "name: an organization named {:?} exists",
            req.name
        )));
    }
    Ok(Json(cp.store.create_org(&req.name).await?))
}

async fn add_member(
    State(cp): State<ControlPlane>,
    caller: Caller,
    Path(name): Path<String>,
    Body(req): Body<AddMember>,
) -> Result<Json<MemberAdded>, ApiError> {
    caller.require(&["admin"], "change organization membership")?;
    let org = cp
        .store
        .org_by_name(&name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no organization named {name:?}")))?;
    let user = cp.store.user_by_name(&req.username).await?.ok_or_else(|| {
        ApiError::bad_request(format!("username: no user named {:?}", req.username))
    })?;
    cp.store.add_member(&org.id, &user.id).await?;
    Ok(Json(MemberAdded {
        org: org.name,
        member: user.username,
    }))
}

async fn list_users(
    State(cp): State<ControlPlane>,
    caller: Caller,
) -> Result<Json<Vec<crate::store_orgs::UserView>>, ApiError> {
    caller.require(&["admin", "site-manager"], "list users")?;
    Ok(Json(cp.store.users().await?))
}

/// A plausible e-mail address: one `@`, something on each side, a dot in the domain, no
/// spaces or control characters, at most 254 bytes.
fn check_email(e: &str) -> Result<(), ApiError> {
    let ok = e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && matches!(e.split_once('@'), Some((l, d)) if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !d.contains('@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "email: {e:?} is not an e-mail address"
        )))
    }
}

/// Creates a user (admins only), adds them to `orgs` and returns their first API token once.
async fn create_user(
    State(cp): State<ControlPlane>,
    caller: Caller,
    Body(req): Body<CreateUser>,
) -> Result<Json<UserCreated>, ApiError> {
    caller.require(&["admin"], "create users")?;
    validate_label("username", &req.username).map_err(|e| e.on("username"))?;
    if !ROLES.contains(&req.role.as_str()) {
        return Err(ApiError::bad_request(format!(
            "role: {:?} is not a site role; use one of {}",
            req.role,
            ROLES.join(", ")
        )));
    }
    if cp.store.user_by_name(&req.username).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "username: a user named {:?} exists",
            req.username
        )));
    }
    if let Some(e) = &req.email {
        check_email(e)?;
    }
    // Check every org before writing anything.
    let mut orgs = Vec::new();
    for name in &req.orgs {
        orgs.push(cp.store.org_by_name(name).await?.ok_or_else(|| {
            ApiError::bad_request(format!("orgs: no organization named {name:?}"))
        })?);
    }
    let user = cp.store.create_user(&req.username, &req.role).await?;
    if let Some(e) = &req.email {
        cp.store.set_user_email(&user.id, e).await?;
    }
    for o in &orgs {
        cp.store.add_member(&o.id, &user.id).await?;
    }
    let token = cp
        .store
        .create_api_token(&user.id, "created by an admin")
        .await?;
    Ok(Json(UserCreated {
        user,
        orgs: req.orgs,
        token: token.expose().to_owned(),
    }))
}
