//! Reference answers of the read API computed over the raw `events` rows only — plain SQL, and
//! sdk-core's `PriceBook::savings` for savings — in the shape of the API's JSON, for tests to
//! compare the rollup-backed answers with (docs/metrics.md). Takes a database client, nothing of
//! the collector.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use agenttally::pricing::{Baseline, PriceBook, SavingsSummary, ServiceTier, Task, Usage};
use chrono::{DateTime, Datelike, Timelike, Utc};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::{json, Value};
use tokio_postgres::Client;

/// The terminal agent events: an execution each.
pub const OUTCOMES: [&str; 3] = ["agent.completed", "agent.failed", "agent.timeout"];

/// The raw rows of tenant `$1` in `[$2, $3)` with the flags the docs define: `outcome` (an
/// execution), `itemized` (an outcome whose `metadata.calls` is a JSON integer >= 1: not
/// `2.0`, which jsonb keeps as written, nor `"2"`), `api` (a
/// provider call), `spend` (a call, or an outcome that is not itemized), `tok` (prompt plus
/// output tokens).
pub const RAW: &str = "WITH e AS (
    SELECT *, event_type IN ('agent.completed', 'agent.failed', 'agent.timeout') AS outcome,
           coalesce(event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
                    AND jsonb_typeof(metadata->'calls') = 'number'
                    AND (metadata->>'calls') ~ '^[0-9]+$'
                    AND (metadata->>'calls')::numeric >= 1,
                    false) AS itemized,
           coalesce(input_tokens, 0) + coalesce(cached_input_tokens, 0)
             + coalesce(cache_write_tokens, 0) + coalesce(cache_write_1h_tokens, 0)
             + coalesce(output_tokens, 0) AS tok
    FROM events WHERE tenant_id = $1 AND ts >= $2 AND ts < $3)
  SELECT *, event_type = 'provider.api_call' AS api,
         event_type = 'provider.api_call' OR (outcome AND NOT itemized) AS spend FROM e";

/// A decimal as the API writes it.
pub fn text(d: Decimal) -> Value {
    json!(d.normalize().to_string())
}

fn opt(d: Option<Decimal>) -> Value {
    d.map_or(Value::Null, text)
}

