//! The metrics summary of one tenant over a time range, from the rollups (never raw events):
//! executions and their outcomes, spend without double counting, API calls, tokens, durations
//! and unpriced events, as defined in docs/metrics.md.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use tokio_postgres::types::Json;

use crate::error::Result;
use crate::store::histogram::Histogram;
use crate::store::rollups::Grain;
use crate::store::TenantTx;

/// The terminal agent events: an execution each.
pub const OUTCOMES: [&str; 3] = ["agent.completed", "agent.failed", "agent.timeout"];

/// The token buckets reported, in order (the rollups' usage columns but `requests`).
pub const TOKEN_BUCKETS: [&str; 6] = [
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
];

/// What a summary covers: rollup buckets of `grain` starting in `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Range {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub grain: Grain,
}

/// The answer of `GET /v1/metrics/summary`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub tenant_id: String,
    /// The range covered: whole buckets of `granularity` (`hour` or `day`), `to` exclusive.
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub granularity: &'static str,
    pub executions: i64,
    pub successes: i64,
    pub failures: i64,
    /// `successes / executions`; `null` without executions.
    pub success_rate: Option<f64>,
    /// Spend: provider calls plus terminal agent events that are not itemized. A decimal
    /// string; with `unpriced_events` beside it.
    #[serde(serialize_with = "decimal_string")]
    pub cost_usd: Decimal,
    /// Events counted in `cost_usd` whose cost is unknown (`cost_status = unpriced`).
    pub unpriced_events: i64,
    pub api_calls: i64,
    pub api_calls_by_provider: BTreeMap<String, i64>,
    /// Token counts by bucket, counted as spend is.
    pub tokens: BTreeMap<&'static str, i64>,
    /// Over executions carrying a duration; `null` when none does.
    pub avg_duration_ms: Option<f64>,
    pub p95_duration_ms: Option<f64>,
    pub p95_queue_ms: Option<f64>,
}

/// The summary of the tenant `tx` acts for (`tenant`, which must be the same: it narrows the
/// scan to the tenant's rows by key; row-level security guarantees it).
pub async fn summary(tx: &TenantTx<'_>, tenant: &str, range: &Range) -> Result<Summary> {
    let sql = format!(
        "SELECT event_type, provider, itemized,
                sum(events)::bigint, sum(successes)::bigint, sum(cost_usd),
                sum(unpriced_events)::bigint,
                sum(input_tokens)::bigint, sum(cached_input_tokens)::bigint,
                sum(cache_write_tokens)::bigint, sum(cache_write_1h_tokens)::bigint,
                sum(output_tokens)::bigint, sum(reasoning_tokens)::bigint,
                sum(duration_count)::bigint, sum(duration_sum_ms)::bigint,
                agenttally_hist_sum(duration_hist) FILTER (WHERE event_type = ANY($4)),
                agenttally_hist_sum(queue_hist) FILTER (WHERE event_type = ANY($4))
         FROM {table}
         WHERE tenant_id = $1 AND bucket >= $2 AND bucket < $3
         GROUP BY event_type, provider, itemized",
        table = range.grain.table()
    );
    let outcomes: Vec<&str> = OUTCOMES.to_vec();
    let rows = tx
        .query(&sql, &[&tenant, &range.from, &range.to, &outcomes])
        .await?;
    let mut s = Summary {
        tenant_id: tenant.to_string(),
        from: range.from,
        to: range.to,
        granularity: match range.grain {
            Grain::Hourly => "hour",
            Grain::Daily => "day",
        },
        executions: 0,
        successes: 0,
        failures: 0,
        success_rate: None,
        cost_usd: Decimal::ZERO,
        unpriced_events: 0,
        api_calls: 0,
        api_calls_by_provider: BTreeMap::new(),
        tokens: TOKEN_BUCKETS.iter().map(|b| (*b, 0)).collect(),
        avg_duration_ms: None,
        p95_duration_ms: None,
        p95_queue_ms: None,
    };
    let (mut duration_count, mut duration_sum) = (0i64, 0i64);
    let (mut durations, mut queues) = (Histogram::default(), Histogram::default());
    for r in &rows {
        let event_type: &str = r.get(0);
        let provider: String = r.get(1);
        let itemized: bool = r.get(2);
        let events: i64 = r.get(3);
        let outcome = OUTCOMES.contains(&event_type);
        let api_call = event_type == "provider.api_call";
        if outcome {
            s.executions += events;
            s.successes += r.get::<_, i64>(4);
            duration_count += r.get::<_, i64>(13);
            duration_sum = duration_sum.saturating_add(r.get::<_, i64>(14));
            durations.merge(&histogram(r, 15));
            queues.merge(&histogram(r, 16));
        }
        if api_call {
            s.api_calls += events;
            *s.api_calls_by_provider.entry(provider).or_default() += events;
        }
        if api_call || (outcome && !itemized) {
            s.cost_usd += r.get::<_, Decimal>(5);
            s.unpriced_events += r.get::<_, i64>(6);
            for (i, b) in TOKEN_BUCKETS.iter().enumerate() {
                *s.tokens.entry(b).or_default() += r.get::<_, i64>(7 + i);
            }
        }
    }
    s.cost_usd = s.cost_usd.normalize();
    s.failures = s.executions - s.successes;
    // Ratios and latencies are reported as floats; money and counts stay exact.
    s.success_rate = (s.executions > 0).then(|| s.successes as f64 / s.executions as f64);
    s.avg_duration_ms = (duration_count > 0).then(|| duration_sum as f64 / duration_count as f64);
    s.p95_duration_ms = durations.quantile(0.95);
    s.p95_queue_ms = queues.quantile(0.95);
    Ok(s)
}

/// Money as a decimal string (`"0.0035"`): JSON numbers would pass through floats in clients.
fn decimal_string<S: serde::Serializer>(d: &Decimal, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
}

/// A summed histogram column; an empty one when it is missing or not a histogram (a sum over
/// rows the collector wrote always is).
fn histogram(row: &tokio_postgres::Row, col: usize) -> Histogram {
    match row.try_get::<_, Option<Json<BTreeMap<u32, i64>>>>(col) {
        Ok(Some(Json(h))) => Histogram(h),
        _ => Histogram::default(),
    }
}
