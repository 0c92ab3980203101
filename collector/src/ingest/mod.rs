//! `POST /v1/batch`: authenticate (`ingest` scope), read the body under hard caps (gzip
//! included), decode and validate event by event with sdk-core's rules, apply the collector's own
//! rules (tenant binding, timestamp window), hand the rest to the group-commit writer, and answer
//! `{accepted, duplicates, rejected: [{index, id, error, retryable}]}` once they are committed.
//!
//! A per-event rejection is final for the bytes sent (`retryable: false`): an event the rules
//! refuse, or whose row the database refuses by itself. Anything a resend could fix answers the
//! whole request 503 + Retry-After instead, with nothing of it acknowledged.

mod gzip;

pub use gzip::{gunzip_capped, GunzipError};

use std::sync::atomic::Ordering;
use std::time::Instant;

use agenttally::{AnalyticsEvent, Batch, BatchLimits, ErrorKind};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use http_body_util::BodyExt;
use serde::Serialize;
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::auth::{Principal, Scope};
use crate::state::{AppState, SharedState};
use crate::store::writer::Outcome;

/// The answer to a batch.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct BatchResponse {
    /// Events newly stored by this request.
    pub accepted: usize,
    /// Events already stored before (same tenant_id and id): safe to drop, nothing to resend.
    pub duplicates: usize,
    /// Events refused, each by itself; the rest of the batch is stored.
    pub rejected: Vec<RejectedEvent>,
}

/// One refused event.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct RejectedEvent {
    pub index: usize,
    /// The event's id whenever it could be read (`null` only when it could not).
    pub id: Option<Uuid>,
    /// What was wrong, naming the field (`batch[3].duration_ms: must be >= 0, got -5`).
    pub error: String,
    /// Whether resending this event unchanged (same id) may succeed. Always present; the client
    /// resends exactly the `true` ones. Every rejection the collector makes today is final.
    pub retryable: bool,
}

/// Bytes read from the wire beyond the uncompressed limit before we stop (gzip headers etc.).
const READ_MARGIN: usize = 16 * 1024;
/// Largest oversized body read (and discarded) so the client gets its 413; beyond it the
/// connection is closed on the client.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
/// Longest time to receive a body.
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

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
    let gzip = content_encoding_is_gzip(headers)?;
    check_content_type(headers)?;
    let limits = BatchLimits::V1;
    let raw = read_capped(headers, body, limits.max_batch_bytes + READ_MARGIN).await?;
    let bytes = if gzip {
        gunzip_capped(&raw, limits.max_batch_bytes).map_err(|e| match e {
            GunzipError::TooLarge => ApiError::too_large(format!(
                "batch: the gzip body inflates to more than {} bytes, the uncompressed limit",
                limits.max_batch_bytes
            )),
            GunzipError::Invalid(m) => {
                ApiError::bad_request("invalid_gzip", format!("body: not valid gzip ({m})"))
            }
        })?
    } else {
        raw
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "empty_body",
            r#"body: empty; expected a JSON object {"batch": [event, ...], "sent_at": "<RFC 3339>"}"#,
        ));
    }
    let decoded = Batch::decode(&bytes, &limits).map_err(|e| {
        if e.kind() == ErrorKind::TooLarge {
            ApiError::too_large(e.to_string())
        } else {
            ApiError::bad_request("malformed_batch", e.to_string())
        }
    })?;

    let total = decoded.events.len();
    let now = Utc::now();
    // Checked: `ServerConfig` is validated at start, but a bad window must not panic a request.
    let oldest = TimeDelta::try_days(i64::from(st.config.raw_retention_days))
        .and_then(|d| now.checked_sub_signed(d))
        .unwrap_or(DateTime::<Utc>::MIN_UTC);
    let newest = now
        .checked_add_signed(st.config.max_future)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    let mut rejected: Vec<(RejectedEvent, &'static str)> = Vec::new();
    let mut foreign = 0usize;
    let mut valid: Vec<(usize, AnalyticsEvent)> = Vec::with_capacity(total);
    for (index, r) in decoded.events.into_iter().enumerate() {
        let e = match r {
            Ok(e) => e,
            Err(rej) => {
                let reason = match rej.error.kind() {
                    ErrorKind::Decode => "decode",
                    _ => "invalid",
                };
                // The same bytes fail the same way.
                rejected.push((
                    RejectedEvent {
                        index: rej.index,
                        id: rej.id,
                        error: rej.error.to_string(),
                        retryable: false,
                    },
                    reason,
                ));
                continue;
            }
        };
        let problem = if !principal.allows_tenant(&e.tenant_id) {
            foreign += 1;
            Some((
                format!(
                    "batch[{index}].tenant_id: this API key is bound to tenant `{}` and may not \
                     write tenant `{}`",
                    principal.tenant.as_deref().unwrap_or_default(),
                    e.tenant_id
                ),
                "tenant",
            ))
        } else if e.timestamp < oldest {
            Some((
                format!(
                    "batch[{index}].timestamp: must be within the last {} days (raw retention), \
                     got {}",
                    st.config.raw_retention_days,
                    e.timestamp.to_rfc3339()
                ),
                "timestamp",
            ))
        } else if e.timestamp > newest {
            Some((
                format!(
                    "batch[{index}].timestamp: must not be more than {} hours in the future \
                     (check the sender's clock), got {}",
                    st.config.max_future.num_hours(),
                    e.timestamp.to_rfc3339()
                ),
                "timestamp",
            ))
        } else {
            None
        };
        match problem {
            // Final: the key's binding does not change, and an event past the retention window
            // only gets older. One more than `max_future` ahead would pass a while later, but the
            // cause is the sender's clock and the wait (a day or more) outlasts any retry budget.
            Some((error, reason)) => rejected.push((
                RejectedEvent {
                    index,
                    id: Some(e.id),
                    error,
                    retryable: false,
                },
                reason,
            )),
            None => valid.push((index, e)),
        }
    }
    if total > 0 && foreign == total {
        // Nothing in the request is for a tenant this key may write: refuse it as a whole.
        let tenant = principal.tenant.as_deref().unwrap_or_default();
        return Err(ApiError::forbidden(
            "tenant_forbidden",
            format!(
                "this API key is bound to tenant `{tenant}` and may not write the tenant(s) of \
                 this batch"
            ),
        ));
    }

    let indexes: Vec<(usize, Uuid)> = valid.iter().map(|(i, e)| (*i, e.id)).collect();
    let events: Vec<AnalyticsEvent> = valid.into_iter().map(|(_, e)| e).collect();
    let outcomes = st
        .writer
        .write(events)
        .await
        .map_err(|e| ApiError::retry_later(&e.0))?;
    let (mut accepted, mut duplicates) = (0, 0);
    for ((index, id), outcome) in indexes.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Inserted => accepted += 1,
            Outcome::Duplicate => duplicates += 1,
            // Final: the writer reports only a row the database refused for this event alone
            // (a data error); every other storage failure answers the whole request 503.
            Outcome::Failed(m) => rejected.push((
                RejectedEvent {
                    index,
                    id: Some(id),
                    error: format!("batch[{index}]: could not be stored: {m}"),
                    retryable: false,
                },
                "storage",
            )),
        }
    }
    let m = &st.metrics;
    m.accepted.fetch_add(accepted as u64, Ordering::Relaxed);
    m.duplicates.fetch_add(duplicates as u64, Ordering::Relaxed);
    for (_, reason) in &rejected {
        m.reject(reason);
    }
    let mut rejected: Vec<RejectedEvent> = rejected.into_iter().map(|(r, _)| r).collect();
    rejected.sort_by_key(|r| r.index);
    Ok(BatchResponse {
        accepted,
        duplicates,
        rejected,
    })
}

