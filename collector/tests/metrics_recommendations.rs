//! `GET /v1/metrics/recommendations`: per task type, the cheapest provider/model whose success
//! rate is within the margin of the best eligible one (a minimum number of tasks each), with the
//! projected monthly saving of routing there; too little data gives a reason instead; with a
//! monthly budget configured, the month's projected spend is compared with it.

mod common;

use agenttally_collector::Scope;
use chrono::{DurationRound, TimeDelta, Utc};
use common::runs::ts;
use common::Env;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

async fn get(env: &Env, key: &str, query: &str) -> (u16, Value) {
    let resp = env
        .http
        .get(format!("{}/v1/metrics/recommendations{query}", env.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn call(provider: &str, model: &str, task: &str, cost: &str, success: bool) -> Value {
    json!({
        "id": Uuid::now_v7().to_string(), "tenant_id": "route",
        "event_type": "provider.api_call", "timestamp": ts(Utc::now()),
        "correlation_id": "r", "provider": provider, "model": model, "task_type": task,
        "cost_usd": cost, "usage": {"input_tokens": 100, "output_tokens": 10, "requests": 1},
        "success": success,
    })
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .expect("decimal string")
        .parse()
        .expect("decimal")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheapest_within_the_margin_and_the_budget_alert() {
    let mut env = Env::start_with(|c| c.monthly_budget_usd = Some(Decimal::ONE)).await;
    let key = env.key(Some("route"), &[Scope::Ingest, Scope::Read]).await;
    let mut events = Vec::new();
    // (provider, model, tasks, failures, cost each)
    for (p, m, n, failed, cost) in [
        ("openai", "gpt-4o", 30, 1, "0.05"),
        ("openai", "gpt-4o-mini", 30, 2, "0.01"),
        ("anthropic", "claude-haiku-4-5", 30, 10, "0.005"),
        ("google", "gemini-2.5-flash", 5, 0, "0.001"),
    ] {
        for i in 0..n {
            events.push(call(p, m, "bug_fix", cost, i >= failed));
        }
    }
    for _ in 0..3 {
        events.push(call("openai", "gpt-4o", "docs", "0.02", true));
    }
    let (s, body) = env.post(&key, &events).await;
    assert_eq!(s, 200, "{body}");

    // Ten whole days ending tomorrow: 30.4375 / 10 = 3.04375 such ranges per month.
    let tomorrow = (Utc::now() + TimeDelta::days(1))
        .duration_trunc(TimeDelta::days(1))
        .expect("day");
    let q = format!(
        "?from={}&to={}",
        ts(tomorrow - TimeDelta::days(10)),
        ts(tomorrow)
    );
    let (s, got) = get(&env, &key, &q).await;
    assert_eq!(s, 200, "{got}");
    assert_eq!(
        (&got["margin"], &got["min_tasks"]),
        (&json!("0.05"), &json!(20))
    );
    let types = got["by_task_type"].as_array().expect("types");
    let bug = types
        .iter()
        .find(|t| t["task_type"] == "bug_fix")
        .expect("bug_fix");
    assert_eq!(bug["tasks"], 95);
    // gpt-4o is best (29/30); mini (28/30) is within 5 points and cheapest among those; haiku
    // (20/30) is cheaper but too unreliable; gemini has too few tasks to judge.
    assert_eq!(bug["best_success_rate"], "0.9666666666666666666666666667");
    assert_eq!(bug["recommended"]["model"], "gpt-4o-mini", "{bug}");
    assert_eq!(bug["recommended"]["avg_cost_usd"], "0.01");
    let cands = bug["candidates"].as_array().expect("candidates");
    assert_eq!(
        cands
            .iter()
            .map(|c| c["model"].as_str().unwrap_or(""))
            .collect::<Vec<_>>(),
        [
            "gemini-2.5-flash",
            "claude-haiku-4-5",
            "gpt-4o-mini",
            "gpt-4o"
        ],
        "cheapest first"
    );
    assert_eq!(cands[0]["eligible"], false);
    // Current average: (1.5 + 0.3 + 0.15 + 0.005) / 95; saving (avg − 0.01) × 95 × 3.04375.
    let current = dec(&bug["current_avg_cost_usd"]);
    assert_eq!(
        current,
        (Decimal::new(1955, 3) / Decimal::from(95)).normalize()
    );
    assert_eq!(bug["projected_monthly_saving_usd"], "3.06");
    let docs = types
        .iter()
        .find(|t| t["task_type"] == "docs")
        .expect("docs");
    assert!(docs["recommended"].is_null());
    assert!(
        docs["reason"]
            .as_str()
            .is_some_and(|r| r.contains("20 tasks")),
        "{docs}"
    );
    assert_eq!(got["projected_monthly_saving_usd"], "3.06");

    // Budget 1 USD: 2.015 spent this month already, so the projection passes it.
    let b = &got["budget"];
    assert_eq!(b["monthly_budget_usd"], "1");
    assert_eq!(b["month_to_date_usd"], "2.015", "{b}");
    assert!(dec(&b["projected_usd"]) >= Decimal::new(2015, 3), "{b}");
    assert_eq!(b["alert"], true);

    // A wider margin takes haiku; min_tasks 5 lets gemini in (cheapest, never failed).
    let (_, wide) = get(&env, &key, &format!("{q}&margin=0.5")).await;
    let bug = &wide["by_task_type"][0];
    assert_eq!(bug["recommended"]["model"], "claude-haiku-4-5", "{wide}");
    let (_, small) = get(&env, &key, &format!("{q}&min_tasks=5")).await;
    assert_eq!(
        small["by_task_type"][0]["recommended"]["model"],
        "gemini-2.5-flash"
    );

    for (q, name) in [
        ("?margin=2", "margin:"),
        ("?margin=x", "margin:"),
        ("?min_tasks=0", "min_tasks:"),
    ] {
        let (s, e) = get(&env, &key, q).await;
        assert_eq!(s, 422, "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with(name)),
            "{q}: {e}"
        );
    }
    // CSV: one row per task type and candidate, the advice marked.
    let resp = env
        .http
        .get(format!(
            "{}/v1/metrics/recommendations{q}&format=csv",
            env.base
        ))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    let text = resp.text().await.expect("csv");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1 + 4 + 1, "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("bug_fix,openai,gpt-4o-mini,") && l.ends_with(",true,3.06")),
        "{text}"
    );
    env.shutdown().await;
}
