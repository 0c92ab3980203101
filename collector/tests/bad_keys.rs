//! Credentials under attack: a flood of requests with random (unknown) API keys must not take
//! the database connections the writers commit with, and a revoked key stops working within 5 s.

mod common;

use std::time::{Duration, Instant};

use agenttally::{AnalyticsEvent, Client, ProviderEvent, Usage};
use agenttally_collector::auth::generate_key;
use agenttally_collector::Scope;
use common::{batch, event, Env};
use rust_decimal::Decimal;
use serde_json::json;
use tokio::task::JoinSet;

fn small_event(tenant: &str) -> AnalyticsEvent {
    ProviderEvent::api_call(tenant, "openai", "gpt-4o")
        .usage(Usage {
            input_tokens: 10,
            output_tokens: 2,
            ..Usage::default()
        })
        .cost_usd(Decimal::new(123, 4))
        .correlation_id("r")
        .build()
        .expect("valid event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_keys_does_not_starve_ingest() {
    const N: usize = 100_000;
    const BAD: usize = 2_000;
    let mut env = Env::start().await;
    let key = env.key(None, &[Scope::Ingest]).await;
    let client = Client::builder()
        .endpoint(&env.base)
        .api_key(&key)
        .flush_at(1_000)
        .flush_interval(Duration::from_millis(50))
        .max_queue_events(N + 1_000)
        .max_queue_bytes(512 * 1024 * 1024)
        .max_retry_time(Duration::from_secs(120))
        .retry_delays(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .expect("client");

    let started = Instant::now();
    let tracker = {
        let client = client.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                let tenant = if i % 2 == 0 { "acme" } else { "globex" };
                client.track(small_event(tenant)).expect("track");
            }
        })
    };

    let body = batch(&[event("acme", json!({}))]);
    // All at once: far more than the key lookup slots and the connection pool.
    let mut flood = JoinSet::new();
    for _ in 0..BAD {
        let (http, url, body) = (
            env.http.clone(),
            format!("{}/v1/batch", env.base),
            body.clone(),
        );
        flood.spawn(async move {
            // Well formed, random, never stored.
            let bad = generate_key().expect("random key");
            let resp = http
                .post(url)
                .header("authorization", format!("Bearer {bad}"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("send");
            resp.status().as_u16()
        });
    }
    let (mut refused, mut busy) = (0, 0);
    while let Some(status) = flood.join_next().await {
        match status.expect("join") {
            401 => refused += 1,
            // A lookup slot not had within its wait: retry later, never a connection taken.
            503 => busy += 1,
            other => panic!("a bad key was answered {other}"),
        }
    }
    let flood_took = started.elapsed();
    assert_eq!(refused + busy, BAD);
    assert!(refused >= BAD / 2, "refused {refused}, busy {busy}");

    tracker.join().expect("tracker");
    tokio::task::block_in_place(|| client.flush(Duration::from_secs(120))).expect("flush");
    let elapsed = started.elapsed();
    let stored = env.count("SELECT count(*) FROM events").await;
    assert_eq!(stored, N as i64, "{:?}", client.stats());
    eprintln!(
        "bad keys: {BAD} requests ({refused} refused 401, {busy} answered 503) in {:.2} s \
         while {N} events were ingested in {:.2} s",
        flood_took.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    tokio::task::block_in_place(|| client.shutdown(Duration::from_secs(10))).expect("shutdown");
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_refused_within_5_s() {
    let mut env = Env::start().await;
    let key = env.key(Some("acme"), &[Scope::Ingest]).await;
    // Used once, so it is cached as valid.
    let (status, body) = env.post(&key, &[event("acme", json!({}))]).await;
    assert_eq!(status, 200, "{body}");

    let revoked = env
        .db
        .execute("UPDATE api_keys SET revoked_at = now()", &[])
        .await
        .expect("revoke");
    assert_eq!(revoked, 1);
    let at = Instant::now();
    loop {
        let (status, body) = env.post(&key, &[event("acme", json!({}))]).await;
        if status == 401 {
            assert_eq!(body["error"]["code"], "invalid_credentials", "{body}");
            break;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            at.elapsed() < Duration::from_secs(5),
            "a revoked key still works after {:?}",
            at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = at.elapsed();
    assert!(took <= Duration::from_secs(5), "refused after {took:?}");
    eprintln!("revoked key refused after {:.2} s", took.as_secs_f64());
    env.shutdown().await;
}
