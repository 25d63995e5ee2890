//! Manage › Satellites, Organizations and Users.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use serde_json::{json, Value};

use super::html::{self, csrf, esc, input};
use super::session::Session;
use super::{api, manager, posted, Answer, Fields};
use crate::ControlPlane;

fn text_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

fn alert(a: &Answer) -> String {
    format!("<p class=\"err\" role=\"alert\">{}</p>", esc(&a.error()))
}

pub(crate) async fn satellites(State(cp): State<ControlPlane>, s: Session) -> Response {
    let s = match manager(s) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let sats = api(&cp, &s, http::Method::GET, "/api/v2/satellites", None).await;
    let regions = api(&cp, &s, http::Method::GET, "/api/v2/regions", None).await;
    let check_url = |name: &str| {
        regions
            .body
            .as_array()
            .and_then(|a| a.iter().find(|r| r["name"] == name))
            .map(|r| text_of(&r["latency_check_url"]))
    };
    let row = |name: &str, region: &str, url: &str, health: &str, hb: Option<i64>, note: &str| {
        let latency = match check_url(name) {
            Some(u) => format!(
                "<td data-label=\"Latency\" data-latency=\"{}\">measuring…</td>",
                esc(&u)
            ),
            None => "<td data-label=\"Latency\">—</td>".to_owned(),
        };
        format!(
            "<tr data-name=\"{n}\"><td data-label=\"Name\"><span class=\"name\">{n}</span>{note}</td><td data-label=\"Region\">{r}</td>\
             <td data-label=\"Access URL\">{u}</td><td data-label=\"Health\"><span class=\"badge b-{h}\">{h}</span></td>\
             <td data-label=\"Last heartbeat\">{hb}</td>{latency}</tr>",
            n = esc(name),
            r = esc(region),
            u = esc(url),
            h = esc(health),
            hb = esc(&html::time(hb)),
        )
    };
    let mut rows = row(
        &cp.primary.name,
        &cp.primary.region,
        &cp.primary.access_url,
        "ok",
        Some(crate::store::now()),
        " <span class=\"tag\">control plane</span>",
    );
    let body = if sats.ok() {
        for x in sats.body["satellites"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            rows.push_str(&row(
                &text_of(&x["name"]),
                &text_of(&x["region"]),
                &text_of(&x["access_url"]),
                x["health"].as_str().unwrap_or("unregistered"),
                x["last_heartbeat_at"].as_i64(),
                "",
            ));
        }
        format!(
            "<p class=\"hint\">Latency is measured by this page, from your browser to each region's <code>/latency-check</code>.</p>\
             <table class=\"cards\" id=\"satellites\"><thead><tr><th>Name</th><th>Region</th><th>Access URL</th><th>Health</th><th>Last heartbeat</th><th>Latency from you</th></tr></thead>\
             <tbody>{rows}</tbody></table>"
        )
    } else {
        alert(&sats)
    };
    html::page(
        http::StatusCode::OK,
        "Satellites",
        "/manage/satellites",
        &s,
        &format!("<h1>Satellites</h1>{body}"),
    )
}

