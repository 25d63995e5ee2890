//! API errors: an HTTP status, a stable machine-readable code and a sentence for humans.

use axum::response::{IntoResponse, Response};

/// An error returned by the REST API as `{"error": message, "code": code}`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: http::StatusCode,
    /// Stable code, e.g. `not_found`.
    pub code: &'static str,
    /// Explanation.
    pub message: String,
}

impl ApiError {
    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: http::StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
        }
    }
    /// A 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: http::StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
        }
    }
    /// A 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: http::StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
        }
    }
    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: http::StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
        }
    }
    /// A 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: http::StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
        }
    }
    /// A 500; the detail is logged, not shown.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal server error (see the server log)".into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(serde_json::json!({ "error": self.message, "code": self.code })),
        )
            .into_response()
    }
}
