//! `POST /v1/batch`: authenticate (`ingest` scope), read the body under hard caps (gzip
//! included) and decode it event by event with sdk-core's rules (`body`), apply the collector's
//! own rules (`admit`: tenant binding, timestamp window), hand the rest to the group-commit
//! writer, and answer `{accepted, duplicates, rejected: [{index, id, error, retryable}]}` once
//! they are committed (`store_and_answer`). A second ingest route (OTLP, say) reads its own
//! body and reuses `admit` and `store_and_answer`.
//!
//! A per-event rejection is final for the bytes sent (`retryable: false`): an event the rules
//! refuse, or whose row the database refuses by itself. Anything a resend could fix answers the
//! whole request 503 + Retry-After instead, with nothing of it acknowledged.

mod admit;
mod answer;
mod body;
mod gzip;
mod schema;

pub use admit::{admit, Window};
pub use answer::{store_and_answer, Admitted, BatchResponse, RejectedEvent, Rejection};
pub use body::read_batch;
pub use gzip::{gunzip_capped, GunzipError};
pub use schema::BatchEnvelope;

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;

use crate::api_error::{ApiError, ErrorBody};
use crate::auth::{Principal, Scope};
use crate::state::{AppState, SharedState};

/// Store a batch of events.
///
/// Each event is judged by itself: the answer lists the stored ones (`accepted`), those stored
/// before (`duplicates`) and those refused (`rejected`, naming the field and the rule).
#[utoipa::path(
    post,
    path = "/v1/batch",
    tag = "ingest",
    security(("bearer" = [])),
    request_body(
        content = BatchEnvelope,
        content_type = "application/json",
        description = "A batch of events, optionally gzip-compressed (`Content-Encoding: gzip`)."
    ),
    responses(
        (status = 200, description = "The batch was committed; per-event outcomes.", body = BatchResponse),
        (status = 400, description = "The body is not a batch (not JSON, not the envelope, bad gzip, empty).", body = ErrorBody),
        (status = 401, description = "No credential, or one that is not valid.", body = ErrorBody),
        (status = 403, description = "The credential lacks the `ingest` scope, or no event is for a tenant it may write.", body = ErrorBody),
        (status = 408, description = "The body was not received in time.", body = ErrorBody),
        (status = 413, description = "The body is over its cap.", body = ErrorBody),
        (status = 415, description = "A Content-Type other than JSON, or a Content-Encoding other than identity or gzip.", body = ErrorBody),
        (status = 429, description = "The ingest rate limit (`--rate-ingest-per-second`, off by default) is used up.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying."))),
        (status = 503, description = "Nothing of the batch was acknowledged: resend it after `Retry-After`.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying."))),
    )
)]
pub async fn post_batch(
    State(st): State<SharedState>,
    principal: Result<Principal, ApiError>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let resp = match handle(&st, principal, &headers, body).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => {
            if e.status.is_server_error() {
                tracing::warn!("POST /v1/batch: {} {}", e.status, e.message);
            }
            e.into_response()
        }
    };
    st.metrics.response(resp.status().as_u16());
    st.metrics.batch_latency.observe(started.elapsed());
    resp
}

async fn handle(
    st: &AppState,
    principal: Result<Principal, ApiError>,
    headers: &HeaderMap,
    body: Body,
) -> Result<BatchResponse, ApiError> {
    let principal = principal?;
    principal.require(Scope::Ingest)?;
    let decoded = read_batch(headers, body).await?;
    let admitted = admit(&principal, decoded, &Window::at(Utc::now(), &st.config))?;
    store_and_answer(st, admitted).await
}
