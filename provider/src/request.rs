//! What a request carries, for every API module: its caller (an API token, or a browser
//! session the admin pages vouch for), its JSON body, and the names in it.

use axum::extract::FromRequestParts;
use http::request::Parts;

use crate::store::User;
use crate::{ApiError, ControlPlane};

/// The API caller for a request the admin pages make on a signed-in user's behalf. Only
/// this crate can put it in a request's extensions; a client's request never carries it.
#[derive(Clone)]
pub(crate) struct SessionUser(pub(crate) User);

/// The token in an `Authorization: Bearer` header.
pub(crate) fn bearer(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
}

/// A JSON request body. A body that is not JSON, or not the expected shape, is a 400 in the
/// API's error format naming the field at fault; a missing JSON content type is a 415.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ApiError::new(
                http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the request body as JSON (Content-Type: application/json)",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), "bad_body", e.body_text()))?;
        // PostgreSQL text cannot hold NUL, and no field has a use for it.
        if bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000")) {
            return Err(ApiError::bad_request(
                "invalid request body: strings may not contain NUL (\\u0000)",
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let err = ApiError::bad_request(format!("invalid request body: {}", e.inner()));
            if path == "." {
                err
            } else {
                err.on(path)
            }
        })?;
        de.end()
            .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))?;
        Ok(Body(value))
    }
}

/// Largest API request body.
pub const MAX_BODY: usize = 1 << 20;

/// Reads the whole (small) request body before any handler or extractor runs. A request
/// refused early (no token) then leaves nothing unread on the connection: closing a socket
/// with unread input makes the kernel reset it, and the client would see a broken connection
/// instead of the 401.
pub(crate) async fn read_body_first(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (parts, body) = req.into_parts();
    match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(bytes),
            ))
            .await
        }
        Err(_) => ApiError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request bodies are at most {MAX_BODY} bytes"),
        )
        .into_response(),
    }
}

/// The caller, from the `Authorization` header.
pub struct Caller(pub User);

impl Caller {
    /// Refuses the request unless the caller's site role is one of `roles`.
    pub fn require(&self, roles: &[&str], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.0.role.as_str()) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "only {} can {what} (you are {:?})",
                roles.join(" and "),
                self.0.role
            )))
        }
    }
}

impl FromRequestParts<ControlPlane> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Result<Self, ApiError> {
        let TokenCaller(user, _) = TokenCaller::from_request_parts(parts, cp).await?;
        Ok(Caller(user))
    }
}

/// The caller and the id of the token they called with.
pub struct TokenCaller(pub User, pub String);

impl axum::extract::FromRequestParts<ControlPlane> for TokenCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Result<Self, ApiError> {
        // The admin pages calling in process for a signed-in browser (never set by a client).
        if let Some(SessionUser(user)) = parts.extensions.get() {
            return Ok(TokenCaller(user.clone(), String::new()));
        }
        let Some(token) = bearer(&parts.headers) else {
            return Err(ApiError::unauthorized(
                "missing API token: send `Authorization: Bearer <token>` (run `perigee login`)",
            ));
        };
        match cp.store.token_holder(token.trim()).await? {
            Some((user, id)) => Ok(TokenCaller(user, id)),
            None => Err(ApiError::unauthorized(
                "API token not recognised (revoked, or for another deployment)",
            )),
        }
    }
}

/// Names that appear in host names: 1-32 lowercase letters, digits and single hyphens.
pub fn validate_label(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid {what} {name:?}: use 1-32 lowercase letters, digits and single hyphens, not at either end"
        )))
    }
}
