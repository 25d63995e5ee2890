//! Dev URL sharing (`perigee urls`): which workspace ports their owners opened to whom.
//!
//! A port URL (`PORT--WORKSPACE--USER.HOST`) with no row is private to the owner; a row
//! raises it to `org` (members of the workspace's organization), `authed` (anyone signed in)
//! or `public`, never above the deployment's maximum (`perigee server --devurl-max-access`),
//! which every write checks. A named URL (`NAME--USER.HOST`) is a row with a name.

use axum::extract::{Path, State};
use axum::routing::{delete, get};
use axum::{Json, Router};
pub use perigee_api::devurls::{Access, DevUrl, ShareRequest, Unshared};
use sqlx::Row as _;

use crate::request::{Body, Caller};
use crate::store::Workspace;
use crate::{ApiError, ControlPlane};

/// Longest URL name (it is a DNS label together with `--USER`).
const MAX_NAME_LEN: usize = 32;
/// Most shared URLs per workspace.
const MAX_PER_WORKSPACE: i64 = 64;
/// Lifetime of the ticket in an allowing decision (edges cache decisions for seconds).
const DEVURL_TICKET_SECS: u64 = 300;

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/api/v2/urls", get(list_all))
        .route(
            "/api/v2/workspaces/{name}/urls",
            get(list_workspace).post(share),
        )
        .route("/api/v2/workspaces/{name}/urls/{port}", delete(unshare))
        .with_state(cp)
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && !name.bytes().all(|b| b.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "name: {name:?} must be 1-{MAX_NAME_LEN} lowercase letters, digits and single hyphens, not only digits"
        ))
        .on("name"))
    }
}

async fn share(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Path(ws_name): Path<String>,
    Body(req): Body<ShareRequest>,
) -> Result<Json<DevUrl>, ApiError> {
    if req.port == 0 {
        return Err(ApiError::bad_request("port must be 1-65535").on("port"));
    }
    let access = match req.access.as_deref() {
        None => Access::Private,
        Some(a) => Access::parse(a).ok_or_else(|| {
            ApiError::bad_request(format!(
                "access: {a:?} is not one of private, org, authed, public"
            ))
            .on("access")
        })?,
    };
    if access > cp.devurl_max_access {
        return Err(ApiError::forbidden(format!(
            "access: this deployment allows dev URLs up to {:?} (an admin sets `perigee server --devurl-max-access`)",
            cp.devurl_max_access.as_str()
        ))
        .on("access"));
    }
    if let Some(n) = &req.name {
        check_name(n)?;
    }
    let ws = find(&cp, &user.id, &ws_name).await?;
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM dev_urls WHERE workspace_id = $1")
        .bind(&ws.id)
        .fetch_one(&cp.store.pool)
        .await?;
    let existing: Option<String> =
        sqlx::query_scalar("SELECT id FROM dev_urls WHERE workspace_id = $1 AND port = $2")
            .bind(&ws.id)
            .bind(i64::from(req.port))
            .fetch_optional(&cp.store.pool)
            .await?;
    if existing.is_none() && count >= MAX_PER_WORKSPACE {
        return Err(ApiError::conflict(format!(
            "workspace {ws_name:?} has {MAX_PER_WORKSPACE} shared URLs already; remove one with `perigee urls rm`"
        )));
    }
    if let Some(n) = &req.name {
        let taken: Option<String> = sqlx::query_scalar(
            "SELECT id FROM dev_urls WHERE owner_id = $1 AND name = $2 AND NOT (workspace_id = $3 AND port = $4)",
        )
        .bind(&user.id)
        .bind(n)
        .bind(&ws.id)
        .bind(i64::from(req.port))
        .fetch_optional(&cp.store.pool)
        .await?;
        if taken.is_some() {
            return Err(ApiError::conflict(format!(
                "name: you have a URL named {n:?} already (see `perigee urls ls`)"
            ))
            .on("name"));
        }
    }
    let r = match existing {
        Some(id) => {
            sqlx::query("UPDATE dev_urls SET https = $1, name = $2, access = $3 WHERE id = $4")
                .bind(i64::from(req.https))
                .bind(&req.name)
                .bind(access.as_str())
                .bind(id)
                .execute(&cp.store.pool)
                .await
        }
        None => {
            sqlx::query(
                "INSERT INTO dev_urls (id, workspace_id, owner_id, port, https, name, access, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(relay_core::token::random_id())
            .bind(&ws.id)
            .bind(&user.id)
            .bind(i64::from(req.port))
            .bind(i64::from(req.https))
            .bind(&req.name)
            .bind(access.as_str())
            .bind(crate::store::now())
            .execute(&cp.store.pool)
            .await
        }
    };
    if let Err(e) = r {
        // Two writers raced to the same name: the unique index decided.
        if e.as_database_error()
            .is_some_and(|d| d.is_unique_violation())
        {
            return Err(ApiError::conflict("name: taken by another of your URLs").on("name"));
        }
        return Err(e.into());
    }
    cp.hooks.devurls_changed();
    Ok(Json(DevUrl {
        url: url_for(
            &cp,
            req.port,
            req.https,
            &ws.name,
            &user.username,
            req.name.as_deref(),
        ),
        workspace: ws.name,
        port: req.port,
        https: req.https,
        name: req.name,
        access,
    }))
}

async fn find(cp: &ControlPlane, owner_id: &str, name: &str) -> Result<Workspace, ApiError> {
    cp.store
        .workspace_by_name(owner_id, name)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no workspace named {name:?} (see `perigee ls`)"))
        })
}

