//! Billing: `GET /v1/billing/usage` against configured tiers (limits, percent used, projection
//! and overage, history, recommended tier), the tier taken from the latest subscription event,
//! and the tier-limit watcher recording `billing.tier_limit_warning` / `_exceeded` exactly once
//! per tenant, limit and period while two collectors ingest into one database.

mod common;

use std::time::{Duration, Instant};

use agenttally_collector::{Scope, Server, ServerConfig};
use chrono::{TimeDelta, Utc};
use common::runs::ts;
use common::Env;
use serde_json::{json, Value};
use uuid::Uuid;

const TIERS: &str = r#"{
  "default_tier": "small",
  "tiers": [
    {"name": "small", "monthly_price_usd": "10",
     "limits": {"executions": 10, "tokens": 100000, "cost_usd": "1"},
     "overage": {"per_execution_usd": "0.5", "per_1k_tokens_usd": "0.01", "per_cost_usd": "0.2"}},
    {"name": "big", "monthly_price_usd": "100",
     "limits": {"executions": 1000, "tokens": 10000000, "cost_usd": "500"}}
  ]
}"#;

fn tiers_file() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("agenttally-tiers-{}", Uuid::now_v7()));
    std::fs::create_dir_all(&dir).expect("dir");
    let p = dir.join("tiers.json");
    std::fs::write(&p, TIERS).expect("write");
    p
}

fn run(tenant: &str, cost: &str) -> Value {
    json!({
        "id": Uuid::now_v7().to_string(), "tenant_id": tenant, "event_type": "agent.completed",
        "timestamp": ts(Utc::now()), "correlation_id": Uuid::now_v7().to_string(),
        "agent_id": "a", "task_type": "code", "cost_usd": cost,
        "usage": {"input_tokens": 900, "output_tokens": 100}, "success": true,
    })
}

