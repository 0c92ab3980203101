//! Rollup deltas: the newly inserted rows of one commit, aggregated by tenant x bucket x
//! event_type x provider x model x task_type x itemized (`Dims::Usage`) and by tenant x bucket x
//! event_type x agent_id x itemized (`Dims::Agent`), and added into the hourly and daily tables
//! of each in the same transaction as the raw rows, so rollups stay exact under retries. Stored
//! rows are read and locked first (`lock`), their histograms merged here and written back
//! (`update`); keys not stored yet are inserted (`upsert`, which merges in SQL should the key
//! appear meanwhile). The hour totals of the usage deltas (`HourTotals`) go to
//! `rollup_tenant_hourly`, one row per tenant-hour, for the peaks.

use std::collections::{BTreeMap, HashMap};

use agenttally::{AnalyticsEvent, Usage};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::types::Json;
use tokio_postgres::GenericClient;

use super::histogram::Histogram;
use crate::pricing::is_itemized;

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
        // Whole seconds since the epoch, floored to the step (what `duration_trunc` gives, for
        // a fraction of its cost: every event of a commit is bucketed twice).
        let step = match self {
            Grain::Hourly => 3_600,
            Grain::Daily => 86_400,
        };
        let secs = ts.timestamp();
        DateTime::from_timestamp(secs - secs.rem_euclid(step), 0).unwrap_or(ts)
    }
}

/// Every rollup table and its grain, in the order the writer takes their row locks (usage
/// hourly, daily, agent hourly, daily, savings hourly, daily, then the hour totals). The one list
/// of them: retention deletes the expired rows of the hourly ones, `verify` recomputes and
/// repairs them in this order (a test holds its table list to it), a tenant purge empties them
/// (`erasure::PURGED_TABLES`, tested likewise) and the schema test finds exactly these
/// `rollup_` tables in a migrated database.
pub const TABLES: [(&str, Grain); 7] = [
    ("rollup_hourly", Grain::Hourly),
    ("rollup_daily", Grain::Daily),
    ("rollup_agent_hourly", Grain::Hourly),
    ("rollup_agent_daily", Grain::Daily),
    ("rollup_savings_hourly", Grain::Hourly),
    ("rollup_savings_daily", Grain::Daily),
    ("rollup_tenant_hourly", Grain::Hourly),
];

/// The hourly rollup tables (kept `retention.hourly_days`).
pub fn hourly_tables() -> impl Iterator<Item = &'static str> {
    TABLES
        .iter()
        .filter(|(_, g)| *g == Grain::Hourly)
        .map(|(t, _)| *t)
}

/// The dimensions a rollup table is keyed by, besides bucket, event type and `itemized`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dims {
    /// provider x model x task_type: `rollup_hourly` / `rollup_daily`.
    Usage,
    /// agent_id: `rollup_agent_hourly` / `rollup_agent_daily` (migration 0008).
    Agent,
}

impl Dims {
    pub fn table(self, grain: Grain) -> &'static str {
        match (self, grain) {
            (Dims::Usage, g) => g.table(),
            (Dims::Agent, Grain::Hourly) => "rollup_agent_hourly",
            (Dims::Agent, Grain::Daily) => "rollup_agent_daily",
        }
    }

    /// The key columns in `Key` order; `None` for a slot the table has no column for (its
    /// `Key` slot is always `""`).
    pub const fn key(self) -> [Option<&'static str>; 6] {
        match self {
            Dims::Usage => [
                Some("bucket"),
                Some("event_type"),
                Some("provider"),
                Some("model"),
                Some("task_type"),
                Some("itemized"),
            ],
            Dims::Agent => [
                Some("bucket"),
                Some("event_type"),
                Some("agent_id"),
                None,
                None,
                Some("itemized"),
            ],
        }
    }

    /// The three dimension slots of `e`'s key (absent: `""`).
    fn of(self, e: &AnalyticsEvent) -> [&str; 3] {
        match self {
            Dims::Usage => [
                e.provider.as_deref().unwrap_or(""),
                e.model.as_deref().unwrap_or(""),
                e.task_type.as_deref().unwrap_or(""),
            ],
            Dims::Agent => [e.agent_id.as_deref().unwrap_or(""), "", ""],
        }
    }
}

/// The terminal agent events: an execution each.
pub const OUTCOMES: [&str; 3] = ["agent.completed", "agent.failed", "agent.timeout"];

