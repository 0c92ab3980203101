//! GDPR export (Art. 15): every raw event of a tenant in a range, streamed as NDJSON, CSV or one
//! JSON array (`GET /v1/export`, or a signed one-time link: `links`).
//!
//! The rows come from a server-side cursor: a portal of one read-only REPEATABLE READ
//! transaction (`TenantTx::begin_snapshot`, so the file is one consistent snapshot), fetched
//! `PAGE_ROWS` at a time with `query_portal`. Each page is rendered into one chunk and pushed
//! through a channel of `CHANNEL_CHUNKS` into the response body, so memory stays bounded and a
//! slow reader holds the database back rather than the collector's memory. The body ends with an
//! explicit end marker: a failure mid-stream (or a panic of the export task) aborts the response
//! rather than ending it, so a client never takes a cut file for a complete one.
//!
//! Exports hold a pooled connection for their duration: at most
//! `ServerConfig::max_concurrent_exports` run at once (`gate::ExportGate`), more are answered 503 with
//! `Retry-After`, and the pool is sized with room for them besides the writers'.

pub mod api;
pub mod gate;
pub mod links;
mod render;

use std::collections::HashMap;
use std::task::Poll;

use agenttally::CustomerEvent;
use axum::body::{Body, Bytes};
use axum::http::{header, HeaderValue};
use axum::response::Response;
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::Object;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use crate::api_error::ApiError;
use crate::error::Error;
use crate::state::SharedState;
use crate::store::writer::{Outcome, WriterHandle};
use crate::store::TenantTx;

pub use render::CSV_COLUMNS;

/// Rows fetched from the portal per round trip, and rendered into one body chunk.
pub const PAGE_ROWS: i32 = 1_000;
/// Chunks rendered ahead of the reader; with the page being fetched, what one export holds.
const CHANNEL_CHUNKS: usize = 2;
/// The export's file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (the default).
    Ndjson,
    /// A header row, then one row per event (RFC 4180).
    Csv,
    /// One JSON array of objects.
    Json,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Ndjson, Format::Csv, Format::Json];

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Ndjson => "ndjson",
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Json => "application/json",
        }
    }

    /// `format`'s value, or a 422 naming it.
    pub fn parse(text: &str) -> Result<Format, ApiError> {
        Format::ALL
            .into_iter()
            .find(|f| f.as_str() == text)
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_parameter",
                    format!("format: must be one of ndjson, csv, json, got `{text}`"),
                )
            })
    }
}

/// What to export, and for whom (recorded in the `customer.export_data` event).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub tenant: String,
    pub format: Format,
    /// Inclusive start; `None`: the beginning.
    pub from: Option<DateTime<Utc>>,
    /// Exclusive end; `None`: no end.
    pub to: Option<DateTime<Utc>>,
    /// The credential that asked for it (an API key's prefix).
    pub requested_by: String,
    /// `api` (`GET /v1/export`) or `link` (a one-time link).
    pub via: &'static str,
}

/// What an export asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub format: Format,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// The export parameters (`format`, `from`, `to`), checked: 422 naming the first bad one.
pub fn parse_params(params: &HashMap<String, String>) -> Result<Params, ApiError> {
    let format = match params.get("format") {
        Some(f) => Format::parse(f)?,
        None => Format::Ndjson,
    };
    let from = params
        .get("from")
        .map(|t| crate::read_api::instant("from", t))
        .transpose()?;
    let to = params
        .get("to")
        .map(|t| crate::read_api::instant("to", t))
        .transpose()?;
    check_range(from, to)?;
    Ok(Params { format, from, to })
}

/// 422 unless `to` is after `from` (when both are given).
pub fn check_range(from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>) -> Result<(), ApiError> {
    match (from, to) {
        (Some(f), Some(t)) if t <= f => Err(ApiError::unprocessable(
            "invalid_parameter",
            format!(
                "to: must be after from ({}), got {}",
                f.to_rfc3339(),
                t.to_rfc3339()
            ),
        )),
        _ => Ok(()),
    }
}

