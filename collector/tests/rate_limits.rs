//! Rate limits (GCRA, per credential and per tenant): past a class's burst a call is a 429 with
//! `Retry-After` naming the limit, and another tenant is unaffected. `100 per minute` is a burst
//! of 100, then one more every 0.6 s: the test counts what the elapsed time allows.

mod common;

use std::time::Instant;

use agenttally_collector::Scope;
use common::{event, join_all, Env};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_query_limit_refuses_past_its_burst_and_other_tenants_go_on() {
    let mut env = Env::start().await;
    let acme = env.key(Some("acme"), &[Scope::Read]).await;
    let globex = env.key(Some("globex"), &[Scope::Read]).await;
    let platform = env.key(None, &[Scope::Read]).await;

    let t0 = Instant::now();
    let calls = (0..130)
        .map(|_| env.call("GET", "/v1/metrics/summary", Some(&acme), None))
        .collect();
    let answers = join_all(calls).await;
    let elapsed = t0.elapsed();
    let ok = answers.iter().filter(|(s, _, _)| *s == 200).count();
    let limited: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!(ok + limited.len(), 130, "only 200 or 429");
    // 100 at once, plus one per 0.6 s elapsed.
    let replenished = (elapsed.as_millis() / 600) as usize + 1;
    assert!(
        (100..=100 + replenished).contains(&ok),
        "{ok} served in {elapsed:?}"
    );
    assert!(!limited.is_empty(), "nothing refused in {elapsed:?}");
    let (_, retry_after, body) = limited[0];
    let secs: u32 = retry_after
        .as_deref()
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=60).contains(&secs), "{secs}");
    assert!(
        body.contains("too_many_requests")
            && body.contains("query limit of 100 requests per minute"),
        "{body}"
    );
    // Another tenant is unaffected; a platform credential acting for the same tenant is not
    // (the tenant's bucket is empty), for another tenant it is.
    let (s, _, text) = env
        .call("GET", "/v1/metrics/summary", Some(&globex), None)
        .await;
    assert_eq!(s, 200, "{text}");
    // (The tenant's bucket gains one call per 0.6 s meanwhile: a few calls at once spend it.)
    let calls = (0..5)
        .map(|_| {
            env.call(
                "GET",
                "/v1/metrics/summary?tenant_id=acme",
                Some(&platform),
                None,
            )
        })
        .collect();
    let answers = join_all(calls).await;
    let refused = answers
        .iter()
        .find(|(s, _, _)| *s == 429)
        .expect("the tenant's budget is spent");
    assert!(refused.2.contains("per tenant"), "{}", refused.2);
    let (s, _, text) = env
        .call(
            "GET",
            "/v1/metrics/summary?tenant_id=initech",
            Some(&platform),
            None,
        )
        .await;
    assert_eq!(s, 200, "{text}");
    // Rate-limited calls are not audited; served ones are.
    let audited = env
        .count("SELECT count(*) FROM audit_log WHERE tenant_id = 'acme' AND status = 429")
        .await;
    assert_eq!(audited, 0);
    env.shutdown().await;
}

/// The same machinery with a configured low limit: the 6th call in a burst of a class limited
/// to 5 is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_configured_limit_refuses_the_sixth_call() {
    let mut env = Env::start_with(|c| {
        c.rate_query_per_minute = 5;
        c.rate_ingest_per_second = 2;
    })
    .await;
    let acme = env.key(Some("acme"), &[Scope::Read, Scope::Ingest]).await;
    let globex = env.key(Some("globex"), &[Scope::Read]).await;
    for i in 0..5 {
        let (s, _, text) = env
            .call("GET", "/v1/billing/usage", Some(&acme), None)
            .await;
        assert_eq!(s, 200, "call {i}: {text}");
    }
    let (s, retry_after, text) = env
        .call("GET", "/v1/billing/usage", Some(&acme), None)
        .await;
    assert_eq!(s, 429, "{text}");
    let secs: u32 = retry_after.expect("Retry-After").parse().expect("secs");
    assert!((1..=12).contains(&secs), "{secs}");
    assert!(text.contains("5 requests per minute"), "{text}");
    let (s, _, _) = env
        .call("GET", "/v1/billing/usage", Some(&globex), None)
        .await;
    assert_eq!(s, 200);

    // Ingest, when limited: a burst of 2, then one more every 0.5 s.
    let t0 = Instant::now();
    let events = [event("acme", json!({}))];
    let posts = (0..8).map(|_| env.post(&acme, &events)).collect();
    let statuses: Vec<u16> = join_all(posts).await.into_iter().map(|(s, _)| s).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let allowed = 2 + (t0.elapsed().as_millis() / 500) as usize + 1;
    assert!((2..=allowed).contains(&ok), "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let m = env.get("/metrics").await.text().await.expect("metrics");
    assert!(
        m.contains("agenttally_ingest_responses_total{status=\"429\"}"),
        "refusals are counted with ingest's answers"
    );
    assert!(
        m.contains("agenttally_rate_limited_total{class=\"query\"} 1"),
        "{m}"
    );
    assert!(
        !m.contains("agenttally_rate_limited_total{class=\"ingest\"} 0"),
        "{m}"
    );
    env.shutdown().await;
}

/// The default export limit: 5 exports per hour; the 6th (direct or a link's creation, the same
/// class) is a 429 with a Retry-After of about 12 minutes; another tenant exports on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sixth_export_in_an_hour_is_refused() {
    let mut env = Env::start().await;
    let acme = env.key(Some("acme"), &[Scope::Export]).await;
    let globex = env.key(Some("globex"), &[Scope::Export]).await;
    let (s, _) = env
        .post(
            &env.key(Some("acme"), &[Scope::Ingest]).await,
            &[event("acme", json!({}))],
        )
        .await;
    assert_eq!(s, 200);
    for i in 0..4 {
        let (s, _, text) = env.call("GET", "/v1/export", Some(&acme), None).await;
        assert_eq!(s, 200, "export {i}: {text}");
    }
    let (s, _, text) = env.call("POST", "/v1/exports", Some(&acme), None).await;
    assert_eq!(s, 201, "the 5th, a link: {text}");
    let (s, retry_after, text) = env.call("GET", "/v1/export", Some(&acme), None).await;
    assert_eq!(s, 429, "{text}");
    let secs: u32 = retry_after.expect("Retry-After").parse().expect("secs");
    assert!((600..=720).contains(&secs), "{secs}");
    assert!(
        text.contains("export limit of 5 requests per hour"),
        "{text}"
    );
    let (s, _, text) = env.call("GET", "/v1/export", Some(&globex), None).await;
    assert_eq!(s, 200, "another tenant: {text}");
    env.shutdown().await;
}
