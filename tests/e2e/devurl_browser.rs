//! Dev URLs in a real browser (headless Chromium over the DevTools protocol): signing in on
//! the control plane's page, the workspace app with its WebSocket, 20 MB each way and
//! Server-Sent Events from the page's script, four identities against each sharing level,
//! and what a page on one dev URL cannot reach.

use std::time::Duration;

use serde_json::json;

use crate::cdp::{Chromium, Tab};
use crate::devurls::{fixture, three_users, HOST_BASE};
use crate::harness::Server;

/// Fills in and posts the control plane's sign-in form shown in `tab`, as `user`.
pub(crate) fn sign_in(b: &mut Chromium, tab: &Tab, server: &Server, user: &str) {
    let at = b.location(tab);
    assert!(
        at.starts_with(&format!("{}/login?", server.url)),
        "not on the sign-in page: {at}"
    );
    let pw = crate::devurls::password(user);
    let filled = b.eval(
        tab,
        &format!(
            "(() => {{ const f = document.querySelector('form');
               f.querySelector('[name=username]').value = {u};
               f.querySelector('[name=password]').value = {p};
               f.querySelector('[type=submit]').click(); return true; }})()",
            u = json!(user),
            p = json!(pw),
        ),
    );
    assert_eq!(filled, json!(true), "the sign-in form: {filled}");
    // The post, the control plane's redirect with a code, the edge's cookie, the page.
    b.wait_for(
        tab,
        "back from signing in",
        &format!(
            "!location.href.startsWith({}) && document.readyState === 'complete'",
            json!(format!("{}/login", server.url))
        ),
        Duration::from_secs(20),
    );
}

/// What `tab` shows at `url`: the app, a refusal, or the sign-in page.
fn outcome(b: &mut Chromium, tab: &Tab, server: &Server, url: &str) -> &'static str {
    b.open(tab, url);
    let (text, at) = (b.text(tab), b.location(tab));
    if text.contains("hello from the workspace") {
        "app"
    } else if at.starts_with(&format!("{}/login?", server.url)) {
        "sign-in"
    } else if b.status(tab) == 403 && text.contains("Not allowed") {
        "denied"
    } else {
        panic!("unexpected page at {at}: {text}")
    }
}

const UPLOAD: &str = "(async () => {
  const n = 20 * 1024 * 1024, a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = (i * 31 + (i >> 13)) & 255;
  const got = await (await fetch('/upload', { method: 'POST', body: a })).text();
  const d = new Uint8Array(await crypto.subtle.digest('SHA-256', a));
  return { got, want: n + ' ' + Array.from(d, b => b.toString(16).padStart(2, '0')).join('') };
})()";

const DOWNLOAD: &str = "(async () => {
  const b = new Uint8Array(await (await fetch('/big')).arrayBuffer());
  let ok = b.length === 320 * 65536;
  for (let i = 0; ok && i < b.length; i += 4093) ok = b[i] === Math.floor(i / 65536) % 251;
  return { len: b.length, ok };
})()";

const EVENTS: &str = "new Promise(res => {
  const t0 = performance.now(), got = [], es = new EventSource('/events');
  es.onmessage = e => { got.push([e.data, Math.round(performance.now() - t0)]);
                        if (got.length === 5) { es.close(); res(got); } };
  es.onerror = () => { es.close(); res(got); };
})";