/// What a rollup row (or a commit's delta of one key) counts towards in a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowKind {
    /// Executions: a terminal agent event.
    pub outcome: bool,
    /// API calls: a `provider.api_call`.
    pub api_call: bool,
    /// Spend (cost, tokens, unpriced): API calls and terminal agent events that are not
    /// itemized (`query::metrics::SPEND_ROWS`).
    pub spend: bool,
}

impl RowKind {
    pub fn of(event_type: &str, itemized: bool) -> RowKind {
        let outcome = OUTCOMES.contains(&event_type);
        let api_call = event_type == "provider.api_call";
        RowKind {
            outcome,
            api_call,
            spend: api_call || (outcome && !itemized),
        }
    }
}

/// `(bucket, event_type, d1, d2, d3, itemized)`: the dimensions of `Dims` (`Usage`: provider,
/// model, task_type; `Agent`: agent_id, "", ""); absent dimensions are `""`. Borrowed from the
/// events, which outlive the transaction.
pub type Key<'a> = (DateTime<Utc>, &'static str, &'a str, &'a str, &'a str, bool);

/// Deltas by key, in key order (the order rows are locked in).
pub type Deltas<'a> = BTreeMap<Key<'a>, Delta>;

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

    /// Add another delta (of the same key).
    pub fn merge(&mut self, o: &Delta) {
        self.events += o.events;
        self.successes += o.successes;
        self.cost_usd = self
            .cost_usd
            .checked_add(o.cost_usd)
            .unwrap_or(self.cost_usd);
        self.costed_events += o.costed_events;
        self.unpriced_events += o.unpriced_events;
        self.unpriced_tokens += o.unpriced_tokens;
        self.tokens = self.tokens.add(&o.tokens);
        self.duration_count += o.duration_count;
        self.duration_sum_ms = self.duration_sum_ms.saturating_add(o.duration_sum_ms);
        self.duration_hist.merge(&o.duration_hist);
        self.queue_count += o.queue_count;
        self.queue_sum_ms = self.queue_sum_ms.saturating_add(o.queue_sum_ms);
        self.queue_hist.merge(&o.queue_hist);
    }
}

/// The daily deltas of hourly ones: the same sums, keys truncated to the day. Cheaper than
/// aggregating the events a second time.
pub fn daily_from_hourly<'a>(hourly: &Deltas<'a>) -> Deltas<'a> {
    let mut out = Deltas::new();
    for ((b, t, p, m, k, i), d) in hourly {
        let key = (Grain::Daily.bucket(*b), *t, *p, *m, *k, *i);
        match out.get_mut(&key) {
            Some(acc) => acc.merge(d),
            None => {
                out.insert(key, d.clone());
            }
        }
    }
    out
}

/// One hour of one tenant as `GET /v1/metrics/peaks` ranks it (`rollup_tenant_hourly`,
/// migration 0010): the sums of the hour's usage rows, each counted as the summary counts it
/// (`RowKind`). One row per tenant-hour where the usage rollup has several (event types,
/// providers, models, task types), so a range of hours is read from a quarter of the pages or
/// fewer, without the per-row conditions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HourTotals {
    pub executions: i64,
    pub failures: i64,
    pub api_calls: i64,
    pub cost_usd: Decimal,
    pub unpriced_events: i64,
    /// Prompt plus output tokens (`query::metrics::TOKENS_SUM`).
    pub tokens: i64,
}

impl HourTotals {
    /// Count one usage row (or delta) of `event_type` and `itemized`.
    pub fn add(&mut self, event_type: &str, itemized: bool, d: &Delta) {
        let kind = RowKind::of(event_type, itemized);
        if kind.outcome {
            self.executions += d.events;
            self.failures += d.events - d.successes;
        }
        if kind.api_call {
            self.api_calls += d.events;
        }
        if kind.spend {
            self.cost_usd = self
                .cost_usd
                .checked_add(d.cost_usd)
                .unwrap_or(self.cost_usd);
            self.unpriced_events += d.unpriced_events;
            let t = &d.tokens;
            self.tokens += i(t.input_tokens)
                + i(t.cached_input_tokens)
                + i(t.cache_write_tokens)
                + i(t.cache_write_1h_tokens)
                + i(t.output_tokens);
        }
    }

    /// Counts nothing: an hour of other events only (`agent.started`, billing, ...) has no row.
    pub fn is_empty(&self) -> bool {
        self.executions == 0 && self.api_calls == 0
    }
}

