//! Storage failures as the client sees them. A failure that is not the events' own fault — a
//! serialization failure that outlives the writer's retries, or any error outside the data
//! classes — answers the request 503 + Retry-After with nothing of it acknowledged, and the real
//! SDK client's retry then stores every event exactly once. Only a row the database refuses by
//! itself (a data error) is a per-event rejection, `retryable: false`, naming the event's id.
//! Faults are injected with triggers on `events`, created as the cluster superuser.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use agenttally::{AnalyticsEvent, Client, ProviderEvent, Usage};
use agenttally_collector::Scope;
use common::{event, Env};
use rust_decimal::Decimal;
use serde_json::{json, Value};
use uuid::Uuid;

/// `BEFORE INSERT` on `events` (cloned to every partition) raising `errcode` for the rows that
/// match `condition` (SQL over `NEW`).
async fn create_fault(env: &Env, name: &str, condition: &str, errcode: &str) {
    env.db
        .batch_execute(&format!(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF {condition} THEN \
                 RAISE EXCEPTION 'injected fault {name}' USING ERRCODE = '{errcode}'; \
               END IF; \
               RETURN NEW; END $$; \
             CREATE TRIGGER {name} BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION {name}();"
        ))
        .await
        .unwrap();
}

async fn drop_fault(env: &Env, name: &str) {
    env.db
        .batch_execute(&format!(
            "DROP TRIGGER {name} ON events; DROP FUNCTION {name}();"
        ))
        .await
        .unwrap();
}

