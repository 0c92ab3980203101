//! `format=csv` on every metrics endpoint: a `text/csv` download carrying the same figures as
//! the JSON answer (same request, same range), tenant text that a spreadsheet would run as a
//! formula is defused, and an unknown format is a 422 naming `format`.

mod common;

use agenttally_collector::Scope;
use chrono::{TimeDelta, Utc};
use common::runs::{tenant_events, ts};
use common::Env;
use serde_json::{json, Value};
use uuid::Uuid;

async fn get(env: &Env, key: &str, path: &str) -> (u16, String, String) {
    let resp = env
        .http
        .get(format!("{}{path}", env.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, resp.text().await.expect("body"))
}

/// A minimal RFC 4180 reader (quoted cells, doubled quotes), enough for these answers.
fn parse(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        let mut row = Vec::new();
        let mut cell = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    cell.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => row.push(std::mem::take(&mut cell)),
                (c, _) => cell.push(c),
            }
        }
        row.push(cell);
        rows.push(row);
    }
    rows
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metrics_endpoint_answers_csv_with_the_json_figures() {
    let mut env = Env::start().await;
    let key = env.key(Some("acme"), &[Scope::Ingest, Scope::Read]).await;
    let mut events = tenant_events("acme", 3, 40, Utc::now());
    events.push(json!({
        "id": Uuid::now_v7().to_string(), "tenant_id": "acme",
        "event_type": "provider.api_call", "timestamp": ts(Utc::now() - TimeDelta::hours(1)),
        "correlation_id": "x", "provider": "openai", "model": "gpt-4o",
        "task_type": "=HYPERLINK(\"http://evil\",\"x\")",
        "usage": {"input_tokens": 10, "output_tokens": 5, "requests": 1}, "success": true,
    }));
    let (s, body) = env.post(&key, &events).await;
    assert_eq!(s, 200, "{body}");
    // One fixed range, so the JSON and CSV requests answer the same question.
    let to = ts(Utc::now() + TimeDelta::hours(1)).replace('+', "%2B");
    let from = ts(Utc::now() - TimeDelta::days(5)).replace('+', "%2B");
    let range = format!("from={from}&to={to}");

    let json_of = |text: &str| -> Value { serde_json::from_str(text).expect("json") };

    // Summary: field,value rows, nested maps flattened.
    let (_, _, j) = get(&env, &key, &format!("/v1/metrics/summary?{range}")).await;
    let (s, ct, c) = get(
        &env,
        &key,
        &format!("/v1/metrics/summary?{range}&format=csv"),
    )
    .await;
    assert_eq!((s, ct.as_str()), (200, "text/csv; charset=utf-8"), "{c}");
    let j = json_of(&j);
    let rows = parse(&c);
    assert_eq!(rows[0], ["field", "value"]);
    let field = |name: &str| -> String {
        rows.iter()
            .find(|r| r[0] == name)
            .map(|r| r[1].clone())
            .unwrap_or_else(|| panic!("{name} missing: {c}"))
    };
    for f in ["executions", "cost_usd", "unpriced_events", "api_calls"] {
        assert_eq!(field(f), cell(&j[f]), "{f}");
    }
    assert_eq!(
        field("tokens.input_tokens"),
        cell(&j["tokens"]["input_tokens"])
    );
    assert_eq!(
        field("api_calls_by_provider.openai"),
        cell(&j["api_calls_by_provider"]["openai"])
    );

    // Time series: one row per point.
    let q =
        format!("/v1/metrics/timeseries?metric=cost_usd&interval=hour&group_by=task_type&{range}");
    let (_, _, j) = get(&env, &key, &q).await;
    let (s, _, c) = get(&env, &key, &format!("{q}&format=csv")).await;
    assert_eq!(s, 200, "{c}");
    let j = json_of(&j);
    let rows = parse(&c);
    assert_eq!(rows[0], ["t", "group", "value", "unpriced_events"]);
    let points = j["points"].as_array().expect("points");
    assert_eq!(rows.len() - 1, points.len());
    for (r, p) in rows[1..].iter().zip(points) {
        assert_eq!(r[2], cell(&p["value"]));
        assert_eq!(r[3], cell(&p["unpriced_events"]));
        // The hostile group name is defused, everything else passes through.
        if cell(&p["group"]).starts_with('=') {
            assert_eq!(r[1], format!("'{}", cell(&p["group"])));
        } else {
            assert_eq!(r[1], cell(&p["group"]));
        }
    }
    assert!(c.contains("'=HYPERLINK"), "{c}");

    // Savings: the total and every group.
    let (_, _, j) = get(&env, &key, &format!("/v1/metrics/savings?{range}")).await;
    let (s, _, c) = get(
        &env,
        &key,
        &format!("/v1/metrics/savings?{range}&format=csv"),
    )
    .await;
    assert_eq!(s, 200, "{c}");
    let j = json_of(&j);
    let rows = parse(&c);
    assert_eq!(rows[0][..4], ["scope", "key", "tasks", "successful_tasks"]);
    let col = |name: &str| rows[0].iter().position(|h| h == name).expect(name);
    assert_eq!(rows[1][0], "total");
    assert_eq!(rows[1][col("savings_usd")], cell(&j["savings_usd"]));
    let groups: usize = ["by_provider", "by_task_type", "by_month"]
        .iter()
        .map(|g| j[g].as_object().expect("map").len())
        .sum();
    assert_eq!(rows.len(), 2 + groups);
    for r in &rows[2..] {
        let map = match r[0].as_str() {
            "provider" => "by_provider",
            "task_type" => "by_task_type",
            "month" => "by_month",
            other => panic!("scope {other}"),
        };
        let key = r[1].strip_prefix('\'').unwrap_or(&r[1]);
        assert_eq!(
            r[col("actual_usd")],
            cell(&j[map][key]["actual_usd"]),
            "{r:?}"
        );
    }

    // Peaks: 24 hours, 7 days and the top hours.
    let (_, _, j) = get(&env, &key, &format!("/v1/metrics/peaks?{range}")).await;
    let (s, _, c) = get(&env, &key, &format!("/v1/metrics/peaks?{range}&format=csv")).await;
    assert_eq!(s, 200, "{c}");
    let j = json_of(&j);
    let rows = parse(&c);
    let top = j["top_hours"].as_array().expect("top").len();
    assert_eq!(rows.len(), 1 + 24 + 7 + top);
    assert_eq!(rows[1][..2], ["hour_of_day", "0"]);
    assert_eq!(rows[1][2], cell(&j["by_hour_of_day"][0]["executions"]));
    assert_eq!(rows[25][..2], ["day_of_week", "monday"]);

    let (s, _, e) = get(&env, &key, "/v1/metrics/summary?format=xml").await;
    assert_eq!(s, 422, "{e}");
    assert!(e.contains("format: must be one of json, csv"), "{e}");
    env.shutdown().await;
}
