//! `GET /v1/metrics/peaks` against plain SQL over the raw `events` rows: activity by UTC hour of
//! day, by day of week and the top hours of the range equal the raw figures exactly, for every
//! ranking metric; bad parameters are 422 naming them. The hour totals the answers are read
//! from, rebuilt from the hourly usage rollup by migration 0010's backfill, equal those ingest
//! wrote.

mod common;

use std::collections::BTreeMap;

use agenttally_collector::Scope;
use chrono::{DateTime, Datelike, Timelike, Utc};
use common::runs::tenant_events;
use common::Env;
use rust_decimal::Decimal;
use serde_json::{json, Value};

async fn get(env: &Env, key: &str, query: &str) -> (u16, Value) {
    let resp = env
        .http
        .get(format!("{}/v1/metrics/peaks{query}", env.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// Per raw hour: executions, failures, api_calls, cost, unpriced, tokens — by plain SQL.
async fn raw_hours(
    env: &Env,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, Value)> {
    let rows = env
        .db
        .query(
            "WITH e AS (
               SELECT *, event_type IN ('agent.completed', 'agent.failed', 'agent.timeout') AS outcome,
                      coalesce(event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
                               AND jsonb_typeof(metadata->'calls') = 'number'
                               AND (metadata->>'calls')::numeric >= 1, false) AS itemized
               FROM events WHERE tenant_id = $1 AND ts >= $2 AND ts < $3),
             s AS (SELECT *, event_type = 'provider.api_call' OR (outcome AND NOT itemized) AS spend
                   FROM e)
             SELECT date_trunc('hour', ts, 'UTC'),
                    count(*) FILTER (WHERE outcome),
                    count(*) FILTER (WHERE outcome AND NOT success),
                    count(*) FILTER (WHERE event_type = 'provider.api_call'),
                    coalesce(sum(cost_usd) FILTER (WHERE spend), 0),
                    count(*) FILTER (WHERE spend AND cost_status = 'unpriced'),
                    coalesce(sum(coalesce(input_tokens, 0) + coalesce(cached_input_tokens, 0)
                                 + coalesce(cache_write_tokens, 0)
                                 + coalesce(cache_write_1h_tokens, 0)
                                 + coalesce(output_tokens, 0)) FILTER (WHERE spend), 0)::bigint
             FROM s GROUP BY 1 ORDER BY 1",
            &[&tenant, &from, &to],
        )
        .await
        .expect("raw hours");
    rows.iter()
        .map(|r| {
            let cost: Decimal = r.get(4);
            (
                r.get(0),
                json!({
                    "executions": r.get::<_, i64>(1),
                    "failures": r.get::<_, i64>(2),
                    "api_calls": r.get::<_, i64>(3),
                    "cost_usd": cost.normalize().to_string(),
                    "unpriced_events": r.get::<_, i64>(5),
                    "tokens": r.get::<_, i64>(6),
                }),
            )
        })
        .collect()
}

fn add(acc: &mut Value, v: &Value) {
    for k in [
        "executions",
        "failures",
        "api_calls",
        "unpriced_events",
        "tokens",
    ] {
        acc[k] = json!(acc[k].as_i64().unwrap_or(0) + v[k].as_i64().expect("count"));
    }
    let dec = |v: &Value| -> Decimal { v.as_str().unwrap_or("0").parse().expect("decimal") };
    acc["cost_usd"] = json!((dec(&acc["cost_usd"]) + dec(&v["cost_usd"]))
        .normalize()
        .to_string());
}

fn activity(v: &Value) -> Value {
    json!({
        "executions": v["executions"], "failures": v["failures"], "api_calls": v["api_calls"],
        "cost_usd": v["cost_usd"], "unpriced_events": v["unpriced_events"], "tokens": v["tokens"],
    })
}

/// Migration 0010 fills `rollup_tenant_hourly` from `rollup_hourly` for the hours stored before
/// it: run on what ingest stored, it gives the rows ingest wrote.
async fn backfill_equals_ingest(env: &Env) {
    const MIGRATION: &str = include_str!("../src/store/migrations/0010_rollup_tenant_hourly.sql");
    let backfill = &MIGRATION[MIGRATION
        .find("INSERT INTO rollup_tenant_hourly")
        .expect("the backfill statement")..];
    let dump = || async {
        env.db
            .query(
                "SELECT tenant_id || ' ' || bucket || ' ' || executions || ' ' || failures || ' ' \
                   || api_calls || ' ' || trim_scale(cost_usd) || ' ' || unpriced_events || ' ' \
                   || tokens FROM rollup_tenant_hourly ORDER BY tenant_id, bucket",
                &[],
            )
            .await
            .expect("hour totals")
            .iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
    };
    let written = dump().await;
    assert!(written.len() > 10, "{written:?}");
    env.db
        .batch_execute(&format!("TRUNCATE rollup_tenant_hourly; {backfill}"))
        .await
        .expect("backfill");
    assert_eq!(dump().await, written);
}

fn rank(v: &Value, metric: &str) -> Decimal {
    match &v[metric] {
        Value::String(s) => s.parse().expect("decimal"),
        n => Decimal::from(n.as_i64().expect("count")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peaks_equal_plain_sql_over_raw_events() {
    let mut env = Env::start().await;
    let key = env.key(Some("acme"), &[Scope::Ingest, Scope::Read]).await;
    let events = tenant_events("acme", 5, 150, Utc::now());
    for chunk in events.chunks(200) {
        let (s, body) = env.post(&key, chunk).await;
        assert_eq!(s, 200, "{body}");
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
    for metric in ["executions", "failures", "api_calls", "cost_usd", "tokens"] {
        let (s, got) = get(&env, &key, &format!("?metric={metric}&limit=5")).await;
        assert_eq!(s, 200, "{got}");
        assert_eq!(got["metric"], metric);
        let at = |f: &str| {
            DateTime::parse_from_rfc3339(got[f].as_str().expect("time"))
                .expect("rfc3339")
                .with_timezone(&Utc)
        };
        let hours = raw_hours(&env, "acme", at("from"), at("to")).await;
        assert!(hours.len() > 10, "data spread over hours");
        let zero = json!({"executions": 0, "failures": 0, "api_calls": 0, "cost_usd": "0",
                          "unpriced_events": 0, "tokens": 0});
        let mut by_hour: BTreeMap<u32, Value> = (0..24).map(|h| (h, zero.clone())).collect();
        let mut by_day: BTreeMap<u32, Value> = (0..7).map(|d| (d, zero.clone())).collect();
        for (t, v) in &hours {
            add(by_hour.get_mut(&t.hour()).expect("hour"), v);
            add(
                by_day
                    .get_mut(&t.weekday().num_days_from_monday())
                    .expect("day"),
                v,
            );
        }
        let got_hours = got["by_hour_of_day"].as_array().expect("hours");
        assert_eq!(got_hours.len(), 24);
        for (h, want) in &by_hour {
            assert_eq!(got_hours[*h as usize]["hour"], json!(h));
            assert_eq!(activity(&got_hours[*h as usize]), *want, "hour {h}");
        }
        let got_days = got["by_day_of_week"].as_array().expect("days");
        for (d, want) in &by_day {
            assert_eq!(got_days[*d as usize]["day"], DAYS[*d as usize]);
            assert_eq!(activity(&got_days[*d as usize]), *want, "day {d}");
        }
        // Busiest: ranked by the metric, ties to the earlier slot, only slots with activity.
        let top = |m: &BTreeMap<u32, Value>| -> Vec<u32> {
            let mut v: Vec<(u32, Decimal)> = m
                .iter()
                .map(|(k, a)| (*k, rank(a, metric)))
                .filter(|(_, r)| *r > Decimal::ZERO)
                .collect();
            v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            v.into_iter().take(3).map(|(k, _)| k).collect()
        };
        assert_eq!(
            got["busiest_hours_of_day"],
            json!(top(&by_hour)),
            "{metric}"
        );
        let days: Vec<&str> = top(&by_day).iter().map(|d| DAYS[*d as usize]).collect();
        assert_eq!(got["busiest_days_of_week"], json!(days), "{metric}");
        let mut ranked: Vec<&(DateTime<Utc>, Value)> = hours
            .iter()
            .filter(|(_, v)| rank(v, metric) > Decimal::ZERO)
            .collect();
        ranked.sort_by(|a, b| {
            rank(&b.1, metric)
                .cmp(&rank(&a.1, metric))
                .then(a.0.cmp(&b.0))
        });
        let want_top: Vec<Value> = ranked
            .iter()
            .take(5)
            .map(|(t, v)| {
                let mut o = activity(v);
                o["t"] = json!(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                o
            })
            .collect();
        assert_eq!(got["top_hours"], json!(want_top), "{metric}");
    }
    backfill_equals_ingest(&env).await;
    for (q, name) in [
        ("?metric=p99", "metric:"),
        ("?limit=0", "limit:"),
        ("?limit=101", "limit:"),
        ("?from=2020-01-01T00:00:00Z", "from:"),
        ("?bucket=hour", "bucket:"),
    ] {
        let (s, e) = get(&env, &key, q).await;
        assert_eq!(s, 422, "{q}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(name)),
            "{q}: {e}"
        );
    }
    env.shutdown().await;
}