fn orgs_page(
    s: &Session,
    orgs: &Answer,
    users: &Answer,
    note: &str,
    status: http::StatusCode,
) -> Response {
    let list = orgs.body.as_array().cloned().unwrap_or_default();
    let user_list = users.body.as_array().cloned().unwrap_or_default();
    let rows: String = list
        .iter()
        .map(|o| {
            let name = text_of(&o["name"]);
            // The org list counts members; the user list names them.
            let members: Vec<String> = user_list
                .iter()
                .filter(|u| u["orgs"].as_array().is_some_and(|a| a.iter().any(|x| *x == name)))
                .map(|u| text_of(&u["username"]))
                .collect();
            format!(
                "<tr><td data-label=\"Organization\"><span class=\"name\">{}</span></td><td data-label=\"Members\">{}</td><td data-label=\"Workspaces\">{}</td></tr>",
                esc(&name),
                esc(&members.join(", ")),
                o["workspaces"].as_i64().unwrap_or(0)
            )
        })
        .collect();
    let options = |items: Vec<String>| -> String {
        items
            .iter()
            .map(|n| format!("<option value=\"{n}\">{n}</option>", n = esc(n)))
            .collect()
    };
    let org_names: Vec<String> = list.iter().map(|o| text_of(&o["name"])).collect();
    let user_names: Vec<String> = users
        .body
        .as_array()
        .map(|a| a.iter().map(|u| text_of(&u["username"])).collect())
        .unwrap_or_default();
    html::page(
        status,
        "Organizations",
        "/manage/orgs",
        s,
        &format!(
            "<h1>Organizations</h1>{note}\
             <table class=\"cards\" id=\"orgs\"><thead><tr><th>Organization</th><th>Members</th><th>Workspaces</th></tr></thead><tbody>{rows}</tbody></table>\
             <h2>Create an organization</h2><form class=\"stack\" method=\"post\" action=\"/manage/orgs\">{csrf}\
             {name}<div class=\"actions\"><button class=\"primary\" type=\"submit\">Create organization</button></div></form>\
             <h2>Add a member</h2><form class=\"stack\" method=\"post\" action=\"/manage/orgs/members\">{csrf}\
             <label for=\"m-org\">Organization</label><select id=\"m-org\" name=\"org\">{orgs}</select>\
             <label for=\"m-user\">User</label><select id=\"m-user\" name=\"username\">{users}</select>\
             <div class=\"actions\"><button class=\"primary\" type=\"submit\">Add member</button></div></form>",
            csrf = csrf(s),
            name = input("o-name", "name", "Name", "", "", "Lowercase letters, digits and dashes."),
            orgs = options(org_names),
            users = options(user_names),
        ),
    )
}

async fn orgs_with(
    cp: &ControlPlane,
    s: &Session,
    note: &str,
    status: http::StatusCode,
) -> Response {
    let orgs = api(cp, s, http::Method::GET, "/api/v2/orgs", None).await;
    let users = api(cp, s, http::Method::GET, "/api/v2/users", None).await;
    if !orgs.ok() {
        return html::page(
            orgs.status,
            "Organizations",
            "/manage/orgs",
            s,
            &alert(&orgs),
        );
    }
    orgs_page(s, &orgs, &users, note, status)
}

pub(crate) async fn orgs(State(cp): State<ControlPlane>, s: Session) -> Response {
    match manager(s) {
        Ok(s) => orgs_with(&cp, &s, "", http::StatusCode::OK).await,
        Err(r) => r,
    }
}

/// Shows the result of an action on the organizations page.
async fn after(cp: &ControlPlane, s: &Session, a: &Answer, done: String) -> Response {
    if a.ok() {
        let note = format!("<p class=\"note\" role=\"status\">{}</p>", esc(&done));
        orgs_with(cp, s, &note, http::StatusCode::OK).await
    } else {
        orgs_with(cp, s, &alert(a), a.status).await
    }
}

