//! Reading a batch body: content type and encoding, hard caps on the bytes received and on
//! what gzip inflates to, and decoding with sdk-core's rules (`Batch::decode`). Any route that
//! receives batches (v1 JSON today) goes through here.

use agenttally::event::DecodedBatch;
use agenttally::{Batch, BatchLimits, ErrorKind};
use axum::body::Body;
use axum::http::{header, HeaderMap};
use http_body_util::BodyExt;

use super::gzip::{gunzip_capped, GunzipError};
use crate::api_error::ApiError;

/// Bytes read from the wire beyond the uncompressed limit before we stop (gzip headers etc.).
const READ_MARGIN: usize = 16 * 1024;
/// Largest oversized body read (and discarded) so the client gets its 413; beyond it the
/// connection is closed on the client.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
/// Longest time to receive a body.
pub const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Read, inflate and decode a batch body. Event-level problems are left in the result, one
/// per event; only a body that cannot be a batch at all is an error.
pub async fn read_batch(headers: &HeaderMap, body: Body) -> Result<DecodedBatch, ApiError> {
    let gzip = content_encoding_is_gzip(headers)?;
    check_content_type(headers)?;
    let limits = BatchLimits::V1;
    let raw = read_capped(headers, body, limits.max_batch_bytes + READ_MARGIN).await?;
    // Inflating and decoding a full batch takes milliseconds of CPU: done on the blocking pool,
    // so the runtime's workers stay free for the writers, whose transactions hold rollup row
    // locks while they wait to be polled.
    tokio::task::spawn_blocking(move || decode(gzip, raw, &limits))
        .await
        .map_err(|e| {
            tracing::error!("batch decoding did not finish: {e}");
            ApiError::internal()
        })?
}

/// Inflate (if `gzip`) and decode a batch body read in full.
fn decode(gzip: bool, raw: Vec<u8>, limits: &BatchLimits) -> Result<DecodedBatch, ApiError> {
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
    Batch::decode(&bytes, limits).map_err(|e| {
        if e.kind() == ErrorKind::TooLarge {
            ApiError::too_large(e.to_string())
        } else {
            ApiError::bad_request("malformed_batch", e.to_string())
        }
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
