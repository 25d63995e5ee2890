//! Browser sign-in: a user name and password form on the control plane (`/login`), and the
//! one-time codes that carry a sign-in to one dev URL host.
//!
//! After a good password the control plane redirects to
//! `https://HOST/.perigee/auth?code=…&next=/path` — only for a `HOST` under this
//! deployment's dev URL base, so the `redirect` parameter cannot send anyone elsewhere. The
//! code is 256 random bits, stored hashed, valid 60 s, bound to that host and redeemed once;
//! the edge trades it for a cookie of its own on that host. The user's API token is never
//! involved.

use perigee_api::orgs::{PasswordRequest, PasswordSet};
use std::num::NonZeroU32;

use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use sqlx::Row as _;

use crate::request::{Body, Caller};
use crate::{ApiError, ControlPlane};

/// Password checks at once: each is ~100 ms of CPU on purpose, so a flood of sign-ins
/// must not take the control plane's cores.
const CONCURRENT_CHECKS: usize = 2;
/// How long a sign-in waits for a check slot before a 429.
const CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Sign-in attempts per user name per minute (guessing slows to this).
const ATTEMPTS_PER_MINUTE: u32 = 10;

/// Shared limits on password checks.
pub(crate) struct Limits {
    checks: tokio::sync::Semaphore,
    attempts: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, u32)>>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            checks: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
            attempts: Default::default(),
        }
    }
}

impl Limits {
    /// Counts an attempt for `user`; false once the minute's budget is spent.
    fn attempt(&self, user: &str) -> bool {
        let mut m = self
            .attempts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = std::time::Instant::now();
        if m.len() > 10_000 {
            m.retain(|_, (t, _)| now.duration_since(*t).as_secs() < 60);
        }
        let e = m.entry(user.to_owned()).or_insert((now, 0));
        if now.duration_since(e.0).as_secs() >= 60 {
            *e = (now, 0);
        }
        e.1 += 1;
        e.1 <= ATTEMPTS_PER_MINUTE
    }
}

/// PBKDF2 iterations (OWASP's figure for HMAC-SHA256).
const ITERATIONS: u32 = 600_000;
/// How long a one-time code is good for.
const CODE_SECS: i64 = 60;
const MIN_PASSWORD: usize = 10;
const MAX_PASSWORD: usize = 1024;

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route("/login", get(form).post(submit))
        .with_state(cp)
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// `pbkdf2-sha256$ITER$SALT$HASH` for `password`.
pub fn hash_password(password: &str) -> String {
    let salt = relay_core::token::random_bytes::<16>();
    let mut out = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN),
        &salt,
        password.as_bytes(),
        &mut out,
    );
    format!(
        "pbkdf2-sha256${ITERATIONS}${}${}",
        b64().encode(salt),
        b64().encode(out)
    )
}

/// Whether `password` matches `stored` (constant time in the comparison).
pub fn verify_password(password: &str, stored: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iter), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(iter), Ok(salt), Ok(hash)) = (
        iter.parse::<u32>().ok().and_then(NonZeroU32::new),
        b64().decode(salt),
        b64().decode(hash),
    ) else {
        return false;
    };
    ring::pbkdf2::verify(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        iter,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

pub(crate) async fn set_password(
    State(cp): State<ControlPlane>,
    Caller(user): Caller,
    Body(req): Body<PasswordRequest>,
) -> Result<Json<PasswordSet>, ApiError> {
    let n = req.password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&n) {
        return Err(ApiError::bad_request(format!(
            "password: {MIN_PASSWORD}-{MAX_PASSWORD} characters"
        ))
        .on("password"));
    }
    let hash = tokio::task::spawn_blocking(move || hash_password(&req.password))
        .await
        .map_err(ApiError::internal)?;
    sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
        .bind(hash)
        .bind(&user.id)
        .execute(&cp.store.pool)
        .await?;
    Ok(Json(PasswordSet {
        updated: user.username,
    }))
}

#[derive(Deserialize)]
struct FormQuery {
    #[serde(default)]
    redirect: String,
}

