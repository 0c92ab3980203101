//! The metrics summary of one tenant over a time range, from the rollups (never raw events):
//! executions and their outcomes, spend without double counting, API calls, tokens, durations
//! and unpriced events, as defined in docs/metrics.md.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio_postgres::types::Json;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::period;
use crate::error::Result;
use crate::store::histogram::Histogram;
use crate::store::rollups::{Dims, Grain, RowKind, OUTCOMES};
use crate::store::TenantTx;

/// SQL condition on a rollup row: it holds executions (terminal agent events).
pub const OUTCOME_ROWS: &str = "event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')";

/// SQL condition on a rollup row: it holds spend — provider calls, and terminal agent events
/// that are not itemized (docs/metrics.md).
pub const SPEND_ROWS: &str = "(event_type = 'provider.api_call' \
     OR (event_type IN ('agent.completed', 'agent.failed', 'agent.timeout') AND NOT itemized))";

/// SQL sum of a rollup row's tokens: prompt plus output (reasoning is part of output).
pub const TOKENS_SUM: &str =
    "input_tokens + cached_input_tokens + cache_write_tokens + cache_write_1h_tokens + output_tokens";

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

/// The rollups a range was read from: whole buckets of an hour or a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    Hour,
    Day,
}

impl From<Grain> for Granularity {
    fn from(g: Grain) -> Self {
        match g {
            Grain::Hourly => Granularity::Hour,
            Grain::Daily => Granularity::Day,
        }
    }
}

/// The answer of `GET /v1/metrics/summary`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Summary {
    pub tenant_id: String,
    /// The range covered: whole buckets of `granularity`, `from` inclusive.
    pub from: DateTime<Utc>,
    /// The end of the range covered, exclusive.
    pub to: DateTime<Utc>,
    pub granularity: Granularity,
    pub executions: i64,
    pub successes: i64,
    pub failures: i64,
    /// Executions by terminal event type (`agent.completed`, `agent.failed`, `agent.timeout`;
    /// each present, 0 when none).
    pub executions_by_type: BTreeMap<String, i64>,
    /// `successes / executions`; `null` without executions.
    #[schema(required = true)]
    pub success_rate: Option<f64>,
    /// Spend: provider calls plus terminal agent events that are not itemized. A decimal
    /// string; with `unpriced_events` beside it.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub cost_usd: Decimal,
    /// Events counted in `cost_usd` whose cost is unknown (`cost_status = unpriced`).
    pub unpriced_events: i64,
    pub api_calls: i64,
    /// API calls by provider.
    pub api_calls_by_provider: BTreeMap<String, i64>,
    /// Spend by provider (`""`: spend events naming none, e.g. summary-only runs).
    pub spend_by_provider: BTreeMap<String, ProviderSpend>,
    /// Token counts by bucket (`input_tokens`, `cached_input_tokens`, `cache_write_tokens`,
    /// `cache_write_1h_tokens`, `output_tokens`, `reasoning_tokens`), counted as spend is.
    #[schema(value_type = BTreeMap<String, i64>)]
    pub tokens: BTreeMap<&'static str, i64>,
    /// Over executions carrying a duration; `null` when none does.
    #[schema(required = true)]
    pub avg_duration_ms: Option<f64>,
    /// `null` when no execution carries a duration.
    #[schema(required = true)]
    pub p95_duration_ms: Option<f64>,
    /// `null` when no execution carries a queue time.
    #[schema(required = true)]
    pub p95_queue_ms: Option<f64>,
}

/// One provider's share of spend.
#[derive(Debug, Clone, Default, PartialEq, Serialize, ToSchema)]
pub struct ProviderSpend {
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub cost_usd: Decimal,
    pub unpriced_events: i64,
    /// Prompt plus output tokens.
    pub tokens: i64,
}

