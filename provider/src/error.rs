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
    /// The request field that is wrong, when one is.
    pub field: Option<String>,
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: http::StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }
    /// A 400 with a message.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: http::StatusCode::BAD_REQUEST,
            code: "bad_request",
            message: message.into(),
            field: None,
        }
    }
    /// A 401.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self {
            status: http::StatusCode::UNAUTHORIZED,
            code: "unauthorized",
            message: message.into(),
            field: None,
        }
    }
    /// A 403.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self {
            status: http::StatusCode::FORBIDDEN,
            code: "forbidden",
            message: message.into(),
            field: None,
        }
    }
    /// A 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: http::StatusCode::NOT_FOUND,
            code: "not_found",
            message: message.into(),
            field: None,
        }
    }
    /// A 409.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self {
            status: http::StatusCode::CONFLICT,
            code: "conflict",
            message: message.into(),
            field: None,
        }
    }
    /// Names the request field that is wrong.
    pub fn on(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
    /// A 500; the detail is logged, not shown.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self {
            status: http::StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal",
            message: "internal server error (see the server log)".into(),
            field: None,
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // Two requests racing for one unique name: the loser gets a conflict, not a 500.
        if e.as_database_error()
            .is_some_and(|d| d.is_unique_violation())
        {
            return Self::conflict("that name is already taken (a concurrent request won)");
        }
        Self::internal(e)
    }
}

impl From<crate::k8s_schema::SchemaError> for ApiError {
    fn from(e: crate::k8s_schema::SchemaError) -> Self {
        Self::bad_request(e.to_string()).on(e.field)
    }
}

impl IntoResponse for ApiError {
    fn into_response(mut self) -> Response {
        // Messages follow the convention "field: why"; name the field from it when the
        // handler did not.
        if self.field.is_none() && self.status.is_client_error() {
            if let Some((head, _)) = self.message.split_once(": ") {
                let ident = !head.is_empty()
                    && head
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.');
                if ident {
                    self.field = Some(head.to_owned());
                }
            }
        }
        (
            self.status,
            axum::Json(perigee_api::workspaces::ErrorBody {
                error: self.message,
                code: Some(self.code.to_string()),
                field: self.field,
            }),
        )
            .into_response()
    }
}