/// `GET /v1/metrics/summary` over the raw rows of `[from, to)`, every field but the two
/// percentiles (returned apart as exact nearest-rank values: `(answer, p95_duration,
/// p95_queue)`).
pub async fn summary(
    db: &Client,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> (Value, Option<i64>, Option<i64>) {
    let sql = format!(
        "SELECT count(*) FILTER (WHERE outcome),
                count(*) FILTER (WHERE outcome AND success),
                coalesce(sum(cost_usd) FILTER (WHERE spend), 0),
                count(*) FILTER (WHERE spend AND cost_status = 'unpriced'),
                count(*) FILTER (WHERE api),
                count(duration_ms) FILTER (WHERE outcome),
                coalesce(sum(duration_ms) FILTER (WHERE outcome), 0)::bigint,
                percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE outcome),
                percentile_disc(0.95) WITHIN GROUP (ORDER BY queue_ms) FILTER (WHERE outcome),
                coalesce(sum(input_tokens) FILTER (WHERE spend), 0)::bigint,
                coalesce(sum(cached_input_tokens) FILTER (WHERE spend), 0)::bigint,
                coalesce(sum(cache_write_tokens) FILTER (WHERE spend), 0)::bigint,
                coalesce(sum(cache_write_1h_tokens) FILTER (WHERE spend), 0)::bigint,
                coalesce(sum(output_tokens) FILTER (WHERE spend), 0)::bigint,
                coalesce(sum(reasoning_tokens) FILTER (WHERE spend), 0)::bigint
         FROM ({RAW}) s"
    );
    let r = db
        .query_one(&sql, &[&tenant, &from, &to])
        .await
        .expect("raw summary");
    let (n, ok): (i64, i64) = (r.get(0), r.get(1));
    let by_type: BTreeMap<String, i64> = {
        let sql = format!("SELECT event_type, count(*) FROM ({RAW}) s WHERE outcome GROUP BY 1");
        let mut m: BTreeMap<String, i64> = OUTCOMES.iter().map(|t| (t.to_string(), 0)).collect();
        for row in db.query(&sql, &[&tenant, &from, &to]).await.expect(&sql) {
            m.insert(row.get(0), row.get(1));
        }
        m
    };
    let calls_by_provider: BTreeMap<String, i64> = {
        let sql =
            format!("SELECT coalesce(provider, ''), count(*) FROM ({RAW}) s WHERE api GROUP BY 1");
        db.query(&sql, &[&tenant, &from, &to])
            .await
            .expect(&sql)
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    let spend_by_provider: BTreeMap<String, Value> = {
        let sql = format!(
            "SELECT coalesce(provider, ''), coalesce(sum(cost_usd), 0),
                    count(*) FILTER (WHERE cost_status = 'unpriced'), sum(tok)::bigint
             FROM ({RAW}) s WHERE spend GROUP BY 1"
        );
        db.query(&sql, &[&tenant, &from, &to])
            .await
            .expect(&sql)
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    json!({"cost_usd": text(r.get(1)), "unpriced_events": r.get::<_, i64>(2),
                           "tokens": r.get::<_, i64>(3)}),
                )
            })
            .collect()
    };
    let (dur_n, dur_sum): (i64, i64) = (r.get(5), r.get(6));
    let answer = json!({
        "tenant_id": tenant,
        "executions": n,
        "successes": ok,
        "failures": n - ok,
        "executions_by_type": by_type,
        "success_rate": (n > 0).then(|| ok as f64 / n as f64),
        "cost_usd": text(r.get(2)),
        "unpriced_events": r.get::<_, i64>(3),
        "api_calls": r.get::<_, i64>(4),
        "api_calls_by_provider": calls_by_provider,
        "spend_by_provider": spend_by_provider,
        "tokens": {
            "input_tokens": r.get::<_, i64>(9),
            "cached_input_tokens": r.get::<_, i64>(10),
            "cache_write_tokens": r.get::<_, i64>(11),
            "cache_write_1h_tokens": r.get::<_, i64>(12),
            "output_tokens": r.get::<_, i64>(13),
            "reasoning_tokens": r.get::<_, i64>(14),
        },
        "avg_duration_ms": (dur_n > 0).then(|| dur_sum as f64 / dur_n as f64),
    });
    (answer, r.get(7), r.get(8))
}

/// A time series over the raw rows by (bucket start, group), and the groups seen.
pub type Series = (BTreeMap<(DateTime<Utc>, String), Bucket>, BTreeSet<String>);

/// The flag of `RAW` marking the rows a time series of `metric` counts: `spend` for cost and
/// tokens, `api` for `api_calls`, `outcome` (terminal agent events) for executions, failures
/// and latency.
pub fn counted_rows(metric: &str) -> &'static str {
    match metric {
        "cost_usd" | "tokens" => "spend",
        "api_calls" => "api",
        _ => "outcome",
    }
}

/// The groups a series of `metric` shows: those with rows the metric counts (`counted_rows`) in
/// some bucket.
pub fn groups_of(buckets: &BTreeMap<(DateTime<Utc>, String), Bucket>, metric: &str) -> Vec<String> {
    let counted = |b: &Bucket| match counted_rows(metric) {
        "spend" => b.spend_rows > 0,
        "api" => b.api_calls > 0,
        _ => b.executions > 0,
    };
    let groups: BTreeSet<&String> = buckets
        .iter()
        .filter(|(_, b)| counted(b))
        .map(|((_, g), _)| g)
        .collect();
    groups.into_iter().cloned().collect()
}

/// A recommendation candidate: provider, model, tasks, successes, known cost, costed tasks.
type Candidate = (String, String, i64, i64, Decimal, i64);

/// The figures of one (bucket, group) of a time series over the raw rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    pub executions: i64,
    pub failures: i64,
    pub api_calls: i64,
    pub cost_usd: Decimal,
    pub unpriced_events: i64,
    pub tokens: i64,
    /// Exact nearest-rank p95 of the executions' durations.
    pub p95_duration_ms: Option<i64>,
    /// Rows spend counts (API calls, non-itemized terminal agent events).
    pub spend_rows: i64,
}