/// The summary of the tenant `tx` acts for (`tenant`, which must be the same: it narrows the
/// scan to the tenant's rows by key; row-level security guarantees it).
pub async fn summary(tx: &TenantTx<'_>, tenant: &str, range: &Range) -> Result<Summary> {
    let (rows_sql, days) = usage_rows(range, SUMMARY_COLUMNS);
    let sql = format!(
        "SELECT event_type, provider, itemized,
                sum(events)::bigint, sum(successes)::bigint, sum(cost_usd),
                sum(unpriced_events)::bigint,
                sum(input_tokens)::bigint, sum(cached_input_tokens)::bigint,
                sum(cache_write_tokens)::bigint, sum(cache_write_1h_tokens)::bigint,
                sum(output_tokens)::bigint, sum(reasoning_tokens)::bigint,
                sum(duration_count)::bigint, sum(duration_sum_ms)::bigint,
                {HISTS}(duration_hist) FILTER (WHERE {OUTCOME_ROWS} AND duration_count > 0),
                {HISTS}(queue_hist) FILTER (WHERE {OUTCOME_ROWS} AND queue_count > 0)
         FROM ({rows_sql}) r
         GROUP BY event_type, provider, itemized"
    );
    let rows = match days {
        Some((d0, d1)) => {
            tx.query(&sql, &[&tenant, &range.from, &range.to, &d0, &d1])
                .await?
        }
        None => tx.query(&sql, &[&tenant, &range.from, &range.to]).await?,
    };
    let mut s = Summary {
        tenant_id: tenant.to_string(),
        from: range.from,
        to: range.to,
        granularity: range.grain.into(),
        executions: 0,
        successes: 0,
        failures: 0,
        executions_by_type: OUTCOMES.iter().map(|t| (t.to_string(), 0)).collect(),
        success_rate: None,
        cost_usd: Decimal::ZERO,
        unpriced_events: 0,
        api_calls: 0,
        api_calls_by_provider: BTreeMap::new(),
        spend_by_provider: BTreeMap::new(),
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
        let kind = RowKind::of(event_type, itemized);
        if kind.outcome {
            s.executions += events;
            *s.executions_by_type
                .entry(event_type.to_string())
                .or_default() += events;
            s.successes += r.get::<_, i64>(4);
            duration_count += r.get::<_, i64>(13);
            duration_sum = duration_sum.saturating_add(r.get::<_, i64>(14));
            merge_histograms(&mut durations, r, 15);
            merge_histograms(&mut queues, r, 16);
        }
        if kind.api_call {
            s.api_calls += events;
            *s.api_calls_by_provider.entry(provider.clone()).or_default() += events;
        }
        if kind.spend {
            let (cost, unpriced) = (r.get::<_, Decimal>(5), r.get::<_, i64>(6));
            s.cost_usd += cost;
            s.unpriced_events += unpriced;
            let p = s.spend_by_provider.entry(provider).or_default();
            p.cost_usd += cost;
            p.unpriced_events += unpriced;
            for (i, b) in TOKEN_BUCKETS.iter().enumerate() {
                let n = r.get::<_, i64>(7 + i);
                *s.tokens.entry(b).or_default() += n;
                // Reasoning is part of output: not added to the total again.
                if *b != "reasoning_tokens" {
                    p.tokens += n;
                }
            }
        }
    }
    for p in s.spend_by_provider.values_mut() {
        p.cost_usd = p.cost_usd.normalize();
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

/// The usage-rollup columns `summary` reads.
const SUMMARY_COLUMNS: &str = "event_type, provider, itemized, events, successes, cost_usd,
    unpriced_events, input_tokens, cached_input_tokens, cache_write_tokens,
    cache_write_1h_tokens, output_tokens, reasoning_tokens, duration_count, duration_sum_ms,
    duration_hist, queue_count, queue_hist";

/// The whole UTC days inside an hourly range, `[start, end)`.
pub(crate) type WholeDays = (DateTime<Utc>, DateTime<Utc>);

/// The usage-rollup rows of the tenant (`$1`) in `range` (`$2`, `$3`) as a query for a FROM
/// item, with `columns`. An hourly range that holds whole UTC days reads those days from the
/// daily rollups (bound as `$4`, `$5`: the days returned) and only its ragged ends from the
/// hourly ones. The sums are the same — a daily row is the sum of that day's hourly rows, both
/// written in one transaction and checked by `verify` — and a long range reads about 24 times
/// fewer rows: over 89 days of a busy tenant most of a summary's time was reading hourly rows.
pub(crate) fn usage_rows(range: &Range, columns: &str) -> (String, Option<WholeDays>) {
    let tables = (Grain::Hourly.table(), Grain::Daily.table());
    rollup_rows(range, tables, columns, "", 4)
}

/// `usage_rows` of any rollup kept at both grains (`tables`: hourly, daily), with `filter` added
/// to each condition (`AND ...`, its parameters bound by the caller) and the whole days bound as
/// `$<days_param>` and the next.
pub(crate) fn rollup_rows(
    range: &Range,
    (hourly, daily): (&str, &str),
    columns: &str,
    filter: &str,
    days_param: usize,
) -> (String, Option<WholeDays>) {
    let rows = |table: &str, from: &str, to: &str| {
        format!(
            "SELECT {columns} FROM {table} \
             WHERE tenant_id = $1 {filter} AND bucket >= {from} AND bucket < {to}"
        )
    };
    if range.grain == Grain::Daily {
        return (rows(daily, "$2", "$3"), None);
    }
    let d0 = Grain::Daily.bucket(range.from);
    let d0 = if d0 < range.from {
        d0 + chrono::TimeDelta::days(1)
    } else {
        d0
    };
    let d1 = Grain::Daily.bucket(range.to);
    if d0 >= d1 {
        return (rows(hourly, "$2", "$3"), None);
    }
    let (p0, p1) = (format!("${days_param}"), format!("${}", days_param + 1));
    let sql = format!(
        "{}\n UNION ALL\n {}\n UNION ALL\n {}",
        rows(hourly, "$2", &p0),
        rows(daily, &p0, &p1),
        rows(hourly, &p1, "$3"),
    );
    (sql, Some((d0, d1)))
}

/// What `decimal_string` writes: the pattern of a decimal in a JSON string.
pub const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";

/// The schema of a decimal written as a JSON string (`decimal_string`): exact, never an
/// exponent. Money, rates and percentages are given this way.
#[derive(Debug)]
pub struct DecimalString;

impl utoipa::PartialSchema for DecimalString {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(DECIMAL_PATTERN))
            .description(Some(
                "A decimal number as a string (exact; JSON numbers would pass through floats).",
            ))
            .examples(["0.0035"])
            .into()
    }
}