fn url_for(
    cp: &ControlPlane,
    port: u16,
    https: bool,
    workspace: &str,
    user: &str,
    name: Option<&str>,
) -> Option<String> {
    let base = cp.devurl_base.as_deref()?;
    let host = match name {
        Some(n) => relay_core::devurl::named_host(n, user, base),
        None => relay_core::devurl::port_host(port, https, workspace, user, base),
    };
    Some(format!(
        "{}://{host}{}",
        cp.devurl_scheme, cp.devurl_port_suffix
    ))
}

async fn rows(
    cp: &ControlPlane,
    user_id: &str,
    username: &str,
    ws: Option<&Workspace>,
) -> Result<Vec<DevUrl>, ApiError> {
    let q = "SELECT w.name, d.port, d.https, d.name, d.access, w.id FROM dev_urls d \
             JOIN workspaces w ON w.id = d.workspace_id WHERE d.owner_id = $1";
    let rows = match ws {
        Some(w) => {
            sqlx::query(&format!(
                "{q} AND d.workspace_id = $2 ORDER BY w.name, d.port"
            ))
            .bind(user_id)
            .bind(&w.id)
            .fetch_all(&cp.store.pool)
            .await?
        }
        None => {
            sqlx::query(&format!("{q} ORDER BY w.name, d.port"))
                .bind(user_id)
                .fetch_all(&cp.store.pool)
                .await?
        }
    };
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let ws_name: String = r.try_get(0)?;
        let port = u16::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0);
        let https = r.try_get::<i64, _>(2)? != 0;
        let name: Option<String> = r.try_get(3)?;
        let access = Access::parse(&r.try_get::<String, _>(4)?).unwrap_or(Access::Private);
        let url = url_for(cp, port, https, &ws_name, username, name.as_deref());
        out.push(DevUrl {
            workspace: ws_name,
            port,
            https,
            name,
            access,
            url,
        });
    }
    Ok(out)
}

async fn list_all(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
) -> Result<Json<Vec<DevUrl>>, ApiError> {
    Ok(Json(rows(&cp, &user.id, &user.username, None).await?))
}

async fn list_workspace(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<DevUrl>>, ApiError> {
    let ws = find(&cp, &user.id, &name).await?;
    Ok(Json(rows(&cp, &user.id, &user.username, Some(&ws)).await?))
}

async fn unshare(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Path((name, port)): Path<(String, String)>,
) -> Result<Json<Unshared>, ApiError> {
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| ApiError::bad_request("port must be 1-65535").on("port"))?;
    let ws = find(&cp, &user.id, &name).await?;
    let r = sqlx::query("DELETE FROM dev_urls WHERE workspace_id = $1 AND port = $2")
        .bind(&ws.id)
        .bind(i64::from(port))
        .execute(&cp.store.pool)
        .await?;
    if r.rows_affected() == 0 {
        return Err(ApiError::not_found(format!(
            "port {port} of {name:?} is not shared (see `perigee urls ls`)"
        )));
    }
    cp.hooks.devurls_changed();
    Ok(Json(Unshared { deleted: port }))
}