/// `GET /v1/metrics/timeseries` over the raw rows: per bucket of `unit` (`hour`, `day`,
/// `month`) and group (`group`: a column, or `None`), and the set of groups seen (any event
/// type).
pub async fn series(
    db: &Client,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    unit: &str,
    group: Option<&str>,
) -> Series {
    let g = group.map_or("''".to_string(), |c| format!("coalesce({c}, '')"));
    let sql = format!(
        "SELECT date_trunc('{unit}', ts, 'UTC'), {g},
                count(*) FILTER (WHERE outcome),
                count(*) FILTER (WHERE outcome AND NOT success),
                count(*) FILTER (WHERE api),
                coalesce(sum(cost_usd) FILTER (WHERE spend), 0),
                count(*) FILTER (WHERE spend AND cost_status = 'unpriced'),
                coalesce(sum(tok) FILTER (WHERE spend), 0)::bigint,
                percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE outcome),
                count(*) FILTER (WHERE spend)
         FROM ({RAW}) s GROUP BY 1, 2"
    );
    let rows = db.query(&sql, &[&tenant, &from, &to]).await.expect(&sql);
    let mut groups = BTreeSet::new();
    let mut out = BTreeMap::new();
    for r in &rows {
        let key: (DateTime<Utc>, String) = (r.get(0), r.get(1));
        groups.insert(key.1.clone());
        out.insert(
            key,
            Bucket {
                executions: r.get(2),
                failures: r.get(3),
                api_calls: r.get(4),
                cost_usd: r.get(5),
                unpriced_events: r.get(6),
                tokens: r.get(7),
                p95_duration_ms: r.get(8),
                spend_rows: r.get(9),
            },
        );
    }
    (out, groups)
}

/// The activity of one hour over the raw rows, as `GET /v1/metrics/peaks` writes it.
pub async fn hours(
    db: &Client,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, Value)> {
    let (buckets, _) = series(db, tenant, from, to, "hour", None).await;
    buckets
        .into_iter()
        .map(|((t, _), b)| (t, activity(&b)))
        .collect()
}

