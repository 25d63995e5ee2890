//! The admin pages in a real browser (headless Chromium over the DevTools protocol):
//! providers created, watched, edited and deleted; satellites, organizations and users;
//! members and forged posts refused; every page screenshot at 1280 and 390 px wide and
//! checked for overflowing, cut-off or overlapping text.

use std::time::Duration;

use serde_json::{json, Value};

use crate::cdp::{Chromium, Tab};
use crate::devurl_browser::sign_in;
use crate::devurls::three_users;
use crate::harness::{Server, TempDir};
use crate::providers::{start_named, start_provider};

/// Finds text that overflows the page, is cut off by its box, or overlaps other text.
const LAYOUT_PROBLEMS: &str = "(() => {
  const out = [], W = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > W + 1)
    out.push('page is ' + document.documentElement.scrollWidth + ' px wide in a ' + W + ' px window');
  const rects = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (!n.textContent.trim()) continue;
    const el = n.parentElement;
    if (!el.checkVisibility()) continue;
    const r = document.createRange(); r.selectNodeContents(n);
    for (const b of r.getClientRects()) {
      if (b.width < 1 || b.height < 1) continue;
      if (b.right > W + 1 || b.left < -1) out.push('off screen: ' + n.textContent.trim().slice(0, 40));
      rects.push({ b, n, text: n.textContent.trim().slice(0, 40) });
    }
    for (let e = el; e && e !== document.body; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.overflowX !== 'visible' && e.scrollWidth > e.clientWidth + 1 && e.tagName !== 'PRE' && e.tagName !== 'TEXTAREA')
        out.push('cut off in <' + e.tagName.toLowerCase() + '>: ' + n.textContent.trim().slice(0, 40));
    }
  }
  for (let i = 0; i < rects.length; i++)
    for (let j = i + 1; j < rects.length; j++) {
      const a = rects[i].b, c = rects[j].b;
      if (rects[i].n === rects[j].n) continue;
      const w = Math.min(a.right, c.right) - Math.max(a.left, c.left);
      const h = Math.min(a.bottom, c.bottom) - Math.max(a.top, c.top);
      if (w > 2 && h > 2) out.push('overlap: \"' + rects[i].text + '\" / \"' + rects[j].text + '\"');
    }
  return Array.from(new Set(out));
})()";

/// Screenshots the tab's page at both widths and fails on layout problems at either.
fn shoot(b: &mut Chromium, tab: &Tab, name: &str) {
    for (w, h) in [(1280, 900), (390, 844)] {
        b.screenshot(tab, &format!("{name}-{w}"), w, h);
        let problems = b.eval(tab, LAYOUT_PROBLEMS);
        assert_eq!(problems, json!([]), "{name} at {w} px: {problems}");
    }
}

/// Sets a form field by its id (text, textarea or checkbox).
fn set(b: &mut Chromium, tab: &Tab, id: &str, value: Value) {
    let r = b.eval(
        tab,
        &format!(
            "(() => {{ const e = document.getElementById({}); if (!e) return false;
               if (e.type === 'checkbox') e.checked = {v}; else e.value = {v};
               e.dispatchEvent(new Event('input', {{ bubbles: true }}));
               e.dispatchEvent(new Event('change', {{ bubbles: true }})); return true; }})()",
            json!(id),
            v = value
        ),
    );
    assert_eq!(r, json!(true), "no field #{id}");
}

/// Clicks the submit button of the page's form that has `selector` and waits for the next
/// page.
fn submit(b: &mut Chromium, tab: &Tab, selector: &str) {
    b.eval(tab, "window.__before = 1");
    let r = b.eval(
        tab,
        &format!(
            "(() => {{ const f = document.querySelector({}); if (!f) return false;
               f.querySelector('[type=submit]').click(); return true; }})()",
            json!(selector)
        ),
    );
    assert_eq!(r, json!(true), "no form {selector}");
    b.wait_for(
        tab,
        "the next page",
        "window.__before === undefined && document.readyState === 'complete'",
        Duration::from_secs(20),
    );
}

