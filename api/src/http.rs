//! Talking to the control plane over HTTPS with `reqwest` (feature `client`): the client a
//! role process uses and size-limited, typed reading of answers. Shared by every role that
//! calls the control plane (satellite, agent, workspace provider) and by the CLI.

use serde::de::DeserializeOwned;

/// Why a call to the control plane failed, by who is to blame: [`HttpError::is_refusal`]
/// separates "the control plane said no" (final) from "it could not be asked" (retry, or
/// fall back to the last answer).
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer: connection, TLS or timeout.
    #[error("{0}")]
    Unreachable(String),
    /// The answer was larger than we read.
    #[error("answer larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The control plane answered with an error status.
    #[error("HTTP {status}: {message}")]
    Status {
        /// The status code.
        status: u16,
        /// Its `error` field, else the body as text.
        message: String,
    },
    /// The answer was not the JSON expected.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The client could not be built (TLS material).
    #[error("{0}")]
    Setup(String),
}

impl HttpError {
    /// The control plane refused (4xx): asking again will not help.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Status { status, .. } if (400..500).contains(status))
    }

    /// The status code, when the control plane answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for HttpError {
    fn from(e: reqwest::Error) -> Self {
        // reqwest's Display stops at the outermost error; the cause says what happened.
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        Self::Unreachable(text)
    }
}

/// An HTTPS client for a role talking to the control plane: trusts `roots` (the system's
/// plus `--ca-cert`), HTTP/2 or 1.1, 10 s per request.
pub fn role_http(roots: rustls::RootCertStore) -> Result<reqwest::Client, HttpError> {
    let tls = relay_core::tls::client_config(roots, &[b"h2", b"http/1.1"])
        .map_err(|e| HttpError::Setup(e.to_string()))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(std::time::Duration::from_secs(10))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| HttpError::Setup(e.to_string()))
}

/// Reads a response body, refusing more than `limit` bytes.
pub async fn read_limited(mut resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Err(HttpError::TooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The message of an error answer: its JSON `error` field, else the body as text.
pub fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned())
}

/// The body of a successful answer (at most `limit` bytes), else [`HttpError::Status`].
pub async fn success_body(resp: reqwest::Response, limit: usize) -> Result<Vec<u8>, HttpError> {
    let status = resp.status();
    let bytes = read_limited(resp, limit).await?;
    if !status.is_success() {
        return Err(HttpError::Status {
            status: status.as_u16(),
            message: error_message(&bytes),
        });
    }
    Ok(bytes)
}

/// A successful JSON answer of at most `limit` bytes, decoded as `T`.
pub async fn json_limited<T: DeserializeOwned>(
    resp: reqwest::Response,
    limit: usize,
) -> Result<T, HttpError> {
    let body = success_body(resp, limit).await?;
    serde_json::from_slice(&body).map_err(|e| HttpError::Decode(e.to_string()))
}