impl ToSchema for DecimalString {}

/// Money as a decimal string (`"0.0035"`): JSON numbers would pass through floats in clients.
pub(crate) fn decimal_string<S: serde::Serializer>(
    d: &Decimal,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&d.to_string())
}

/// The histograms of a group's rows, gathered by `HISTS` and merged here: merging jsonb in SQL
/// (`agenttally_hist_sum`) costs ~0.1 ms a row, most of a summary's time over a long range.
/// `array_agg` only collects the stored values (a `jsonb[]`, sent in binary); `jsonb_agg` builds
/// one jsonb document of them first, which took 2–3 ms more over the ~1,000 daily rows of an
/// 89-day summary in the query bench.
const HISTS: &str = "array_agg";

/// Add the histograms gathered in column `col` (a `HISTS` array, `NULL` when the group has
/// none) into `into`; anything that is not a histogram adds nothing (the collector writes none).
fn merge_histograms(into: &mut Histogram, row: &tokio_postgres::Row, col: usize) {
    if let Ok(Some(hs)) = row.try_get::<_, Option<Vec<Json<BTreeMap<u32, i64>>>>>(col) {
        for Json(h) in hs {
            into.merge(&Histogram(h));
        }
    }
}

/// What a time series measures (`metric=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum Metric {
    CostUsd,
    Executions,
    Failures,
    ApiCalls,
    Tokens,
    P95DurationMs,
}

impl Metric {
    pub const NAMES: &'static str =
        "cost_usd, executions, failures, api_calls, tokens, p95_duration_ms";

    pub fn parse(s: &str) -> Option<Metric> {
        Some(match s {
            "cost_usd" => Metric::CostUsd,
            "executions" => Metric::Executions,
            "failures" => Metric::Failures,
            "api_calls" => Metric::ApiCalls,
            "tokens" => Metric::Tokens,
            "p95_duration_ms" => Metric::P95DurationMs,
            _ => return None,
        })
    }

    /// Whether the metric counts rows of `kind`: spend and tokens count spend rows, executions,
    /// failures and latency terminal agent events, API calls `provider.api_call`s. A series
    /// shows the groups that have such rows in its range, no group that could only be zero.
    pub fn counts(self, kind: RowKind) -> bool {
        match self {
            Metric::CostUsd | Metric::Tokens => kind.spend,
            Metric::Executions | Metric::Failures | Metric::P95DurationMs => kind.outcome,
            Metric::ApiCalls => kind.api_call,
        }
    }
}

