//! REST API client.

use anyhow::Context as _;
use perigee_api::workspaces::ErrorBody;
use serde_json::Value;

use crate::session::Session;

/// The rustls client configuration every CLI connection uses: web roots plus
/// `PERIGEE_CA_CERT` for self-signed deployments.
pub fn tls_config(alpn: &[&[u8]]) -> anyhow::Result<rustls::ClientConfig> {
    let extra = std::env::var_os("PERIGEE_CA_CERT")
        .filter(|v| !v.is_empty())
        .map(std::path::PathBuf::from);
    let roots = relay_core::tls::roots(extra.as_deref()).context("loading PERIGEE_CA_CERT")?;
    Ok(relay_core::tls::client_config(roots, alpn)?)
}

/// Largest API answer the CLI reads (a workspace list of thousands fits easily).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Reads a response body, refusing more than `limit` bytes.
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        anyhow::ensure!(
            body.len() + chunk.len() <= limit,
            "answer larger than {} MiB",
            limit >> 20
        );
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

pub struct Client {
    http: reqwest::Client,
    pub base: String,
    token: String,
}

impl Client {
    pub fn new(s: &Session) -> anyhow::Result<Self> {
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

    pub fn from_session() -> anyhow::Result<Self> {
        Self::new(&crate::session::load()?)
    }

    /// Sends a request to the session's URL; when that URL cannot be reached at all, tries
    /// the other edges of the deployment last seen in `/api/v2/regions` (every edge serves the
    /// API), so a dead satellite does not lock its users out.
    async fn send<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<T> {
        let build = |base: &str| {
            let mut r = self.http.request(method.clone(), format!("{base}{path}"));
            if let Some(b) = body {
                r = r.json(b);
            }
            r.bearer_auth(&self.token)
        };
        let resp = match build(&self.base).send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                let mut found = None;
                for url in crate::known::urls(&self.base) {
                    if url == self.base {
                        continue;
                    }
                    if let Ok(r) = build(&url).send().await {
                        eprintln!("perigee: {} cannot be reached; used {url}", self.base);
                        found = Some(r);
                        break;
                    }
                }
                match found {
                    Some(r) => r,
                    None => return Err(e).with_context(|| format!("cannot reach {}", self.base)),
                }
            }
            Err(e) => return Err(e).with_context(|| format!("cannot reach {}", self.base)),
        };
        let status = resp.status();
        let body = read_limited(resp, MAX_RESPONSE)
            .await
            .with_context(|| format!("reading the answer from {}", self.base))?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .with_context(|| format!("unexpected answer from {}", self.base));
        }
        let parsed = serde_json::from_slice::<ErrorBody>(&body).ok();
        let mut message = parsed
            .as_ref()
            .map(|e| e.error.clone())
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        // Name the field at fault, unless the message already starts with it.
        if let Some(field) = parsed.as_ref().and_then(|e| e.field.as_deref()) {
            if !message.starts_with(field) {
                message = format!("{field}: {message}");
            }
        }
        anyhow::bail!("{message} (HTTP {})", status.as_u16())
    }

    /// `GET path`, the answer as `T` (an API type of `perigee_api`).
    pub async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_value(body)?;
        self.send(reqwest::Method::POST, path, Some(&body)).await
    }

    /// `PATCH path` with a JSON body.
    pub async fn patch<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_value(body)?;
        self.send(reqwest::Method::PATCH, path, Some(&body)).await
    }

    /// `PUT path` with a JSON body.
    pub async fn put<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        let body = serde_json::to_value(body)?;
        self.send(reqwest::Method::PUT, path, Some(&body)).await
    }

    /// `DELETE path`.
    pub async fn delete<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(reqwest::Method::DELETE, path, None).await
    }
}
