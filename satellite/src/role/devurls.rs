//! A satellite's dev URLs: who may open them is asked of the control plane
//! (`/api/v2/satellites/devurl-resolve`, answers cached by the edge for seconds), and browser
//! sign-in codes are redeemed there (`/api/v2/satellites/devurl-redeem`).

use std::future::Future;
use std::pin::Pin;

use perigee_api::http::HttpError;
use perigee_api::satellites::{DevUrlRedeemRequest, DevUrlRedeemed};
use relay_core::devurl::{Decision, Target};
use serde_json::json;

/// Largest answer read from the control plane.
const MAX_ANSWER: usize = 16 * 1024;

/// Dev URL decisions and sign-in codes, asked of the control plane.
pub(super) struct ControlPlaneDevUrls {
    pub(super) http: reqwest::Client,
    pub(super) primary_url: String,
    pub(super) token: String,
}

impl ControlPlaneDevUrls {
    async fn post(&self, path: &str, body: serde_json::Value) -> Result<Vec<u8>, HttpError> {
        let resp = self
            .http
            .post(format!("{}{path}", self.primary_url))
            .bearer_auth(&self.token)
            .json(&body)
            .timeout(std::time::Duration::from_secs(10))
            .send()
            .await?;
        perigee_api::http::success_body(resp, MAX_ANSWER).await
    }
}

impl crate::devurl::DevUrlResolver for ControlPlaneDevUrls {
    fn resolve<'a>(
        &'a self,
        host: &'a str,
        _target: &'a Target,
        viewer: Option<&'a str>,
    ) -> Pin<Box<dyn Future<Output = Decision> + Send + 'a>> {
        Box::pin(async move {
            match self
                .post(
                    "/api/v2/satellites/devurl-resolve",
                    json!({ "host": host, "viewer": viewer }),
                )
                .await
            {
                Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                    Decision::Unavailable(format!("unexpected answer from the control plane: {e}"))
                }),
                Err(e) => {
                    tracing::warn!(error = %e, %host, "dev URL decision failed");
                    Decision::Unavailable(e.to_string())
                }
            }
        })
    }

    fn redeem<'a>(
        &'a self,
        code: &'a str,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(async move {
            let b = self
                .post(
                    "/api/v2/satellites/devurl-redeem",
                    json!(DevUrlRedeemRequest {
                        code: code.to_owned(),
                        host: host.to_owned(),
                    }),
                )
                .await
                .map_err(|e| tracing::warn!(error = %e, %host, "dev URL sign-in code not redeemed"))
                .ok()?;
            serde_json::from_slice::<DevUrlRedeemed>(&b).ok()?.user_id
        })
    }

    fn sign_in_url(&self) -> String {
        format!("{}/login", self.primary_url)
    }
}
