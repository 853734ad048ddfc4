//! The one error type of the API, rendered as `{"error":{"code","message"}}`.

use crate::media::MediaError;
use crate::push::PushError;
use crate::rooms::RoomError;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::header::RETRY_AFTER;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use roost_store::StoreError;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;

/// An API error: HTTP status, a stable machine code and a human message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// Seconds after which a retry may succeed (`Retry-After`), for 429 and 503.
    retry_after: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl ApiError {
    /// Every status and code the API answers is made by one of the constructors below: they are
    /// the table of error codes.
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), retry_after: None }
    }

    /// 429: a limit is reached; retry after `wait`.
    pub fn rate_limited(wait: Duration) -> Self {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        let message = format!("too many attempts; retry in {seconds} s");
        Self { retry_after: Some(seconds), ..Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message) }
    }

    /// 503: the server is saturated right now; retry after `seconds`.
    pub fn busy(message: impl Into<String>, seconds: u64) -> Self {
        Self { retry_after: Some(seconds), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "busy", message) }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here")
    }

    /// 413: an upload past its size limit (`payload_too_large`) or the uploader's quota
    /// (`quota_exceeded`).
    fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }

    /// 415: an upload whose bytes are of a type not accepted, or not the type declared.
    fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Self::conflict("already exists"),
            StoreError::Unavailable(detail) => {
                tracing::error!(%detail, "store unavailable");
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the store is unavailable, retry later")
            }
        }
    }
}

impl From<MediaError> for ApiError {
    fn from(e: MediaError) -> Self {
        use MediaError as E;
        match e {
            E::Store(e) => e.into(),
            E::NotFound => Self::not_found(e.to_string()),
            E::TooLarge(_) => Self::too_large("payload_too_large", e.to_string()),
            E::OverQuota(_) => Self::too_large("quota_exceeded", e.to_string()),
            E::Unsupported(_) => Self::unsupported_media_type(e.to_string()),
            E::BadImage(_) | E::Body(_) => Self::bad_request(e.to_string()),
            E::NotDeletable => Self::forbidden(e.to_string()),
            E::Blobs(_) | E::Spool(_) => {
                tracing::error!(error = %e, "media storage failed");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the media store is unavailable, retry later",
                )
            }
        }
    }
}

impl From<PushError> for ApiError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Store(e) => e.into(),
            PushError::Invalid(_) | PushError::Endpoint(_) => Self::bad_request(e.to_string()),
            PushError::NoDevice => Self::not_found(e.to_string()),
        }
    }
}

impl From<RoomError> for ApiError {
    fn from(e: RoomError) -> Self {
        use RoomError as E;
        match e {
            E::Store(e) => e.into(),
            E::DmWithSelf => Self::bad_request(e.to_string()),
            E::JoinFirst
            | E::ReservedName
            | E::DirectoryName
            | E::TooManyOwned(_)
            | E::DirectHasNoOwner
            | E::NotOwner
            | E::NotBotOwner(_)
            | E::DmWithBot(_)
            | E::NotYours(_) => Self::forbidden(e.to_string()),
            E::NoRoom(_) | E::NoUser(_) | E::NotMember(_) | E::NoSharedRoom(_) => Self::not_found(e.to_string()),
            E::Exists(_) | E::OwnerCannotLeave | E::OwnerCannotBeRemoved | E::DmIdTaken => {
                Self::conflict(e.to_string())
            }
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(e: JsonRejection) -> Self {
        Self::new(e.status(), "bad_json", e.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(e: QueryRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(e: PathRejection) -> Self {
        Self::bad_request(e.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_owned(), message: self.message } };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// `Json` whose rejections render as [`ApiError`].
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub(crate) struct ApiJson<T>(pub(crate) T);

/// `Query` whose rejections render as [`ApiError`].
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub(crate) T);
