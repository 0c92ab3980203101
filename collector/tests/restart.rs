//! PostgreSQL restarts under load: while it is down the collector answers 503 with Retry-After
//! (and never acknowledges what it did not commit); once it is back, ingest recovers by itself
//! and, with clients resending on 503 (same ids, as the SDK does), nothing is lost or doubled.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttally_collector::Scope;
use common::{batch, event, Env};
use serde_json::{json, Value};

const LOADERS: usize = 4;
const BATCHES: usize = 25;
const PER_BATCH: usize = 40;
/// Batches each loader stores before the outage; it then waits for PostgreSQL to be stopped, so
/// every loader meets the outage however fast the machine is.
const BEFORE_OUTAGE: usize = 5;

/// Wait (bounded) until `done()` holds: the test advances on progress, never on a timed sleep.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_load_loses_nothing() {
    let mut env = Env::start().await;
    let key = env.key(Some("acme"), &[Scope::Ingest]).await;
    let unavailable = Arc::new(AtomicUsize::new(0));
    let stored_batches = Arc::new(AtomicUsize::new(0));
    let (outage_tx, outage_rx) = tokio::sync::watch::channel(false);
    let mut loaders = Vec::new();
    for _ in 0..LOADERS {
        let (http, base, key, unavailable, stored_batches, mut outage) = (
            env.http.clone(),
            env.base.clone(),
            key.clone(),
            unavailable.clone(),
            stored_batches.clone(),
            outage_rx.clone(),
        );
        loaders.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for b in 0..BATCHES {
                if b == BEFORE_OUTAGE {
                    outage.wait_for(|down| *down).await.expect("outage signal");
                }
                let events: Vec<Value> = (0..PER_BATCH).map(|_| event("acme", json!({}))).collect();
                ids.extend(
                    events
                        .iter()
                        .map(|e| e["id"].as_str().unwrap_or_default().to_string()),
                );
                let body = batch(&events);
                let deadline = Instant::now() + Duration::from_secs(60);
                loop {
                    assert!(Instant::now() < deadline, "no recovery within 60 s");
                    let resp = http
                        .post(format!("{base}/v1/batch"))
                        .header("authorization", format!("Bearer {key}"))
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await;
                    let Ok(resp) = resp else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    match resp.status().as_u16() {
                        200 => {
                            let v: Value = resp.json().await.expect("json");
                            let acked = v["accepted"].as_u64().unwrap_or(0)
                                + v["duplicates"].as_u64().unwrap_or(0);
                            assert_eq!(acked, PER_BATCH as u64, "{v}");
                            stored_batches.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                        503 => {
                            assert!(resp.headers().contains_key("retry-after"));
                            unavailable.fetch_add(1, Ordering::Relaxed);
                            // The SDK waits at least Retry-After; a short wait keeps the test quick.
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        s => panic!(
                            "unexpected status {s}: {}",
                            resp.text().await.unwrap_or_default()
                        ),
                    }
                }
            }
            ids
        }));
    }

    until("the loaders' first batches", || {
        stored_batches.load(Ordering::Relaxed) >= LOADERS * BEFORE_OUTAGE
    })
    .await;
    tokio::task::block_in_place(|| env.pg.stop()).expect("stop PostgreSQL");
    outage_tx.send_replace(true);

    // While it is down: 503 + Retry-After, and health says so.
    let (s, v, h) = env
        .post_raw(Some(&key), batch(&[event("acme", json!({}))]), &[])
        .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(v["error"]["code"], "unavailable");
    assert!(h.contains_key("retry-after"));
    let health = env.get("/healthz").await;
    assert_eq!(health.status().as_u16(), 503);

    // The loaders are past their gate and meeting the outage before PostgreSQL comes back.
    until("every loader to see a 503", || {
        unavailable.load(Ordering::Relaxed) >= LOADERS
    })
    .await;
    tokio::task::block_in_place(|| env.pg.start_again()).expect("start PostgreSQL");

    let mut sent = HashSet::new();
    for l in loaders {
        sent.extend(l.await.expect("loader"));
    }
    assert_eq!(sent.len(), LOADERS * BATCHES * PER_BATCH);
    assert!(
        unavailable.load(Ordering::Relaxed) > 0,
        "the loaders saw the outage"
    );

    // Every event acknowledged is stored exactly once; rollups agree with the raw rows.
    let (db, conn) = tokio_postgres::connect(&env.pg.database_url(), tokio_postgres::NoTls)
        .await
        .expect("reconnect");
    tokio::spawn(conn);
    let stored: HashSet<String> = db
        .query("SELECT id::text FROM events WHERE tenant_id = 'acme'", &[])
        .await
        .expect("ids")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let missing = sent.difference(&stored).count();
    assert_eq!(missing, 0, "acknowledged events missing after the restart");
    let raw: i64 = db
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .expect("count")
        .get(0);
    let rolled: i64 = db
        .query_one("SELECT sum(events)::int8 FROM rollup_hourly", &[])
        .await
        .expect("sum")
        .get(0);
    assert_eq!(raw as usize, stored.len(), "no duplicates");
    assert_eq!(rolled, raw, "rollups exact under retries");
    println!(
        "sent {} events in {} batches; {} answers were 503 during the outage; stored {}",
        sent.len(),
        LOADERS * BATCHES,
        unavailable.load(Ordering::Relaxed),
        raw
    );
    env.db = db;
    env.shutdown().await;
}