pub use relay_core::devurl::Decision;

impl ControlPlane {
    /// Who may open a dev URL: the share's level (private when unshared) against the
    /// signed-in `viewer` (a user id), if any; when allowed, with a ticket for the stream.
    pub async fn resolve_devurl(
        &self,
        target: &relay_core::devurl::Target,
        viewer: Option<&str>,
    ) -> Result<Decision, ApiError> {
        use relay_core::devurl::Target;
        let user = match target {
            Target::Port { user, .. } | Target::Named { user, .. } => user,
        };
        let Some(owner) = self.store.user_by_name(user).await? else {
            return Ok(Decision::NotFound);
        };
        let (ws, port, https, access) = match target {
            Target::Port {
                port,
                https,
                workspace,
                ..
            } => {
                let Some(ws) = self.store.workspace_by_name(&owner.id, workspace).await? else {
                    return Ok(Decision::NotFound);
                };
                let access: Option<String> = sqlx::query_scalar(
                    "SELECT access FROM dev_urls WHERE workspace_id = $1 AND port = $2",
                )
                .bind(&ws.id)
                .bind(i64::from(*port))
                .fetch_optional(&self.store.pool)
                .await?;
                let access = access
                    .as_deref()
                    .and_then(Access::parse)
                    .unwrap_or(Access::Private);
                (ws, *port, *https, access)
            }
            Target::Named { name, .. } => {
                let row = sqlx::query(
                    "SELECT w.name, d.port, d.https, d.access FROM dev_urls d \
                     JOIN workspaces w ON w.id = d.workspace_id WHERE d.owner_id = $1 AND d.name = $2",
                )
                .bind(&owner.id)
                .bind(name)
                .fetch_optional(&self.store.pool)
                .await?;
                let Some(r) = row else {
                    return Ok(Decision::NotFound);
                };
                let ws_name: String = r.try_get(0)?;
                let Some(ws) = self.store.workspace_by_name(&owner.id, &ws_name).await? else {
                    return Ok(Decision::NotFound);
                };
                let port = u16::try_from(r.try_get::<i64, _>(1)?).unwrap_or(0);
                let access = Access::parse(&r.try_get::<String, _>(3)?).unwrap_or(Access::Private);
                (ws, port, r.try_get::<i64, _>(2)? != 0, access)
            }
        };
        if let Some(p) = self.store.provider_by_name(&ws.provider).await? {
            if p.settings.features.e2e_encryption {
                return Ok(Decision::Deny(format!(
                    "Workspace {:?} is on provider {:?}, which encrypts its traffic end to end; dev URLs would show it to the edge, so they are off there.",
                    ws.name, p.name
                )));
            }
        }
        // The maximum may have been lowered since the URL was shared.
        let access = access.min(self.devurl_max_access);
        let allowed = match (access, viewer) {
            (Access::Public, _) => true,
            (_, None) => return Ok(Decision::SignIn),
            (Access::Authed, Some(_)) => true,
            (Access::Private, Some(v)) => v == ws.owner_id,
            (Access::Org, Some(v)) => {
                v == ws.owner_id
                    || self
                        .store
                        .orgs_of(v)
                        .await?
                        .iter()
                        .any(|o| o.name == ws.org)
            }
        };
        Ok(if allowed {
            // For an edge without the agent's link: the home edge checks this ticket when
            // the stream arrives over the mesh. It names the one port and lives minutes.
            let now = relay_core::unix_now();
            let ticket = self.signer().sign(relay_core::ticket::Claims {
                kid: String::new(),
                sub: viewer.unwrap_or(&ws.owner_id).to_owned(),
                ws: ws.id.clone(),
                ports: vec![port],
                iat: now,
                exp: now + DEVURL_TICKET_SECS,
                sid: relay_core::token::random_id(),
                home: ws.home_edge.clone(),
                e2e: false,
                tid: String::new(),
            });
            Decision::Allow {
                workspace_id: ws.id,
                port,
                https,
                home: ws.home_edge,
                ticket,
            }
        } else {
            Decision::Deny(format!(
                "This dev URL is shared with {}; you are signed in as someone else.",
                match access {
                    Access::Private => "its owner only".to_owned(),
                    Access::Org => format!("members of organization {:?}", ws.org),
                    _ => "other users".to_owned(),
                }
            ))
        })
    }
}