/// The hour totals of hourly usage deltas (`Dims::Usage`, `Grain::Hourly`), each given as
/// `(bucket, event_type, itemized, delta)`, by bucket, without the empty hours.
pub fn hour_totals<'d>(
    hourly: impl IntoIterator<Item = (DateTime<Utc>, &'d str, bool, &'d Delta)>,
) -> BTreeMap<DateTime<Utc>, HourTotals> {
    let mut out: BTreeMap<DateTime<Utc>, HourTotals> = BTreeMap::new();
    for (b, event_type, itemized, d) in hourly {
        out.entry(b).or_default().add(event_type, itemized, d);
    }
    out.retain(|_, h| !h.is_empty());
    out
}

/// Add hour totals into `rollup_tenant_hourly` (`$1` the tenant). No histograms: a plain upsert.
pub const HOUR_TOTALS_SQL: &str = "INSERT INTO rollup_tenant_hourly AS r (tenant_id, bucket, \
       executions, failures, api_calls, cost_usd, unpriced_events, tokens) \
     SELECT $1, * FROM unnest($2::timestamptz[], $3::int8[], $4::int8[], $5::int8[], \
       $6::numeric[], $7::int8[], $8::int8[]) \
     ON CONFLICT (tenant_id, bucket) DO UPDATE SET \
       executions = r.executions + EXCLUDED.executions, \
       failures = r.failures + EXCLUDED.failures, \
       api_calls = r.api_calls + EXCLUDED.api_calls, \
       cost_usd = r.cost_usd + EXCLUDED.cost_usd, \
       unpriced_events = r.unpriced_events + EXCLUDED.unpriced_events, \
       tokens = r.tokens + EXCLUDED.tokens";

/// Run `HOUR_TOTALS_SQL` with the totals of one tenant; returns the rows written.
pub async fn write_hour_totals(
    client: &impl GenericClient,
    sql: &tokio_postgres::Statement,
    tenant: &str,
    totals: &BTreeMap<DateTime<Utc>, HourTotals>,
) -> Result<u64, tokio_postgres::Error> {
    if totals.is_empty() {
        return Ok(0);
    }
    let bucket: Vec<DateTime<Utc>> = totals.keys().copied().collect();
    let col = |f: fn(&HourTotals) -> i64| totals.values().map(f).collect::<Vec<i64>>();
    let cost: Vec<Decimal> = totals.values().map(|h| h.cost_usd).collect();
    client
        .execute(
            sql,
            &[
                &tenant,
                &bucket,
                &col(|h| h.executions),
                &col(|h| h.failures),
                &col(|h| h.api_calls),
                &cost,
                &col(|h| h.unpriced_events),
                &col(|h| h.tokens),
            ],
        )
        .await
}

/// Aggregate `events` (all of one tenant) into deltas of `grain`, keyed by `dims`.
pub fn deltas<'a>(
    grain: Grain,
    dims: Dims,
    events: impl IntoIterator<Item = &'a AnalyticsEvent>,
) -> Deltas<'a> {
    let mut out = Deltas::new();
    for e in events {
        let [d1, d2, d3] = dims.of(e);
        let key = (
            grain.bucket(e.timestamp),
            e.event_type.as_str(),
            d1,
            d2,
            d3,
            is_itemized(e),
        );
        out.entry(key).or_default().add(e);
    }
    out
}

/// The value columns, in the order of the `$8..$26` arrays of `DELTA_ARRAYS`.
const VALUES: &str = "events, successes, cost_usd, costed_events, unpriced_events, \
    unpriced_tokens, input_tokens, cached_input_tokens, cache_write_tokens, \
    cache_write_1h_tokens, output_tokens, reasoning_tokens, requests, duration_count, \
    duration_sum_ms, duration_hist, queue_count, queue_sum_ms, queue_hist";

/// The names of the six key arrays in `DELTA_ARRAYS` (a slot a table has no column for is
/// still sent, as `""`, and ignored).
const KEY_SLOTS: [&str; 6] = ["k_bucket", "k_type", "k_d1", "k_d2", "k_d3", "k_itemized"];

