//! Headless Chromium driven over the DevTools protocol (a WebSocket speaking JSON): browser
//! contexts with their own cookies (one per identity), navigation, script evaluation and
//! screenshots. Just enough of the protocol for the tests; every wait has a deadline.

use std::io::{BufRead as _, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// How long one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Chromium {
    child: Child,
    ws: WebSocket<TcpStream>,
    next_id: u64,
    /// Where screenshots go.
    pub shots: PathBuf,
}

/// One tab in its own browser context: cookies, storage and cache of its own.
pub struct Tab {
    session: String,
    /// Its browser context (for `Storage.*` calls).
    pub context: String,
}

impl Chromium {
    /// Starts headless Chromium with its profile in `dir`, sending every name under each of
    /// `domains` to `ip` (the test's edges; certificates from the test CAs are accepted).
    pub fn launch(dir: &Path, domains: &[&str], ip: std::net::IpAddr) -> Self {
        let rules: Vec<String> = domains.iter().map(|d| format!("MAP *.{d} {ip}")).collect();
        let profile = dir.join("chromium-profile");
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--ignore-certificate-errors",
                "--remote-debugging-port=0",
                "--remote-allow-origins=*",
                &format!("--host-resolver-rules={}", rules.join(", ")),
                &format!("--user-data-dir={}", profile.display()),
                "about:blank",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("chromium (apt install chromium)");
        // Chromium prints where its DevTools endpoint listens; the rest of its log goes to a
        // file for a look after a failure.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = dir.join("chromium.log");
        std::thread::spawn(move || {
            let mut out = std::fs::File::create(log).ok();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
                if let Some(f) = out.as_mut() {
                    use std::io::Write as _;
                    let _ = writeln!(f, "{line}");
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium printed no DevTools address within 30 s");
        let addr = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("address")
            .to_owned();
        let tcp = TcpStream::connect(&addr).expect("connect to DevTools");
        tcp.set_read_timeout(Some(CALL_TIMEOUT)).expect("timeout");
        let (ws, _) = tungstenite::client(url.as_str(), tcp).expect("DevTools handshake");
        let shots = dir.join("screenshots");
        std::fs::create_dir_all(&shots).expect("screenshots dir");
        Self {
            child,
            ws,
            next_id: 0,
            shots,
        }
    }

    /// Calls `method`, in `session` (a tab) or on the browser; returns the result, failing
    /// the test on a protocol error.
    pub fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("send to DevTools");
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            assert!(Instant::now() < deadline, "{method}: no answer");
            let m = self.ws.read().expect("read from DevTools");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("DevTools JSON");
            // Events (no id) and other answers are not waited for.
            if v["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(e) = v.get("error") {
                panic!("{method}: {e}");
            }
            return v["result"].clone();
        }
    }

    /// A new tab in a fresh browser context: a browser identity of its own.
    pub fn identity(&mut self) -> Tab {
        let ctx = self.call(None, "Target.createBrowserContext", json!({}))["browserContextId"]
            .as_str()
            .expect("context")
            .to_owned();
        let target = self.call(
            None,
            "Target.createTarget",
            json!({ "url": "about:blank", "browserContextId": ctx }),
        )["targetId"]
            .as_str()
            .expect("target")
            .to_owned();
        let session = self.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target, "flatten": true }),
        )["sessionId"]
            .as_str()
            .expect("session")
            .to_owned();
        Tab {
            session,
            context: ctx,
        }
    }

    /// Evaluates `expr` in the tab's page (promises awaited); its JSON value.
    pub fn eval(&mut self, tab: &Tab, expr: &str) -> Value {
        let r = self.call(
            Some(&tab.session),
            "Runtime.evaluate",
            json!({ "expression": expr, "awaitPromise": true, "returnByValue": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            return json!({ "exception": e["exception"]["description"].clone() });
        }
        r["result"]["value"].clone()
    }

    /// Evaluates `expr` until it is `true`; fails the test with `what` after `within`.
    pub fn wait_for(&mut self, tab: &Tab, what: &str, expr: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            // Between documents (a redirect, a form post) there may be no context to
            // evaluate in for a moment: that is just "not yet".
            let r = self.call(
                Some(&tab.session),
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true }),
            );
            if r["result"]["value"] == json!(true) {
                return;
            }
            if Instant::now() > deadline {
                let at = self.eval(tab, "location.href + ' | ' + document.body.innerText");
                panic!("{what}: not within {within:?}; the page: {at}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens `url` in the tab and waits until the page (after any redirects) has loaded.
    pub fn open(&mut self, tab: &Tab, url: &str) {
        // Chromium drops a load when the host's interfaces change under it (another test
        // making a namespace): that is the host, not the page; try again a few times.
        for attempt in 1..=5 {
            let r = self.call(Some(&tab.session), "Page.navigate", json!({ "url": url }));
            match r.get("errorText").and_then(|e| e.as_str()) {
                None => break,
                Some(e) if e.contains("ERR_NETWORK_CHANGED") && attempt < 5 => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Some(e) => panic!("navigating to {url}: {e}"),
            }
        }
        self.settle(tab, url);
    }

    /// Waits until the tab shows a loaded document that is not `about:blank`.
    pub fn settle(&mut self, tab: &Tab, what: &str) {
        self.wait_for(
            tab,
            &format!("{what} loaded"),
            "document.readyState === 'complete' && location.href !== 'about:blank'",
            Duration::from_secs(20),
        );
    }

    /// Presses a key (`Enter`, `Tab`, `Escape`, ` `) on whatever has the focus, as a keyboard
    /// user would.
    pub fn press(&mut self, tab: &Tab, key: &str) {
        let (code, vk, text) = match key {
            "Enter" => ("Enter", 13, "\r"),
            "Tab" => ("Tab", 9, ""),
            "Escape" => ("Escape", 27, ""),
            " " => ("Space", 32, " "),
            other => panic!("no key {other:?} here"),
        };
        for kind in ["keyDown", "keyUp"] {
            let mut p =
                json!({ "type": kind, "key": key, "code": code, "windowsVirtualKeyCode": vk });
            if kind == "keyDown" && !text.is_empty() {
                p["text"] = json!(text);
            }
            self.call(Some(&tab.session), "Input.dispatchKeyEvent", p);
        }
    }

    /// The tab's current address.
    pub fn location(&mut self, tab: &Tab) -> String {
        self.eval(tab, "location.href")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The visible text of the tab's page.
    pub fn text(&mut self, tab: &Tab) -> String {
        self.eval(tab, "document.body ? document.body.innerText : ''")
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The HTTP status of the document the tab shows.
    pub fn status(&mut self, tab: &Tab) -> u64 {
        self.eval(
            tab,
            "performance.getEntriesByType('navigation')[0].responseStatus",
        )
        .as_u64()
        .unwrap_or(0)
    }

    /// Saves a PNG of the tab at `width`×`height` CSS pixels as `<name>.png` in
    /// [`Chromium::shots`]; returns its path.
    pub fn screenshot(&mut self, tab: &Tab, name: &str, width: u32, height: u32) -> PathBuf {
        use base64::Engine as _;
        self.call(
            Some(&tab.session),
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600 }),
        );
        let r = self.call(
            Some(&tab.session),
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.ws.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
