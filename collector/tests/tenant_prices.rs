//! Negotiated prices: a tenant's override (LiteLLM format, in effect from a date) prices that
//! tenant's events only, and only from its effective date; other tenants and earlier events keep
//! the collector's book. Running collectors pick an override up by reloading.

mod common;

use std::time::Duration;

use agenttally_collector::Scope;
use chrono::{TimeDelta, Utc};
use common::runs::ts;
use common::Env;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

fn call(tenant: &str, at: chrono::DateTime<Utc>) -> Value {
    json!({
        "id": Uuid::now_v7().to_string(), "tenant_id": tenant,
        "event_type": "provider.api_call", "timestamp": ts(at), "correlation_id": "c",
        "provider": "openai", "model": "gpt-4o",
        "usage": {"input_tokens": 1000, "output_tokens": 100, "requests": 1}, "success": true,
    })
}

async fn stored_cost(env: &Env, id: &Value) -> (Option<Decimal>, Option<String>) {
    let id: Uuid = id.as_str().expect("id").parse().expect("uuid");
    let r = env
        .db
        .query_one(
            "SELECT cost_usd, price_version FROM events WHERE id = $1",
            &[&id],
        )
        .await
        .expect("row");
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_override_prices_that_tenant_from_its_date() {
    let mut env = Env::start_with(|c| c.price_refresh = Duration::from_millis(100)).await;
    let url = env.pg.database_url();
    let now = Utc::now();
    // acme negotiated gpt-4o at $1 / $4 per million from yesterday.
    let file = r#"{"gpt-4o": {"litellm_provider": "openai", "mode": "chat",
                   "input_cost_per_token": 1e-06, "output_cost_per_token": 4e-06}}"#;
    let n = agenttally_collector::set_tenant_prices(&url, "acme", file, now - TimeDelta::days(1))
        .await
        .expect("set prices");
    assert_eq!(n, 1);
    // Bad input is named and stores nothing.
    let e = agenttally_collector::set_tenant_prices(&url, "acme", "[1]", now)
        .await
        .expect_err("not an object");
    assert!(e.to_string().contains("--file"), "{e}");
    let e = agenttally_collector::set_tenant_prices(&url, "no tenant!", file, now)
        .await
        .expect_err("bad tenant");
    assert!(e.to_string().contains("--tenant"), "{e}");
    // Every collector reloads within its refresh.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let acme = env.key(Some("acme"), &[Scope::Ingest]).await;
    let globex = env.key(Some("globex"), &[Scope::Ingest]).await;
    let (now_acme, old_acme, now_globex) = (
        call("acme", now),
        call("acme", now - TimeDelta::days(2)),
        call("globex", now),
    );
    let (s, b) = env.post(&acme, &[now_acme.clone(), old_acme.clone()]).await;
    assert_eq!((s, &b["accepted"]), (200, &json!(2)), "{b}");
    let (s, b) = env.post(&globex, std::slice::from_ref(&now_globex)).await;
    assert_eq!((s, &b["accepted"]), (200, &json!(1)), "{b}");

    // 1000 × 0.000001 + 100 × 0.000004; the built-in gpt-4o is 1000 × 0.0000025 + 100 × 0.00001.
    let negotiated = Decimal::new(14, 4);
    let list = Decimal::new(35, 4);
    let (c, negotiated_version) = stored_cost(&env, &now_acme["id"]).await;
    assert_eq!(
        c,
        Some(negotiated),
        "acme from its date: the negotiated price"
    );
    let (c, list_version) = stored_cost(&env, &now_globex["id"]).await;
    assert_eq!(c, Some(list), "another tenant");
    assert_eq!(
        stored_cost(&env, &old_acme["id"]).await,
        (Some(list), list_version.clone()),
        "before the date"
    );
    // The price version says which entry priced it.
    assert!(negotiated_version.is_some() && negotiated_version != list_version);
    env.shutdown().await;
}