#[test]
fn a_browser_signs_in_uses_the_app_and_each_identity_gets_its_level() {
    let (tmp, server, app) = fixture("devurl-browser");
    let edge = server.addr.port();
    let p = app.port;
    let host = format!("{p}--ws--admin.{HOST_BASE}");
    let page = format!("https://{host}:{edge}/page");
    let root = format!("https://{host}:{edge}/");
    three_users(&server);

    let mut b = Chromium::launch(&tmp.0, &[HOST_BASE], server.addr.ip());
    let owner = b.identity();

    // Unshared, so private: the browser is sent to sign in, then comes back to the page.
    b.open(&owner, &page);
    b.screenshot(&owner, "sign-in-1280", 1280, 800);
    b.screenshot(&owner, "sign-in-390", 390, 844);
    sign_in(&mut b, &owner, &server, "admin");
    assert_eq!(b.location(&owner), page);
    b.wait_for(
        &owner,
        "the page's WebSocket echo",
        "document.getElementById('r').textContent === 'ws: ping over the edge'",
        Duration::from_secs(15),
    );
    b.screenshot(&owner, "app-1280", 1280, 800);

    // 20 MB up and down from the page's script, intact.
    let up = b.eval(&owner, UPLOAD);
    assert_eq!(up["got"], up["want"], "upload: {up}");
    let down = b.eval(&owner, DOWNLOAD);
    assert_eq!(down, json!({ "len": 320 * 65536, "ok": true }));
    // Server-Sent Events arrive as they are sent, not buffered to the end.
    let ev = b.eval(&owner, EVENTS);
    let ev = ev.as_array().expect("events");
    assert_eq!(ev.len(), 5, "{ev:?}");
    let spread = ev[4][1].as_i64().unwrap() - ev[0][1].as_i64().unwrap();
    // Sent over 600 ms; a proxy that buffers would deliver them within a few ms.
    assert!(spread >= 300, "events arrived together: {ev:?}");

    // The page cannot read the edge's cookie, another dev URL's answers, or the API.
    let cookie = b.eval(&owner, "document.cookie");
    assert!(
        !cookie.as_str().unwrap_or_default().contains("perigee"),
        "{cookie}"
    );
    // Another dev URL (a second app, shared publicly) that would answer if it could.
    let second = crate::devurl_app::App::start(server.netns_of("ws"));
    let other_host = format!("other--admin.{HOST_BASE}");
    server.ok(&[
        "urls",
        "create",
        "ws",
        &second.port.to_string(),
        "--name",
        "other",
        "--access",
        "public",
    ]);
    let other = format!("https://{other_host}:{edge}/");
    let r = crate::devurls::client(&server, &[&other_host])
        .get(&other)
        .send()
        .unwrap();
    assert!(r.text().unwrap().contains("hello from the workspace"));
    let api = format!("{}/api/v2/users/me", server.url);
    for target in [&other, &api] {
        let r = b.eval(
            &owner,
            &format!(
                "fetch({}, {{ credentials: 'include' }}).then(r => r.text()).then(t => 'read: ' + t, e => 'blocked')",
                json!(target)
            ),
        );
        assert_eq!(r, json!("blocked"), "{target}");
    }
    // And nothing the browser holds for the control plane opens the API.
    let jar = b.call(
        None,
        "Storage.getCookies",
        json!({ "browserContextId": owner.context }),
    );
    let cp_cookies: Vec<String> = jar["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["domain"] == json!(server.addr.ip().to_string()))
        .map(|c| {
            format!(
                "{}={}",
                c["name"].as_str().unwrap(),
                c["value"].as_str().unwrap()
            )
        })
        .collect();
    let plain = crate::devurls::client_to(
        &server.data().join("tls/ca.pem"),
        server.addr,
        &[],
        b"http/1.1",
    );
    let r = plain
        .get(&api)
        .header("cookie", cp_cookies.join("; "))
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "the API took browser cookies: {cp_cookies:?}"
    );

    // Four identities against each level.
    let (member, outsider, anonymous) = (b.identity(), b.identity(), b.identity());
    assert_eq!(outcome(&mut b, &member, &server, &root), "sign-in");
    sign_in(&mut b, &member, &server, "bob");
    assert_eq!(b.status(&member), 403);
    b.screenshot(&member, "denied-1280", 1280, 800);
    b.screenshot(&member, "denied-390", 390, 844);
    assert_eq!(outcome(&mut b, &outsider, &server, &root), "sign-in");
    sign_in(&mut b, &outsider, &server, "carol");
    for (level, want) in [
        ("private", ["app", "denied", "denied", "sign-in"]),
        ("org", ["app", "app", "denied", "sign-in"]),
        ("authed", ["app", "app", "app", "sign-in"]),
        ("public", ["app", "app", "app", "app"]),
    ] {
        crate::devurls::share(&server, p, level);
        let got =
            [&owner, &member, &outsider, &anonymous].map(|t| outcome(&mut b, t, &server, &root));
        assert_eq!(
            got, want,
            "{level}: owner, org member, other user, anonymous"
        );
    }
    // Sign-out ends the owner's session on this host.
    crate::devurls::share(&server, p, "private");
    b.open(&owner, &format!("https://{host}:{edge}/.perigee/signout"));
    let jar = b.call(
        None,
        "Storage.getCookies",
        json!({ "browserContextId": owner.context }),
    );
    assert!(
        !jar.to_string().contains("perigee-devurl"),
        "the session cookie outlived sign-out: {jar}"
    );
    assert_eq!(outcome(&mut b, &owner, &server, &root), "sign-in");

    // Kept next to the test binaries for a look after the run.
    let keep = std::env::temp_dir().join("perigee-devurl-screenshots");
    let _ = std::fs::create_dir_all(&keep);
    for e in std::fs::read_dir(&b.shots).unwrap().flatten() {
        let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
    }
}
