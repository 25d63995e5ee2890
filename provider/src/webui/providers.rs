//! Manage › Workspace Providers: the list with live status, create, edit, delete.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse as _, Json, Redirect, Response};
use serde_json::{json, Map, Value};

use super::html::{self, csrf, error_slot, esc, input};
use super::session::Session;
use super::{api, manager, posted, Answer, Fields};
use crate::provider_settings::KUBERNETES_KEYS;
use crate::ControlPlane;

const HERE: &str = "/manage/providers";

/// A path segment or query value: unreserved characters stay as they are.
pub(crate) fn enc(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

fn badge(status: &str) -> String {
    let mut label = status.to_owned();
    if let Some(c) = label.get_mut(0..1) {
        c.make_ascii_uppercase();
    }
    format!(
        "<span class=\"badge b-{s}\" data-status=\"{s}\">{l}</span>",
        s = esc(status),
        l = esc(&label)
    )
}

fn text_of(v: &Value) -> String {
    v.as_str().unwrap_or("").to_owned()
}

fn features_list(f: &Value) -> String {
    let yes = |k: &str| f[k].as_bool().unwrap_or(false);
    let mut out = Vec::new();
    for (k, label) in [
        ("e2e_encryption", "end-to-end encryption"),
        ("external_ssh", "external SSH"),
        ("networking_v2", "Networking v2"),
    ] {
        out.push(format!("{label}: {}", if yes(k) { "on" } else { "off" }));
    }
    for (k, label) in [
        ("access_url", "access URL"),
        ("storage_class", "storage class"),
        ("service_account", "service account"),
    ] {
        if let Some(v) = f[k].as_str() {
            out.push(format!("{label}: {v}"));
        }
    }
    esc(&out.join(" · "))
}

#[derive(serde::Deserialize)]
pub(crate) struct Flash {
    #[serde(default)]
    updated: Option<String>,
    #[serde(default)]
    deleted: Option<String>,
}

pub(crate) async fn list(
    State(cp): State<ControlPlane>,
    s: Session,
    Query(flash): Query<Flash>,
) -> Response {
    let s = match manager(s) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let a = api(&cp, &s, http::Method::GET, "/api/v2/providers", None).await;
    if !a.ok() {
        return failed(&s, "Workspace Providers", &a);
    }
    let mut rows = String::new();
    for p in a.body.as_array().cloned().unwrap_or_default() {
        let name = text_of(&p["name"]);
        let orgs: Vec<String> = p["orgs"]
            .as_array()
            .map(|a| a.iter().map(text_of).collect())
            .unwrap_or_default();
        let orgs = if orgs.is_empty() {
            "no organizations (accepts no workspaces)".to_owned()
        } else {
            format!("orgs: {}", orgs.join(", "))
        };
        let n = p["workspaces"].as_i64().unwrap_or(0);
        let message = text_of(&p["status_message"]);
        let k8s = serde_json::to_string_pretty(&p["settings"]["kubernetes"]).unwrap_or_default();
        rows.push_str(&format!(
            "<li data-name=\"{en}\"><details class=\"row\"><summary><span class=\"name\">{n_}</span>{badge}{default}{builtin}\
             <span class=\"meta\">{orgs} · {n} workspace{plural}</span></summary><div>\
             <div class=\"err\"{hide}><strong>Error:</strong> <span data-error>{msg}</span></div>\
             <dl><dt>Hostname</dt><dd>{host}</dd><dt>Cluster address</dt><dd>{cluster}</dd>\
             <dt>Namespace</dt><dd>{ns}</dd><dt>Features</dt><dd>{features}</dd>\
             <dt>Kubernetes</dt><dd><pre>{k8s}</pre></dd><dt>Last heartbeat</dt><dd data-heartbeat>{hb}</dd>\
             <dt>Version</dt><dd>{version}</dd></dl></div></details>\
             <details class=\"menu\"><summary aria-label=\"Actions for {n_}\" title=\"Actions\">&#8942;</summary><ul>\
             <li><a href=\"{HERE}/{u}/edit\">Edit</a></li><li><a href=\"{HERE}/{u}/delete\">Delete</a></li></ul></details></li>",
            en = esc(&name),
            n_ = esc(&name),
            u = enc(&name),
            badge = badge(p["status"].as_str().unwrap_or("pending")),
            default = if p["default"].as_bool() == Some(true) { "<span class=\"tag\">default</span>" } else { "" },
            builtin = if p["built_in"].as_bool() == Some(true) { "<span class=\"tag\">built-in</span>" } else { "" },
            orgs = esc(&orgs),
            plural = if n == 1 { "" } else { "s" },
            hide = if message.is_empty() { " hidden" } else { "" },
            msg = esc(&message),
            host = esc(p["hostname"].as_str().unwrap_or("—")),
            cluster = esc(p["cluster_address"].as_str().unwrap_or("—")),
            ns = esc(p["namespace"].as_str().unwrap_or("—")),
            features = features_list(&p["settings"]["features"]),
            k8s = esc(&k8s),
            hb = esc(&html::time(p["last_heartbeat_at"].as_i64())),
            version = esc(p["version"].as_str().unwrap_or("—")),
        ));
    }
    let note = match (&flash.updated, &flash.deleted) {
        (Some(n), _) => format!(
            "<p class=\"note\" role=\"status\">Provider {} updated.</p>",
            esc(n)
        ),
        (_, Some(n)) => format!(
            "<p class=\"note\" role=\"status\">Provider {} deleted.</p>",
            esc(n)
        ),
        _ => String::new(),
    };
    html::page(
        http::StatusCode::OK,
        "Workspace Providers",
        HERE,
        &s,
        &format!(
            "<div class=\"bar\"><h1>Workspace Providers</h1><a class=\"button\" href=\"{HERE}/new\">Create provider</a></div>{note}\
             <p class=\"hint\">Each provider runs workspaces in one cluster. Open a row for its details; status updates by itself.</p>\
             <p id=\"live\" class=\"hint\" role=\"status\" aria-live=\"polite\"></p>\
             <ul class=\"list\" id=\"providers\">{rows}</ul>"
        ),
    )
}

/// Status of every provider, for the list page's script.
pub(crate) async fn status(State(cp): State<ControlPlane>, s: Session) -> Response {
    let s = match manager(s) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let a = api(&cp, &s, http::Method::GET, "/api/v2/providers", None).await;
    if !a.ok() {
        return (a.status, Json(a.body)).into_response();
    }
    let out: Vec<Value> = a
        .body
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| {
            json!({
                "name": p["name"],
                "status": p["status"],
                "status_message": p["status_message"],
                "last_heartbeat": html::time(p["last_heartbeat_at"].as_i64()),
            })
        })
        .collect();
    let mut r = Json(out).into_response();
    r.headers_mut().insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    r
}

