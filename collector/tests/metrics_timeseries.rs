//! `GET /v1/metrics/timeseries` against plain SQL over the raw `events` rows: per hour, day and
//! month, grouped or not, every point equals the raw figure of its bucket and group (exact for
//! counts, spend and tokens; p95 within 1%), and empty buckets are present as zero.

mod common;

use std::collections::BTreeMap;

use agenttally_collector::Scope;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use common::runs::{tenant_events, ts};
use common::Env;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// Which raw rows a metric sums (docs/metrics.md).
const RAW: &str = "WITH e AS (
    SELECT *, event_type IN ('agent.completed', 'agent.failed', 'agent.timeout') AS outcome,
           coalesce(event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
                    AND jsonb_typeof(metadata->'calls') = 'number'
                    AND (metadata->>'calls')::numeric >= 1, false) AS itemized
    FROM events WHERE tenant_id = $1 AND ts >= $2 AND ts < $3)
  SELECT *, event_type = 'provider.api_call' OR (outcome AND NOT itemized) AS spend FROM e";

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
    let groups: std::collections::BTreeSet<String> = cost.keys().map(|(_, g)| g.clone()).collect();
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
        ("?metric=executions&group_by=agent_id", "group_by:"),
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