/// The width of a time-series bucket (`interval=`): a UTC hour, or a day or calendar month in
/// the request's `tz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(default = "day")]
pub enum Interval {
    Hour,
    Day,
    Month,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Interval> {
        Some(match s {
            "hour" => Interval::Hour,
            "day" => Interval::Day,
            "month" => Interval::Month,
            _ => return None,
        })
    }

    /// The start of the bucket holding `t`: a UTC hour, or a local day or calendar month in
    /// `tz` (a day starts at local midnight, so it lasts 23 or 25 hours across a clock change).
    pub fn start(self, t: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        match self {
            Interval::Hour => Grain::Hourly.bucket(t),
            Interval::Day => period::day_start(tz, period::local_date(tz, t)),
            Interval::Month => period::month_in(tz, t).0,
        }
    }

    /// The start of the bucket after the one starting at `t`.
    pub fn next(self, t: DateTime<Utc>, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Interval::Hour => t.checked_add_signed(chrono::TimeDelta::hours(1)),
            Interval::Day => period::local_date(tz, t)
                .succ_opt()
                .map(|d| period::day_start(tz, d)),
            Interval::Month => Some(period::month_in(tz, t).1).filter(|n| *n > t),
        }
    }

    /// The starts of the buckets of `[from, to)` (`from` a bucket start), in order.
    pub fn starts(self, from: DateTime<Utc>, to: DateTime<Utc>, tz: Tz) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        let mut t = from;
        while t < to {
            out.push(t);
            match self.next(t, tz) {
                Some(n) => t = n,
                None => break,
            }
        }
        out
    }
}

/// A rollup dimension to group a series by (`group_by=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum GroupBy {
    Provider,
    Model,
    TaskType,
    EventType,
    AgentId,
}

impl GroupBy {
    pub const NAMES: &'static str = "provider, model, task_type, event_type, agent_id";

    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "provider" => GroupBy::Provider,
            "model" => GroupBy::Model,
            "task_type" => GroupBy::TaskType,
            "event_type" => GroupBy::EventType,
            "agent_id" => GroupBy::AgentId,
            _ => return None,
        })
    }

    /// The rollup column (a fixed name, never caller text).
    fn column(self) -> &'static str {
        match self {
            GroupBy::Provider => "provider",
            GroupBy::Model => "model",
            GroupBy::TaskType => "task_type",
            GroupBy::EventType => "event_type",
            GroupBy::AgentId => "agent_id",
        }
    }

    /// The rollups that hold the dimension: the agent rollups for `agent_id`, the usage
    /// rollups for the rest. Both count every event, by the same rules (`RowKind`).
    fn dims(self) -> Dims {
        match self {
            GroupBy::AgentId => Dims::Agent,
            _ => Dims::Usage,
        }
    }
}

/// One point of a series.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Point {
    /// The bucket's start.
    pub t: DateTime<Utc>,
    /// The group's value (`""` for an absent dimension); `null` without `group_by`.
    #[schema(required = true)]
    pub group: Option<String>,
    /// A number; `cost_usd` as a decimal string; `p95_duration_ms` is `null` for a bucket with
    /// no execution (there is no latency to report, and 0 would be a false one).
    #[schema(schema_with = point_value)]
    pub value: serde_json::Value,
    /// With `cost_usd` only: events counted in the value whose cost is unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub unpriced_events: Option<i64>,
}

/// The schema of `Point::value`: a number, a decimal string (`cost_usd`) or `null`
/// (`p95_duration_ms` without executions).
fn point_value() -> Schema {
    utoipa::openapi::schema::AnyOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(<DecimalString as utoipa::PartialSchema>::schema())
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .description(Some(
            "A number; `cost_usd` as a decimal string; `p95_duration_ms` is null in a bucket \
             without executions.",
        ))
        .into()
}

/// The answer of `GET /v1/metrics/timeseries`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Series {
    pub tenant_id: String,
    /// The range covered (whole buckets of `interval`), `from` inclusive.
    pub from: DateTime<Utc>,
    /// The end of the range covered, exclusive.
    pub to: DateTime<Utc>,
    pub interval: Interval,
    /// The IANA time zone of the day and month buckets (hours are UTC hours).
    pub tz: String,
    /// One point per bucket and group, in time order.
    pub points: Vec<Point>,
}

