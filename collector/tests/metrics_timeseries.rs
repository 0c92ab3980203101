//! `GET /v1/metrics/timeseries` against plain SQL over the raw `events` rows: per hour, day and
//! month, grouped or not (by the usage rollups' dimensions and by agent, from the agent
//! rollups), every point equals the raw figure of its bucket and group (exact for counts, spend
//! and tokens; p95 within 1%), and empty buckets are present as zero.

mod common;
#[path = "common/raw.rs"]
mod raw;

use std::collections::BTreeMap;

use agenttally_collector::Scope;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use common::runs::{tenant_events, ts};
use common::Env;
use raw::RAW;
use rust_decimal::Decimal;
use serde_json::{json, Value};

async fn get(env: &Env, key: &str, query: &str) -> (u16, Value) {
    let resp = env
        .http
        .get(format!("{}/v1/metrics/timeseries{query}", env.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn at(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("time"))
        .expect("rfc3339")
        .with_timezone(&Utc)
}

/// `(t, group) -> value` by plain SQL: `select` over the rows of `RAW`, grouped by the bucket
/// (`unit`) and `group`.
async fn raw(
    env: &Env,
    series: &Value,
    unit: &str,
    group: &str,
    select: &str,
) -> BTreeMap<(DateTime<Utc>, String), Value> {
    let sql = format!(
        "SELECT date_trunc('{unit}', ts, 'UTC'), {group}, ({select})::text
         FROM ({RAW}) s GROUP BY 1, 2"
    );
    let rows = env
        .db
        .query(&sql, &[&"acme", &at(&series["from"]), &at(&series["to"])])
        .await
        .expect(&sql);
    rows.iter()
        .filter_map(|r| {
            let v: Option<String> = r.get(2);
            v.map(|v| ((r.get(0), r.get(1)), Value::String(v)))
        })
        .collect()
}

fn point_key(p: &Value) -> (DateTime<Utc>, String) {
    (at(&p["t"]), p["group"].as_str().unwrap_or("").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeseries_equal_plain_sql_over_raw_events() {
    let mut env = Env::start().await;
    let now = Utc::now();
    let ingest = env.key(Some("acme"), &[Scope::Ingest]).await;
    let (s, v) = env.post(&ingest, &tenant_events("acme", 3, 120, now)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["rejected"], json!([]), "{v}");
    let key = env.key(Some("acme"), &[Scope::Read]).await;
    let today = now.duration_trunc(TimeDelta::days(1)).expect("day");
    let days = format!(
        "&from={}&to={}",
        ts(today - TimeDelta::days(4)),
        ts(today + TimeDelta::days(1))
    );

    // Spend per day and provider: exact, with unpriced events beside it; empty days are "0".
    let (s, series) = get(
        &env,
        &key,
        &format!("?metric=cost_usd&interval=day&group_by=provider{days}"),
    )
    .await;
    assert_eq!(s, 200, "{series}");
    let points = series["points"].as_array().expect("points");
    let cost = raw(
        &env,
        &series,
        "day",
        "coalesce(provider, '')",
        "sum(cost_usd) FILTER (WHERE spend)",
    )
    .await;
    let unpriced = raw(
        &env,
        &series,
        "day",
        "coalesce(provider, '')",
        "count(*) FILTER (WHERE spend AND cost_status = 'unpriced')",
    )
    .await;
    // The groups are the providers with spend rows in the range (not every provider seen: a
    // group the metric cannot count would be zero throughout).
    let spend_rows = raw(
        &env,
        &series,
        "day",
        "coalesce(provider, '')",
        "count(*) FILTER (WHERE spend)",
    )
    .await;
    let groups: std::collections::BTreeSet<String> = spend_rows
        .iter()
        .filter(|(_, n)| n.as_str() != Some("0"))
        .map(|((_, g), _)| g.clone())
        .collect();
    let shown: std::collections::BTreeSet<String> = points
        .iter()
        .map(|p| p["group"].as_str().expect("group").to_string())
        .collect();
    assert_eq!(shown, groups, "{series}");
    assert_eq!(points.len(), 5 * groups.len(), "{series}");
    let mut zeros = 0;
    for p in points {
        let k = point_key(p);
        let want = cost
            .get(&k)
            .and_then(Value::as_str)
            .map_or(Decimal::ZERO, |c| c.parse().expect("decimal"));
        let got: Decimal = p["value"]
            .as_str()
            .expect("decimal string")
            .parse()
            .expect("decimal");
        assert_eq!(got, want, "{p}");
        let n = unpriced
            .get(&k)
            .and_then(Value::as_str)
            .map_or(0, |c| c.parse().expect("count"));
        assert_eq!(p["unpriced_events"], json!(n), "{p}");
        zeros += usize::from(got.is_zero());
    }
    assert!(
        zeros > 0,
        "some (day, provider) buckets are empty: {series}"
    );

    // A series shows only the groups its metric counts rows of: executions by provider are
    // all under "" (terminal agent events name no provider), API calls by event type all under
    // `provider.api_call` — no group of zeros for the providers or the agent events.
    for (q, want) in [
        ("metric=executions&group_by=provider", vec![""]),
        (
            "metric=api_calls&group_by=event_type",
            vec!["provider.api_call"],
        ),
    ] {
        let (s, series) = get(&env, &key, &format!("?{q}&interval=day{days}")).await;
        assert_eq!(s, 200, "{series}");
        let shown: std::collections::BTreeSet<&str> = series["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| p["group"].as_str().expect("group"))
            .collect();
        assert_eq!(shown.into_iter().collect::<Vec<_>>(), want, "{q}: {series}");
    }

    // Executions per hour over the default range (the last 30 days): one point per hour.
    let (s, series) = get(&env, &key, "?metric=executions&interval=hour").await;
    assert_eq!(s, 200, "{series}");
    let points = series["points"].as_array().expect("points");
    let hours = (at(&series["to"]) - at(&series["from"])).num_hours();
    assert_eq!(points.len() as i64, hours, "{}", series["from"]);
    let execs = raw(
        &env,
        &series,
        "hour",
        "''",
        "count(*) FILTER (WHERE outcome)",
    )
    .await;
    for p in points {
        assert_eq!(p["group"], Value::Null);
        let want = execs
            .get(&point_key(p))
            .and_then(Value::as_str)
            .map_or(0, |c| c.parse().expect("n"));
        assert_eq!(p["value"], json!(want), "{p}");
    }
    let total: i64 = points.iter().map(|p| p["value"].as_i64().expect("n")).sum();
    assert_eq!(total, 120);

    // Failures and p95 per day and task type.
    let (s, series) = get(
        &env,
        &key,
        &format!("?metric=failures&interval=day&group_by=task_type{days}"),
    )
    .await;
    assert_eq!(s, 200, "{series}");
    let fails = raw(
        &env,
        &series,
        "day",
        "coalesce(task_type, '')",
        "count(*) FILTER (WHERE outcome AND NOT success)",
    )
    .await;
    for p in series["points"].as_array().expect("points") {
        let want = fails
            .get(&point_key(p))
            .and_then(Value::as_str)
            .map_or(0, |c| c.parse().expect("n"));
        assert_eq!(p["value"], json!(want), "{p}");
    }
    let (s, series) = get(
        &env,
        &key,
        &format!("?metric=p95_duration_ms&interval=day&group_by=task_type{days}"),
    )
    .await;
    assert_eq!(s, 200, "{series}");
    let p95 = raw(
        &env,
        &series,
        "day",
        "coalesce(task_type, '')",
        "percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE outcome)",
    )
    .await;
    let mut compared = 0;
    for p in series["points"].as_array().expect("points") {
        match p95.get(&point_key(p)).and_then(Value::as_str) {
            None => assert_eq!(p["value"], Value::Null, "{p}"),
            Some(exact) => {
                let exact: f64 = exact.parse().expect("ms");
                let got = p["value"].as_f64().expect("p95");
                assert!((got - exact).abs() <= 0.01 * exact, "{p}: raw {exact}");
                compared += 1;
            }
        }
    }
    assert!(compared > 3, "{series}");

    // Tokens and API calls per month (daily rollups), widened to whole months.
    for (metric, select) in [
        // Prompt plus output: reasoning is part of output.
        ("tokens", "coalesce(sum(coalesce(input_tokens, 0) + coalesce(cached_input_tokens, 0) + coalesce(cache_write_tokens, 0) + coalesce(cache_write_1h_tokens, 0) + coalesce(output_tokens, 0)) FILTER (WHERE spend), 0)"),
        ("api_calls", "count(*) FILTER (WHERE event_type = 'provider.api_call')"),
    ] {
        let (s, series) = get(&env, &key, &format!("?metric={metric}&interval=month{days}")).await;
        assert_eq!(s, 200, "{series}");
        assert_eq!(series["interval"], "month");
        let want = raw(&env, &series, "month", "''", select).await;
        let points = series["points"].as_array().expect("points");
        assert!(!points.is_empty() && points.len() <= 2, "{series}");
        for p in points {
            let w = want.get(&point_key(p)).and_then(Value::as_str).map_or(0, |c| c.parse().expect("n"));
            assert_eq!(p["value"], json!(w), "{metric} {p}");
        }
    }

    // Bad parameters are named.
    for (q, name) in [
        ("?interval=day", "metric:"),
        ("?metric=cost", "metric:"),
        ("?metric=executions&interval=week", "interval:"),
        ("?metric=executions&group_by=agent", "group_by:"),
        (
            "?metric=executions&interval=hour&from=2026-01-01T00:00:00Z&to=2027-12-01T00:00:00Z",
            "from:",
        ),
        (
            "?metric=executions&interval=day&from=1900-01-01T00:00:00Z&to=2026-12-01T00:00:00Z",
            "interval:",
        ),
    ] {
        let (s, v) = get(&env, &key, q).await;
        assert_eq!(s, 422, "{q}: {v}");
        let m = v["error"]["message"].as_str().expect("message");
        assert!(m.starts_with(name), "{q}: {m}");
    }
    let (s, v) = get(&env, &key, "?metric=executions&tenant_id=globex").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("tenant_forbidden")),
        "{v}"
    );
    env.shutdown().await;
}

/// What each metric sums over the rows of `RAW` (docs/metrics.md).
const METRICS: [(&str, &str); 6] = [
    ("cost_usd", "sum(cost_usd) FILTER (WHERE spend)"),
    ("executions", "count(*) FILTER (WHERE outcome)"),
    (
        "failures",
        "count(*) FILTER (WHERE outcome AND NOT success)",
    ),
    (
        "api_calls",
        "count(*) FILTER (WHERE event_type = 'provider.api_call')",
    ),
    // Prompt plus output: reasoning is part of output.
    (
        "tokens",
        "coalesce(sum(coalesce(input_tokens, 0) + coalesce(cached_input_tokens, 0) \
         + coalesce(cache_write_tokens, 0) + coalesce(cache_write_1h_tokens, 0) \
         + coalesce(output_tokens, 0)) FILTER (WHERE spend), 0)",
    ),
    (
        "p95_duration_ms",
        "percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms) FILTER (WHERE outcome)",
    ),
];

/// The runs of `tenant_events` spread over three agents (by run number); the calls of every
/// fourth run name no agent (agent events must name one).
fn with_agents(events: Vec<Value>) -> Vec<Value> {
    events
        .into_iter()
        .map(|mut e| {
            let run: usize = e["correlation_id"]
                .as_str()
                .and_then(|c| c.rsplit('-').next())
                .and_then(|n| n.parse().ok())
                .expect("run number");
            e["agent_id"] = json!(["planner", "coder", "reviewer"][run % 4 % 3]);
            if run % 4 == 3 && e["event_type"] == "provider.api_call" {
                e.as_object_mut().expect("event").remove("agent_id");
            }
            e
        })
        .collect()
}

/// `metric` by agent per `interval` over `range` against plain SQL over the raw rows: one point
/// per bucket and agent with rows the metric counts in the range, each equal to its raw figure (p95 within 1%).
/// Returns the series.
async fn check_by_agent(env: &Env, key: &str, metric: &str, interval: &str, range: &str) -> Value {
    let (s, series) = get(
        env,
        key,
        &format!("?metric={metric}&interval={interval}&group_by=agent_id{range}"),
    )
    .await;
    assert_eq!(s, 200, "{series}");
    let select = METRICS
        .iter()
        .find(|(m, _)| *m == metric)
        .expect("metric")
        .1;
    let group = "coalesce(agent_id, '')";
    let want = raw(env, &series, interval, group, select).await;
    // The agents with rows the metric counts (the calls naming no agent, "", have no
    // executions).
    let counted = raw::counted_rows(metric);
    let groups: std::collections::BTreeSet<String> = env
        .db
        .query(
            &format!("SELECT DISTINCT {group} FROM ({RAW}) s WHERE {counted}"),
            &[&"acme", &at(&series["from"]), &at(&series["to"])],
        )
        .await
        .expect("groups")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(groups.len() >= 3, "{groups:?}");
    let points = series["points"].as_array().expect("points");
    let mut buckets = std::collections::BTreeSet::new();
    for p in points {
        buckets.insert(at(&p["t"]));
        let k = point_key(p);
        assert!(groups.contains(&k.1), "{metric}: {p}");
        let exact = want.get(&k).and_then(Value::as_str);
        match metric {
            "cost_usd" => {
                let w = exact.map_or(Decimal::ZERO, |c| c.parse().expect("decimal"));
                let got: Decimal = p["value"].as_str().expect("decimal").parse().expect("d");
                assert_eq!(got, w, "{metric} {interval}: {p}");
            }
            "p95_duration_ms" => match exact {
                None => assert_eq!(p["value"], Value::Null, "{p}"),
                Some(exact) => {
                    let exact: f64 = exact.parse().expect("ms");
                    let got = p["value"].as_f64().expect("p95");
                    assert!((got - exact).abs() <= 0.01 * exact, "{p}: raw {exact}");
                }
            },
            _ => {
                let w: i64 = exact.map_or(0, |c| c.parse().expect("n"));
                assert_eq!(p["value"], json!(w), "{metric} {interval}: {p}");
            }
        }
    }
    assert_eq!(
        points.len(),
        buckets.len() * groups.len(),
        "{metric} {interval}: every bucket has every agent"
    );
    if metric == "cost_usd" {
        let unpriced = raw(
            env,
            &series,
            interval,
            group,
            "count(*) FILTER (WHERE spend AND cost_status = 'unpriced')",
        )
        .await;
        for p in points {
            let n: i64 = unpriced
                .get(&point_key(p))
                .and_then(Value::as_str)
                .map_or(0, |c| c.parse().expect("n"));
            assert_eq!(p["unpriced_events"], json!(n), "{p}");
        }
    }
    series
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeseries_by_agent_equal_plain_sql_over_raw_events() {
    let mut env = Env::start().await;
    let now = Utc::now();
    let ingest = env.key(Some("acme"), &[Scope::Ingest]).await;
    let mut events = with_agents(tenant_events("acme", 11, 160, now));
    // Two runs by hand, an hour ago: an itemized one (a call of $0.5, its terminal event
    // repeating it with `calls`: counted once) and a summary-only one ($0.25).
    let hand = now - TimeDelta::hours(1);
    let ev = |agent: &str, fields: Value| {
        let mut e = json!({
            "id": uuid::Uuid::now_v7().to_string(), "tenant_id": "acme",
            "timestamp": ts(hand), "correlation_id": format!("hand-{agent}"),
            "agent_id": agent, "success": true,
        });
        for (k, v) in fields.as_object().expect("fields") {
            e[k] = v.clone();
        }
        e
    };
    events.push(ev(
        "solo-itemized",
        json!({"event_type": "provider.api_call", "provider": "openai", "model": "gpt-4o",
               "cost_usd": "0.5", "usage": {"input_tokens": 100, "output_tokens": 10}}),
    ));
    events.push(ev(
        "solo-itemized",
        json!({"event_type": "agent.completed", "cost_usd": "0.5", "duration_ms": 900,
               "metadata": {"calls": 1}, "usage": {"input_tokens": 100, "output_tokens": 10}}),
    ));
    events.push(ev(
        "solo-summary",
        json!({"event_type": "agent.completed", "cost_usd": "0.25", "duration_ms": 400,
               "usage": {"input_tokens": 7, "output_tokens": 3}}),
    ));
    // Newest first, so older events arrive late into hours and days already rolled up; then
    // the first batches again (a client's retries: nothing is counted twice).
    events.sort_by(|a, b| b["timestamp"].as_str().cmp(&a["timestamp"].as_str()));
    for chunk in events.chunks(90) {
        let (s, v) = env.post(&ingest, chunk).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["rejected"], json!([]), "{v}");
    }
    for chunk in events.chunks(90).take(2) {
        let (s, v) = env.post(&ingest, chunk).await;
        assert_eq!(s, 200, "{v}");
    }
    let stored = env
        .count("SELECT count(*) FROM events WHERE tenant_id = 'acme'")
        .await;
    assert_eq!(stored as usize, events.len());
    let key = env.key(Some("acme"), &[Scope::Read]).await;
    let today = now.duration_trunc(TimeDelta::days(1)).expect("day");
    let days = format!(
        "&from={}&to={}",
        ts(today - TimeDelta::days(4)),
        ts(today + TimeDelta::days(1))
    );

    // Every metric, per hour (hourly agent rollups), day and month (daily ones).
    for (metric, _) in METRICS {
        for interval in ["hour", "day", "month"] {
            check_by_agent(&env, &key, metric, interval, &days).await;
        }
    }

    // The hand-made runs: spend counted once for the itemized run, executions and calls as sent.
    let (s, series) = get(
        &env,
        &key,
        &format!("?metric=cost_usd&interval=month&group_by=agent_id{days}"),
    )
    .await;
    assert_eq!(s, 200, "{series}");
    let total = |series: &Value, agent: &str| -> Decimal {
        series["points"]
            .as_array()
            .expect("points")
            .iter()
            .filter(|p| p["group"] == agent)
            .map(|p| {
                p["value"].as_str().map_or_else(
                    || Decimal::from(p["value"].as_i64().expect("n")),
                    |v| v.parse().expect("decimal"),
                )
            })
            .sum()
    };
    assert_eq!(total(&series, "solo-itemized"), Decimal::new(5, 1));
    assert_eq!(total(&series, "solo-summary"), Decimal::new(25, 2));
    for (metric, itemized, summary) in [
        ("executions", 1, 1),
        ("api_calls", 1, 0),
        ("tokens", 110, 10),
    ] {
        let (_, series) = get(
            &env,
            &key,
            &format!("?metric={metric}&interval=month&group_by=agent_id{days}"),
        )
        .await;
        assert_eq!(
            total(&series, "solo-itemized"),
            Decimal::from(itemized),
            "{metric}"
        );
        assert_eq!(
            total(&series, "solo-summary"),
            Decimal::from(summary),
            "{metric}"
        );
    }

    // The agents add up to the ungrouped series (read from the usage rollups), bucket by bucket.
    for metric in ["cost_usd", "executions", "failures", "api_calls", "tokens"] {
        let q = format!("?metric={metric}&interval=day{days}");
        let (_, all) = get(&env, &key, &q).await;
        let (_, by_agent) = get(&env, &key, &format!("{q}&group_by=agent_id")).await;
        let mut sums: BTreeMap<DateTime<Utc>, Decimal> = BTreeMap::new();
        for p in by_agent["points"].as_array().expect("points") {
            let v = p["value"].as_str().map_or_else(
                || Decimal::from(p["value"].as_i64().expect("n")),
                |v| v.parse().expect("decimal"),
            );
            *sums.entry(at(&p["t"])).or_default() += v;
        }
        for p in all["points"].as_array().expect("points") {
            let v = p["value"].as_str().map_or_else(
                || Decimal::from(p["value"].as_i64().expect("n")),
                |v| v.parse().expect("decimal"),
            );
            assert_eq!(sums.get(&at(&p["t"])).copied(), Some(v), "{metric} {p}");
        }
    }

    // CSV: the same points, one row each.
    let series = check_by_agent(&env, &key, "cost_usd", "day", &days).await;
    let resp = env
        .http
        .get(format!(
            "{}/v1/metrics/timeseries?metric=cost_usd&interval=day&group_by=agent_id&format=csv{days}",
            env.base
        ))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    let text = resp.text().await.expect("csv");
    let mut lines = text.split("\r\n").filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("t,group,value,unpriced_events"));
    let rows: Vec<&str> = lines.collect();
    let points = series["points"].as_array().expect("points");
    assert_eq!(rows.len(), points.len(), "{text}");
    for (row, p) in rows.iter().zip(points) {
        let want = format!(
            "{},{},{},{}",
            p["t"].as_str().expect("t"),
            p["group"].as_str().expect("group"),
            p["value"].as_str().expect("value"),
            p["unpriced_events"]
        );
        assert_eq!(*row, want);
    }
    assert!(rows.iter().any(|r| r.contains(",planner,")), "{text}");
    env.shutdown().await;
}