/// `identity`/absent → false, `gzip` → true, anything else → 415.
fn content_encoding_is_gzip(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    let v = v.to_str().unwrap_or("").trim().to_ascii_lowercase();
    match v.as_str() {
        "" | "identity" => Ok(false),
        "gzip" | "x-gzip" => Ok(true),
        other => Err(ApiError::unsupported(format!(
            "Content-Encoding `{other}` is not supported; send identity or gzip"
        ))),
    }
}

/// A Content-Type, when given, must be JSON.
fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    match headers.get(header::CONTENT_TYPE) {
        None => Ok(()),
        Some(v) => {
            let v = v.to_str().unwrap_or("").to_ascii_lowercase();
            if v.starts_with("application/json") || v.contains("+json") {
                Ok(())
            } else {
                Err(ApiError::unsupported(format!(
                    "Content-Type must be application/json, got `{v}`"
                )))
            }
        }
    }
}

/// Read the body, refusing (413) once it passes `cap` bytes: never buffers more. A body declared
/// or found to be over the cap but under `DRAIN_LIMIT` is read to its end and discarded first, so
/// that the client (still sending) sees the 413 rather than a reset connection — the SDK splits
/// a batch on 413 and would only retry a reset.
async fn read_capped(headers: &HeaderMap, body: Body, cap: usize) -> Result<Vec<u8>, ApiError> {
    let too_large = |n: usize| {
        ApiError::too_large(format!(
            "batch: body must be at most {} bytes uncompressed, got at least {n}",
            BatchLimits::V1.max_batch_bytes
        ))
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared.filter(|n| *n > DRAIN_LIMIT) {
        return Err(too_large(n));
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(cap));
    let mut seen = 0usize;
    let mut body = body;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                ApiError::bad_request("unreadable_body", format!("body: could not be read ({e})"))
            })?;
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > DRAIN_LIMIT {
                    break;
                }
                if seen <= cap {
                    out.extend_from_slice(&data);
                }
            }
        }
        Ok::<_, ApiError>(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(ApiError::new(
                axum::http::StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("body: not received within {} s", BODY_TIMEOUT.as_secs()),
            ))
        }
    }
    if seen > cap {
        return Err(too_large(seen));
    }
    // An uncompressed body over the limit is refused (413) by `Batch::decode`.
    Ok(out)
}
