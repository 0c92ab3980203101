//! `GET /v1/metrics/savings`: the seed's savings example through the HTTP API gives exactly the
//! figures sdk-core's pricing reports; for two tenants with both instrumentation patterns, costs
//! reported, priced at ingest and unpriced, and a long-context call, the answer from the savings
//! rollups equals sdk-core's `PriceBook::savings` over the raw rows (gross, successful-only, by
//! provider, task type and month), on both baselines, over the hourly and the daily rollups; a
//! replayed batch changes nothing; a baseline the collector does not price is a 422 naming it.

mod common;

use std::collections::BTreeMap;
use std::str::FromStr;

use agenttally::pricing::{Baseline, PriceBook, SavingsSummary, ServiceTier, Task, Usage};
use agenttally_collector::Scope;
use chrono::{DateTime, Datelike, DurationRound, TimeDelta, Utc};
use common::runs::{tenant_events, ts};
use common::Env;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

const BASELINES: [&str; 2] = ["most_expensive", "openai_codex"];

async fn start() -> Env {
    Env::start_with(|c| {
        c.savings_baselines = BASELINES.iter().map(|b| b.to_string()).collect();
    })
    .await
}

async fn get(env: &Env, key: &str, query: &str) -> (u16, Value) {
    let resp = env
        .http
        .get(format!("{}/v1/metrics/savings{query}", env.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn text(d: Decimal) -> Value {
    json!(d.normalize().to_string())
}

fn opt(d: Option<Decimal>) -> Value {
    d.map_or(Value::Null, text)
}

/// sdk-core's figures in the API's field names.
fn figures(s: &SavingsSummary) -> Value {
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

/// The figures of one group of the API's answer (the total when `group` is `None`).
fn api_figures(got: &Value, group: Option<(&str, &str)>) -> Value {
    let src = match group {
        Some((by, key)) => &got[by][key],
        None => got,
    };
    let keys = figures(&SavingsSummary::default());
    let mut out = serde_json::Map::new();
    for k in keys.as_object().expect("object").keys() {
        out.insert(k.clone(), src[k].clone());
    }
    Value::Object(out)
}

/// The savings tasks of `tenant` in `[from, to)` read back from the raw rows: spend events
/// (provider calls, and terminal agent events that are not itemized), as sdk-core tasks whose
/// actual cost is the stored `cost_usd`.
async fn raw_tasks(
    env: &Env,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(Task, DateTime<Utc>)> {
    let rows = env
        .db
        .query(
            "SELECT provider, coalesce(model, ''), task_type, coalesce(service_tier, 'standard'),
                    ts, success, cost_usd,
                    coalesce(input_tokens, 0), coalesce(cached_input_tokens, 0),
                    coalesce(cache_write_tokens, 0), coalesce(cache_write_1h_tokens, 0),
                    coalesce(output_tokens, 0), coalesce(reasoning_tokens, 0),
                    coalesce(requests, 0)
             FROM events
             WHERE tenant_id = $1 AND ts >= $2 AND ts < $3
               AND (event_type = 'provider.api_call'
                    OR (event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
                        AND NOT coalesce(jsonb_typeof(metadata->'calls') = 'number'
                                         AND (metadata->>'calls')::numeric >= 1, false)))",
            &[&tenant, &from, &to],
        )
        .await
        .expect("raw tasks");
    rows.iter()
        .map(|r| {
            let n = |i: usize| r.get::<_, i64>(i) as u64;
            let at: DateTime<Utc> = r.get(4);
            let task = Task {
                provider: r.get(0),
                model: r.get(1),
                task_type: Some(r.get::<_, Option<String>>(2).unwrap_or_default()),
                usage: Usage {
                    input_tokens: n(7),
                    cached_input_tokens: n(8),
                    cache_write_tokens: n(9),
                    cache_write_1h_tokens: n(10),
                    output_tokens: n(11),
                    reasoning_tokens: n(12),
                    requests: n(13),
                },
                tier: ServiceTier::from_str(r.get::<_, &str>(3)).expect("tier"),
                at,
                success: r.get(5),
                actual_usd: r.get(6),
            };
            (task, at)
        })
        .collect()
}

/// The API's answer equals sdk-core's savings over the raw rows of the range it covered.
async fn check(env: &Env, book: &PriceBook, tenant: &str, baseline: &str, got: &Value) {
    let at = |f: &str| {
        DateTime::parse_from_rfc3339(got[f].as_str().expect("time"))
            .expect("rfc3339")
            .with_timezone(&Utc)
    };
    let tasks = raw_tasks(env, tenant, at("from"), at("to")).await;
    assert!(!tasks.is_empty(), "{tenant}: no tasks in range");
    let policy = match baseline {
        "most_expensive" => Baseline::MostExpensive,
        m => Baseline::Model(m.to_string()),
    };
    let all: Vec<Task> = tasks.iter().map(|(t, _)| t.clone()).collect();
    let want = book.savings(&all, &policy);
    assert_eq!(got["baseline"], baseline);
    assert_eq!(
        api_figures(got, None),
        figures(&want.total),
        "{tenant} {baseline} total"
    );
    for (p, s) in &want.by_provider {
        assert_eq!(
            api_figures(got, Some(("by_provider", p))),
            figures(s),
            "{tenant} {baseline} provider {p}"
        );
    }
    assert_eq!(
        got["by_provider"].as_object().expect("by_provider").len(),
        want.by_provider.len()
    );
    for (k, s) in &want.by_task_type {
        assert_eq!(
            api_figures(got, Some(("by_task_type", k))),
            figures(s),
            "{tenant} {baseline} task type {k}"
        );
    }
    let mut months: BTreeMap<String, Vec<Task>> = BTreeMap::new();
    for (t, at) in &tasks {
        months
            .entry(format!("{:04}-{:02}", at.year(), at.month()))
            .or_default()
            .push(t.clone());
    }
    assert_eq!(
        got["by_month"].as_object().expect("by_month").len(),
        months.len()
    );
    for (m, ts) in &months {
        assert_eq!(
            api_figures(got, Some(("by_month", m))),
            figures(&book.savings(ts, &policy).total),
            "{tenant} {baseline} month {m}"
        );
    }
}

/// The seed's example: three tasks on the seed's providers, compared with all of them on
/// `openai_codex` — actual 0.012 + 0.08 + 0.03, baseline 0.06 + 0.12 + 0.03.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_savings_example_through_the_api() {
    let mut env = start().await;
    let key = env.key(Some("seed"), &[Scope::Ingest, Scope::Read]).await;
    let now = Utc::now() - TimeDelta::minutes(5);
    let events: Vec<Value> = [
        ("github_copilot", 1000),
        ("google_code_assist", 2000),
        ("openai_codex", 500),
    ]
    .iter()
    .map(|(provider, n)| {
        json!({
            "id": Uuid::now_v7().to_string(), "tenant_id": "seed",
            "event_type": "agent.completed", "timestamp": ts(now),
            "correlation_id": format!("seed-{provider}"), "agent_id": "coder", "task_type": "code",
            "provider": provider, "model": provider,
            "usage": {"input_tokens": n, "requests": 1}, "success": true,
        })
    })
    .collect();
    let (s, body) = env.post(&key, &events).await;
    assert_eq!((s, &body["accepted"]), (200, &json!(3)), "{body}");

    let (s, got) = get(&env, &key, "?baseline=openai_codex").await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(got["actual_usd"], "0.122", "{got}");
    assert_eq!(got["baseline_usd"], "0.21");
    assert_eq!(got["savings_usd"], "0.088");
    assert_eq!(got["savings_percent"], "41.904761904761904761904761905");
    assert_eq!(
        got["cost_per_successful_task"],
        "0.0406666666666666666666666667"
    );
    assert_eq!(got["successful_savings_usd"], "0.088");
    assert_eq!(got["compared_tasks"], 3);
    assert_eq!(got["by_provider"]["github_copilot"]["savings_usd"], "0.048");
    assert_eq!(
        got["by_provider"]["google_code_assist"]["savings_usd"],
        "0.04"
    );
    assert_eq!(got["by_provider"]["openai_codex"]["savings_usd"], "0");
    assert_eq!(got["by_task_type"]["code"]["savings_usd"], "0.088");
    // The same as sdk-core over the stored rows, on both baselines.
    let book = PriceBook::builtin();
    check(&env, &book, "seed", "openai_codex", &got).await;
    let (s, dearest) = get(&env, &key, "").await;
    assert_eq!(s, 200, "{dearest}");
    check(&env, &book, "seed", "most_expensive", &dearest).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn savings_equal_sdk_core_over_raw_rows() {
    let mut env = start().await;
    let now = Utc::now();
    let mut all = Vec::new();
    for (tenant, seed) in [("acme", 7u64), ("globex", 11)] {
        let key = env.key(Some(tenant), &[Scope::Ingest, Scope::Read]).await;
        let mut events = tenant_events(tenant, seed, 60, now);
        // A long-context call (priced above the 200k threshold: non-linear in summed tokens),
        // a priority-tier call and a failed one.
        for (model, input, tier, success) in [
            ("claude-sonnet-4-5", 250_000, "standard", true),
            ("gpt-4o", 40_000, "priority", true),
            ("gpt-4o-mini", 3_000, "standard", false),
        ] {
            events.push(json!({
                "id": Uuid::now_v7().to_string(), "tenant_id": tenant,
                "event_type": "provider.api_call", "timestamp": ts(now - TimeDelta::hours(2)),
                "correlation_id": format!("{tenant}-long"), "task_type": "code",
                "provider": "direct", "model": model, "service_tier": tier,
                "usage": {"input_tokens": input, "output_tokens": 1_000, "requests": 1},
                "success": success,
            }));
        }
        for chunk in events.chunks(100) {
            let (s, body) = env.post(&key, chunk).await;
            assert_eq!(s, 200, "{body}");
            assert_eq!(body["accepted"], json!(chunk.len()), "{body}");
        }
        // A replay stores nothing twice: the savings do not change.
        let (s, body) = env.post(&key, &events[..50]).await;
        assert_eq!((s, &body["duplicates"]), (200, &json!(50)), "{body}");
        all.push((tenant, key));
    }
    assert!(
        env.count("SELECT count(*) FROM events WHERE baselines IS NOT NULL AND event_type = 'agent.started'")
            .await
            == 0,
        "a start is not a savings task"
    );
    assert!(
        env.count("SELECT count(*) FROM events WHERE event_type = 'provider.api_call' AND baselines ? 'openai_codex' AND baselines ? 'most_expensive'")
            .await
            > 0
    );

    let book = PriceBook::builtin();
    let day = |t: DateTime<Utc>| t.duration_trunc(TimeDelta::days(1)).expect("day");
    let daily = format!(
        "?from={}&to={}",
        ts(day(now) - TimeDelta::days(4)).replace('+', "%2B"),
        ts(day(now) + TimeDelta::days(1)).replace('+', "%2B")
    );
    for (tenant, key) in &all {
        for baseline in BASELINES {
            for range in ["", daily.as_str()] {
                let sep = if range.is_empty() { "?" } else { "&" };
                let (s, got) = get(&env, key, &format!("{range}{sep}baseline={baseline}")).await;
                assert_eq!(s, 200, "{got}");
                let want_grain = if range.is_empty() { "hour" } else { "day" };
                assert_eq!(got["granularity"], want_grain);
                check(&env, &book, tenant, baseline, &got).await;
            }
        }
    }

    // Bad parameters are named; a tenant key reads only its tenant.
    let key = &all[0].1;
    let (s, e) = get(&env, key, "?baseline=gpt-4o").await;
    assert_eq!(s, 422, "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("baseline:")),
        "{e}"
    );
    let (s, e) = get(&env, key, "?from=yesterday").await;
    assert_eq!(s, 422, "{e}");
    let (s, e) = get(&env, key, "?tenant_id=globex").await;
    assert_eq!(s, 403, "{e}");
    env.shutdown().await;
}