/// The statement the export reads: a tenant's raw rows of a range, in (ts, id) order; money as
/// NUMERIC text, so it never passes through a binary float.
const EXPORT_SQL: &str = "SELECT id, ts, event_type, correlation_id, user_id, agent_id,
        workflow_id, duration_ms, queue_ms, cost_usd::text, cost_status, price_version, provider,
        model, task_type, service_tier, input_tokens, cached_input_tokens, cache_write_tokens,
        cache_write_1h_tokens, output_tokens, reasoning_tokens, requests, success, error_code,
        metadata::text, received_at, erased_at
    FROM events WHERE tenant_id = $1 AND ts >= $2 AND ts < $3
    ORDER BY ts, id";

/// What the export task sends the body.
enum Piece {
    Data(Bytes),
    /// The file is complete: the body may end.
    End,
}

/// Start streaming `job` on `client`. Returns once the rows are ready to read and the export is
/// recorded: any failure up to there is an `ApiError` (the usual JSON answer); after it the
/// answer is the streamed file.
pub async fn start(
    st: &SharedState,
    client: Object,
    job: Job,
    permit: OwnedSemaphorePermit,
) -> Result<Response, ApiError> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let (body_tx, body_rx) = mpsc::channel(CHANNEL_CHUNKS);
    let writer = st.writer.clone();
    let filename = format!(
        "agenttally-{}-{}.{}",
        job.tenant,
        Utc::now().format("%Y-%m-%d"),
        job.format.as_str()
    );
    let format = job.format;
    tokio::spawn(async move {
        let _permit = permit;
        run(client, job, writer, ready_tx, body_tx).await;
    });
    match ready_rx.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(e),
        Err(_) => {
            tracing::error!("the export task ended before it was ready");
            return Err(ApiError::internal());
        }
    }
    let mut resp = Response::new(Body::from_stream(body_stream(body_rx)));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    // Tenant ids are [A-Za-z0-9._:-]: nothing to escape in the quoted filename.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The body: the chunks as they come, ended only by `Piece::End`. A channel closed without it
/// (the task failed or panicked) ends the body with an error, which aborts the response.
fn body_stream(
    mut rx: mpsc::Receiver<Piece>,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let mut ended = false;
    futures_util::stream::poll_fn(move |cx| {
        if ended {
            return Poll::Ready(None);
        }
        match rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Piece::Data(b))) => Poll::Ready(Some(Ok(b))),
            Poll::Ready(Some(Piece::End)) => {
                ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                ended = true;
                Poll::Ready(Some(Err(std::io::Error::other(
                    "the export ended before its last row",
                ))))
            }
        }
    })
}

fn db_error(e: tokio_postgres::Error) -> ApiError {
    ApiError::from_store(&Error::from(e))
}

/// The export task: open the snapshot and the portal, record the export, report ready, then
/// page through the portal into the body.
async fn run(
    mut client: Object,
    job: Job,
    writer: WriterHandle,
    ready: oneshot::Sender<Result<(), ApiError>>,
    body: mpsc::Sender<Piece>,
) {
    let tx = match TenantTx::begin_snapshot(&mut client).await {
        Ok(tx) => tx,
        Err(e) => {
            let _ = ready.send(Err(db_error(e)));
            return;
        }
    };
    let opened = async {
        tx.switch_tenant(&job.tenant).await?;
        let stmt = tx.prepare_cached(EXPORT_SQL).await?;
        let from = job.from.unwrap_or(*RANGE_START);
        let to = job.to.unwrap_or(*RANGE_END);
        tx.pg().bind(&stmt, &[&job.tenant, &from, &to]).await
    };
    let portal = match opened.await {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(db_error(e)));
            return;
        }
    };
    // Recorded after the snapshot is taken, so the record itself is not in this file.
    if let Err(e) = record(&writer, &job).await {
        let _ = ready.send(Err(e));
        return;
    }
    if ready.send(Ok(())).is_err() {
        return; // the request is gone
    }
    let started = std::time::Instant::now();
    let mut out = Vec::with_capacity(256 * 1024);
    render::prefix(job.format, &mut out);
    let mut rows: u64 = 0;
    loop {
        let page = match tx.pg().query_portal(&portal, PAGE_ROWS).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(
                    "export of `{}` failed after {rows} rows, response aborted: {e}",
                    job.tenant
                );
                return;
            }
        };
        for row in &page {
            if let Err(e) = render::row(job.format, &job.tenant, row, rows == 0, &mut out) {
                tracing::error!(
                    "export of `{}` failed at row {rows}, response aborted: {e}",
                    job.tenant
                );
                return;
            }
            rows += 1;
        }
        let last = page.len() < PAGE_ROWS as usize;
        if last {
            render::suffix(job.format, rows, &mut out);
        }
        if !out.is_empty() {
            let chunk = Bytes::from(std::mem::replace(&mut out, Vec::with_capacity(256 * 1024)));
            if body.send(Piece::Data(chunk)).await.is_err() {
                tracing::info!(
                    "export of `{}` stopped after {rows} rows: the client went away",
                    job.tenant
                );
                return;
            }
        }
        if last {
            break;
        }
    }
    drop(portal);
    if let Err(e) = tx.commit().await {
        // Read-only: everything was read; the file is complete.
        tracing::warn!("ending the export transaction of `{}`: {e}", job.tenant);
    }
    let _ = body.send(Piece::End).await;
    tracing::info!(
        "exported {rows} events of `{}` as {} ({}) in {:.1} s",
        job.tenant,
        job.format.as_str(),
        job.via,
        started.elapsed().as_secs_f64()
    );
}

