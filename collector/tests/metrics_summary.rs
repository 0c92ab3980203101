//! `GET /v1/metrics/summary` against plain SQL over the raw `events` rows: for two tenants with
//! both instrumentation patterns (itemized runs, whose terminal event repeats the calls' cost,
//! and summary-only runs), costs priced at ingest, reported and unpriced, the answer from the
//! rollups equals the raw figures exactly (counts, spend, tokens), p95 within 1%; over the
//! hourly rollups (default and unaligned ranges) and the daily ones (day-aligned ranges). A
//! tenant key cannot read another tenant, bad parameters are 422 naming them.

mod common;

use std::collections::BTreeMap;

use agenttally_collector::Scope;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use common::runs::{tenant_events, ts};
use common::Env;
use rust_decimal::Decimal;
use serde_json::{json, Value};

/// The summary figures by plain SQL over the raw rows of `tenant` in `[from, to)`.
async fn raw_summary(env: &Env, tenant: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Value {
    let r = env
        .db
        .query_one(
            "WITH e AS (
               SELECT *, event_type IN ('agent.completed', 'agent.failed', 'agent.timeout') AS outcome,
                      coalesce(event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
                               AND jsonb_typeof(metadata->'calls') = 'number'
                               AND (metadata->>'calls')::numeric >= 1, false) AS itemized
               FROM events WHERE tenant_id = $1 AND ts >= $2 AND ts < $3),
             s AS (SELECT *, event_type = 'provider.api_call' OR (outcome AND NOT itemized) AS spend
                   FROM e)
             SELECT count(*) FILTER (WHERE outcome),
                    count(*) FILTER (WHERE outcome AND success),
                    coalesce(sum(cost_usd) FILTER (WHERE spend), 0),
                    count(*) FILTER (WHERE spend AND cost_status = 'unpriced'),
                    count(*) FILTER (WHERE event_type = 'provider.api_call'),
                    coalesce(sum(input_tokens) FILTER (WHERE spend), 0)::bigint,
                    coalesce(sum(output_tokens) FILTER (WHERE spend), 0)::bigint,
                    (avg(duration_ms) FILTER (WHERE outcome))::float8,
                    percentile_disc(0.95) WITHIN GROUP (ORDER BY duration_ms)
                      FILTER (WHERE outcome),
                    percentile_disc(0.95) WITHIN GROUP (ORDER BY queue_ms)
                      FILTER (WHERE outcome),
                    coalesce(sum(cost_usd), 0)
             FROM s",
            &[&tenant, &from, &to],
        )
        .await
        .expect("raw summary");
    let by_provider: BTreeMap<String, i64> = env
        .db
        .query(
            "SELECT coalesce(provider, ''), count(*) FROM events
             WHERE tenant_id = $1 AND ts >= $2 AND ts < $3 AND event_type = 'provider.api_call'
             GROUP BY 1",
            &[&tenant, &from, &to],
        )
        .await
        .expect("by provider")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    // Spend by provider: cost and unpriced count of spend events, by provider ("" for none).
    let spend_by_provider: BTreeMap<String, Value> = env
        .db
        .query(
            "SELECT coalesce(provider, ''), coalesce(sum(cost_usd), 0),
                    count(*) FILTER (WHERE cost_status = 'unpriced')
             FROM events
             WHERE tenant_id = $1 AND ts >= $2 AND ts < $3
               AND (event_type = 'provider.api_call'
                    OR (event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
                        AND NOT coalesce(jsonb_typeof(metadata->'calls') = 'number'
                                         AND (metadata->>'calls')::numeric >= 1, false)))
             GROUP BY 1",
            &[&tenant, &from, &to],
        )
        .await
        .expect("spend by provider")
        .iter()
        .map(|r| {
            let c: Decimal = r.get(1);
            (
                r.get(0),
                json!({"cost_usd": c.normalize().to_string(), "unpriced_events": r.get::<_, i64>(2)}),
            )
        })
        .collect();
    let cost: Decimal = r.get(2);
    let all_cost: Decimal = r.get(10);
    json!({
        "executions": r.get::<_, i64>(0),
        "successes": r.get::<_, i64>(1),
        "cost_usd": cost.normalize().to_string(),
        "unpriced_events": r.get::<_, i64>(3),
        "api_calls": r.get::<_, i64>(4),
        "input_tokens": r.get::<_, i64>(5),
        "output_tokens": r.get::<_, i64>(6),
        "avg_duration_ms": r.get::<_, Option<f64>>(7),
        "p95_duration_ms": r.get::<_, Option<i64>>(8),
        "p95_queue_ms": r.get::<_, Option<i64>>(9),
        "all_cost_usd": all_cost.normalize().to_string(),
        "api_calls_by_provider": by_provider,
        "spend_by_provider": spend_by_provider,
    })
}