pub(crate) async fn create_org(
    State(cp): State<ControlPlane>,
    s: Session,
    body: Bytes,
) -> Response {
    let (s, f) = match posted(s, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let name = f.get("name").trim().to_owned();
    let a = api(
        &cp,
        &s,
        http::Method::POST,
        "/api/v2/orgs",
        Some(json!({ "name": name })),
    )
    .await;
    after(&cp, &s, &a, format!("Organization {name} created.")).await
}

pub(crate) async fn add_member(
    State(cp): State<ControlPlane>,
    s: Session,
    body: Bytes,
) -> Response {
    let (s, f) = match posted(s, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let (org, user) = (f.get("org").to_owned(), f.get("username").to_owned());
    let path = format!("/api/v2/orgs/{}/members", super::providers::enc(&org));
    let a = api(
        &cp,
        &s,
        http::Method::POST,
        &path,
        Some(json!({ "username": user })),
    )
    .await;
    after(&cp, &s, &a, format!("{user} added to {org}.")).await
}

fn users_page(
    s: &Session,
    users: &Answer,
    orgs: &[String],
    f: &Fields,
    result: &str,
    status: http::StatusCode,
) -> Response {
    let rows: String = users
        .body
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|u| {
            let orgs: Vec<String> = u["orgs"]
                .as_array()
                .map(|a| a.iter().map(text_of).collect())
                .unwrap_or_default();
            format!(
                "<tr><td data-label=\"User\"><span class=\"name\">{}</span></td><td data-label=\"Role\">{}</td><td data-label=\"Organizations\">{}</td></tr>",
                esc(&text_of(&u["username"])),
                esc(&text_of(&u["role"])),
                esc(&orgs.join(", "))
            )
        })
        .collect();
    let roles: String = crate::store_orgs::ROLES
        .iter()
        .map(|r| {
            let sel = if f.get("role") == *r || (f.get("role").is_empty() && *r == "member") {
                " selected"
            } else {
                ""
            };
            format!("<option value=\"{r}\"{sel}>{r}</option>")
        })
        .collect();
    let org_opts: String = orgs
        .iter()
        .map(|o| format!("<option value=\"{o}\">{o}</option>", o = esc(o)))
        .collect();
    html::page(
        status,
        "Users",
        "/manage/users",
        s,
        &format!(
            "<h1>Users</h1>{result}\
             <table class=\"cards\" id=\"users\"><thead><tr><th>User</th><th>Role</th><th>Organizations</th></tr></thead><tbody>{rows}</tbody></table>\
             <h2>Create a user</h2><form class=\"stack\" method=\"post\" action=\"/manage/users\">{csrf}\
             {name}{email}\
             <label for=\"u-role\">Role</label><select id=\"u-role\" name=\"role\">{roles}</select>\
             <label for=\"u-org\">Organization</label><select id=\"u-org\" name=\"org\"><option value=\"\">none</option>{org_opts}</select>\
             <div class=\"actions\"><button class=\"primary\" type=\"submit\">Create user</button></div></form>",
            csrf = csrf(s),
            name = input("u-name", "username", "User name", f.get("username"), "", ""),
            email = input("u-email", "email", "E-mail (optional)", f.get("email"), "", ""),
        ),
    )
}

async fn users_with(
    cp: &ControlPlane,
    s: &Session,
    f: &Fields,
    result: &str,
    status: http::StatusCode,
) -> Response {
    let users = api(cp, s, http::Method::GET, "/api/v2/users", None).await;
    if !users.ok() {
        return html::page(users.status, "Users", "/manage/users", s, &alert(&users));
    }
    let orgs: Vec<String> = api(cp, s, http::Method::GET, "/api/v2/orgs", None)
        .await
        .body
        .as_array()
        .map(|a| a.iter().map(|o| text_of(&o["name"])).collect())
        .unwrap_or_default();
    users_page(s, &users, &orgs, f, result, status)
}

pub(crate) async fn users(State(cp): State<ControlPlane>, s: Session) -> Response {
    match manager(s) {
        Ok(s) => users_with(&cp, &s, &Fields(Vec::new()), "", http::StatusCode::OK).await,
        Err(r) => r,
    }
}

pub(crate) async fn create_user(
    State(cp): State<ControlPlane>,
    s: Session,
    body: Bytes,
) -> Response {
    let (s, f) = match posted(s, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut req = json!({ "username": f.get("username").trim(), "role": f.get("role") });
    if !f.get("org").is_empty() {
        req["orgs"] = json!([f.get("org")]);
    }
    if !f.get("email").trim().is_empty() {
        req["email"] = json!(f.get("email").trim());
    }
    let a = api(&cp, &s, http::Method::POST, "/api/v2/users", Some(req)).await;
    if !a.ok() {
        return users_with(&cp, &s, &f, &alert(&a), a.status).await;
    }
    let result = format!(
        "<div class=\"note\" role=\"status\"><p>User {u} created. Their API token, shown only once:</p><pre id=\"new-token\">{t}</pre>\
         <button type=\"button\" data-copy=\"new-token\">Copy token</button></div>",
        u = esc(f.get("username").trim()),
        t = esc(&text_of(&a.body["token"])),
    );
    users_with(&cp, &s, &Fields(Vec::new()), &result, http::StatusCode::OK).await
}
