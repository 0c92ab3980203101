//! The writer's post-commit seam: a subscriber receives, per tenant, the rollup deltas of the
//! events a commit newly stored — after that commit, and nothing of duplicates or rejections.

mod common;

use std::time::Duration;

use agenttally_collector::Scope;
use common::{event, Env};
use serde_json::json;
use tokio::sync::broadcast::error::TryRecvError;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribers_get_committed_deltas_after_the_commit() {
    let mut env = Env::start().await;
    let key = env.key(None, &[Scope::Ingest]).await;
    let mut feed = env.server.as_ref().expect("server").subscribe_commits();

    let mut events: Vec<_> = (0..3).map(|_| event("acme", json!({}))).collect();
    events.extend((0..2).map(|_| event("globex", json!({"provider": "anthropic"}))));
    // Refused by validation: never stored, so never in a delta.
    events.push(event("acme", json!({"duration_ms": -5})));
    let (status, body) = env.post(&key, &events).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 5, "{body}");

    let mut seen = std::collections::BTreeMap::new();
    while seen.len() < 2 {
        let c = tokio::time::timeout(Duration::from_secs(10), feed.recv())
            .await
            .expect("a commit within 10 s")
            .expect("feed open");
        // Delivered after the commit: another connection already sees the rows.
        let stored = env
            .db
            .query_one(
                "SELECT count(*) FROM events WHERE tenant_id = $1",
                &[&c.tenant],
            )
            .await
            .expect("count")
            .get::<_, i64>(0);
        assert!(stored >= c.events as i64, "{} stored {stored}", c.tenant);
        let delta_events: i64 = c.hourly.iter().map(|d| d.delta.events).sum();
        assert_eq!(delta_events, c.events as i64, "{c:?}");
        *seen.entry(c.tenant.clone()).or_insert(0) += c.events;
        if c.tenant == "globex" {
            assert!(c.hourly.iter().all(|d| d.provider == "anthropic"), "{c:?}");
        }
    }
    assert_eq!(seen.get("acme"), Some(&3));
    assert_eq!(seen.get("globex"), Some(&2));

    // The same events again are duplicates: nothing newly stored, nothing published. The
    // writer publishes before it acknowledges, so by the answer anything would be there.
    let (status, body) = env.post(&key, &events[..5]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicates"], 5, "{body}");
    assert!(matches!(feed.try_recv(), Err(TryRecvError::Empty)));
    env.shutdown().await;
}
