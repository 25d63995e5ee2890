//! The admin web pages (`/manage/…`): server-rendered HTML with a little script, for site
//! admins and site managers. Every action goes through the same JSON API the CLI uses
//! (an in-process request carrying the signed-in user), so validation, invariants and error
//! messages are the API's own. Signed-in browsers have a session cookie (see [`session`]);
//! every form carries the session's CSRF token; members get 403 on every page and action.

mod html;
mod others;
mod providers;
pub(crate) mod session;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse as _, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use tower::ServiceExt as _;

pub(crate) use crate::request::SessionUser;
use session::Session;

use crate::ControlPlane;

/// Roles that may open the admin pages (what each page may do is the API's call).
const MANAGERS: &[&str] = crate::providers_api::MANAGERS;

pub(crate) fn router(cp: ControlPlane) -> Router {
    Router::new()
        .route(
            "/manage",
            get(|| async { Redirect::to("/manage/providers") }),
        )
        .route("/manage/app.js", get(script))
        .route(
            "/manage/providers",
            get(providers::list).post(providers::create),
        )
        .route("/manage/providers/new", get(providers::new_form))
        .route("/manage/providers/status", get(providers::status))
        .route(
            "/manage/providers/{name}/edit",
            get(providers::edit_form).post(providers::update),
        )
        .route(
            "/manage/providers/{name}/delete",
            get(providers::delete_form).post(providers::delete),
        )
        .route("/manage/satellites", get(others::satellites))
        .route("/manage/orgs", get(others::orgs).post(others::create_org))
        .route("/manage/orgs/members", post(others::add_member))
        .route(
            "/manage/users",
            get(others::users).post(others::create_user),
        )
        .route("/logout", post(logout))
        .with_state(cp)
}

async fn script() -> Response {
    let mut r = include_str!("app.js").into_response();
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    r
}

/// The session when its user may see admin pages; else the 403 page.
#[allow(clippy::result_large_err)] // the error is the page itself, returned at once
fn manager(s: Session) -> Result<Session, Response> {
    if MANAGERS.contains(&s.user.role.as_str()) {
        Ok(s)
    } else {
        Err(html::forbidden(
            &s,
            "The admin pages are for site admins and site managers.",
        ))
    }
}

/// A posted form's fields, in order (a field may repeat, like checkboxes).
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    fn parse(body: &[u8]) -> Self {
        Self(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `name` ("" when absent).
    pub(crate) fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `name`.
    pub(crate) fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Whether a checkbox `name` was ticked.
    pub(crate) fn checked(&self, name: &str) -> bool {
        self.0.iter().any(|(k, _)| k == name)
    }
}

/// A signed-in manager's posted form, its CSRF token checked: a post without the token (or
/// with another session's) is refused before anything happens.
#[allow(clippy::result_large_err)] // the error is the page itself, returned at once
pub(crate) fn posted(s: Session, body: &[u8]) -> Result<(Session, Fields), Response> {
    let f = Fields::parse(body);
    if !s.csrf_ok(f.get("csrf")) {
        return Err(html::page(
            http::StatusCode::FORBIDDEN,
            "Refused",
            "",
            &s,
            "<h1>Refused</h1><p>The form expired or came from another page (its CSRF token does not match your session). Nothing was changed; go back, reload and try again.</p>",
        ));
    }
    Ok((manager(s)?, f))
}

/// What the API answered.
pub(crate) struct Answer {
    pub(crate) status: http::StatusCode,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn ok(&self) -> bool {
        self.status.is_success()
    }

    /// The error message, when refused.
    pub(crate) fn error(&self) -> String {
        self.body["error"]
            .as_str()
            .map_or_else(|| format!("HTTP {}", self.status.as_u16()), str::to_owned)
    }

    /// The field the API named in its refusal (`""` when none).
    pub(crate) fn field(&self) -> &str {
        self.body["field"].as_str().unwrap_or("")
    }
}

/// Calls the JSON API as `s`'s user: the same routes, checks and answers as the CLI gets.
pub(crate) async fn api(
    cp: &ControlPlane,
    s: &Session,
    method: http::Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .unwrap_or_default();
    req.extensions_mut().insert(SessionUser(s.user.clone()));
    let resp = match cp.api_router().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 8 << 20)
        .await
        .unwrap_or_default();
    Answer {
        status,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

async fn logout(State(cp): State<ControlPlane>, s: Session, body: axum::body::Bytes) -> Response {
    let f = Fields::parse(&body);
    if !s.csrf_ok(f.get("csrf")) {
        return html::forbidden(&s, "Sign out from the button in the page header.");
    }
    let mut r = Redirect::to("/login").into_response();
    match session::end(&cp, &s.secret).await {
        Ok(c) => {
            if let Some(v) = c {
                r.headers_mut().insert(http::header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => e.into_response(),
    }
}
