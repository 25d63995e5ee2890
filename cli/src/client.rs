//! REST API client.

use anyhow::Context as _;
use serde_json::Value;

use crate::session::Session;

/// The rustls client configuration every CLI connection uses: web roots plus
/// `PERIGEE_CA_CERT` for self-signed deployments.
pub(crate) fn tls_config(alpn: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
    let extra = std::env::var_os("PERIGEE_CA_CERT")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from);
    let roots = relay_core::tls::roots(extra.as_deref()).context("loading PERIGEE_CA_CERT")?;
    Ok(relay_core::tls::client_config(roots, alpn)?)
}

pub(crate) struct Client {
    http: reqwest::Client,
    pub(crate) base: String,
    token: String,
}

impl Client {
    pub(crate) fn new(s: &Session) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(&[b"h2", b"http/1.1"])?)
            .timeout(std::time::Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            base: s.url.clone(),
            token: s.token.clone(),
        })
    }

    pub(crate) fn from_session() -> anyhow::Result<Self> {
        Self::new(&crate::session::load()?)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .with_context(|| format!("unexpected answer from {}", self.base));
        }
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        anyhow::bail!("{message} (HTTP {})", status.as_u16())
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }
}
