//! A user's API tokens: list (`GET /api/v2/users/me/tokens`, routed in `api` next to the
//! POST that creates one) and revoke (`perigee tokens`).
//!
//! Revoking marks the row: the token stops authenticating at once, and the control plane
//! lists it to every edge (`EdgeConfig::revoked_tokens`) for as long as tickets issued to it
//! may be valid, so tunnels and SSH sessions cannot start with a ticket cached before.

use axum::extract::{Path, State};
use axum::routing::delete;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::request::TokenCaller;
use crate::ControlPlane;
use perigee_api::users::Revoked;

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/api/v2/users/me/tokens/{id}", delete(revoke_token))
        .with_state(cp)
}

pub use perigee_api::users::TokenView;

pub(crate) async fn list_tokens(
    State(cp): State<ControlPlane>,
    TokenCaller(user, current): TokenCaller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let tokens = cp.store.api_tokens(&user.id).await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|t| TokenView {
                current: t.id == current,
                token: t,
            })
            .collect(),
    ))
}

async fn revoke_token(
    State(cp): State<ControlPlane>,
    TokenCaller(user, _): TokenCaller,
    Path(id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    if !cp.store.revoke_api_token(&user.id, &id).await? {
        return Err(ApiError::not_found(format!(
            "no API token {id:?} of yours (see `perigee tokens ls`)"
        )));
    }
    tracing::info!(user = %user.username, token = %id, "API token revoked");
    // The built-in edge refuses its tickets now; satellites at their next heartbeat.
    cp.refresh_edges().await?;
    Ok(Json(Revoked { revoked: id }))
}
