//! The HTTP error answer every handler and extractor returns: `{"error": {"code", "message"}}`
//! with the right status, and `Retry-After` whenever a retry can succeed (429, 503). The
//! crate's internal error (`crate::error::Error`) is mapped here, so storage code never decides
//! on a status.

use std::collections::BTreeMap;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::openapi::{HeaderBuilder, RefOr, ResponseBuilder};
use utoipa::ToSchema;

use crate::error::Error;
use crate::store;

/// Seconds a client should wait before retrying after a 503.
pub const RETRY_AFTER_SECS: u32 = 2;

/// An HTTP error answer. Messages name the problem so a client can fix its input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (seconds) when set.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The same answer with `Retry-After: secs`.
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// 400: the request cannot be read as sent.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: no credential, or one that is not valid.
    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, message)
    }

    /// 403: a valid credential that may not do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404: nothing at this route (or nothing this credential may see there).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 410: what the route named existed but is no longer there to take (a used or expired
    /// export link).
    pub fn gone(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::GONE, code, message)
    }

    /// 413: the body is over its cap.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message)
    }

    /// 415: a content type or encoding the route does not read.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            message,
        )
    }

    /// 422: the request is well formed but a parameter breaks a rule (the message names it).
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// 429 + Retry-After: this caller sends more than is served right now.
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u32) -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            .with_retry_after(retry_after_secs)
    }

    /// 500: a fault of the collector; the details go to the log, not to the client.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }

    /// 503 + Retry-After: the database cannot be reached right now.
    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("the database is unavailable, retry later ({cause})"),
        )
        .with_retry_after(RETRY_AFTER_SECS)
    }

    /// 503 + Retry-After for a batch of which nothing was acknowledged (the database is
    /// unavailable, the write queue is full, or a storage failure that is not the events' fault
    /// persisted): the client resends it, and dedupe settles whatever of it was stored.
    pub fn retry_later(cause: &dyn std::fmt::Display) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("nothing of the batch was acknowledged, retry later: {cause}"),
        )
        .with_retry_after(RETRY_AFTER_SECS)
    }

    /// A storage error while serving a request: 503 when the database is down, else 500.
    pub fn from_store(e: &Error) -> Self {
        match e {
            Error::Db(db) if !store::is_unavailable(db) => {
                tracing::error!("database error: {e}");
                Self::internal()
            }
            _ => Self::unavailable(e),
        }
    }
}

/// The body of every error answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// What kind of error, stable for programs (`invalid_parameter`, `insufficient_scope`, ...).
    #[schema(value_type = String)]
    pub code: &'static str,
    /// What was wrong, naming the parameter or field and the rule, for people.
    pub message: String,
}

/// The error answers of a read route, for the OpenAPI document (`responses(..., ReadErrors)` in
/// its `#[utoipa::path]`): 401, 403, 422, 429 and 503 (both with `Retry-After`), each with an
/// `ErrorBody`.
#[derive(Debug)]
pub struct ReadErrors;

impl utoipa::IntoResponses for ReadErrors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::response::Response>> {
        [
            ("401", "No credential, or one that is not valid."),
            (
                "403",
                "The credential lacks the scope, or may not act for this tenant.",
            ),
            (
                "422",
                "A parameter breaks a rule, or is unknown; the message names it.",
            ),
            ("429", RATE_LIMITED),
            ("503", UNAVAILABLE),
        ]
        .into_iter()
        .map(|(status, description)| (status.to_string(), error_response(status, description)))
        .collect()
    }
}

const RATE_LIMITED: &str =
    "The credential's or the tenant's rate limit is used up (the message names it): retry after \
     `Retry-After`.";

const UNAVAILABLE: &str =
    "The database is unavailable or the request took too long: retry after `Retry-After`.";

/// An error answer with an `ErrorBody`, and `Retry-After` with a 429 or a 503.
fn error_response(status: &str, description: &str) -> RefOr<utoipa::openapi::response::Response> {
    let mut r = ResponseBuilder::new().description(description).content(
        "application/json",
        utoipa::openapi::ContentBuilder::new()
            .schema(Some(utoipa::openapi::Ref::from_schema_name(
                ErrorBody::name(),
            )))
            .build(),
    );
    if status == "503" || status == "429" {
        r = r.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(Some(<u32 as utoipa::PartialSchema>::schema()))
                .description(Some("Seconds to wait before retrying."))
                .build(),
        );
    }
    RefOr::T(r.build())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: self.message,
            },
        };
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_goes_with_the_answers_a_retry_can_fix() {
        let cases = [
            (ApiError::unauthorized("c", "m"), 401, None),
            (ApiError::forbidden("c", "m"), 403, None),
            (ApiError::not_found("m"), 404, None),
            (ApiError::too_large("m"), 413, None),
            (ApiError::unprocessable("c", "m"), 422, None),
            (ApiError::too_many_requests("m", 1), 429, Some("1")),
            (ApiError::internal(), 500, None),
            (ApiError::unavailable(&"down"), 503, Some("2")),
            (ApiError::retry_later(&"full"), 503, Some("2")),
        ];
        for (e, status, retry_after) in cases {
            let resp = e.into_response();
            assert_eq!(resp.status().as_u16(), status);
            let got = resp
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok());
            assert_eq!(got, retry_after, "{status}");
        }
    }
}