/// The sums a delta adds to a stored row: counts, cost, the usage buckets, durations.
fn sums() -> Vec<&'static str> {
    let mut out = vec![
        "events",
        "successes",
        "cost_usd",
        "costed_events",
        "unpriced_events",
        "unpriced_tokens",
    ];
    out.extend_from_slice(agenttally::event::USAGE_BUCKETS);
    out.extend([
        "duration_count",
        "duration_sum_ms",
        "queue_count",
        "queue_sum_ms",
    ]);
    out
}

/// The deltas' six key slots and `VALUES` as `$2..$26` arrays (`$1` is the tenant).
const DELTA_ARRAYS: &str = "unnest($2::timestamptz[], $3::text[], $4::text[], $5::text[], \
    $6::text[], $7::bool[], $8::int8[], $9::int8[], $10::numeric[], $11::int8[], $12::int8[], \
    $13::int8[], $14::int8[], $15::int8[], $16::int8[], $17::int8[], $18::int8[], $19::int8[], \
    $20::int8[], $21::int8[], $22::int8[], $23::jsonb[], $24::int8[], $25::int8[], \
    $26::jsonb[])";

/// The statements that add deltas into one rollup table.
///
/// Merging two jsonb histograms in SQL (`agenttally_hist_merge`) costs 0.1–0.5 ms per row, more
/// than the rest of a commit's rollup work, so rows already stored are merged here instead:
/// `lock` reads their histograms `FOR UPDATE` (in key order), `update` adds the sums and writes
/// the merged histograms, `upsert` inserts the keys not stored yet — and should one appear
/// meanwhile (another writer), merges it in SQL after all. They touch the table itself
/// (`ONLY`), never the month tables a daily table's closed days are moved into (`compact`),
/// where a row of the same key adds to the one here.
#[derive(Debug, Clone)]
pub struct RollupSql {
    pub lock: String,
    pub update: String,
    pub upsert: String,
}