/// The sign-in page's style.
const SIGNIN_STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;max-width:22em;margin:3em auto;padding:0 1em}label{display:block;margin-top:1em}input{width:100%;font:inherit;padding:.3em;box-sizing:border-box}button{margin-top:1.2em;font:inherit;padding:.4em 1.2em}.err{color:#b00}";

/// Name of the sign-in form's CSRF cookie.
const CSRF_COOKIE: &str = "perigee-login-csrf";

fn page(status: http::StatusCode, redirect: &str, note: &str) -> Response {
    let csrf = b64().encode(relay_core::token::random_bytes::<18>());
    // maud escapes every value (the note, the redirect a link carried) by construction.
    let html = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width";
                title { "Sign in · perigee" }
                style { (maud::PreEscaped(SIGNIN_STYLE)) }
            }
            body {
                h1 { "Sign in" }
                @if !note.is_empty() {
                    p role="alert" class="err" { (note) }
                }
                form method="post" action="/login" {
                    label for="u" { "User name" }
                    input id="u" name="username" autocomplete="username" required autofocus;
                    label for="p" { "Password" }
                    input id="p" name="password" type="password" autocomplete="current-password" required;
                    input type="hidden" name="redirect" value=(redirect);
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Sign in" }
                }
            }
        }
    };
    let mut r = Html(html.into_string()).into_response();
    // Double-submit token: the form carries what the cookie holds, which another site's
    // page can neither read nor set (SameSite=Strict, HttpOnly).
    relay_core::cookies::add(
        r.headers_mut(),
        CSRF_COOKIE,
        &csrf,
        relay_core::cookies::Attributes {
            path: "/login",
            max_age: std::time::Duration::from_secs(3600),
            same_site: relay_core::cookies::SameSite::Strict,
            secure: false,
        },
    );
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    // The form must not be framed by a dev URL page (clickjacking).
    r.headers_mut().insert(
        "content-security-policy",
        http::HeaderValue::from_static("frame-ancestors 'none'"),
    );
    r
}

async fn form(Query(q): Query<FormQuery>) -> Response {
    page(http::StatusCode::OK, &q.redirect, "")
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    redirect: String,
}

/// Where a sign-in may go: a URL on a dev URL host of this deployment (its scheme and port),
/// with its origin split off. Anything else is refused, so the form is no open redirect.
/// Where a sign-in goes: `scheme://authority`, the host alone, and the path.
struct Target {
    origin: String,
    host: String,
    path: String,
}

/// A path of the admin pages to come back to after signing in (`/manage…`, nothing that
/// could leave this host).
fn local_target(redirect: &str) -> Option<&str> {
    let ok = redirect.starts_with("/manage")
        && !redirect.contains("//")
        && !redirect.contains('\\')
        && redirect.bytes().all(|b| b.is_ascii_graphic());
    ok.then_some(redirect)
}

async fn dev_url_target(cp: &ControlPlane, redirect: &str) -> Option<Target> {
    let uri: http::Uri = redirect.parse().ok()?;
    let authority = uri.authority()?;
    if authority.as_str().contains('@') {
        return None;
    }
    let host = relay_core::devurl::host_of(authority.as_str())?;
    let scheme = uri.scheme_str()?;
    // The control plane's own base, then every satellite's (with its access URL's scheme).
    let mut bases: Vec<(String, &str)> = Vec::new();
    if let Some(b) = &cp.devurl_base {
        bases.push((b.clone(), cp.devurl_scheme));
    }
    for e in cp.edges(false).await.ok()? {
        if let (Some(w), false) = (&e.devurl_host, e.name == relay_core::mesh::PRIMARY_EDGE) {
            let s = if e.access_url.starts_with("http://") {
                "http"
            } else {
                "https"
            };
            bases.push((relay_core::devurl::base(w), s));
        }
    }
    let scheme = bases.iter().find_map(|(base, s)| {
        (*s == scheme && matches!(relay_core::devurl::parse(&host, base), Ok(Some(_))))
            .then_some(*s)
    })?;
    let origin = format!("{scheme}://{}", authority.as_str().to_ascii_lowercase());
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    Some(Target { origin, host, path })
}

