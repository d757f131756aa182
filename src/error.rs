//! The API's one error type, and how it turns into an HTTP answer.
//!
//! Every error body is `{"error": {"code", "message", "field"?, "errors"?}}`: `errors` lists
//! every bad field of an `invalid` request, the first of them also as `field` and `message`.
//! Internal errors are logged with their context and answered with a plain message that leaks
//! nothing.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Invalid;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Invalid {
        message: String,
        field: Option<String>,
    },
    /// Several bad fields of one request, all reported at once (never empty; see
    /// [`FieldErrors`]).
    #[error("{}", .0.first().map_or("invalid request", |e| e.message.as_str()))]
    InvalidFields(Vec<FieldError>),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// A well-formed value of a request field that names nothing here (a cursor this server
    /// did not hand out): 404 naming the field.
    #[error("{message}")]
    NotFoundIn { message: String, field: String },
    #[error("{message}")]
    Conflict {
        message: String,
        field: Option<String>,
    },
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many requests: the caller may retry after this many whole seconds.
    #[error("{message}")]
    RateLimited { message: String, retry_after: u64 },
    /// The request's body did not arrive within `body_read_timeout`.
    #[error("{0}")]
    RequestTimeout(String),
    /// The request's body broke off before its end.
    #[error("{0}")]
    BodyUnreadable(String),
    #[error("{0}")]
    UriTooLong(String),
    #[error("{0}")]
    HeadersTooLarge(String),
    #[error("the database is unavailable")]
    Unavailable,
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// The JSON body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code: `invalid`, `unauthorized`, `forbidden`, `not_found`,
    /// `conflict`, `payload_too_large`, `request_timeout`, `unsupported_media_type`, `uri_too_long`,
    /// `headers_too_large`, `rate_limited`, `unavailable`, `internal`.
    pub code: String,
    /// What went wrong, for a person.
    pub message: String,
    /// The request field to blame, when there is one (`tags[2]`, `version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// With code `invalid`: every bad field of the request, in the order checked; the first
    /// is also `field` and `message`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// One bad field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The request field to blame, when there is one (absent for a malformed body).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong with it, for a person.
    pub message: String,
}

/// The most bad fields one answer lists.
pub const MAX_FIELD_ERRORS: usize = 100;

/// Collects the bad fields of one request, so that the answer names all of them at once
/// rather than the first only. An error that is not about a field (403, 404, a database
/// error) is kept aside and answered first, as the request would have been without it.
#[derive(Debug, Default)]
pub struct FieldErrors {
    errors: Vec<FieldError>,
    other: Option<ApiError>,
}

impl FieldErrors {
    pub fn new() -> Self {
        FieldErrors::default()
    }

    /// The value of a check that passed; records a failed one and answers `None`.
    pub fn check<T, E: Into<ApiError>>(&mut self, result: Result<T, E>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.add(e.into());
                None
            }
        }
    }

    /// Records an error (at most [`MAX_FIELD_ERRORS`] are kept).
    pub fn add(&mut self, err: ApiError) {
        let room = MAX_FIELD_ERRORS.saturating_sub(self.errors.len());
        match err {
            ApiError::Invalid { message, field } if room > 0 => {
                self.errors.push(FieldError { field, message });
            }
            ApiError::InvalidFields(list) => self.errors.extend(list.into_iter().take(room)),
            ApiError::Invalid { .. } => {}
            other => {
                if self.other.is_none() {
                    self.other = Some(other);
                }
            }
        }
    }

    /// Whether any check failed.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.other.is_none()
    }

    /// `Ok` when every check passed; else the error answering all of them.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.other {
            Some(other) => Err(other),
            None if self.errors.is_empty() => Ok(()),
            None => Err(ApiError::InvalidFields(self.errors)),
        }
    }

    /// The parsed value when every check passed (`value` is `Some` then).
    pub fn finish_with<T>(self, value: Option<T>) -> Result<T, ApiError> {
        self.finish()?;
        value.ok_or_else(|| ApiError::Internal(anyhow::anyhow!("a check passed without a value")))
    }
}

impl ApiError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn conflict(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Conflict {
            message: message.into(),
            field: Some(field.into()),
        }
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// A conflict on a unique key becomes this 409 on `field`; any other error as usual.
    pub fn unique(err: crate::store::Error, field: &str, message: impl Into<String>) -> Self {
        match err {
            crate::store::Error::Conflict { .. } => ApiError::conflict(field, message),
            other => ApiError::from(other),
        }
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Invalid { .. } | ApiError::InvalidFields(_) => {
                (StatusCode::BAD_REQUEST, "invalid")
            }
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) | ApiError::NotFoundIn { .. } => {
                (StatusCode::NOT_FOUND, "not_found")
            }
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::BodyUnreadable(_) => (StatusCode::BAD_REQUEST, "invalid"),
            ApiError::UriTooLong(_) => (StatusCode::URI_TOO_LONG, "uri_too_long"),
            ApiError::HeadersTooLarge(_) => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
            ),
            ApiError::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::Invalid {
            message: e.message,
            field: e.field,
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(e: Invalid) -> Self {
        ApiError::Invalid {
            message: format!("{}: {}", e.field, e.message),
            field: Some(e.field),
        }
    }
}

impl From<crate::store::Error> for ApiError {
    fn from(err: crate::store::Error) -> Self {
        use crate::store::Error;
        match err {
            Error::Unavailable(cause) => {
                tracing::warn!(error = %cause, "database unavailable");
                ApiError::Unavailable
            }
            Error::NulInText => ApiError::Invalid {
                message: "text must not contain NUL (\\u0000) characters".into(),
                field: None,
            },
            Error::Conflict { field } => {
                ApiError::conflict(field, format!("this {field} is already taken"))
            }
            Error::Other(err) => ApiError::Internal(err),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let field = match &self {
            ApiError::Invalid { field, .. } | ApiError::Conflict { field, .. } => field.clone(),
            ApiError::NotFoundIn { field, .. } => Some(field.clone()),
            ApiError::InvalidFields(list) => list.first().and_then(|e| e.field.clone()),
            _ => None,
        };
        let errors = match &self {
            ApiError::Invalid { field, message } => vec![FieldError {
                field: field.clone(),
                message: message.clone(),
            }],
            ApiError::InvalidFields(list) => list.clone(),
            _ => Vec::new(),
        };
        if let ApiError::Internal(err) = &self {
            tracing::error!(error = ?err, "internal error");
        }
        let mut response = (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    code: code.into(),
                    message: self.to_string(),
                    field,
                    errors,
                },
            }),
        )
            .into_response();
        if matches!(self, ApiError::Unavailable) {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("5"),
            );
        }
        if let ApiError::RateLimited { retry_after, .. } = &self {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(*retry_after),
            );
        }
        response
    }
}
