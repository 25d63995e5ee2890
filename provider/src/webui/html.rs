//! The admin pages' shell (navigation, styles, sign-out) and small HTML helpers.

use axum::response::{Html, IntoResponse as _, Response};

use super::session::Session;

/// Escapes text for HTML content and attribute values.
pub(crate) fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

const STYLE: &str = "
*{box-sizing:border-box}
body{font:16px/1.5 system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#1d2330;color:#fff;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center}
header a{color:#fff}header .brand{font-weight:700;margin-right:.6em}
header nav{display:flex;flex-wrap:wrap;gap:.2em 1em}
header nav a[aria-current]{text-decoration:underline 3px;text-underline-offset:4px}
header form{margin-left:auto}header button{background:none;color:#fff;border:1px solid #aab;border-radius:4px;padding:.15em .7em;font:inherit;cursor:pointer}
main{max-width:64em;margin:0 auto;padding:1em}
h1{font-size:1.5em;margin:.4em 0 .6em}
a{color:#0645ad}
.bar{display:flex;flex-wrap:wrap;gap:.6em;align-items:center;justify-content:space-between}
.button,button.primary{display:inline-block;background:#2456c8;color:#fff;border:0;border-radius:4px;padding:.45em 1em;font:inherit;text-decoration:none;cursor:pointer}
button.danger{background:#b3261e;color:#fff;border:0;border-radius:4px;padding:.45em 1em;font:inherit;cursor:pointer}
:focus-visible{outline:3px solid #f4b400;outline-offset:2px}
ul.list{list-style:none;padding:0;margin:0}
ul.list>li{background:#fff;border:1px solid #ddd;border-radius:6px;margin:.5em 0;display:flex;align-items:flex-start;gap:.4em}
ul.list>li>details.row{flex:1;min-width:0}
details.row>summary{padding:.6em .8em;cursor:pointer;display:flex;flex-wrap:wrap;gap:.3em .7em;align-items:center}
details.row>div{padding:0 .8em .8em}
.name{font-weight:600;overflow-wrap:anywhere}
.meta{color:#555;font-size:.92em;overflow-wrap:anywhere}
.badge{border-radius:999px;padding:0 .6em;font-size:.85em;font-weight:600;white-space:nowrap}
.b-ready,.b-ok{background:#dff3e4;color:#135f2b}.b-pending,.b-unregistered{background:#fff1c9;color:#6b4e00}.b-error,.b-unhealthy{background:#fbe0de;color:#8c1d18}
.tag{border:1px solid #2456c8;color:#2456c8;border-radius:4px;padding:0 .4em;font-size:.8em;white-space:nowrap}
dl{display:grid;grid-template-columns:minmax(8em,max-content) 1fr;gap:.2em 1em;margin:.4em 0}
dt{color:#555}dd{margin:0;overflow-wrap:anywhere;min-width:0}
pre,code{font:13px/1.4 ui-monospace,monospace;background:#f1f1f4;border-radius:4px}
pre{padding:.5em;white-space:pre-wrap;overflow-wrap:anywhere;margin:.2em 0}
details.menu{position:relative}
details.menu>summary{list-style:none;cursor:pointer;padding:.45em .8em;font-size:1.2em;line-height:1}
details.menu>summary::-webkit-details-marker{display:none}
details.menu ul{position:absolute;right:0;z-index:2;background:#fff;border:1px solid #ccc;border-radius:4px;list-style:none;margin:0;padding:.2em 0;min-width:8em;box-shadow:0 2px 8px #0002}
details.menu a{display:block;padding:.3em .9em}
form.stack{background:#fff;border:1px solid #ddd;border-radius:6px;padding:1em;max-width:44em}
fieldset{border:1px solid #ddd;border-radius:4px;margin:1em 0;padding:.6em .9em}
label{display:block;margin-top:.8em;font-weight:500}
label.check{font-weight:400;margin-top:.3em;display:flex;gap:.4em;align-items:center}
input[type=text],input:not([type]),select,textarea{width:100%;font:inherit;padding:.35em;border:1px solid #999;border-radius:4px}
textarea{font:13px/1.4 ui-monospace,monospace;min-height:6em}
.err{color:#b3261e;margin:.2em 0;overflow-wrap:anywhere}
.warn{background:#fff1c9;color:#5b4300;padding:.4em .7em;border-radius:4px}
.note{background:#e8f0fe;padding:.5em .8em;border-radius:4px}
.hint{color:#555;font-size:.9em;margin:.2em 0}
.actions{margin-top:1.2em;display:flex;flex-wrap:wrap;gap:.8em;align-items:center}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:.4em .6em;border-bottom:1px solid #ddd;overflow-wrap:anywhere}
@media (max-width:600px){
  table.cards thead{display:none}
  table.cards tr{display:block;border:1px solid #ddd;border-radius:6px;margin:.5em 0}
  table.cards td{display:flex;flex-wrap:wrap;align-items:baseline;gap:.2em .5em;border:0}
  table.cards td::before{content:attr(data-label);color:#555;flex:0 0 7.5em}
  dl{grid-template-columns:1fr}dt{margin-top:.3em}
}
";

/// Pages of the navigation: (path, label).
const NAV: &[(&str, &str)] = &[
    ("/manage/providers", "Workspace Providers"),
    ("/manage/satellites", "Satellites"),
    ("/manage/orgs", "Organizations"),
    ("/manage/users", "Users"),
];

/// A whole page: navigation (with `active` marked), `body`, the pages' script. The shell is
/// a maud template (every value escaped by construction); `body` is the page's own markup.
pub(crate) fn page(
    status: http::StatusCode,
    title: &str,
    active: &str,
    s: &Session,
    body: &str,
) -> Response {
    let html = maud::html! {
        (maud::DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " · perigee" }
                style { (maud::PreEscaped(STYLE)) }
                script src="/manage/app.js" defer {}
            }
            body {
                header {
                    span class="brand" { "perigee · Manage" }
                    nav aria-label="Manage" {
                        @for (href, label) in NAV {
                            @if *href == active {
                                a href=(href) aria-current="page" { (label) }
                            } @else {
                                a href=(href) { (label) }
                            }
                        }
                    }
                    form method="post" action="/logout" {
                        input type="hidden" name="csrf" value=(s.csrf);
                        button type="submit" title={ "Signed in as " (s.user.username) } {
                            "Sign out " (s.user.username)
                        }
                    }
                }
                main id="main" { (maud::PreEscaped(body)) }
            }
        }
    };
    with_headers(status, html.into_string())
}

/// The security headers every admin page carries.
pub(crate) fn with_headers(status: http::StatusCode, html: String) -> Response {
    let mut r = Html(html).into_response();
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        "content-security-policy",
        http::HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self' https: http:; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    h.insert(
        "x-content-type-options",
        http::HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "referrer-policy",
        http::HeaderValue::from_static("same-origin"),
    );
    r
}

/// The page members (and anyone without the role) get instead of an admin page.
pub(crate) fn forbidden(s: &Session, what: &str) -> Response {
    let body = maud::html! {
        h1 { "Not allowed" }
        p { (what) }
        p { "You are signed in as " (s.user.username) " (" (s.user.role) ")." }
    };
    page(
        http::StatusCode::FORBIDDEN,
        "Not allowed",
        "",
        s,
        &body.into_string(),
    )
}

/// One labelled text input with its error slot (`error` shown when not empty).
pub(crate) fn input(
    id: &str,
    name: &str,
    label: &str,
    value: &str,
    error: &str,
    hint: &str,
) -> String {
    let described = format!("{id}-e {id}-h");
    maud::html! {
        label for=(id) { (label) }
        @if !hint.is_empty() {
            p class="hint" id={ (id) "-h" } { (hint) }
        }
        input id=(id) name=(name) value=(value) aria-describedby=(described)
            aria-invalid=[(!error.is_empty()).then_some("true")];
        (maud::PreEscaped(error_slot(id, error)))
    }
    .into_string()
}

/// The error paragraph of field `id` (present even when empty, for scripts to fill).
pub(crate) fn error_slot(id: &str, error: &str) -> String {
    maud::html! {
        p class="err" id={ (id) "-e" } role="alert" hidden[error.is_empty()] { (error) }
    }
    .into_string()
}

/// The CSRF field every form carries.
pub(crate) fn csrf(s: &Session) -> String {
    maud::html! { input type="hidden" name="csrf" value=(s.csrf); }.into_string()
}

/// A Unix time as `YYYY-MM-DD HH:MM:SS UTC` (and how long ago).
pub(crate) fn time(unix: Option<i64>) -> String {
    let Some(t) = unix else {
        return "never".into();
    };
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_render_as_utc_dates() {
        assert_eq!(time(Some(0)), "1970-01-01 00:00:00 UTC");
        assert_eq!(time(Some(1_795_435_200)), "2026-11-23 12:00:00 UTC");
        assert_eq!(time(Some(951_782_400)), "2000-02-29 00:00:00 UTC");
        assert_eq!(time(None), "never");
        assert_eq!(esc("<a href=\"x\">'"), "&lt;a href=&quot;x&quot;&gt;&#39;");
    }
}
