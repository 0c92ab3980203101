//! `flush` and `shutdown` deliver the spool's backlog (issue: a process that never starts again
//! must not leave accepted events on disk), against a real collector on real PostgreSQL.
//!
//! - `burst_into_the_spool_is_delivered_by_shutdown`: overflow `spool`, 200,000 events tracked
//!   in one burst (default queue), `shutdown(120 s)` returns only once all are stored, once each.
//! - `spool_of_an_earlier_process_is_delivered_by_the_next`: with the collector down, `flush`
//!   times out keeping everything, and `shutdown(2 s)` returns within its deadline with every
//!   event on disk; a new client on the same spool directory delivers them with `shutdown(60 s)`
//!   once the collector is up, each stored exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use agenttally::{Client, ClientBuilder, ErrorKind, OverflowPolicy, ProviderEvent};
use agenttally_collector::Scope;
use rust_decimal::Decimal;

/// A fresh spool directory under the system's temp dir, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("agenttally-spool-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spooling_client(endpoint: &str, key: &str, dir: &std::path::Path) -> ClientBuilder {
    Client::builder()
        .endpoint(endpoint)
        .api_key(key)
        .overflow(OverflowPolicy::Spool)
        .spool_dir(dir)
        .retry_delays(Duration::from_millis(20), Duration::from_millis(500))
}

fn track(client: &Client, tenant: &str, n: usize) {
    let cost = Decimal::new(123, 4);
    for i in 0..n {
        let e = ProviderEvent::api_call(tenant, "openai", "gpt-4o")
            .cost_usd(cost)
            .duration_ms(i as u64 % 1000)
            .build()
            .unwrap();
        client.track(e).unwrap();
    }
}

/// (rows, distinct ids) stored for `tenant`.
async fn stored(env: &common::Env, tenant: &str) -> (i64, i64) {
    let r = env
        .db
        .query_one(
            "SELECT count(*), count(DISTINCT id) FROM events WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst_into_the_spool_is_delivered_by_shutdown() {
    const N: usize = 200_000;
    let mut env = common::Env::start().await;
    let key = env.key(Some("burst"), &[Scope::Ingest]).await;
    let dir = TempDir::new();
    let client = spooling_client(&env.base, &key, dir.path())
        .build()
        .unwrap();
    let started = Instant::now();
    let stats = tokio::task::block_in_place(|| {
        track(&client, "burst", N);
        let tracked = started.elapsed();
        let spooled = client.stats().spooled;
        client.shutdown(Duration::from_secs(120)).unwrap();
        println!(
            "burst: {N} tracked in {:.2} s ({spooled} of them spooled by then), shutdown \
             returned after {:.2} s",
            tracked.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
        client.stats()
    });
    assert!(stats.spooled > 0, "the burst overflowed to disk: {stats:?}");
    assert_eq!(stats.accepted, N as u64, "{stats:?}");
    assert_eq!(stats.spool_pending, 0, "nothing left on disk: {stats:?}");
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
    assert_eq!(stats.rejected, 0, "{stats:?}");
    assert_eq!(stored(&env, "burst").await, (N as i64, N as i64));
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_of_an_earlier_process_is_delivered_by_the_next() {
    const N: usize = 20_000;
    let mut env = common::Env::start().await;
    let key = env.key(Some("later"), &[Scope::Ingest]).await;
    let dir = TempDir::new();
    // A port nothing listens on: the collector is down for the first client.
    let down = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    tokio::task::block_in_place(|| {
        let first = spooling_client(&down, &key, dir.path()).build().unwrap();
        track(&first, "later", N);
        let err = first.flush(Duration::from_millis(500)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
        let t = Instant::now();
        first.shutdown(Duration::from_secs(2)).unwrap();
        let took = t.elapsed();
        assert!(
            took <= Duration::from_secs(2),
            "shutdown(2 s) took {took:?}"
        );
        let st = first.stats();
        assert_eq!(
            st.spool_pending, N as u64,
            "everything kept on disk: {st:?}"
        );
        assert_eq!(st.dropped.total(), 0, "{st:?}");
        println!("collector down: shutdown(2 s) returned in {took:?}, {N} events on disk");
    });
    assert_eq!(stored(&env, "later").await, (0, 0));

    let stats = tokio::task::block_in_place(|| {
        let next = spooling_client(&env.base, &key, dir.path())
            .build()
            .unwrap();
        assert_eq!(next.stats().spool_pending, N as u64);
        let t = Instant::now();
        next.shutdown(Duration::from_secs(60)).unwrap();
        println!(
            "next process: shutdown(60 s) delivered the backlog in {:.2} s",
            t.elapsed().as_secs_f64()
        );
        next.stats()
    });
    assert_eq!(stats.spool_pending, 0, "{stats:?}");
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
    assert_eq!(stored(&env, "later").await, (N as i64, N as i64));
    env.shutdown().await;
}

/// `flush` returns `Ok` only once the spooled events are delivered too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_waits_for_spooled_events() {
    const N: usize = 30_000;
    let mut env = common::Env::start().await;
    let key = env.key(Some("flushing"), &[Scope::Ingest]).await;
    let dir = TempDir::new();
    let client = spooling_client(&env.base, &key, dir.path())
        .max_queue_events(1_000)
        .build()
        .unwrap();
    tokio::task::block_in_place(|| {
        track(&client, "flushing", N);
        client.flush(Duration::from_secs(120)).unwrap();
    });
    let st = client.stats();
    assert!(st.spooled > 0, "{st:?}");
    assert_eq!(st.spool_pending, 0, "{st:?}");
    assert_eq!(stored(&env, "flushing").await, (N as i64, N as i64));
    tokio::task::block_in_place(|| client.shutdown(Duration::from_secs(10))).unwrap();
    env.shutdown().await;
}
