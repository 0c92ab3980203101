//! Pricing at ingest through raw HTTP: an event with usage and no cost is priced by the collector
//! with sdk-core's book (exactly the cost sdk-core computes), an unknown model is stored
//! `unpriced` (no cost) and counted in the rollups' unpriced counters, a cost the sender gave is
//! kept `reported`, and a `--price-file` (LiteLLM format) prices models the built-in book lacks.

mod common;

use agenttally::pricing::{PriceBook, ServiceTier};
use agenttally::Usage;
use agenttally_collector::Scope;
use chrono::{DateTime, Utc};
use common::{event, Env};
use rust_decimal::Decimal;
use serde_json::json;

const PRICE_FILE: &str = r#"{
    "sample_spec": {"input_cost_per_token": 0},
    "acme-large": {
        "litellm_provider": "acme",
        "mode": "chat",
        "input_cost_per_token": 0.000001,
        "output_cost_per_token": 0.000002
    }
}"#;

struct Stored {
    cost: Option<Decimal>,
    status: Option<String>,
    version: Option<String>,
    ts: DateTime<Utc>,
}

async fn stored(env: &Env, id: &serde_json::Value) -> Stored {
    let id = id.as_str().expect("id");
    let r = env
        .db
        .query_one(
            "SELECT cost_usd, cost_status, price_version, ts FROM events WHERE id = $1::text::uuid",
            &[&id],
        )
        .await
        .expect("row");
    Stored {
        cost: r.get(0),
        status: r.get(1),
        version: r.get(2),
        ts: r.get(3),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_without_a_cost_are_priced_at_ingest() {
    let file =
        std::env::temp_dir().join(format!("agenttally-prices-{}.json", uuid::Uuid::now_v7()));
    std::fs::write(&file, PRICE_FILE).expect("write price file");
    let path = file.clone();
    let mut env = Env::start_with(move |c| c.price_file = Some(path)).await;
    let key = env.key(Some("acme"), &[Scope::Ingest]).await;
    let no_cost = json!({"cost_usd": null, "cost_status": null,
                         "usage": {"input_tokens": 1000, "output_tokens": 100}});
    let mut known = event("acme", no_cost.clone());
    known["model"] = json!("gpt-4o");
    let mut unknown = event("acme", no_cost.clone());
    unknown["model"] = json!("no-such-model-xyz");
    unknown["provider"] = json!("no-such-provider");
    unknown["task_type"] = json!("unpriced-task");
    let reported = event("acme", json!({"cost_usd": "0.5", "cost_status": null}));
    let mut from_file = event("acme", no_cost);
    from_file["model"] = json!("acme-large");
    from_file["provider"] = json!("acme");
    let (s, v) = env
        .post(
            &key,
            &[
                known.clone(),
                unknown.clone(),
                reported.clone(),
                from_file.clone(),
            ],
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"accepted": 4, "duplicates": 0, "rejected": []}));

    // Known model: exactly what sdk-core computes for the same call (a request counted as one).
    let k = stored(&env, &known["id"]).await;
    let usage = Usage {
        input_tokens: 1_000,
        output_tokens: 100,
        requests: 1,
        ..Usage::default()
    };
    let want = PriceBook::builtin().cost("gpt-4o", &usage, ServiceTier::Standard, k.ts);
    let want_usd = want.usd.expect("sdk-core prices gpt-4o");
    assert_eq!(k.cost, Some(want_usd));
    // $2.50 / 1M input + $10 / 1M output: 0.0025 + 0.001.
    assert_eq!(want_usd.normalize().to_string(), "0.0035");
    assert_eq!(k.status.as_deref(), Some("priced"));
    assert_eq!(k.version.as_deref(), want.price_version.as_deref());
    assert!(k.version.is_some());

    // Unknown model: unpriced, no cost, counted in the rollups' unpriced counters.
    let u = stored(&env, &unknown["id"]).await;
    assert_eq!(
        (u.cost, u.status.as_deref(), u.version),
        (None, Some("unpriced"), None)
    );
    for table in ["rollup_hourly", "rollup_daily"] {
        let r = env
            .db
            .query_one(
                &format!(
                    "SELECT sum(unpriced_events)::bigint, sum(unpriced_tokens)::bigint, \
                     sum(costed_events)::bigint, sum(cost_usd) FROM {table} \
                     WHERE tenant_id = 'acme' AND task_type = 'unpriced-task'"
                ),
                &[],
            )
            .await
            .expect("rollup");
        let (events, tokens, costed, cost): (i64, i64, i64, Decimal) =
            (r.get(0), r.get(1), r.get(2), r.get(3));
        assert_eq!((events, tokens, costed), (1, 1_100, 0), "{table}");
        assert_eq!(cost, Decimal::ZERO, "{table}");
    }

    // A cost the sender gave is kept, and marked reported.
    let r = stored(&env, &reported["id"]).await;
    assert_eq!(r.cost, Some(Decimal::new(5, 1)));
    assert_eq!(r.status.as_deref(), Some("reported"));

    // The price file's model: 1,000 × $0.000001 + 100 × $0.000002.
    let f = stored(&env, &from_file["id"]).await;
    assert_eq!(
        f.cost.map(|c| c.normalize().to_string()).as_deref(),
        Some("0.0012")
    );
    assert_eq!(f.status.as_deref(), Some("priced"));
    assert!(
        f.version
            .as_deref()
            .is_some_and(|v| v.starts_with("litellm")),
        "{:?}",
        f.version
    );

    // The rollups carry the server-side costs.
    let total: Decimal = env
        .db
        .query_one(
            "SELECT sum(cost_usd) FROM rollup_daily WHERE tenant_id = 'acme'",
            &[],
        )
        .await
        .expect("sum")
        .get(0);
    assert_eq!(total, want_usd + Decimal::new(5, 1) + Decimal::new(12, 4));
    env.shutdown().await;
    let _ = std::fs::remove_file(&file);
}

#[tokio::test]
async fn an_unreadable_price_file_stops_the_start() {
    let mut cfg = agenttally_collector::ServerConfig::new("postgresql://127.0.0.1:1/none");
    cfg.price_file = Some("no/such/dir/prices.json".into());
    let Err(err) = agenttally_collector::Server::start(cfg).await else {
        panic!("started with a missing price file");
    };
    assert!(
        err.to_string()
            .contains("price_file: cannot read `no/such/dir/prices.json`"),
        "{err}"
    );
}