fn failed(s: &Session, title: &str, a: &Answer) -> Response {
    html::page(
        a.status,
        title,
        HERE,
        s,
        &format!(
            "<h1>{}</h1><p class=\"err\" role=\"alert\">{}</p>",
            esc(title),
            esc(&a.error())
        ),
    )
}

/// The create form with `values` and the API's refusal, if any, next to its field.
fn create_form(s: &Session, f: &Fields, refusal: Option<&Answer>) -> Response {
    let field = refusal.map_or("", Answer::field);
    let msg = refusal.map(Answer::error).unwrap_or_default();
    let err_for = |k: &str| if field == k { msg.as_str() } else { "" };
    let general = if refusal.is_some()
        && !["name", "hostname", "cluster_address", "namespace"].contains(&field)
    {
        format!("<p class=\"err\" role=\"alert\">{}</p>", esc(&msg))
    } else {
        String::new()
    };
    let status = refusal.map_or(http::StatusCode::OK, |a| a.status);
    html::page(
        status,
        "Create provider",
        HERE,
        s,
        &format!(
            "<h1>Create a workspace provider</h1>{general}<form class=\"stack\" method=\"post\" action=\"{HERE}\">{csrf}\
             {name}{host}{cluster}{ns}\
             <div class=\"actions\"><button class=\"primary\" type=\"submit\">Create provider</button><a href=\"{HERE}\">Cancel</a></div></form>",
            csrf = csrf(s),
            name = input("f-name", "name", "Name", f.get("name"), err_for("name"), "Lowercase letters, digits and dashes, like eu-west."),
            host = input("f-hostname", "hostname", "Hostname", f.get("hostname"), err_for("hostname"), "The URL its edge serves, like https://eu.example.com."),
            cluster = input("f-cluster", "cluster_address", "Cluster address", f.get("cluster_address"), err_for("cluster_address"), "The Kubernetes API server, like https://10.0.0.1:6443."),
            ns = input("f-namespace", "namespace", "Namespace (optional)", f.get("namespace"), err_for("namespace"), "Where its workspaces go."),
        ),
    )
}

pub(crate) async fn new_form(s: Session) -> Response {
    match manager(s) {
        Ok(s) => create_form(&s, &Fields(Vec::new()), None),
        Err(r) => r,
    }
}