/// The bounds used for an open range: before and after any storable timestamp.
static RANGE_START: std::sync::LazyLock<DateTime<Utc>> = std::sync::LazyLock::new(|| {
    NaiveDate::from_ymd_opt(1, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
});
static RANGE_END: std::sync::LazyLock<DateTime<Utc>> = std::sync::LazyLock::new(|| {
    NaiveDate::from_ymd_opt(10_000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
});

/// Record the export as a `customer.export_data` event of the tenant, through the writer. An
/// export that cannot be recorded does not run (503).
async fn record(writer: &WriterHandle, job: &Job) -> Result<(), ApiError> {
    let now = Utc::now();
    let range = |t: Option<DateTime<Utc>>| -> serde_json::Value {
        t.map_or(serde_json::Value::Null, |t| t.to_rfc3339().into())
    };
    let event = CustomerEvent::export_data(job.tenant.clone(), job.requested_by.clone())
        .timestamp(now)
        .correlation_id(format!("export/{}", uuid::Uuid::now_v7()))
        .meta("format", job.format.as_str())
        .meta("from", range(job.from))
        .meta("to", range(job.to))
        .meta("via", job.via)
        .success(true)
        .build()
        .map_err(|e| {
            tracing::error!("the export event of `{}` is invalid: {e}", job.tenant);
            ApiError::internal()
        })?;
    match writer.write(vec![event]).await {
        Ok(outcomes) => match outcomes.first() {
            Some(Outcome::Failed(why)) => {
                tracing::error!("the export event of `{}` was refused: {why}", job.tenant);
                Err(ApiError::internal())
            }
            _ => Ok(()),
        },
        Err(e) => Err(ApiError::unavailable(&e)),
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn the_body_ends_only_at_the_end_marker() {
        let (tx, rx) = mpsc::channel(4);
        tx.send(Piece::Data(Bytes::from_static(b"a")))
            .await
            .expect("send");
        tx.send(Piece::End).await.expect("send");
        let got: Vec<_> = body_stream(rx).collect().await;
        assert_eq!(got.len(), 1);
        assert!(matches!(&got[0], Ok(b) if b.as_ref() == b"a"));
        // The task gone without the marker (an error, a panic): the body fails, not ends.
        let (tx, rx) = mpsc::channel(4);
        tx.send(Piece::Data(Bytes::from_static(b"a")))
            .await
            .expect("send");
        drop(tx);
        let got: Vec<_> = body_stream(rx).collect().await;
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err());
    }

    #[test]
    fn formats_and_ranges_are_checked_by_name() {
        let p = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            parse_params(&p(&[])),
            Ok(Params {
                format: Format::Ndjson,
                from: None,
                to: None
            })
        );
        let e = parse_params(&p(&[("format", "CSV")])).expect_err("case matters");
        assert!(e.message.starts_with("format:"), "{}", e.message);
        let e = parse_params(&p(&[
            ("from", "2026-01-02T00:00:00Z"),
            ("to", "2026-01-02T00:00:00Z"),
        ]))
        .expect_err("empty range");
        assert!(
            e.message.starts_with("to: must be after from"),
            "{}",
            e.message
        );
    }
}
