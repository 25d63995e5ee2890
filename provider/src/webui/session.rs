//! Browser sessions on the control plane: a random secret in a host-only cookie
//! (`__Host-perigee-session` on HTTPS; `HttpOnly; SameSite=Strict`), stored hashed with the
//! session's CSRF token, which every form of the admin pages carries.

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use http::request::Parts;
use sqlx::Row as _;

use crate::store::User;
use crate::{ApiError, ControlPlane};

/// How long a browser session lasts.
pub(crate) const SESSION_SECS: i64 = 12 * 3600;

/// The session cookie's name for this deployment.
pub(crate) fn cookie_name(cp: &ControlPlane) -> &'static str {
    if cp.primary.access_url.starts_with("https://") {
        "__Host-perigee-session"
    } else {
        "perigee-session"
    }
}

/// The `Set-Cookie` value carrying `value` for `max_age` seconds (0: cleared): host-only,
/// `HttpOnly`, `SameSite=Strict`, `Secure` on HTTPS.
fn set_cookie(cp: &ControlPlane, value: &str, max_age: i64) -> Option<http::HeaderValue> {
    use relay_core::cookies::{Attributes, SameSite};
    relay_core::cookies::set_cookie(
        cookie_name(cp),
        value,
        Attributes {
            path: "/",
            max_age: std::time::Duration::from_secs(u64::try_from(max_age).unwrap_or(0)),
            same_site: SameSite::Strict,
            secure: cp.primary.access_url.starts_with("https://"),
        },
    )
}

/// Starts a session for `user_id`; the `Set-Cookie` value that carries it.
pub(crate) async fn start(
    cp: &ControlPlane,
    user_id: &str,
) -> Result<Option<http::HeaderValue>, ApiError> {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let secret = b64.encode(relay_core::token::random_bytes::<32>());
    let csrf = b64.encode(relay_core::token::random_bytes::<24>());
    let now = crate::store::now();
    sqlx::query("DELETE FROM web_sessions WHERE expires_at < $1")
        .bind(now)
        .execute(&cp.store.pool)
        .await?;
    sqlx::query(
        "INSERT INTO web_sessions (hash, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(relay_core::token::hash(&secret))
    .bind(user_id)
    .bind(&csrf)
    .bind(now)
    .bind(now + SESSION_SECS)
    .execute(&cp.store.pool)
    .await?;
    Ok(set_cookie(cp, &secret, SESSION_SECS))
}

/// Ends the session with cookie secret `secret`; the `Set-Cookie` value that clears it.
pub(crate) async fn end(
    cp: &ControlPlane,
    secret: &str,
) -> Result<Option<http::HeaderValue>, ApiError> {
    sqlx::query("DELETE FROM web_sessions WHERE hash = $1")
        .bind(relay_core::token::hash(secret))
        .execute(&cp.store.pool)
        .await?;
    Ok(set_cookie(cp, "", 0))
}

/// A signed-in browser: its user, the session's CSRF token and cookie secret.
pub(crate) struct Session {
    pub(crate) user: User,
    pub(crate) csrf: String,
    pub(crate) secret: String,
}

impl Session {
    /// Whether `token` (from a posted form) is this session's CSRF token.
    pub(crate) fn csrf_ok(&self, token: &str) -> bool {
        relay_core::token::same_secret(token, &self.csrf)
    }
}

impl FromRequestParts<ControlPlane> for Session {
    /// Not signed in: to the sign-in page, coming back here after.
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, cp: &ControlPlane) -> Result<Self, Response> {
        let to_login = || {
            let here = parts.uri.path_and_query().map_or("/manage", |p| p.as_str());
            let q = percent_encoding::utf8_percent_encode(here, percent_encoding::NON_ALPHANUMERIC);
            let mut r = (http::StatusCode::SEE_OTHER, "").into_response();
            if let Ok(v) = http::HeaderValue::from_str(&format!("/login?redirect={q}")) {
                r.headers_mut().insert(http::header::LOCATION, v);
            }
            r
        };
        let Some(secret) = relay_core::cookies::cookie(&parts.headers, cookie_name(cp)) else {
            return Err(to_login());
        };
        let row = sqlx::query(
            "SELECT u.id, u.username, u.role, s.csrf FROM web_sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.hash = $1 AND s.expires_at > $2",
        )
        .bind(relay_core::token::hash(secret))
        .bind(crate::store::now())
        .fetch_optional(&cp.store.pool)
        .await
        .map_err(|e| ApiError::from(e).into_response())?;
        let Some(r) = row else {
            return Err(to_login());
        };
        let fields = (|| -> Result<(User, String), sqlx::Error> {
            Ok((
                User {
                    id: r.try_get(0)?,
                    username: r.try_get(1)?,
                    role: r.try_get(2)?,
                },
                r.try_get(3)?,
            ))
        })();
        let (user, csrf) = fields.map_err(|e| ApiError::from(e).into_response())?;
        Ok(Session {
            user,
            csrf,
            secret: secret.to_owned(),
        })
    }
}
