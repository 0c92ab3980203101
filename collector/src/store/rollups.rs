//! Rollup deltas: the newly inserted rows of one commit, aggregated by tenant x bucket x
//! event_type x provider x model x task_type, and upserted (added) into the hourly and daily
//! tables in the same transaction as the raw rows, so rollups stay exact under retries.

use std::collections::BTreeMap;

use agenttally::{AnalyticsEvent, Usage};
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::Json;
use tokio_postgres::GenericClient;

use super::histogram::Histogram;

/// Which rollup table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Hourly,
    Daily,
}

impl Grain {
    pub fn table(self) -> &'static str {
        match self {
            Grain::Hourly => "rollup_hourly",
            Grain::Daily => "rollup_daily",
        }
    }

    /// The start of the bucket holding `ts` (UTC).
    pub fn bucket(self, ts: DateTime<Utc>) -> DateTime<Utc> {
        let step = match self {
            Grain::Hourly => TimeDelta::hours(1),
            Grain::Daily => TimeDelta::days(1),
        };
        ts.duration_trunc(step).unwrap_or(ts)
    }
}

/// `(bucket, event_type, provider, model, task_type)`; absent dimensions are `""`. Borrowed
/// from the events, which outlive the transaction.
pub type Key<'a> = (DateTime<Utc>, &'static str, &'a str, &'a str, &'a str);

/// Sums over the events of one key.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    pub events: i64,
    pub successes: i64,
    pub cost_usd: Decimal,
    pub costed_events: i64,
    pub unpriced_events: i64,
    pub unpriced_tokens: i64,
    /// Summed usage buckets.
    pub tokens: Usage,
    pub duration_count: i64,
    pub duration_sum_ms: i64,
    pub duration_hist: Histogram,
    pub queue_count: i64,
    pub queue_sum_ms: i64,
    pub queue_hist: Histogram,
}

use super::to_i64 as i;

impl Delta {
    fn add(&mut self, e: &AnalyticsEvent) {
        self.events += 1;
        self.successes += i64::from(e.success);
        if let Some(c) = e.cost_usd {
            // Validation caps one cost at 1e9 USD, so a sum over one commit cannot overflow.
            self.cost_usd = self.cost_usd.checked_add(c).unwrap_or(self.cost_usd);
            self.costed_events += 1;
        }
        if e.cost_status == Some(agenttally::CostStatus::Unpriced) {
            self.unpriced_events += 1;
            self.unpriced_tokens += e.usage.map_or(0, |u| i(u.total_tokens()));
        }
        if let Some(u) = &e.usage {
            self.tokens = self.tokens.add(u);
        }
        if let Some(d) = e.duration_ms {
            self.duration_count += 1;
            self.duration_sum_ms = self.duration_sum_ms.saturating_add(d);
            self.duration_hist.record(d);
        }
        if let Some(q) = e.queue_ms {
            self.queue_count += 1;
            self.queue_sum_ms = self.queue_sum_ms.saturating_add(q);
            self.queue_hist.record(q);
        }
    }
}

/// Aggregate `events` (all of one tenant) into deltas of `grain`.
pub fn deltas<'a>(
    grain: Grain,
    events: impl IntoIterator<Item = &'a AnalyticsEvent>,
) -> BTreeMap<Key<'a>, Delta> {
    let mut out: BTreeMap<Key<'a>, Delta> = BTreeMap::new();
    for e in events {
        let key = (
            grain.bucket(e.timestamp),
            e.event_type.as_str(),
            e.provider.as_deref().unwrap_or(""),
            e.model.as_deref().unwrap_or(""),
            e.task_type.as_deref().unwrap_or(""),
        );
        out.entry(key).or_default().add(e);
    }
    out
}

const COLUMNS: &str = "tenant_id, bucket, event_type, provider, model, task_type, events, \
    successes, cost_usd, costed_events, unpriced_events, unpriced_tokens, input_tokens, \
    cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, output_tokens, \
    reasoning_tokens, requests, duration_count, duration_sum_ms, duration_hist, queue_count, \
    queue_sum_ms, queue_hist";

