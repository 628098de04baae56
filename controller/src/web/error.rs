//! One error type for every JSON route: each failure becomes a status and
//! a `{"error": ..., "field": ...}` body a person can read. Internal
//! details go to the log, not to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tracing::error;

use crate::auth::{Denied, LoginError, SessionError};
use crate::inventory;

#[derive(Debug)]
pub enum ApiError {
    /// 401: no or expired session.
    Unauthenticated(String),
    /// 403: missing or wrong CSRF token.
    Csrf,
    /// 403 / 404 from the policy.
    Denied(Denied),
    NotFound(String),
    /// 422 with the field at fault.
    Invalid {
        field: Option<&'static str>,
        message: String,
    },
    /// 422 with every field at fault (a plan is checked whole).
    Problems(loadplan::Problems),
    /// 400, 413, 415 ...: the request body could not be read.
    BadRequest(StatusCode, String),
    Conflict(String),
    TooManyRequests {
        retry_after_secs: u64,
        message: String,
    },
    /// 502: a managed server could not be reached or refused us.
    Upstream(String),
    Internal(&'static str),
}

impl ApiError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            field: Some(field),
            message: message.into(),
        }
    }
}

impl From<Denied> for ApiError {
    fn from(d: Denied) -> Self {
        ApiError::Denied(d)
    }
}

impl From<inventory::model::Invalid> for ApiError {
    fn from(e: inventory::model::Invalid) -> Self {
        ApiError::Invalid {
            field: Some(e.field),
            message: e.to_string(),
        }
    }
}

impl From<inventory::Error> for ApiError {
    fn from(e: inventory::Error) -> Self {
        match e {
            inventory::Error::Invalid(i) => i.into(),
            inventory::Error::Conflict(m) | inventory::Error::InUse(m) => ApiError::Conflict(m),
            inventory::Error::NotFound(what) => ApiError::NotFound(format!("no such {what}")),
            other => {
                error!(error = %other, "inventory failure");
                ApiError::Internal("inventory unavailable")
            }
        }
    }
}

impl From<crate::loadtest::PlanError> for ApiError {
    fn from(e: crate::loadtest::PlanError) -> Self {
        use crate::loadtest::PlanError;
        match e {
            PlanError::Problems(p) => ApiError::Problems(p),
            PlanError::Inventory(e) => e.into(),
            PlanError::Files(crate::files::FileError::NotFound(_)) => {
                ApiError::NotFound("the file is missing from the file store".into())
            }
            PlanError::Bundle(e) => ApiError::Invalid {
                field: Some("file"),
                message: e.to_string(),
            },
            PlanError::Jmx(e) => ApiError::Invalid {
                field: Some("file"),
                message: format!("the .jmx cannot be prepared: {e}"),
            },
            PlanError::Io(e) => {
                error!(error = %e, "building run files");
                ApiError::Internal("could not build the run files (see the log)")
            }
            PlanError::Files(e) => {
                error!(error = %e, "file store failure");
                ApiError::Internal("file store unavailable")
            }
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Inventory(e) => e.into(),
            other => ApiError::Unauthenticated(other.to_string()),
        }
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::BadCredentials => ApiError::Unauthenticated(e.to_string()),
            LoginError::RateLimited { retry_after_secs } => ApiError::TooManyRequests {
                retry_after_secs,
                message: e.to_string(),
            },
            LoginError::Inventory(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message, field) = match self {
            ApiError::Unauthenticated(m) => (StatusCode::UNAUTHORIZED, m, None),
            ApiError::Csrf => (
                StatusCode::FORBIDDEN,
                "missing or wrong CSRF token (reload the page)".to_string(),
                None,
            ),
            ApiError::Denied(Denied::Forbidden) => (
                StatusCode::FORBIDDEN,
                "not allowed for your account".to_string(),
                None,
            ),
            ApiError::Denied(Denied::Hidden) => {
                (StatusCode::NOT_FOUND, "not found".to_string(), None)
            }
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m, None),
            ApiError::Invalid { field, message } => {
                (StatusCode::UNPROCESSABLE_ENTITY, message, field)
            }
            ApiError::Problems(p) => {
                let body = serde_json::json!({
                    "error": p.to_string(),
                    "field": p.0.first().map(|p| p.field.as_str()),
                    "problems": p.0,
                });
                return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
            }
            ApiError::BadRequest(status, m) => (status, m, None),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m, None),
            ApiError::TooManyRequests {
                retry_after_secs,
                message,
            } => {
                let mut r = (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(serde_json::json!({ "error": message })),
                )
                    .into_response();
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                return r;
            }
            ApiError::Upstream(m) => (StatusCode::BAD_GATEWAY, m, None),
            ApiError::Internal(m) => (StatusCode::INTERNAL_SERVER_ERROR, m.to_string(), None),
        };
        let body = match field {
            Some(f) => serde_json::json!({ "error": message, "field": f }),
            None => serde_json::json!({ "error": message }),
        };
        (status, Json(body)).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