/// Sums of one (bucket start, group).
#[derive(Debug, Default)]
struct Acc {
    cost: Decimal,
    unpriced: i64,
    executions: i64,
    successes: i64,
    api_calls: i64,
    tokens: i64,
    durations: Histogram,
}

/// A series of `metric` per `interval` (days and months in `tz`) over `range` (whole buckets
/// of `interval`, on rollups that can be cut at every bucket start: the caller aligns it and
/// picks them), one point per bucket and group, empty buckets present (zero).
pub async fn timeseries(
    tx: &TenantTx<'_>,
    tenant: &str,
    range: &Range,
    metric: Metric,
    interval: Interval,
    group_by: Option<GroupBy>,
    tz: Tz,
) -> Result<Series> {
    let group = group_by.map_or("''", GroupBy::column);
    let starts = interval.starts(range.from, range.to, tz);
    let dims = group_by.map_or(Dims::Usage, GroupBy::dims);
    // Each rollup bucket falls in the bucket of the last start at or before it (1-based).
    let sql = format!(
        "SELECT width_bucket(bucket, $4::timestamptz[]), {group}, event_type, itemized,
                sum(events)::bigint, sum(successes)::bigint, sum(cost_usd),
                sum(unpriced_events)::bigint,
                sum({TOKENS_SUM})::bigint,
                {durations}
         FROM {table}
         WHERE tenant_id = $1 AND bucket >= $2 AND bucket < $3
         GROUP BY 1, 2, 3, 4",
        table = dims.table(range.grain),
        // Only a latency series needs the histograms.
        durations = if metric == Metric::P95DurationMs {
            format!("{HISTS}(duration_hist) FILTER (WHERE {OUTCOME_ROWS} AND duration_count > 0)")
        } else {
            "NULL::jsonb".to_string()
        },
    );
    let rows = tx
        .query(&sql, &[&tenant, &range.from, &range.to, &starts])
        .await?;
    let mut acc: BTreeMap<(DateTime<Utc>, String), Acc> = BTreeMap::new();
    let mut groups: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    for r in &rows {
        let i: i32 = r.get(0);
        let Some(t) = usize::try_from(i - 1)
            .ok()
            .and_then(|i| starts.get(i))
            .copied()
        else {
            continue;
        };
        let g: String = r.get(1);
        let event_type: &str = r.get(2);
        let itemized: bool = r.get(3);
        let events: i64 = r.get(4);
        let kind = RowKind::of(event_type, itemized);
        if metric.counts(kind) {
            groups.insert(g.clone());
        }
        let a = acc.entry((t, g)).or_default();
        if kind.outcome {
            a.executions += events;
            a.successes += r.get::<_, i64>(5);
            merge_histograms(&mut a.durations, r, 9);
        }
        if kind.api_call {
            a.api_calls += events;
        }
        if kind.spend {
            a.cost += r.get::<_, Decimal>(6);
            a.unpriced += r.get::<_, i64>(7);
            a.tokens += r.get::<_, i64>(8);
        }
    }
    if group_by.is_none() {
        groups = std::iter::once(String::new()).collect();
    }
    let empty = Acc::default();
    let mut points = Vec::new();
    for &t in &starts {
        for g in &groups {
            let a = acc.get(&(t, g.clone())).unwrap_or(&empty);
            let value = match metric {
                Metric::CostUsd => serde_json::Value::String(a.cost.normalize().to_string()),
                Metric::Executions => a.executions.into(),
                Metric::Failures => (a.executions - a.successes).into(),
                Metric::ApiCalls => a.api_calls.into(),
                Metric::Tokens => a.tokens.into(),
                Metric::P95DurationMs => a
                    .durations
                    .quantile(0.95)
                    .map_or(serde_json::Value::Null, serde_json::Value::from),
            };
            points.push(Point {
                t,
                group: group_by.map(|_| g.clone()),
                value,
                unpriced_events: (metric == Metric::CostUsd).then_some(a.unpriced),
            });
        }
    }
    Ok(Series {
        tenant_id: tenant.to_string(),
        from: range.from,
        to: range.to,
        interval,
        tz: tz.name().to_string(),
        points,
    })
}