/// The upsert statement of `grain`: adds deltas, merging histograms. Keys are sorted (BTreeMap)
/// so concurrent collectors lock rollup rows in the same order.
pub fn upsert_sql(grain: Grain) -> String {
    let sums = [
        "events",
        "successes",
        "cost_usd",
        "costed_events",
        "unpriced_events",
        "unpriced_tokens",
        "input_tokens",
        "cached_input_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "output_tokens",
        "reasoning_tokens",
        "requests",
        "duration_count",
        "duration_sum_ms",
        "queue_count",
        "queue_sum_ms",
    ]
    .map(|c| format!("{c} = r.{c} + EXCLUDED.{c}"))
    .join(", ");
    format!(
        "INSERT INTO {table} AS r ({COLUMNS}) \
         SELECT $1, * FROM unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], \
           $6::text[], $7::int8[], $8::int8[], $9::numeric[], $10::int8[], $11::int8[], \
           $12::int8[], $13::int8[], $14::int8[], $15::int8[], $16::int8[], $17::int8[], \
           $18::int8[], $19::int8[], $20::int8[], $21::int8[], $22::jsonb[], $23::int8[], \
           $24::int8[], $25::jsonb[]) \
         ON CONFLICT (tenant_id, bucket, event_type, provider, model, task_type) DO UPDATE SET \
         {sums}, \
         duration_hist = agenttally_hist_merge(r.duration_hist, EXCLUDED.duration_hist), \
         queue_hist = agenttally_hist_merge(r.queue_hist, EXCLUDED.queue_hist)",
        table = grain.table()
    )
}

/// Add `deltas` of one tenant into the `grain` table.
pub async fn upsert(
    client: &impl GenericClient,
    sql: &tokio_postgres::Statement,
    tenant: &str,
    deltas: &BTreeMap<Key<'_>, Delta>,
) -> Result<(), tokio_postgres::Error> {
    if deltas.is_empty() {
        return Ok(());
    }
    let n = deltas.len();
    let mut bucket = Vec::with_capacity(n);
    let mut et = Vec::with_capacity(n);
    let mut prov = Vec::with_capacity(n);
    let mut model = Vec::with_capacity(n);
    let mut task = Vec::with_capacity(n);
    let mut cols: [Vec<i64>; 16] = Default::default();
    let mut cost = Vec::with_capacity(n);
    let mut dh = Vec::with_capacity(n);
    let mut qh = Vec::with_capacity(n);
    for ((b, t, p, m, k), d) in deltas {
        bucket.push(*b);
        et.push(*t);
        prov.push(*p);
        model.push(*m);
        task.push(*k);
        cost.push(d.cost_usd);
        let ints = [
            d.events,
            d.successes,
            d.costed_events,
            d.unpriced_events,
            d.unpriced_tokens,
            i(d.tokens.input_tokens),
            i(d.tokens.cached_input_tokens),
            i(d.tokens.cache_write_tokens),
            i(d.tokens.cache_write_1h_tokens),
            i(d.tokens.output_tokens),
            i(d.tokens.reasoning_tokens),
            i(d.tokens.requests),
            d.duration_count,
            d.duration_sum_ms,
            d.queue_count,
            d.queue_sum_ms,
        ];
        for (c, v) in cols.iter_mut().zip(ints) {
            c.push(v);
        }
        // jsonb `{"bucket": count}`: JSON writes the integer keys as strings.
        dh.push(Json(&d.duration_hist.0));
        qh.push(Json(&d.queue_hist.0));
    }
    let [events, successes, costed, unpriced, unpriced_tok, t0, t1, t2, t3, t4, t5, t6, dc, ds, qc, qs] =
        &cols;
    client
        .execute(
            sql,
            &[
                &tenant,
                &bucket,
                &et,
                &prov,
                &model,
                &task,
                events,
                successes,
                &cost,
                costed,
                unpriced,
                unpriced_tok,
                t0,
                t1,
                t2,
                t3,
                t4,
                t5,
                t6,
                dc,
                ds,
                &dh,
                qc,
                qs,
                &qh,
            ],
        )
        .await?;
    Ok(())
}