async fn submit(
    State(cp): State<ControlPlane>,
    headers: http::HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, ApiError> {
    let cookie = relay_core::cookies::cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    if f.csrf.is_empty() || !relay_core::token::same_secret(&f.csrf, cookie) {
        return Ok(page(
            http::StatusCode::FORBIDDEN,
            &f.redirect,
            "The form expired or came from elsewhere; sign in again here.",
        ));
    }
    if f.username.len() > 256 || f.password.len() > MAX_PASSWORD || f.redirect.len() > 4096 {
        return Ok(page(http::StatusCode::BAD_REQUEST, "", "That is too long."));
    }
    // A page of the control plane itself (the admin pages): a session here, then back.
    let local = local_target(&f.redirect);
    let target = if f.redirect.is_empty() || local.is_some() {
        None
    } else {
        match dev_url_target(&cp, &f.redirect).await {
            Some(t) => Some(t),
            None => {
                return Ok(page(
                    http::StatusCode::BAD_REQUEST,
                    "",
                    "Refused: the redirect is not a dev URL of this deployment.",
                ))
            }
        }
    };
    if !cp.signin_limits.attempt(&f.username) {
        return Ok(page(
            http::StatusCode::TOO_MANY_REQUESTS,
            &f.redirect,
            "Too many sign-in attempts for this user; wait a minute.",
        ));
    }
    let Ok(Ok(_slot)) = tokio::time::timeout(CHECK_WAIT, cp.signin_limits.checks.acquire()).await
    else {
        return Ok(page(
            http::StatusCode::TOO_MANY_REQUESTS,
            &f.redirect,
            "The server is busy signing others in; try again in a moment.",
        ));
    };
    let row = sqlx::query("SELECT id, password_hash FROM users WHERE username = $1")
        .bind(&f.username)
        .fetch_optional(&cp.store.pool)
        .await?;
    let (user_id, stored) = match &row {
        Some(r) => (
            Some(r.try_get::<String, _>(0)?),
            r.try_get::<Option<String>, _>(1)?,
        ),
        None => (None, None),
    };
    // The same work whether or not the user exists or has a password.
    let stored = stored.unwrap_or_else(|| format!("pbkdf2-sha256${ITERATIONS}$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let password = f.password.clone();
    let good = tokio::task::spawn_blocking(move || verify_password(&password, &stored))
        .await
        .map_err(ApiError::internal)?;
    let (true, Some(user_id)) = (good, user_id) else {
        tracing::info!(user = %f.username, "browser sign-in refused");
        return Ok(page(
            http::StatusCode::UNAUTHORIZED,
            &f.redirect,
            "Wrong user name or password.",
        ));
    };
    let Some(Target { origin, host, path }) = target else {
        let cookie = crate::webui::session::start(&cp, &user_id).await?;
        let mut r = axum::response::Redirect::to(local.unwrap_or("/manage")).into_response();
        if let Some(v) = cookie {
            r.headers_mut().insert(http::header::SET_COOKIE, v);
        }
        return Ok(r);
    };
    let code = b64().encode(relay_core::token::random_bytes::<32>());
    sqlx::query("DELETE FROM devurl_codes WHERE expires_at < $1")
        .bind(crate::store::now())
        .execute(&cp.store.pool)
        .await?;
    sqlx::query(
        "INSERT INTO devurl_codes (hash, user_id, host, expires_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(relay_core::token::hash(&code))
    .bind(&user_id)
    .bind(&host)
    .bind(crate::store::now() + CODE_SECS)
    .execute(&cp.store.pool)
    .await?;
    // The path as one query value: only unreserved characters and `/` stay as they are.
    const NEXT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'/')
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let next = percent_encoding::utf8_percent_encode(&path, NEXT);
    let location = format!("{origin}/.perigee/auth?code={code}&next={next}");
    let mut r = (http::StatusCode::SEE_OTHER, "").into_response();
    if let Ok(v) = http::HeaderValue::from_str(&location) {
        r.headers_mut().insert(http::header::LOCATION, v);
    }
    Ok(r)
}

impl ControlPlane {
    /// Redeems a one-time sign-in code for `host`: the user id, once, while it is fresh.
    pub async fn redeem_devurl_code(
        &self,
        code: &str,
        host: &str,
    ) -> Result<Option<String>, ApiError> {
        let hash = relay_core::token::hash(code);
        let mut tx = self.store.pool.begin().await?;
        let row = sqlx::query("SELECT user_id, host, expires_at FROM devurl_codes WHERE hash = $1")
            .bind(&hash)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        let gone = sqlx::query("DELETE FROM devurl_codes WHERE hash = $1")
            .bind(&hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let (user, bound, exp): (String, String, i64) =
            (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        Ok(
            (gone.rows_affected() == 1 && bound == host && exp >= crate::store::now())
                .then_some(user),
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse battery");
        assert!(h.starts_with("pbkdf2-sha256$600000$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("correct horse batterY", &h));
        assert!(!verify_password("x", "pbkdf2-sha256$0$$"));
        assert!(!verify_password("x", "garbage"));
        assert_ne!(h, hash_password("correct horse battery"), "salted");
    }

    #[tokio::test]
    async fn a_hostile_redirect_or_note_stays_text_on_the_sign_in_page() {
        // A link crafted by another origin carries markup in `redirect`: the template must
        // keep it an attribute value, never a tag or a new attribute.
        let r = page(
            http::StatusCode::OK,
            "\"><script>alert(1)</script><input name='x",
            "<img src=x onerror=alert(2)>",
        );
        let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img src=x"), "{html}");
        assert!(!html.contains("<input name='x"), "{html}");
        assert!(html.contains("&quot;&gt;&lt;script&gt;"), "{html}");
        assert!(
            html.contains("&lt;img src=x onerror=alert(2)&gt;"),
            "{html}"
        );
    }
}