/// A bucket's figures in the peaks' `Activity` shape.
pub fn activity(b: &Bucket) -> Value {
    json!({
        "executions": b.executions, "failures": b.failures, "api_calls": b.api_calls,
        "cost_usd": text(b.cost_usd), "unpriced_events": b.unpriced_events, "tokens": b.tokens,
    })
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

fn add_activity(acc: &mut Value, v: &Value) {
    for k in [
        "executions",
        "failures",
        "api_calls",
        "unpriced_events",
        "tokens",
    ] {
        acc[k] = json!(acc[k].as_i64().unwrap_or(0) + v[k].as_i64().expect("count"));
    }
    acc["cost_usd"] = text(dec(&acc["cost_usd"]) + dec(&v["cost_usd"]));
}

/// A decimal string (or absent: 0) of an answer.
pub fn dec(v: &Value) -> Decimal {
    v.as_str().unwrap_or("0").parse().expect("decimal")
}

fn rank(v: &Value, metric: &str) -> Decimal {
    match &v[metric] {
        Value::String(s) => s.parse().expect("decimal"),
        n => Decimal::from(n.as_i64().expect("count")),
    }
}

/// `GET /v1/metrics/peaks` over the raw rows of `[from, to)` (whole hours), ranked by
/// `metric`, `limit` top hours: the whole answer but `tenant_id`, `from`, `to`, `metric`.
pub async fn peaks(
    db: &Client,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    metric: &str,
    limit: usize,
) -> Value {
    let hours = hours(db, tenant, from, to).await;
    let zero = json!({"executions": 0, "failures": 0, "api_calls": 0, "cost_usd": "0",
                      "unpriced_events": 0, "tokens": 0});
    let mut by_hour: BTreeMap<u32, Value> = (0..24).map(|h| (h, zero.clone())).collect();
    let mut by_day: BTreeMap<u32, Value> = (0..7).map(|d| (d, zero.clone())).collect();
    for (t, v) in &hours {
        add_activity(by_hour.get_mut(&t.hour()).expect("hour"), v);
        add_activity(
            by_day
                .get_mut(&t.weekday().num_days_from_monday())
                .expect("day"),
            v,
        );
    }
    let top = |m: &BTreeMap<u32, Value>| -> Vec<u32> {
        let mut v: Vec<(u32, Decimal)> = m
            .iter()
            .map(|(k, a)| (*k, rank(a, metric)))
            .filter(|(_, r)| *r > Decimal::ZERO)
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().take(3).map(|(k, _)| k).collect()
    };
    let mut ranked: Vec<&(DateTime<Utc>, Value)> = hours
        .iter()
        .filter(|(_, v)| rank(v, metric) > Decimal::ZERO)
        .collect();
    ranked.sort_by(|a, b| {
        rank(&b.1, metric)
            .cmp(&rank(&a.1, metric))
            .then(a.0.cmp(&b.0))
    });
    let top_hours: Vec<Value> = ranked
        .iter()
        .take(limit)
        .map(|(t, v)| {
            let mut o = v.clone();
            o["t"] = json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            o
        })
        .collect();
    let with = |key: &str, k: Value, v: &Value| {
        let mut o = v.clone();
        o[key] = k;
        o
    };
    json!({
        "by_hour_of_day": by_hour.iter().map(|(h, v)| with("hour", json!(h), v)).collect::<Vec<_>>(),
        "by_day_of_week": by_day.iter().map(|(d, v)| with("day", json!(DAYS[*d as usize]), v)).collect::<Vec<_>>(),
        "busiest_hours_of_day": top(&by_hour),
        "busiest_days_of_week": top(&by_day).iter().map(|d| DAYS[*d as usize]).collect::<Vec<_>>(),
        "top_hours": top_hours,
    })
}

/// The savings tasks of `[from, to)` read back from the raw rows (spend events) as sdk-core
/// tasks, with their timestamps. A cost the sender reported is the task's actual cost; one the
/// collector priced at ingest is left for sdk-core to price again (so the reference checks the
/// ingest pricing too, `estimated` included).
pub async fn savings_tasks(
    db: &Client,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Task> {
    let sql = format!(
        "SELECT provider, coalesce(model, ''), task_type, coalesce(service_tier, 'standard'),
                ts, success, cost_usd, cost_status,
                coalesce(input_tokens, 0), coalesce(cached_input_tokens, 0),
                coalesce(cache_write_tokens, 0), coalesce(cache_write_1h_tokens, 0),
                coalesce(output_tokens, 0), coalesce(reasoning_tokens, 0),
                coalesce(requests, 0)
         FROM ({RAW}) s WHERE spend"
    );
    let rows = db.query(&sql, &[&tenant, &from, &to]).await.expect(&sql);
    rows.iter()
        .map(|r| {
            let n = |i: usize| r.get::<_, i64>(i) as u64;
            let status: Option<String> = r.get(7);
            let cost: Option<Decimal> = r.get(6);
            let (mut provider, mut model): (Option<String>, String) = (r.get(0), r.get(1));
            let actual_usd = match status.as_deref() {
                Some("priced" | "estimated") => None,
                _ => cost,
            };
            if status.as_deref() == Some("unpriced") || (status.is_none() && cost.is_none()) {
                // Stored without a cost: the actual cost is unknown, whatever the book says
                // of the model (a model no book knows keeps the task's grouping).
                provider = provider.or(Some(model));
                model = String::new();
            }
            Task {
                provider,
                model,
                task_type: Some(r.get::<_, Option<String>>(2).unwrap_or_default()),
                usage: Usage {
                    input_tokens: n(8),
                    cached_input_tokens: n(9),
                    cache_write_tokens: n(10),
                    cache_write_1h_tokens: n(11),
                    output_tokens: n(12),
                    reasoning_tokens: n(13),
                    requests: n(14),
                },
                tier: ServiceTier::from_str(r.get::<_, &str>(3)).expect("tier"),
                at: r.get(4),
                success: r.get(5),
                actual_usd,
            }
        })
        .collect()
}

/// sdk-core's figures in the API's field names.
pub fn figures(s: &SavingsSummary) -> Value {
    json!({
        "tasks": s.tasks,
        "successful_tasks": s.successful_tasks,
        "compared_tasks": s.compared_tasks,
        "actual_unpriced": s.actual_unpriced,
        "baseline_unpriced": s.baseline_unpriced,
        "unpriced_tokens": s.unpriced_tokens,
        "estimated_tasks": s.estimated_tasks,
        "actual_usd": text(s.actual_usd),
        "baseline_usd": text(s.baseline_usd),
        "savings_usd": text(s.savings_usd),
        "savings_percent": opt(s.savings_percent),
        "successful_actual_usd": text(s.successful_actual_usd),
        "successful_baseline_usd": text(s.successful_baseline_usd),
        "successful_savings_usd": text(s.successful_savings_usd),
        "successful_savings_percent": opt(s.successful_savings_percent),
        "cost_per_successful_task": opt(s.cost_per_successful_task),
    })
}

/// `GET /v1/metrics/savings` over the raw rows of `[from, to)` against `baseline`: the
/// figures of the total (at the top level), `by_provider`, `by_task_type`, `by_month`.
pub async fn savings(
    db: &Client,
    book: &PriceBook,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    baseline: &str,
) -> Value {
    let tasks = savings_tasks(db, tenant, from, to).await;
    let policy = match baseline {
        "most_expensive" => Baseline::MostExpensive,
        m => Baseline::Model(m.to_string()),
    };
    let report = book.savings(&tasks, &policy);
    let mut months: BTreeMap<String, Vec<Task>> = BTreeMap::new();
    for t in &tasks {
        months
            .entry(format!("{:04}-{:02}", t.at.year(), t.at.month()))
            .or_default()
            .push(t.clone());
    }
    let mut out = figures(&report.total);
    out["by_provider"] = report
        .by_provider
        .iter()
        .map(|(k, s)| (k.clone(), figures(s)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    out["by_task_type"] = report
        .by_task_type
        .iter()
        .map(|(k, s)| (k.clone(), figures(s)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    out["by_month"] = months
        .iter()
        .map(|(m, ts)| (m.clone(), figures(&book.savings(ts, &policy).total)))
        .collect::<serde_json::Map<_, _>>()
        .into();
    out
}

/// USD to the cent, half away from zero.
pub fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// Days between two instants, to the second (at least one second).
pub fn days(from: DateTime<Utc>, to: DateTime<Utc>) -> Decimal {
    Decimal::from((to - from).num_seconds().max(1)) / Decimal::from(86_400)
}

/// Per task type, the candidates (provider/model of spend events) over the raw rows, and the
/// recommendation docs/metrics.md defines: `by_task_type` and `projected_monthly_saving_usd`
/// of `GET /v1/metrics/recommendations` for `[from, to)`.
pub async fn recommendations(
    db: &Client,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    margin: Decimal,
    min_tasks: i64,
) -> (Value, Decimal) {
    let sql = format!(
        "SELECT coalesce(task_type, ''), coalesce(provider, ''), coalesce(model, ''),
                count(*), count(*) FILTER (WHERE success), coalesce(sum(cost_usd), 0),
                count(cost_usd)
         FROM ({RAW}) s WHERE spend AND (coalesce(provider, '') <> '' OR coalesce(model, '') <> '')
         GROUP BY 1, 2, 3"
    );
    let rows = db.query(&sql, &[&tenant, &from, &to]).await.expect(&sql);
    // (task type) -> [(provider, model, tasks, successes, cost, costed)]
    let mut by_type: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for r in &rows {
        by_type.entry(r.get(0)).or_default().push((
            r.get(1),
            r.get(2),
            r.get(3),
            r.get(4),
            r.get(5),
            r.get(6),
        ));
    }
    let pace = Decimal::new(304_375, 4) / days(from, to);
    let mut total = Decimal::ZERO;
    let mut out = Vec::new();
    for (task_type, cands) in by_type {
        let avg = |c: &Candidate| (c.5 > 0).then(|| (c.4 / Decimal::from(c.5)).normalize());
        let rate = |c: &Candidate| (Decimal::from(c.3) / Decimal::from(c.2)).normalize();
        let mut cands = cands;
        cands.sort_by(|a, b| {
            avg(a)
                .unwrap_or(Decimal::MAX)
                .cmp(&avg(b).unwrap_or(Decimal::MAX))
                .then_with(|| (&a.0, &a.1).cmp(&(&b.0, &b.1)))
        });
        let tasks: i64 = cands.iter().map(|c| c.2).sum();
        let cost: Decimal = cands.iter().map(|c| c.4).sum();
        let costed: i64 = cands.iter().map(|c| c.5).sum();
        let current = (costed > 0).then(|| (cost / Decimal::from(costed)).normalize());
        let best = cands.iter().filter(|c| c.2 >= min_tasks).map(rate).max();
        let rec = best.and_then(|best| {
            cands
                .iter()
                .find(|c| c.2 >= min_tasks && avg(c).is_some() && rate(c) >= best - margin)
        });
        let saving = match (rec, current) {
            (Some(r), Some(cur)) => {
                let s = (cur - avg(r).expect("avg")) * Decimal::from(tasks) * pace;
                Some(cents(s.max(Decimal::ZERO)))
            }
            _ => None,
        };
        total += saving.unwrap_or_default();
        let cand = |c: &Candidate| {
            json!({
                "provider": c.0, "model": c.1, "tasks": c.2, "successes": c.3,
                "success_rate": text(rate(c)), "cost_usd": text(c.4), "costed_tasks": c.5,
                "avg_cost_usd": opt(avg(c)), "eligible": c.2 >= min_tasks,
            })
        };
        let mut advice = json!({
            "task_type": task_type,
            "tasks": tasks,
            "current_avg_cost_usd": opt(current),
            "best_success_rate": opt(best),
            "recommended": rec.map_or(Value::Null, cand),
            "projected_monthly_saving_usd": opt(saving),
            "candidates": cands.iter().map(cand).collect::<Vec<_>>(),
        });
        match (best, rec) {
            (None, _) => {
                advice["reason"] = json!(format!(
                    "no provider/model has {min_tasks} tasks of this type in the range"
                ))
            }
            (Some(_), None) => {
                advice["reason"] = json!("no eligible provider/model has a known cost")
            }
            _ => {}
        }
        out.push(advice);
    }
    (Value::Array(out), total.normalize())
}

/// Usage of each UTC calendar month over the raw rows of `[from, to)`: executions, tokens,
/// spend and unpriced spend events, as billing counts them.
pub async fn usage_by_month(
    db: &Client,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> BTreeMap<String, (i64, i64, Decimal, i64)> {
    let sql = format!(
        "SELECT to_char(date_trunc('month', ts, 'UTC') AT TIME ZONE 'UTC', 'YYYY-MM'),
                count(*) FILTER (WHERE outcome),
                coalesce(sum(tok) FILTER (WHERE spend), 0)::bigint,
                coalesce(sum(cost_usd) FILTER (WHERE spend), 0),
                count(*) FILTER (WHERE spend AND cost_status = 'unpriced')
         FROM ({RAW}) s GROUP BY 1"
    );
    db.query(&sql, &[&tenant, &from, &to])
        .await
        .expect(&sql)
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3), r.get(4))))
        .collect()
}

/// The UTC calendar month holding `t`: its start and the next one's.
pub fn month(t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = t
        .date_naive()
        .with_day(1)
        .expect("day 1")
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc();
    let next = first
        .checked_add_months(chrono::Months::new(1))
        .expect("next month");
    (first, next)
}

/// The paths at which two JSON values differ, with both sides (`got` / `want`).
pub fn differences(got: &Value, want: &Value) -> Vec<String> {
    fn walk(path: String, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let (va, vb) = (
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                    );
                    if x.contains_key(k) != y.contains_key(k) {
                        out.push(format!("{path}.{k}: got {va}, want {vb}"));
                    } else {
                        walk(format!("{path}.{k}"), va, vb, out);
                    }
                }
            }
            (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
                for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                    walk(format!("{path}[{i}]"), va, vb, out);
                }
            }
            _ if a != b => out.push(format!("{path}: got {a}, want {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(String::new(), got, want, &mut out);
    out
}

/// Panics naming each differing path (at most 20) when `got` is not `want`.
#[track_caller]
pub fn assert_same(got: &Value, want: &Value, what: &str) {
    let d = differences(got, want);
    if !d.is_empty() {
        let n = d.len();
        let shown: Vec<&String> = d.iter().take(20).collect();
        panic!(
            "{what}: {n} differences from the raw rows (got: API, want: raw):\n  {}",
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        );
    }
}