pub fn sql(grain: Grain, dims: Dims) -> RollupSql {
    let table = dims.table(grain);
    // (column, key array) of the slots the table has.
    let slots: Vec<(&str, &str)> = dims
        .key()
        .iter()
        .zip(KEY_SLOTS)
        .filter_map(|(c, s)| c.map(|c| (c, s)))
        .collect();
    let key = slots.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ");
    let r_key = slots
        .iter()
        .map(|(c, _)| format!("r.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    // A slot without a column reads back as `""`, as the deltas' keys hold it.
    let r_slots = dims
        .key()
        .iter()
        .map(|c| c.map_or("''::text".to_string(), |c| format!("r.{c}")))
        .collect::<Vec<_>>()
        .join(", ");
    let d_cols = format!("{}, {VALUES}", KEY_SLOTS.join(", "));
    let d_key = slots.iter().map(|(_, s)| *s).collect::<Vec<_>>().join(", ");
    let lock = format!(
        "SELECT {r_slots}, r.duration_hist, r.queue_hist \
         FROM ONLY {table} AS r \
         WHERE r.tenant_id = $1 \
           AND ({r_key}) IN (SELECT {d_key} FROM unnest($2::timestamptz[], $3::text[], \
               $4::text[], $5::text[], $6::text[], $7::bool[]) AS d ({slots})) \
         ORDER BY {r_key} \
         FOR UPDATE OF r",
        slots = KEY_SLOTS.join(", "),
    );
    let update = format!(
        "UPDATE ONLY {table} AS r SET {sums}, duration_hist = d.duration_hist, \
           queue_hist = d.queue_hist \
         FROM {DELTA_ARRAYS} AS d ({d_cols}) \
         WHERE r.tenant_id = $1 AND {matches}",
        sums = sums()
            .iter()
            .map(|c| format!("{c} = r.{c} + d.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        matches = slots
            .iter()
            .map(|(c, s)| format!("r.{c} = d.{s}"))
            .collect::<Vec<_>>()
            .join(" AND "),
    );
    // Skip the SQL merge when either side is empty (no duration/queue time in the delta).
    let merge = |h: &str| {
        format!(
            "CASE WHEN EXCLUDED.{h} = '{{}}'::jsonb THEN r.{h} \
                  WHEN r.{h} = '{{}}'::jsonb THEN EXCLUDED.{h} \
                  ELSE agenttally_hist_merge(r.{h}, EXCLUDED.{h}) END"
        )
    };
    let upsert = format!(
        "INSERT INTO {table} AS r (tenant_id, {key}, {VALUES}) \
         SELECT $1, {d_key}, {VALUES} FROM {DELTA_ARRAYS} AS d ({d_cols}) \
         ON CONFLICT (tenant_id, {key}) DO UPDATE SET {sums}, \
         duration_hist = {dh}, queue_hist = {qh}",
        sums = sums()
            .iter()
            .map(|c| format!("{c} = r.{c} + EXCLUDED.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        dh = merge("duration_hist"),
        qh = merge("queue_hist"),
    );
    RollupSql {
        lock,
        update,
        upsert,
    }
}

/// Read (and lock, until the transaction ends) the stored histograms of the keys of `deltas`.
pub async fn lock(
    client: &impl GenericClient,
    sql: &tokio_postgres::Statement,
    tenant: &str,
    deltas: &Deltas<'_>,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    if deltas.is_empty() {
        return Ok(Vec::new());
    }
    let n = deltas.len();
    let (mut bucket, mut et, mut prov, mut model, mut task, mut itemized) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (b, t, p, m, k, i) in deltas.keys() {
        bucket.push(*b);
        et.push(*t);
        prov.push(*p);
        model.push(*m);
        task.push(*k);
        itemized.push(*i);
    }
    client
        .query(
            sql,
            &[&tenant, &bucket, &et, &prov, &model, &task, &itemized],
        )
        .await
}

/// A stored histogram as read back (`{"bucket": count}`), `None` if it is anything else.
fn stored_histogram(row: &tokio_postgres::Row, col: usize) -> Option<Histogram> {
    let Json(h): Json<BTreeMap<u32, i64>> = row.try_get(col).ok()?;
    Some(Histogram(h))
}

/// Split `deltas` by the rows `lock` returned: `(update, upsert)`. The deltas of stored rows
/// carry the merged histograms (stored + delta) in `update`; the rest go to `upsert`.
pub fn merge_stored<'a>(
    mut deltas: Deltas<'a>,
    stored: &[tokio_postgres::Row],
) -> (Deltas<'a>, Deltas<'a>) {
    let index: HashMap<Key<'_>, Key<'a>> = deltas.keys().map(|k| (*k, *k)).collect();
    let mut update = Deltas::new();
    for row in stored {
        let bucket: DateTime<Utc> = row.get(0);
        let found = index.get(&(
            bucket,
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
            row.get(5),
        ));
        let Some(key) = found.copied() else { continue };
        // Anything unexpected in a stored histogram: leave the row to the SQL merge.
        let (Some(mut dh), Some(mut qh)) = (stored_histogram(row, 6), stored_histogram(row, 7))
        else {
            continue;
        };
        if let Some(mut d) = deltas.remove(&key) {
            dh.merge(&d.duration_hist);
            qh.merge(&d.queue_hist);
            d.duration_hist = dh;
            d.queue_hist = qh;
            update.insert(key, d);
        }
    }
    (update, deltas)
}

/// Run `update` or `upsert` of `RollupSql` with `deltas` of one tenant; returns the rows
/// written.
pub async fn write(
    client: &impl GenericClient,
    sql: &tokio_postgres::Statement,
    tenant: &str,
    deltas: &Deltas<'_>,
) -> Result<u64, tokio_postgres::Error> {
    if deltas.is_empty() {
        return Ok(0);
    }
    let n = deltas.len();
    let mut bucket = Vec::with_capacity(n);
    let mut et = Vec::with_capacity(n);
    let mut prov = Vec::with_capacity(n);
    let mut model = Vec::with_capacity(n);
    let mut task = Vec::with_capacity(n);
    let mut itemized = Vec::with_capacity(n);
    let mut cols: [Vec<i64>; 16] = Default::default();
    let mut cost = Vec::with_capacity(n);
    let mut dh = Vec::with_capacity(n);
    let mut qh = Vec::with_capacity(n);
    for ((b, t, p, m, k, itm), d) in deltas {
        bucket.push(*b);
        et.push(*t);
        prov.push(*p);
        model.push(*m);
        task.push(*k);
        itemized.push(*itm);
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
                &itemized,
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
        .await
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use agenttally::{AgentEvent, ProviderEvent};
    use chrono::TimeZone;

    /// 200 events over three days and every hour: agent runs and API calls of two providers.
    pub(crate) fn events() -> Vec<AnalyticsEvent> {
        let mut out = Vec::new();
        for i in 0..200u64 {
            let ts = Utc
                .with_ymd_and_hms(
                    2026,
                    11,
                    20 + (i % 3) as u32,
                    (i % 24) as u32,
                    (i % 60) as u32,
                    0,
                )
                .single()
                .expect("ts");
            let b = if i % 4 == 0 {
                AgentEvent::completed("t", ["a", "b"][(i / 4 % 2) as usize]).duration_ms(i * 37)
            } else {
                ProviderEvent::api_call("t", ["openai", "anthropic"][(i % 2) as usize], "m")
                    .usage(Usage {
                        input_tokens: i,
                        output_tokens: 2 * i,
                        requests: 1,
                        ..Usage::default()
                    })
                    .cost_usd(Decimal::new(i as i64, 4))
                    .duration_ms(i * 13)
                    .queue_ms(i % 5)
            };
            out.push(b.timestamp(ts).build().expect("event"));
        }
        out
    }

    #[test]
    fn buckets_are_the_truncated_timestamps() {
        use chrono::{DurationRound, TimeDelta};
        let mut ts = Utc
            .with_ymd_and_hms(1969, 12, 30, 22, 0, 0)
            .single()
            .expect("ts");
        for i in 0..5_000i64 {
            // 3 h 17 min 13.123456789 s, and a few ns more each step: 684 days crossed.
            ts += TimeDelta::nanoseconds(11_833_123_456_789 + i);
            assert_eq!(
                Grain::Hourly.bucket(ts),
                ts.duration_trunc(TimeDelta::hours(1)).expect("in range")
            );
            assert_eq!(
                Grain::Daily.bucket(ts),
                ts.duration_trunc(TimeDelta::days(1)).expect("in range")
            );
        }
    }

    #[test]
    fn daily_from_hourly_equals_daily_from_events() {
        let evs = events();
        for dims in [Dims::Usage, Dims::Agent] {
            let hourly = deltas(Grain::Hourly, dims, evs.iter());
            let daily = daily_from_hourly(&hourly);
            assert!(
                hourly.len() > daily.len() && daily.len() > 3,
                "{} {}",
                hourly.len(),
                daily.len()
            );
            assert_eq!(daily, deltas(Grain::Daily, dims, evs.iter()));
        }
    }

    #[test]
    fn hour_totals_count_each_event_once_in_its_hour() {
        let evs = events();
        let hourly = deltas(Grain::Hourly, Dims::Usage, evs.iter());
        let totals = hour_totals(
            hourly
                .iter()
                .map(|((b, t, _, _, _, itemized), d)| (*b, *t, *itemized, d)),
        );
        let calls: Vec<&AnalyticsEvent> = evs
            .iter()
            .filter(|e| e.event_type.as_str() == "provider.api_call")
            .collect();
        let sum = |f: fn(&HourTotals) -> i64| totals.values().map(f).sum::<i64>();
        assert_eq!(sum(|h| h.executions), (evs.len() - calls.len()) as i64);
        assert_eq!(sum(|h| h.failures), 0);
        assert_eq!(sum(|h| h.api_calls), calls.len() as i64);
        let tokens: u64 = calls
            .iter()
            .filter_map(|e| e.usage)
            .map(|u| u.input_tokens + u.output_tokens)
            .sum();
        assert_eq!(sum(|h| h.tokens), tokens as i64);
        assert_eq!(
            totals.values().map(|h| h.cost_usd).sum::<Decimal>(),
            calls.iter().filter_map(|e| e.cost_usd).sum::<Decimal>()
        );
        let hours: std::collections::BTreeSet<DateTime<Utc>> = evs
            .iter()
            .map(|e| Grain::Hourly.bucket(e.timestamp))
            .collect();
        assert_eq!(
            totals
                .keys()
                .copied()
                .collect::<std::collections::BTreeSet<_>>(),
            hours
        );
    }

    #[test]
    fn stored_histograms_read_back_as_written() {
        let mut h = Histogram::default();
        for v in [0, 1, 5, 5, 250, 100_000] {
            h.record(v);
        }
        let text = serde_json::to_string(&Json(&h.0).0).expect("json");
        let back: BTreeMap<u32, i64> = serde_json::from_str(&text).expect("parse");
        assert_eq!(back, h.0);
        // As PostgreSQL prints a merged histogram (jsonb, numeric sums).
        let back: BTreeMap<u32, i64> =
            serde_json::from_str(r#"{"1": 2, "10": 3, "250": 12}"#).expect("parse");
        assert_eq!(back, BTreeMap::from([(1, 2), (10, 3), (250, 12)]));
    }
}
