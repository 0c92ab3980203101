//! One exported event in each format. The JSON forms are the wire format (docs/wire-format.md)
//! plus `received_at` and, for an erased event, `erased_at`; the CSV form has one column per
//! field (the usage buckets flattened, the metadata as its JSON text).

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio_postgres::Row;
use uuid::Uuid;

use super::Format;
use crate::query::csv;

/// The CSV header, in the order of `EXPORT_SQL`'s columns (usage buckets by their names).
pub const CSV_COLUMNS: &[&str] = &[
    "id",
    "tenant_id",
    "event_type",
    "timestamp",
    "correlation_id",
    "user_id",
    "agent_id",
    "workflow_id",
    "duration_ms",
    "queue_ms",
    "cost_usd",
    "cost_status",
    "price_version",
    "provider",
    "model",
    "task_type",
    "service_tier",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "requests",
    "success",
    "error_code",
    "metadata",
    "received_at",
    "erased_at",
];

#[derive(Serialize)]
struct Usage {
    #[serde(skip_serializing_if = "Option::is_none")]
    input_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cached_input_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_write_1h_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_tokens: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests: Option<i64>,
}

impl Usage {
    fn buckets(&self) -> [Option<i64>; 7] {
        [
            self.input_tokens,
            self.cached_input_tokens,
            self.cache_write_tokens,
            self.cache_write_1h_tokens,
            self.output_tokens,
            self.reasoning_tokens,
            self.requests,
        ]
    }
}

/// One event, in wire-format field order.
#[derive(Serialize)]
struct Record<'a> {
    id: Uuid,
    tenant_id: &'a str,
    event_type: &'a str,
    timestamp: String,
    correlation_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    agent_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    queue_ms: Option<i64>,
    /// NUMERIC text, as stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_usd: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cost_status: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    price_version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_tier: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    success: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'a str>,
    metadata: &'a RawValue,
    received_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    erased_at: Option<String>,
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn read<'a>(tenant: &'a str, row: &'a Row) -> Result<Record<'a>, String> {
    let col = |i: usize| -> Result<Option<&'a str>, String> {
        row.try_get::<_, Option<&str>>(i).map_err(|e| e.to_string())
    };
    let int = |i: usize| -> Result<Option<i64>, String> {
        row.try_get::<_, Option<i64>>(i).map_err(|e| e.to_string())
    };
    let usage = Usage {
        input_tokens: int(16)?,
        cached_input_tokens: int(17)?,
        cache_write_tokens: int(18)?,
        cache_write_1h_tokens: int(19)?,
        output_tokens: int(20)?,
        reasoning_tokens: int(21)?,
        requests: int(22)?,
    };
    let metadata: &str = row.try_get(25).map_err(|e| e.to_string())?;
    let metadata: &RawValue =
        serde_json::from_str(metadata).map_err(|e| format!("metadata: {e}"))?;
    Ok(Record {
        id: row.try_get(0).map_err(|e| e.to_string())?,
        tenant_id: tenant,
        event_type: row.try_get(2).map_err(|e| e.to_string())?,
        timestamp: instant(row.try_get(1).map_err(|e| e.to_string())?),
        correlation_id: row.try_get(3).map_err(|e| e.to_string())?,
        user_id: col(4)?,
        agent_id: col(5)?,
        workflow_id: col(6)?,
        duration_ms: int(7)?,
        queue_ms: int(8)?,
        cost_usd: col(9)?,
        cost_status: col(10)?,
        price_version: col(11)?,
        provider: col(12)?,
        model: col(13)?,
        task_type: col(14)?,
        service_tier: col(15)?,
        usage: usage.buckets().iter().any(Option::is_some).then_some(usage),
        success: row.try_get(23).map_err(|e| e.to_string())?,
        error_code: col(24)?,
        metadata,
        received_at: instant(row.try_get(26).map_err(|e| e.to_string())?),
        erased_at: row
            .try_get::<_, Option<DateTime<Utc>>>(27)
            .map_err(|e| e.to_string())?
            .map(instant),
    })
}

/// What comes before the first row.
pub fn prefix(format: Format, out: &mut Vec<u8>) {
    match format {
        Format::Ndjson => {}
        Format::Json => out.extend_from_slice(b"["),
        Format::Csv => csv_line(CSV_COLUMNS.iter().copied(), out),
    }
}

/// What comes after the last of `rows` rows.
pub fn suffix(format: Format, rows: u64, out: &mut Vec<u8>) {
    if format == Format::Json {
        out.extend_from_slice(if rows == 0 { b"]\n" } else { b"\n]\n" });
    }
}

/// Append one row of `tenant`'s export. `Err` (a row that cannot be read back, which ingest
/// never writes) aborts the export.
pub fn row(
    format: Format,
    tenant: &str,
    r: &Row,
    first: bool,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let rec = read(tenant, r)?;
    match format {
        Format::Ndjson => {
            serde_json::to_writer(&mut *out, &rec).map_err(|e| e.to_string())?;
            out.push(b'\n');
        }
        Format::Json => {
            out.extend_from_slice(if first { b"\n" } else { b",\n" });
            serde_json::to_writer(&mut *out, &rec).map_err(|e| e.to_string())?;
        }
        Format::Csv => {
            let num = |v: Option<i64>| v.map(|n| n.to_string()).unwrap_or_default();
            let text = |v: Option<&str>| v.unwrap_or_default().to_string();
            let u = rec.usage.as_ref().map_or([None; 7], Usage::buckets);
            let cells: Vec<String> = [
                rec.id.to_string(),
                rec.tenant_id.to_string(),
                rec.event_type.to_string(),
                rec.timestamp,
                rec.correlation_id.to_string(),
                text(rec.user_id),
                text(rec.agent_id),
                text(rec.workflow_id),
                num(rec.duration_ms),
                num(rec.queue_ms),
                text(rec.cost_usd),
                text(rec.cost_status),
                text(rec.price_version),
                text(rec.provider),
                text(rec.model),
                text(rec.task_type),
                text(rec.service_tier),
            ]
            .into_iter()
            .chain(u.into_iter().map(num))
            .chain([
                rec.success.to_string(),
                text(rec.error_code),
                rec.metadata.get().to_string(),
                rec.received_at,
                rec.erased_at.unwrap_or_default(),
            ])
            .collect();
            csv_line(cells.iter().map(String::as_str), out);
        }
    }
    Ok(())
}

fn csv_line<'a>(cells: impl Iterator<Item = &'a str>, out: &mut Vec<u8>) {
    for (i, c) in cells.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(csv::quote(c).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}