fn text_of(b: &mut Chromium, tab: &Tab, selector: &str) -> String {
    b.eval(
        tab,
        &format!(
            "(() => {{ const e = document.querySelector({}); return e ? e.textContent : null; }})()",
            json!(selector)
        ),
    )
    .as_str()
    .unwrap_or_default()
    .to_owned()
}

fn provider(server: &Server, name: &str) -> Value {
    let v: Value = serde_json::from_str(&server.ok(&["providers", "ls", "-o", "json"])).unwrap();
    v.as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

#[test]
fn admins_manage_providers_in_the_browser_and_members_are_refused() {
    let tmp = TempDir::new("admin-ui");
    let (server, port) = start_named(&tmp);
    three_users(&server);
    let mut b = Chromium::launch(&tmp.0, &[], server.addr.ip());
    let admin = b.identity();
    let manage = format!("{}/manage/providers", server.url);

    // Signing in from an admin page comes back to it.
    b.open(&admin, &manage);
    sign_in(&mut b, &admin, &server, "admin");
    assert_eq!(b.location(&admin), manage);
    shoot(&mut b, &admin, "providers");

    // Create: the API's own validation errors, next to their field.
    b.open(&admin, &format!("{manage}/new"));
    shoot(&mut b, &admin, "provider-new");
    set(&mut b, &admin, "f-name", json!("eu"));
    set(&mut b, &admin, "f-hostname", json!("not a url"));
    set(&mut b, &admin, "f-cluster", json!("https://10.0.0.1:6443"));
    submit(&mut b, &admin, "form.stack");
    let shown = text_of(&mut b, &admin, "#f-hostname-e");
    let cli = server.run(&[
        "providers",
        "create",
        "eu",
        "--hostname",
        "not a url",
        "--cluster-address",
        "https://10.0.0.1:6443",
    ]);
    let cli_err = String::from_utf8_lossy(&cli.stderr);
    assert!(
        !shown.is_empty() && cli_err.contains(&shown),
        "page: {shown:?}; CLI: {cli_err}"
    );
    set(
        &mut b,
        &admin,
        "f-hostname",
        json!(format!("https://eu.localhost:{port}")),
    );
    submit(&mut b, &admin, "form.stack");
    let token = text_of(&mut b, &admin, "#token");
    let helm = text_of(&mut b, &admin, "#helm");
    assert!(token.starts_with("pgr_") || token.len() > 20, "{token}");
    assert!(
        helm.contains("helm upgrade") && helm.contains(&token),
        "{helm}"
    );
    shoot(&mut b, &admin, "provider-created");

    // Pending, then Ready when its deployment starts, without reloading.
    b.open(&admin, &manage);
    b.eval(
        &admin,
        "window.__same = 1; document.querySelector('li[data-name=\"eu\"] details.row').open = true",
    );
    assert_eq!(
        text_of(&mut b, &admin, "li[data-name=\"eu\"] [data-status]"),
        "Pending"
    );
    let mut deployment = start_provider(&server, &token, &tmp.0.join("eu"));
    b.wait_for(
        &admin,
        "eu turns Ready in the open page",
        "window.__same === 1 && document.querySelector('li[data-name=\"eu\"] [data-status]').textContent === 'Ready'",
        Duration::from_secs(20),
    );
    shoot(&mut b, &admin, "providers-ready");

    // Edit, reached from the row's ⋮ menu by keyboard alone: focus the menu, Enter opens
    // it, Tab reaches Edit, Enter follows it.
    b.eval(
        &admin,
        "document.querySelector('li[data-name=\"eu\"] details.menu summary').focus()",
    );
    b.press(&admin, "Enter");
    assert_eq!(
        b.eval(
            &admin,
            "document.querySelector('li[data-name=\"eu\"] details.menu').open"
        ),
        json!(true),
        "Enter did not open the menu"
    );
    b.press(&admin, "Tab");
    assert_eq!(
        b.eval(&admin, "document.activeElement.textContent"),
        json!("Edit")
    );
    b.eval(&admin, "window.__before = 1");
    b.press(&admin, "Enter");
    b.wait_for(
        &admin,
        "the edit page",
        "window.__before === undefined && document.readyState === 'complete'",
        Duration::from_secs(10),
    );
    assert_eq!(b.location(&admin), format!("{manage}/eu/edit"));
    // Allow the default organization, then a workspace lands there.
    assert_eq!(
        b.eval(&admin, "!document.getElementById('orgs-warn').hidden"),
        json!(true),
        "no warning for a provider without organizations"
    );
    shoot(&mut b, &admin, "provider-edit");
    let default_box = b.eval(
        &admin,
        "Array.from(document.querySelectorAll('input[name=orgs]')).find(e => e.value === 'default').id",
    );
    let default_box = default_box.as_str().unwrap().to_owned();
    set(&mut b, &admin, &default_box, json!(true));
    assert_eq!(
        b.eval(&admin, "document.getElementById('orgs-warn').hidden"),
        json!(true)
    );
    submit(&mut b, &admin, "form[data-check-json]");
    assert!(
        b.location(&admin).contains("updated=eu"),
        "{}",
        b.location(&admin)
    );
    server.ok(&["create", "w", "--provider", "eu"]);

    // Taking the organization away now is refused, next to the field.
    b.open(&admin, &format!("{manage}/eu/edit"));
    set(&mut b, &admin, &default_box, json!(false));
    submit(&mut b, &admin, "form[data-check-json]");
    let refusal = text_of(&mut b, &admin, "#f-orgs-e");
    assert!(refusal.contains("still has 1 workspace"), "{refusal:?}");

    // Every field, saved and seen by the CLI.
    server.ok(&["orgs", "create", "team"]);
    b.open(&admin, &format!("{manage}/eu/edit"));
    let team_box = b.eval(
        &admin,
        "Array.from(document.querySelectorAll('input[name=orgs]')).find(e => e.value === 'team').id",
    );
    let team_box = team_box.as_str().unwrap().to_owned();
    set(&mut b, &admin, "f-name", json!("eu-west"));
    set(&mut b, &admin, &team_box, json!(true));
    set(&mut b, &admin, "f-e2e_encryption", json!(true));
    set(&mut b, &admin, "f-external_ssh", json!(false));
    set(&mut b, &admin, "f-networking_v2", json!(false));
    set(
        &mut b,
        &admin,
        "f-access_url",
        json!(format!("https://agents.localhost:{port}")),
    );
    set(&mut b, &admin, "f-storage_class", json!("fast-ssd"));
    set(&mut b, &admin, "f-service_account", json!("ws-runner"));
    let tolerations =
        json!([{"key": "dedicated", "operator": "Equal", "value": "dev", "effect": "NoSchedule"}]);
    set(
        &mut b,
        &admin,
        "k-pod_tolerations",
        json!(tolerations.to_string()),
    );
    set(
        &mut b,
        &admin,
        "k-pod_node_selector",
        json!(r#"{"pool": "dev"}"#),
    );
    set(
        &mut b,
        &admin,
        "k-service_account_annotations",
        json!(r#"{"iam.gke.io/gcp-service-account": "{{.UserEmail}}"}"#),
    );
    set(&mut b, &admin, "k-affinity", json!("{}"));
    // Invalid JSON never leaves the page.
    set(&mut b, &admin, "k-pod_node_selector", json!(r#"{"pool": "#));
    b.eval(
        &admin,
        "window.__stay = 1; document.querySelector('form[data-check-json] [type=submit]').click()",
    );
    assert_eq!(
        b.eval(&admin, "window.__stay"),
        json!(1),
        "the form was sent"
    );
    let bad = text_of(&mut b, &admin, "#k-pod_node_selector-e");
    assert!(bad.contains("not valid JSON"), "{bad:?}");
    set(
        &mut b,
        &admin,
        "k-pod_node_selector",
        json!(r#"{"pool": "dev"}"#),
    );
    submit(&mut b, &admin, "form[data-check-json]");
    assert!(
        b.location(&admin).contains("updated=eu-west"),
        "{}",
        b.text(&admin)
    );
    let p = provider(&server, "eu-west");
    let mut orgs: Vec<&str> = p["orgs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    orgs.sort_unstable();
    assert_eq!(orgs, ["default", "team"]);
    let f = &p["settings"]["features"];
    assert_eq!(
        (
            f["e2e_encryption"].clone(),
            f["external_ssh"].clone(),
            f["networking_v2"].clone()
        ),
        (json!(true), json!(false), json!(false))
    );
    assert_eq!(
        f["access_url"],
        json!(format!("https://agents.localhost:{port}"))
    );
    assert_eq!(
        (f["storage_class"].clone(), f["service_account"].clone()),
        (json!("fast-ssd"), json!("ws-runner"))
    );
    let k = &p["settings"]["kubernetes"];
    assert_eq!(k["pod_tolerations"], tolerations);
    assert_eq!(k["pod_node_selector"], json!({"pool": "dev"}));
    assert_eq!(
        k["service_account_annotations"],
        json!({"iam.gke.io/gcp-service-account": "{{.UserEmail}}"})
    );
    assert_eq!(k["affinity"], json!({}));

    // An unknown template field is the API's refusal, shown next to its field.
    b.open(&admin, &format!("{manage}/eu-west/edit"));
    set(
        &mut b,
        &admin,
        "k-service_account_annotations",
        json!(r#"{"a": "{{.Nope}}"}"#),
    );
    submit(&mut b, &admin, "form[data-check-json]");
    let refusal = text_of(&mut b, &admin, "#k-service_account_annotations-e");
    assert!(
        refusal.contains("Nope"),
        "{refusal:?} in {}",
        b.text(&admin)
    );

    // Delete: refused while a workspace is there, with the count; then accepted.
    b.open(&admin, &format!("{manage}/eu-west/delete"));
    shoot(&mut b, &admin, "provider-delete");
    assert_eq!(
        b.eval(&admin, "document.activeElement.textContent"),
        json!("Delete eu-west"),
        "focus on the confirmation"
    );
    submit(&mut b, &admin, "form.stack");
    let refusal = b.text(&admin);
    assert!(
        refusal.contains("Refused") && refusal.contains("1 workspace"),
        "{refusal}"
    );
    server.ok(&["delete", "w"]);

    // Stopped: Error with the message, without reloading.
    b.open(&admin, &manage);
    b.eval(&admin, "window.__same = 1");
    let _ = deployment.kill();
    let _ = deployment.wait();
    b.wait_for(
        &admin,
        "eu-west turns Error in the open page",
        "window.__same === 1 && document.querySelector('li[data-name=\"eu-west\"] [data-status]').textContent === 'Error' && document.querySelector('li[data-name=\"eu-west\"] [data-error]').textContent.includes('heartbeat')",
        Duration::from_secs(30),
    );
    b.eval(
        &admin,
        "document.querySelector('li[data-name=\"eu-west\"] details.row').open = true",
    );
    shoot(&mut b, &admin, "providers-error");
    b.open(&admin, &format!("{manage}/eu-west/delete"));
    submit(&mut b, &admin, "form.stack");
    assert!(
        b.location(&admin).contains("deleted=eu-west"),
        "{}",
        b.text(&admin)
    );
    assert_eq!(provider(&server, "eu-west"), Value::Null);

    // Satellites: health, heartbeat, and latency measured by the page.
    let sat_port = crate::harness::free_port("127.0.0.1");
    server.create_satellite("eu-sat", "Europe", &format!("https://127.0.0.1:{sat_port}"));
    b.open(&admin, &format!("{}/manage/satellites", server.url));
    b.wait_for(
        &admin,
        "the latency to the control plane's region",
        "/^\\d+ ms$/.test(document.querySelector('tr[data-name=\"primary\"] [data-latency]').textContent)",
        Duration::from_secs(10),
    );
    assert!(b.text(&admin).contains("eu-sat"));
    shoot(&mut b, &admin, "satellites");

    // Organizations and users.
    b.open(&admin, &format!("{}/manage/orgs", server.url));
    set(&mut b, &admin, "o-name", json!("platform"));
    submit(&mut b, &admin, "form[action=\"/manage/orgs\"]");
    assert!(
        b.text(&admin).contains("Organization platform created"),
        "{}",
        b.text(&admin)
    );
    set(&mut b, &admin, "m-org", json!("platform"));
    set(&mut b, &admin, "m-user", json!("bob"));
    submit(&mut b, &admin, "form[action=\"/manage/orgs/members\"]");
    assert!(
        b.text(&admin).contains("bob added to platform"),
        "{}",
        b.text(&admin)
    );
    let users: Value = serde_json::from_str(&server.ok(&["users", "ls", "-o", "json"])).unwrap();
    let bob = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "bob")
        .unwrap();
    assert!(bob["orgs"].to_string().contains("platform"), "{bob}");
    shoot(&mut b, &admin, "orgs");
    b.open(&admin, &format!("{}/manage/users", server.url));
    set(&mut b, &admin, "u-name", json!("dora"));
    set(&mut b, &admin, "u-org", json!("platform"));
    submit(&mut b, &admin, "form[action=\"/manage/users\"]");
    let dora_token = text_of(&mut b, &admin, "#new-token");
    assert!(dora_token.len() > 20, "{}", b.text(&admin));
    let mut c = server.cmd(&["orgs", "ls"]);
    c.env("PERIGEE_TOKEN", dora_token.trim());
    assert!(
        c.output().unwrap().status.success(),
        "the new user's token works"
    );
    shoot(&mut b, &admin, "users");

    // A post without the CSRF token is refused and changes nothing.
    let r = b.eval(
        &admin,
        "fetch('/manage/orgs', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'name=forged' }).then(r => r.status)",
    );
    assert_eq!(r, json!(403));
    assert!(!server.ok(&["orgs", "ls"]).contains("forged"));

    // A member: 403 on every page and every post, even with their own session's token.
    let member = b.identity();
    b.open(&member, &manage);
    sign_in(&mut b, &member, &server, "bob");
    assert_eq!(b.status(&member), 403);
    shoot(&mut b, &member, "member-refused");
    for page in [
        "/manage/providers",
        "/manage/providers/new",
        "/manage/providers/built-in/edit",
        "/manage/providers/built-in/delete",
        "/manage/providers/status",
        "/manage/satellites",
        "/manage/orgs",
        "/manage/users",
    ] {
        b.open(&member, &format!("{}{page}", server.url));
        assert_eq!(b.status(&member), 403, "{page}");
    }
    b.open(&member, &manage);
    for (action, body) in [
        ("/manage/providers", "name=x&hostname=https%3A%2F%2Fx.localhost&cluster_address=https%3A%2F%2F10.0.0.1%3A6443"),
        ("/manage/providers/built-in/edit", "name=built-in"),
        ("/manage/providers/built-in/delete", ""),
        ("/manage/orgs", "name=bobs"),
        ("/manage/orgs/members", "org=platform&username=bob"),
        ("/manage/users", "username=eve&role=admin"),
    ] {
        let r = b.eval(
            &member,
            &format!(
                "(async () => {{ const csrf = document.querySelector('input[name=csrf]').value;
                   const r = await fetch({a}, {{ method: 'POST', headers: {{ 'content-type': 'application/x-www-form-urlencoded' }},
                     body: {body} + '&csrf=' + encodeURIComponent(csrf) }}); return r.status; }})()",
                a = json!(action),
                body = json!(body)
            ),
        );
        assert_eq!(r, json!(403), "{action}");
    }
    assert!(!server.ok(&["orgs", "ls"]).contains("bobs"));
    assert!(!server.ok(&["users", "ls"]).contains("eve"));

    // Signing out ends the session.
    submit(&mut b, &admin, "header form");
    b.open(&admin, &manage);
    assert!(
        b.location(&admin).contains("/login?redirect="),
        "{}",
        b.location(&admin)
    );

    let keep = std::env::temp_dir().join("perigee-admin-screenshots");
    let _ = std::fs::create_dir_all(&keep);
    for e in std::fs::read_dir(&b.shots).unwrap().flatten() {
        let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
    }
}