async fn stored(env: &Env, tenant: &str) -> (i64, i64) {
    let row = env
        .db
        .query_one(
            "SELECT (SELECT count(*) FROM events WHERE tenant_id = $1), \
                    (SELECT count(*) FROM event_ids WHERE tenant_id = $1)",
            &[&tenant],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn sdk_event(tenant: &str, i: u64) -> AnalyticsEvent {
    ProviderEvent::api_call(tenant, "openai", "gpt-4o")
        .usage(Usage {
            input_tokens: 10 + i,
            output_tokens: 2,
            requests: 1,
            ..Usage::default()
        })
        .cost_usd(Decimal::new(123, 4))
        .correlation_id(format!("run-{}", i / 10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_faults() {
    let mut env = Env::start().await;
    let flaky_key = env.key(Some("flaky"), &[Scope::Ingest]).await;
    let steady_key = env.key(Some("steady"), &[Scope::Ingest]).await;

    // -- a serialization failure on every row of one tenant: 503 + Retry-After for its request,
    //    nothing of it stored; another tenant's request (likely in the same commit group) is
    //    stored as usual --
    create_fault(&env, "flaky_40001", "NEW.tenant_id = 'flaky'", "40001").await;
    let flaky: Vec<Value> = (0..20).map(|_| event("flaky", json!({}))).collect();
    let steady: Vec<Value> = (0..20).map(|_| event("steady", json!({}))).collect();
    let (f, s) = tokio::join!(
        env.post_raw(Some(&flaky_key), common::batch(&flaky), &[]),
        env.post_raw(Some(&steady_key), common::batch(&steady), &[]),
    );
    assert_eq!(f.0, 503, "{}", f.1);
    assert!(f.2.contains_key("retry-after"), "503 without Retry-After");
    assert_eq!(f.1["error"]["code"], "unavailable", "{}", f.1);
    assert!(
        f.1["error"]["message"]
            .as_str()
            .unwrap()
            .contains("(40001)"),
        "{}",
        f.1
    );
    assert_eq!(
        stored(&env, "flaky").await,
        (0, 0),
        "nothing of the 503 stored"
    );
    assert_eq!(
        (s.0, &s.1),
        (
            200,
            &json!({"accepted": 20, "duplicates": 0, "rejected": []})
        )
    );
    assert_eq!(stored(&env, "steady").await, (20, 20));

    // -- the SDK client meets the same fault: it counts retries, not rejections; once the fault
    //    is gone its retry stores every event exactly once --
    const N: u64 = 300;
    let client = Client::builder()
        .endpoint(&env.base)
        .api_key(&flaky_key)
        .flush_at(100)
        .flush_interval(Duration::from_millis(50))
        .max_retry_time(Duration::from_secs(120))
        .retry_delays(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .unwrap();
    let mut ids = HashSet::new();
    for i in 0..N {
        let e = sdk_event("flaky", i);
        ids.insert(e.id);
        client.track(e).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while client.stats().retried == 0 {
        assert!(Instant::now() < deadline, "no retry: {:?}", client.stats());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stored(&env, "flaky").await, (0, 0));
    drop_fault(&env, "flaky_40001").await;
    tokio::task::block_in_place(|| client.flush(Duration::from_secs(60))).unwrap();
    let stats = client.stats();
    assert!(stats.retried > 0, "{stats:?}");
    assert_eq!(stats.rejected, 0, "{stats:?}");
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
    assert_eq!(stats.sent + stats.duplicates, N, "{stats:?}");
    let rows = env
        .db
        .query(
            "SELECT id, count(*) FROM events WHERE tenant_id = 'flaky' GROUP BY id",
            &[],
        )
        .await
        .unwrap();
    let mut seen = HashSet::new();
    for r in &rows {
        let (id, n): (Uuid, i64) = (r.get(0), r.get(1));
        assert_eq!(n, 1, "{id} stored {n} times");
        seen.insert(id);
    }
    assert_eq!(seen, ids, "every tracked id stored");
    assert_eq!(stored(&env, "flaky").await, (N as i64, N as i64));
    let rolled: i64 = env
        .count("SELECT coalesce(sum(events), 0)::int8 FROM rollup_hourly WHERE tenant_id = 'flaky'")
        .await;
    assert_eq!(rolled, N as i64, "rollups count each event once");
    tokio::task::block_in_place(|| client.shutdown(Duration::from_secs(10))).unwrap();

    // -- a data error on one event: exactly that event rejected, final, by id; the rest stored --
    let batch: Vec<Value> = (0..10).map(|_| event("steady", json!({}))).collect();
    let poison = batch[6]["id"].as_str().unwrap().to_string();
    create_fault(
        &env,
        "bad_row_22023",
        &format!("NEW.id = '{poison}'::uuid"),
        "22023",
    )
    .await;
    let (s, v) = env.post(&steady_key, &batch).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted"], 9, "{v}");
    assert_eq!(v["duplicates"], 0, "{v}");
    let rej = v["rejected"].as_array().unwrap();
    assert_eq!(rej.len(), 1, "{v}");
    assert_eq!(rej[0]["index"], 6, "{v}");
    assert_eq!(rej[0]["id"], json!(poison), "{v}");
    assert_eq!(rej[0]["retryable"], json!(false), "{v}");
    let msg = rej[0]["error"].as_str().unwrap();
    assert!(
        msg.starts_with("batch[6]: could not be stored: ") && msg.contains("(22023)"),
        "{msg}"
    );
    assert_eq!(stored(&env, "steady").await, (29, 29));
    let poison_rows = env
        .count(&format!(
            "SELECT count(*) FROM event_ids WHERE id = '{poison}'::uuid"
        ))
        .await;
    assert_eq!(poison_rows, 0, "the rejected event's id is not claimed");
    drop_fault(&env, "bad_row_22023").await;

    // -- an error that is not the event's fault (here XX000, raised for one event) is never a
    //    rejection: the request is answered 503, the other request of the moment is stored --
    let mut broken: Vec<Value> = (0..8).map(|_| event("flaky", json!({}))).collect();
    broken[2] = event("flaky", json!({"correlation_id": "internal-error"}));
    create_fault(
        &env,
        "internal_xx000",
        "NEW.correlation_id = 'internal-error'",
        "XX000",
    )
    .await;
    let other: Vec<Value> = (0..8).map(|_| event("steady", json!({}))).collect();
    // A second request carrying a copy of the failing event (a resend racing its original):
    // whether the copy is settled in memory against the original in the same commit group or
    // stored by itself, it must not be acknowledged.
    let copy = vec![
        event("flaky", json!({})),
        broken[2].clone(),
        event("flaky", json!({})),
    ];
    let (f, c, s) = tokio::join!(
        env.post_raw(Some(&flaky_key), common::batch(&broken), &[]),
        env.post_raw(Some(&flaky_key), common::batch(&copy), &[]),
        env.post_raw(Some(&steady_key), common::batch(&other), &[]),
    );
    assert_eq!(f.0, 503, "{}", f.1);
    assert!(f.2.contains_key("retry-after"));
    assert_eq!(c.0, 503, "the copy was acknowledged: {}", c.1);
    assert_eq!((s.0, &s.1["accepted"]), (200, &json!(8)), "{}", s.1);
    drop_fault(&env, "internal_xx000").await;
    // Resent once the cause is gone: all stored (any part committed before the 503 is a
    // duplicate now).
    for (batch, n) in [(&broken, 8), (&copy, 3)] {
        let (s, v) = env.post(&flaky_key, batch).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["rejected"], json!([]), "{v}");
        assert_eq!(
            v["accepted"].as_i64().unwrap() + v["duplicates"].as_i64().unwrap(),
            n,
            "{v}"
        );
    }
    assert_eq!(stored(&env, "flaky").await, (N as i64 + 10, N as i64 + 10));

    let m = env.get("/metrics").await.text().await.unwrap();
    assert!(
        m.contains("agenttally_ingest_responses_total{status=\"503\"}"),
        "{m}"
    );
    assert!(
        m.contains("agenttally_ingest_events_rejected_total{reason=\"storage\"} 1"),
        "{m}"
    );
    env.shutdown().await;
}