pub(crate) async fn create(State(cp): State<ControlPlane>, s: Session, body: Bytes) -> Response {
    let (s, f) = match posted(s, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut req = json!({
        "name": f.get("name").trim(),
        "hostname": f.get("hostname").trim(),
        "cluster_address": f.get("cluster_address").trim(),
    });
    if !f.get("namespace").trim().is_empty() {
        req["namespace"] = json!(f.get("namespace").trim());
    }
    let a = api(&cp, &s, http::Method::POST, "/api/v2/providers", Some(req)).await;
    if !a.ok() {
        return create_form(&s, &f, Some(&a));
    }
    let name = text_of(&a.body["provider"]["name"]);
    html::page(
        http::StatusCode::OK,
        "Provider created",
        HERE,
        &s,
        &format!(
            "<h1>Provider {n} created</h1>{badge}\
             <p class=\"warn\">Copy the token now: it is shown only once. The provider stays <strong>Pending</strong> until its deployment reports in.</p>\
             <h2>REMOTE token</h2><pre id=\"token\">{token}</pre><button type=\"button\" data-copy=\"token\">Copy token</button>\
             <h2>Install it with Helm</h2><pre id=\"helm\">{helm}</pre><button type=\"button\" data-copy=\"helm\">Copy command</button>\
             <p class=\"actions\"><a class=\"button\" href=\"{HERE}\">Back to providers</a></p>",
            n = esc(&name),
            badge = badge("pending"),
            token = esc(&text_of(&a.body["token"])),
            helm = esc(&text_of(&a.body["helm_command"])),
        ),
    )
}

/// What the edit form shows: either the provider as stored or what was posted.
struct EditValues {
    name: String,
    orgs: Vec<String>,
    flags: [(bool, &'static str, &'static str); 3],
    texts: [(String, &'static str, &'static str, &'static str); 3],
    k8s: Vec<(String, String)>,
}

const FLAGS: [(&str, &str); 3] = [
    (
        "e2e_encryption",
        "End-to-end encryption (edges relay ciphertext only)",
    ),
    ("external_ssh", "External SSH"),
    ("networking_v2", "Networking v2 (peer-to-peer WebRTC)"),
];
const TEXTS: [(&str, &str, &str); 3] = [
    (
        "access_url",
        "Access URL",
        "Where its agents reach the control plane (empty: the deployment's).",
    ),
    (
        "storage_class",
        "Storage class",
        "Of workspace volumes (empty: the cluster's default).",
    ),
    (
        "service_account",
        "Service account",
        "Workspace pods run as (empty: a per-workspace one when annotations are set).",
    ),
];

fn stored_values(p: &Value) -> EditValues {
    let f = &p["settings"]["features"];
    let k = &p["settings"]["kubernetes"];
    EditValues {
        name: text_of(&p["name"]),
        orgs: p["orgs"]
            .as_array()
            .map(|a| a.iter().map(text_of).collect())
            .unwrap_or_default(),
        flags: FLAGS.map(|(key, label)| (f[key].as_bool().unwrap_or(false), key, label)),
        texts: TEXTS.map(|(key, label, hint)| (text_of(&f[key]), key, label, hint)),
        k8s: KUBERNETES_KEYS
            .iter()
            .map(|key| {
                let v = &k[*key];
                let text = match v {
                    Value::Null => String::new(),
                    other => serde_json::to_string_pretty(other).unwrap_or_default(),
                };
                ((*key).to_owned(), text)
            })
            .collect(),
    }
}

fn posted_values(f: &Fields) -> EditValues {
    EditValues {
        name: f.get("name").trim().to_owned(),
        orgs: f.all("orgs"),
        flags: FLAGS.map(|(key, label)| (f.checked(key), key, label)),
        texts: TEXTS.map(|(key, label, hint)| (f.get(key).trim().to_owned(), key, label, hint)),
        k8s: KUBERNETES_KEYS
            .iter()
            .map(|key| ((*key).to_owned(), f.get(key).to_owned()))
            .collect(),
    }
}

/// Which form field an API refusal's field belongs to.
fn form_field(api_field: &str) -> &str {
    let f = api_field
        .trim_start_matches("features.")
        .trim_start_matches("kubernetes.");
    let head = f.split(['.', '[']).next().unwrap_or(f);
    match head {
        "orgs_set" | "orgs_add" | "orgs_remove" | "orgs" => "orgs",
        other => other,
    }
}

fn edit_page(
    s: &Session,
    current: &str,
    v: &EditValues,
    all_orgs: &[String],
    errors: &[(String, String)],
    status: http::StatusCode,
) -> Response {
    let err = |k: &str| {
        errors
            .iter()
            .find(|(f, _)| f == k)
            .map_or("", |(_, m)| m.as_str())
    };
    let known: Vec<&str> = ["name", "orgs"]
        .into_iter()
        .chain(FLAGS.iter().map(|f| f.0))
        .chain(TEXTS.iter().map(|t| t.0))
        .chain(KUBERNETES_KEYS.iter().copied())
        .collect();
    let general: String = errors
        .iter()
        .filter(|(f, _)| !known.contains(&f.as_str()))
        .map(|(_, m)| format!("<p class=\"err\" role=\"alert\">{}</p>", esc(m)))
        .collect();
    let orgs: String = all_orgs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            format!(
                "<label class=\"check\" for=\"o-{i}\"><input type=\"checkbox\" id=\"o-{i}\" name=\"orgs\" value=\"{v}\"{c}>{v}</label>",
                v = esc(o),
                c = if v.orgs.contains(o) { " checked" } else { "" }
            )
        })
        .collect();
    let flags: String = v
        .flags
        .iter()
        .map(|(on, key, label)| {
            format!(
                "<label class=\"check\" for=\"f-{key}\"><input type=\"checkbox\" id=\"f-{key}\" name=\"{key}\" value=\"on\"{c}>{l}</label>{e}",
                c = if *on { " checked" } else { "" },
                l = esc(label),
                e = error_slot(&format!("f-{key}"), err(key)),
            )
        })
        .collect();
    let texts: String = v
        .texts
        .iter()
        .map(|(val, key, label, hint)| input(&format!("f-{key}"), key, label, val, err(key), hint))
        .collect();
    let k8s: String = v
        .k8s
        .iter()
        .map(|(key, text)| {
            let kind = if key == "pod_tolerations" { "array" } else { "object" };
            let hint = match key.as_str() {
                "pod_tolerations" => "A list of core/v1 Tolerations. Empty: none.",
                "pod_node_selector" => "Node labels pods must match. Empty: none.",
                "service_account_annotations" => "Annotations of the per-workspace service account; values may use {{.UserEmail}}. Empty: none.",
                _ => "A core/v1 Affinity. Empty: the default affinity (below); {} for none.",
            };
            format!(
                "<label for=\"k-{key}\">{key}</label><p class=\"hint\" id=\"k-{key}-h\">{h}</p>\
                 <textarea id=\"k-{key}\" name=\"{key}\" data-json=\"{kind}\" spellcheck=\"false\" aria-describedby=\"k-{key}-e k-{key}-h\"{inv}>{t}</textarea>{e}",
                h = esc(hint),
                t = esc(text),
                inv = if err(key).is_empty() { "" } else { " aria-invalid=\"true\"" },
                e = error_slot(&format!("k-{key}"), err(key)),
            )
        })
        .collect();
    html::page(
        status,
        &format!("Edit {current}"),
        HERE,
        s,
        &format!(
            "<h1>Edit provider {c}</h1>{general}\
             <form class=\"stack\" method=\"post\" action=\"{HERE}/{u}/edit\" data-check-json>{csrf}\
             {name}\
             <fieldset><legend>Organizations</legend>\
             <p class=\"warn\" id=\"orgs-warn\"{warn_hidden}>A provider with no organization accepts no workspaces.</p>{orgs}{orgs_err}</fieldset>\
             <fieldset><legend>Features</legend>{flags}{texts}</fieldset>\
             <fieldset><legend>Kubernetes</legend>{k8s}\
             <details><summary>Default affinity</summary><pre>{aff}</pre></details></fieldset>\
             <div class=\"actions\"><button class=\"primary\" type=\"submit\">Update Provider</button><a href=\"{HERE}\">Cancel</a></div></form>",
            c = esc(current),
            u = enc(current),
            csrf = csrf(s),
            name = input("f-name", "name", "Name", &v.name, err("name"), ""),
            warn_hidden = if v.orgs.is_empty() { "" } else { " hidden" },
            orgs_err = error_slot("f-orgs", err("orgs")),
            aff = esc(
                &serde_json::to_string_pretty(&crate::k8s_schema::default_affinity())
                    .unwrap_or_default()
            ),
        ),
    )
}

async fn org_names(cp: &ControlPlane, s: &Session) -> Vec<String> {
    api(cp, s, http::Method::GET, "/api/v2/orgs", None)
        .await
        .body
        .as_array()
        .map(|a| a.iter().map(|o| text_of(&o["name"])).collect())
        .unwrap_or_default()
}

/// The signed-in manager and provider `name` as the API shows it, or the page saying why
/// not.
async fn load(
    cp: &ControlPlane,
    s: Session,
    name: &str,
    title: &str,
) -> Result<(Session, Value), Response> {
    let s = manager(s)?;
    let path = format!("/api/v2/providers/{}", enc(name));
    let a = api(cp, &s, http::Method::GET, &path, None).await;
    if !a.ok() {
        return Err(failed(&s, title, &a));
    }
    Ok((s, a.body))
}

pub(crate) async fn edit_form(
    State(cp): State<ControlPlane>,
    s: Session,
    Path(name): Path<String>,
) -> Response {
    let (s, p) = match load(&cp, s, &name, "Edit provider").await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let orgs = org_names(&cp, &s).await;
    edit_page(
        &s,
        &name,
        &stored_values(&p),
        &orgs,
        &[],
        http::StatusCode::OK,
    )
}

pub(crate) async fn update(
    State(cp): State<ControlPlane>,
    s: Session,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (s, f) = match posted(s, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let v = posted_values(&f);
    // JSON is checked here too (the page's script may not have run).
    let mut errors = Vec::new();
    let mut kubernetes = Map::new();
    for (key, text) in &v.k8s {
        if text.trim().is_empty() {
            kubernetes.insert(key.clone(), Value::Null);
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(j) => {
                kubernetes.insert(key.clone(), j);
            }
            Err(e) => errors.push((key.clone(), format!("not valid JSON: {e}"))),
        }
    }
    let orgs = org_names(&cp, &s).await;
    if !errors.is_empty() {
        return edit_page(&s, &name, &v, &orgs, &errors, http::StatusCode::BAD_REQUEST);
    }
    let mut features = Map::new();
    for (on, key, _) in &v.flags {
        features.insert((*key).to_owned(), json!(on));
    }
    for (val, key, _, _) in &v.texts {
        features.insert((*key).to_owned(), json!(val));
    }
    let mut req = json!({ "orgs_set": v.orgs, "features": features, "kubernetes": kubernetes });
    if v.name != name {
        req["name"] = json!(v.name);
    }
    let a = api(
        &cp,
        &s,
        http::Method::PATCH,
        &format!("/api/v2/providers/{}", enc(&name)),
        Some(req),
    )
    .await;
    if !a.ok() {
        let errors = vec![(form_field(a.field()).to_owned(), a.error())];
        return edit_page(&s, &name, &v, &orgs, &errors, a.status);
    }
    let new_name = text_of(&a.body["provider"]["name"]);
    Redirect::to(&format!("{HERE}?updated={}", enc(&new_name))).into_response()
}

fn delete_page(s: &Session, name: &str, workspaces: i64, refusal: Option<&Answer>) -> Response {
    let err = refusal
        .map(|a| {
            format!(
                "<p class=\"err\" role=\"alert\">Refused: {}</p>",
                esc(&a.error())
            )
        })
        .unwrap_or_default();
    html::page(
        refusal.map_or(http::StatusCode::OK, |a| a.status),
        &format!("Delete {name}"),
        HERE,
        s,
        &format!(
            "<h1>Delete provider {n}?</h1>{err}\
             <p>Provider <strong>{n}</strong> holds {workspaces} workspace{plural}. A provider with workspaces cannot be deleted; its deployment's token stops working when it is.</p>\
             <form class=\"stack\" method=\"post\" action=\"{HERE}/{u}/delete\">{csrf}\
             <div class=\"actions\"><button class=\"danger\" type=\"submit\" autofocus>Delete {n}</button><a href=\"{HERE}\">Cancel</a></div></form>",
            n = esc(name),
            u = enc(name),
            plural = if workspaces == 1 { "" } else { "s" },
            csrf = csrf(s),
        ),
    )
}

pub(crate) async fn delete_form(
    State(cp): State<ControlPlane>,
    s: Session,
    Path(name): Path<String>,
) -> Response {
    match load(&cp, s, &name, "Delete provider").await {
        Ok((s, p)) => delete_page(&s, &name, p["workspaces"].as_i64().unwrap_or(0), None),
        Err(r) => r,
    }
}

pub(crate) async fn delete(
    State(cp): State<ControlPlane>,
    s: Session,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let (s, _) = match posted(s, &body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let path = format!("/api/v2/providers/{}", enc(&name));
    let a = api(&cp, &s, http::Method::DELETE, &path, None).await;
    if !a.ok() {
        let n = api(&cp, &s, http::Method::GET, &path, None).await.body["workspaces"]
            .as_i64()
            .unwrap_or(0);
        return delete_page(&s, &name, n, Some(&a));
    }
    Redirect::to(&format!("{HERE}?deleted={}", enc(&name))).into_response()
}