async fn usage(env: &Env, key: &str) -> Value {
    let resp = env
        .http
        .get(format!("{}/v1/billing/usage", env.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.expect("json")
}

fn metric<'a>(u: &'a Value, name: &str) -> &'a Value {
    u["usage"]
        .as_array()
        .expect("usage")
        .iter()
        .find(|m| m["metric"] == name)
        .expect("metric")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_against_the_tier_and_the_tier_from_subscriptions() {
    let file = tiers_file();
    let mut env = Env::start_with(|c| c.tiers_file = Some(file.clone())).await;
    let key = env.key(Some("acme"), &[Scope::Ingest, Scope::Read]).await;
    let events: Vec<Value> = (0..12).map(|_| run("acme", "0.1")).collect();
    let (s, body) = env.post(&key, &events).await;
    assert_eq!(s, 200, "{body}");

    let u = usage(&env, &key).await;
    assert_eq!(
        (&u["tier"], &u["tier_source"]),
        (&json!("small"), &json!("default"))
    );
    let now = Utc::now();
    assert_eq!(u["period"], now.format("%Y-%m").to_string());
    let ex = metric(&u, "executions");
    assert_eq!(
        (&ex["used"], &ex["limit"], &ex["percent_used"]),
        (&json!("12"), &json!("10"), &json!("120"))
    );
    let cost = metric(&u, "cost_usd");
    assert_eq!(
        (&cost["used"], &cost["percent_used"]),
        (&json!("1.2"), &json!("120"))
    );
    let tokens = metric(&u, "tokens");
    assert_eq!(
        (&tokens["used"], &tokens["percent_used"]),
        (&json!("12000"), &json!("12"))
    );
    // The projection extends the period's pace: at least what was used; overage at the rates.
    let projected: i64 = ex["projected"].as_str().expect("s").parse().expect("n");
    assert!(projected >= 12, "{ex}");
    let overage: rust_decimal::Decimal = ex["projected_overage_usd"]
        .as_str()
        .expect("s")
        .parse()
        .expect("d");
    assert_eq!(
        overage,
        rust_decimal::Decimal::from(projected - 10) * rust_decimal::Decimal::new(5, 1)
    );
    assert!(u["history"].as_array().expect("history").is_empty());
    assert_eq!(u["tier_costs"].as_array().expect("tiers").len(), 2);
    assert!(u["recommended_tier"]["name"].is_string());

    // An upgrade event puts the tenant on `big`; an older subscription event does not undo it.
    let upgrade = json!({
        "id": Uuid::now_v7().to_string(), "tenant_id": "acme",
        "event_type": "billing.subscription_upgraded", "timestamp": ts(Utc::now()),
        "correlation_id": "sub", "metadata": {"from_tier": "small", "tier": "big"}, "success": true,
    });
    let older = json!({
        "id": Uuid::now_v7().to_string(), "tenant_id": "acme",
        "event_type": "billing.subscription_created", "timestamp": ts(Utc::now() - TimeDelta::days(2)),
        "correlation_id": "sub", "metadata": {"tier": "small"}, "success": true,
    });
    let (s, body) = env.post(&key, &[upgrade]).await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = env.post(&key, &[older]).await;
    assert_eq!(s, 200, "{body}");
    let u = usage(&env, &key).await;
    assert_eq!(
        (&u["tier"], &u["tier_source"]),
        (&json!("big"), &json!("event"))
    );
    assert_eq!(metric(&u, "executions")["percent_used"], "1.2");
    assert_eq!(u["monthly_price_usd"], "100");

    // An admin's setting (later than the event) wins; an unknown tier is refused by name.
    let url = env.pg.database_url();
    agenttally_collector::set_tier(&url, "acme", "small", Some(&file))
        .await
        .expect("set tier");
    let u = usage(&env, &key).await;
    assert_eq!(
        (&u["tier"], &u["tier_source"]),
        (&json!("small"), &json!("admin"))
    );
    let e = agenttally_collector::set_tier(&url, "acme", "gold", Some(&file))
        .await
        .expect_err("unknown tier");
    assert!(
        e.to_string()
            .contains("tier: `gold` is not one of small, big"),
        "{e}"
    );
    agenttally_collector::set_tier(&url, "acme", "big", Some(&file))
        .await
        .expect("set tier");

    // CSV too.
    let resp = env
        .http
        .get(format!("{}/v1/billing/usage?format=csv", env.base))
        .header("authorization", format!("Bearer {key}"))
        .send()
        .await
        .expect("GET");
    let text = resp.text().await.expect("csv");
    assert!(text.starts_with("field,value\r\n"), "{text}");
    assert!(text.contains("\r\ntier,big\r\n"), "{text}");
    env.shutdown().await;
}

async fn limit_events(env: &Env) -> Vec<(String, String)> {
    env.db
        .query(
            "SELECT event_type, metadata->>'metric' FROM events
             WHERE tenant_id = 'acme' AND event_type LIKE 'billing.tier_limit_%' ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("events")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_are_recorded_once_while_two_collectors_ingest() {
    let file = tiers_file();
    let mut env = Env::start_with(|c| c.tiers_file = Some(file.clone())).await;
    let mut cfg = ServerConfig::new(env.pg.database_url());
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.commit_interval = Duration::from_millis(5);
    cfg.tiers_file = Some(file.clone());
    let second = Server::start(cfg).await.expect("second collector");
    let bases = [env.base.clone(), format!("http://{}", second.addr())];
    let key = env.key(Some("acme"), &[Scope::Ingest, Scope::Read]).await;

    // 30 runs in small batches, alternating between the collectors, concurrently: executions
    // pass 8 and 10 of 10, spend (0.05 each) passes 0.8 and 1 of 1; tokens stay under 80%.
    let posts = (0..15).map(|i| {
        let (http, key) = (env.http.clone(), key.clone());
        let base = bases[i % 2].clone();
        let body = common::batch(&[run("acme", "0.05"), run("acme", "0.05")]);
        async move {
            let resp = http
                .post(format!("{base}/v1/batch"))
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("POST");
            assert_eq!(resp.status().as_u16(), 200);
        }
    });
    common::join_all(posts.collect()).await;

    let want = vec![
        (
            "billing.tier_limit_exceeded".to_string(),
            "cost_usd".to_string(),
        ),
        ("billing.tier_limit_exceeded".into(), "executions".into()),
        ("billing.tier_limit_warning".into(), "cost_usd".into()),
        ("billing.tier_limit_warning".into(), "executions".into()),
    ];
    let deadline = Instant::now() + Duration::from_secs(30);
    while limit_events(&env).await != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(limit_events(&env).await, want);
    // More ingest through both, and time for both watchers to look again: still once each.
    for base in &bases {
        let resp = env
            .http
            .post(format!("{base}/v1/batch"))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(common::batch(&[run("acme", "0.05")]))
            .send()
            .await
            .expect("POST");
        assert_eq!(resp.status().as_u16(), 200);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(limit_events(&env).await, want);
    assert_eq!(
        env.count("SELECT count(*) FROM tier_limit_marks WHERE tenant_id = 'acme'")
            .await,
        4
    );
    // The events say what was crossed.
    let row = env
        .db
        .query_one(
            "SELECT metadata FROM events WHERE event_type = 'billing.tier_limit_exceeded'
               AND metadata->>'metric' = 'executions'",
            &[],
        )
        .await
        .expect("event");
    let meta: Value = row.get(0);
    assert_eq!(
        (&meta["limit"], &meta["tier"]),
        (&json!(10), &json!("small")),
        "{meta}"
    );
    assert!(meta["used"].as_i64().is_some_and(|n| n > 10), "{meta}");
    second
        .shutdown(Duration::from_secs(30))
        .await
        .expect("shutdown");
    env.shutdown().await;
}