async fn get(env: &Env, key: &str, query: &str) -> (u16, Value) {
    let resp = env
        .http
        .get(format!("{}/v1/metrics/summary{query}", env.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn at(v: &Value, field: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v[field].as_str().expect("time"))
        .expect("rfc3339")
        .with_timezone(&Utc)
}

fn within_one_percent(api: &Value, exact: &Value) {
    let (a, e) = (
        api.as_f64().expect("api value"),
        exact.as_f64().expect("raw value"),
    );
    assert!((a - e).abs() <= 0.01 * e, "api {a} raw {e}");
}

/// The answer equals the raw figures over the range it says it covered.
async fn check(env: &Env, tenant: &str, got: &Value) -> Value {
    assert_eq!(got["tenant_id"], tenant, "{got}");
    let raw = raw_summary(env, tenant, at(got, "from"), at(got, "to")).await;
    for f in [
        "executions",
        "successes",
        "cost_usd",
        "unpriced_events",
        "api_calls",
    ] {
        assert_eq!(got[f], raw[f], "{tenant} {f}: {got} vs {raw}");
    }
    let (n, ok) = (
        raw["executions"].as_i64().expect("n"),
        raw["successes"].as_i64().expect("ok"),
    );
    assert_eq!(got["failures"], json!(n - ok));
    let by_type = got["executions_by_type"].as_object().expect("by type");
    for t in ["agent.completed", "agent.failed", "agent.timeout"] {
        let raw_n = env
            .db
            .query_one(
                "SELECT count(*) FROM events WHERE tenant_id = $1 AND event_type = $2
                   AND ts >= $3 AND ts < $4",
                &[&tenant, &t, &at(got, "from"), &at(got, "to")],
            )
            .await
            .expect("count")
            .get::<_, i64>(0);
        assert_eq!(by_type[t], json!(raw_n), "{t}");
    }
    let rate = got["success_rate"].as_f64().expect("rate");
    assert!((rate - ok as f64 / n as f64).abs() < 1e-12, "{rate}");
    assert_eq!(got["tokens"]["input_tokens"], raw["input_tokens"]);
    assert_eq!(got["tokens"]["output_tokens"], raw["output_tokens"]);
    assert_eq!(got["api_calls_by_provider"], raw["api_calls_by_provider"]);
    let spend = got["spend_by_provider"]
        .as_object()
        .expect("spend_by_provider");
    let raw_spend = raw["spend_by_provider"].as_object().expect("raw spend");
    assert_eq!(spend.len(), raw_spend.len(), "{got}");
    for (p, want) in raw_spend {
        assert_eq!(spend[p]["cost_usd"], want["cost_usd"], "{p}");
        assert_eq!(spend[p]["unpriced_events"], want["unpriced_events"], "{p}");
    }
    let avg = got["avg_duration_ms"].as_f64().expect("avg");
    let raw_avg = raw["avg_duration_ms"].as_f64().expect("raw avg");
    assert!((avg - raw_avg).abs() <= 1e-9 * raw_avg, "{avg} {raw_avg}");
    within_one_percent(&got["p95_duration_ms"], &raw["p95_duration_ms"]);
    within_one_percent(&got["p95_queue_ms"], &raw["p95_queue_ms"]);
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_equals_plain_sql_over_raw_events() {
    let mut env = Env::start().await;
    let now = Utc::now();
    let ingest = env.key(None, &[Scope::Ingest]).await;
    for (tenant, seed) in [("acme", 7), ("globex", 11)] {
        let events = tenant_events(tenant, seed, 150, now);
        for chunk in events.chunks(500) {
            let (s, v) = env.post(&ingest, chunk).await;
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["rejected"], json!([]), "{v}");
        }
    }
    let acme = env.key(Some("acme"), &[Scope::Read]).await;
    let platform = env.key(None, &[Scope::Read]).await;

    // Default range (the last 30 days), tenant key: hourly rollups.
    let (s, got) = get(&env, &acme, "").await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["granularity"], "hour");
    let raw = check(&env, "acme", &got).await;
    // The data exercises every rule: unpriced calls, and itemized runs whose cost is left out.
    assert!(raw["unpriced_events"].as_i64().expect("n") > 0, "{raw}");
    assert_ne!(raw["cost_usd"], raw["all_cost_usd"], "{raw}");
    assert!(got["executions"].as_i64().expect("n") == 150, "{got}");

    // An unaligned range, platform key: widened to whole hours.
    let from = now - TimeDelta::hours(47) + TimeDelta::minutes(17);
    let to = now - TimeDelta::hours(3) + TimeDelta::minutes(5);
    let q = format!(
        "?tenant_id=globex&from={}&to={}",
        ts(from).replace('+', "%2B"),
        ts(to).replace('+', "%2B")
    );
    let (s, got) = get(&env, &platform, &q).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["granularity"], "hour");
    assert_eq!(
        at(&got, "from"),
        from.duration_trunc(TimeDelta::hours(1)).expect("trunc")
    );
    let raw = check(&env, "globex", &got).await;
    assert!(raw["executions"].as_i64().expect("n") > 0, "{raw}");

    // Whole UTC days: daily rollups.
    let today = now.duration_trunc(TimeDelta::days(1)).expect("day");
    let q = format!(
        "?from={}&to={}",
        ts(today - TimeDelta::days(4)),
        ts(today + TimeDelta::days(1))
    );
    for (key, tenant) in [(&acme, "acme"), (&platform, "globex")] {
        let q = if tenant == "globex" {
            format!("{q}&tenant_id=globex")
        } else {
            q.clone()
        };
        let (s, got) = get(&env, key, &q).await;
        assert_eq!(s, 200, "{got}");
        assert_eq!(got["granularity"], "day");
        check(&env, tenant, &got).await;
        assert_eq!(got["executions"], 150);
    }

    // Another tenant's data, the wrong scope, bad parameters.
    let (s, v) = get(&env, &acme, "?tenant_id=globex").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("tenant_forbidden")),
        "{v}"
    );
    let (s, v) = get(&env, &ingest, "?tenant_id=acme").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{v}"
    );
    let (s, v) = get(&env, &platform, "").await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("m")
            .starts_with("tenant_id:"),
        "{v}"
    );
    for (q, name) in [
        ("?from=yesterday", "from:"),
        ("?to=2026-02-30T00:00:00Z", "to:"),
        ("?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z", "to:"),
        ("?form=2026-11-02T00:00:00Z", "form:"),
    ] {
        let (s, v) = get(&env, &acme, q).await;
        assert_eq!(s, 422, "{q}: {v}");
        let m = v["error"]["message"].as_str().expect("message");
        assert!(m.starts_with(name), "{q}: {m}");
    }
    env.shutdown().await;
}
