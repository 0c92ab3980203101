//! End to end with the real SDK client: `agenttally::Client` → collector → PostgreSQL.
//!
//! - `sdk_to_postgres_exact`: 10k mixed events of 3 tenants arrive exactly once, costs exact.
//! - `collector_sigkill_under_load`: the collector binary is SIGKILLed while 200k events are in
//!   flight and restarted on the same port; the client's retries (and the collector's dedupe)
//!   leave every event stored exactly once.
//! - `postgres_restart_under_sdk_load`: PostgreSQL is stopped for ~3 s while the client tracks
//!   continuously; the client sees 503s, retries, and every event is stored exactly once.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use agenttally::{
    AgentEvent, AnalyticsEvent, BillingEvent, Client, CustomerEvent, ProviderEvent, Usage,
};
use agenttally_collector::{EmbeddedPostgres, Scope};
use rust_decimal::Decimal;
use uuid::Uuid;

const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
/// Costs as sent (decimal text): stored `cost_usd::text` must be exactly this.
const COSTS: [&str; 8] = [
    "0.0123",
    "0.000000123",
    "0.10",
    "1.5",
    "0",
    "12.345678901234",
    "0.000001",
    "999.99",
];

/// The `i`-th event of a realistic mix: provider calls with usage and exact costs (half), agent
/// lifecycle, billing and customer events. Returns the event and the cost text it carries.
fn mixed_event(i: usize, tenant: &str) -> (AnalyticsEvent, Option<&'static str>) {
    let run = format!("run-{}", i / 10);
    let agent = format!("agent-{}", i % 7);
    let cost = COSTS[i % COSTS.len()];
    let dec = Decimal::from_str(cost).unwrap();
    let (builder, cost) = match i % 10 {
        0..=4 => {
            let usage = Usage {
                input_tokens: 100 + (i as u64 % 900),
                cached_input_tokens: (i as u64 % 3) * 64,
                output_tokens: 20 + (i as u64 % 300),
                reasoning_tokens: i as u64 % 5,
                requests: 1,
                ..Usage::default()
            };
            let (p, m) = [
                ("openai", "gpt-4o"),
                ("anthropic", "claude-sonnet-4"),
                ("google", "gemini-2.5-pro"),
            ][i % 3];
            let b = ProviderEvent::api_call(tenant, p, m)
                .usage(usage)
                .cost_usd(dec)
                .duration_ms(50 + (i as u64 % 2000))
                .queue_ms(i as u64 % 40)
                .task_type(["code", "chat", "summarize"][i % 3])
                .agent_id(agent);
            (b, Some(cost))
        }
        5 => (AgentEvent::started(tenant, agent).task_type("code"), None),
        6 => (
            AgentEvent::completed(tenant, agent)
                .duration_ms(100 + (i as u64 % 5000))
                .cost_usd(dec),
            Some(cost),
        ),
        7 => (
            if i % 20 == 7 {
                AgentEvent::failed(tenant, agent, "tool_error")
            } else {
                AgentEvent::timeout(tenant, agent)
            },
            None,
        ),
        8 => (
            if i % 20 == 8 {
                BillingEvent::usage_recorded(tenant).cost_usd(dec)
            } else {
                BillingEvent::tier_limit_warning(tenant, "api_calls", 8_000, 10_000)
            },
            (i % 20 == 8).then_some(cost),
        ),
        _ => (
            if i % 20 == 9 {
                CustomerEvent::login(tenant, format!("user-{}", i % 50))
            } else {
                CustomerEvent::dashboard_view(tenant, format!("user-{}", i % 50))
            },
            None,
        ),
    };
    (builder.correlation_id(run).build().unwrap(), cost)
}

/// A small `provider.api_call` (the fault tests care about ids, not payload).
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
        .unwrap()
}

fn client(endpoint: &str, key: &str, max_queue: usize) -> Client {
    Client::builder()
        .endpoint(endpoint)
        .api_key(key)
        .flush_at(1_000)
        .flush_interval(Duration::from_millis(50))
        .max_queue_events(max_queue)
        .max_queue_bytes(512 * 1024 * 1024)
        .max_retry_time(Duration::from_secs(120))
        .retry_delays(Duration::from_millis(50), Duration::from_millis(500))
        .build()
        .unwrap()
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    db
}

/// Every stored `(id, count)` of `tenant` (or of all tenants), as the cluster superuser.
async fn stored_ids(db: &tokio_postgres::Client) -> HashMap<Uuid, i64> {
    db.query("SELECT id, count(*) FROM events GROUP BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_to_postgres_exact() {
    const N: usize = 10_000;
    let mut env = common::Env::start().await;
    let key = env.key(None, &[Scope::Ingest]).await;
    let client = client(&env.base, &key, 2 * N);

    let started = Instant::now();
    let mut expected: HashMap<Uuid, (&str, Option<&str>)> = HashMap::new();
    for i in 0..N {
        let tenant = TENANTS[i % TENANTS.len()];
        let (e, cost) = mixed_event(i, tenant);
        expected.insert(e.id, (tenant, cost));
        client.track(e).unwrap();
    }
    tokio::task::block_in_place(|| client.flush(Duration::from_secs(60))).unwrap();
    let elapsed = started.elapsed();
    let stats = client.stats();

    let rows = env
        .db
        .query(
            "SELECT id, tenant_id, cost_usd::text, count(*) OVER (PARTITION BY tenant_id, id) \
             FROM events",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), N, "stored rows");
    let mut seen = HashSet::new();
    for r in &rows {
        let id: Uuid = r.get(0);
        let tenant: String = r.get(1);
        let cost: Option<String> = r.get(2);
        let copies: i64 = r.get(3);
        assert_eq!(copies, 1, "{id} stored {copies} times");
        let (t, c) = expected
            .get(&id)
            .unwrap_or_else(|| panic!("unknown id {id}"));
        assert_eq!(tenant, *t, "{id}: tenant");
        assert_eq!(cost.as_deref(), *c, "{id}: cost_usd text");
        seen.insert(id);
    }
    assert_eq!(seen.len(), N, "every event id present");
    let per_tenant: i64 = env
        .count("SELECT count(DISTINCT tenant_id) FROM events")
        .await;
    assert_eq!(per_tenant, 3);

    assert_eq!(stats.accepted, N as u64, "{stats:?}");
    assert_eq!(stats.sent + stats.duplicates, N as u64, "{stats:?}");
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
    assert_eq!(stats.rejected, 0, "{stats:?}");
    println!(
        "e2e: {N} events, 3 tenants, tracked+flushed in {:.2} s; stats: accepted {} sent {} \
         duplicates {} retried {} requests {} rejected {} dropped {}",
        elapsed.as_secs_f64(),
        stats.accepted,
        stats.sent,
        stats.duplicates,
        stats.retried,
        stats.requests,
        stats.rejected,
        stats.dropped.total()
    );
    tokio::task::block_in_place(|| client.shutdown(Duration::from_secs(10))).unwrap();
    env.shutdown().await;
}

/// A free loopback port: bind :0, read it, release it.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Start `agenttally-collector serve` and wait for its `listening on` line.
fn spawn_collector(url: &str, listen: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agenttally-collector"))
        .args(["serve", "--database-url", url, "--listen", listen])
        .args(["--commit-interval-ms", "20"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line.starts_with("listening on") {
                let _ = tx.send(line);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(line) => assert_eq!(line, format!("listening on {listen}")),
        Err(e) => {
            let _ = child.kill();
            panic!("collector did not start: {e}");
        }
    }
    child
}

#[test]
fn collector_sigkill_under_load() {
    const N: usize = 200_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let pg = EmbeddedPostgres::start_ephemeral().unwrap();
    let url = pg.database_url();
    let key = rt
        .block_on(agenttally_collector::create_key(
            &url,
            None,
            &[Scope::Ingest],
        ))
        .unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let mut child = spawn_collector(&url, &listen);

    let client = client(&format!("http://{listen}"), &key, N + 1_000);
    let started = Instant::now();
    let tracker = {
        let client = client.clone();
        std::thread::spawn(move || {
            let mut ids = HashSet::with_capacity(N);
            for i in 0..N {
                let e = small_event(TENANTS[i % TENANTS.len()]);
                ids.insert(e.id);
                client.track(e).unwrap();
            }
            ids
        })
    };
    // SIGKILL once about a third is acknowledged.
    while client.stats().delivered() < N as u64 / 3 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no progress: {:?}",
            client.stats()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    let before_kill = client.stats();
    let killed_at = started.elapsed();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let mut child = spawn_collector(&url, &listen);
    let restarted_at = started.elapsed();

    let tracked = tracker.join().unwrap();
    let flushed = client.flush(Duration::from_secs(120));
    let elapsed = started.elapsed();
    let stats = client.stats();
    let _ = child.kill();
    let _ = child.wait();
    flushed.unwrap();

    let (count, distinct, stored) = rt.block_on(async {
        let db = connect(&url).await;
        let r = db
            .query_one("SELECT count(*), count(DISTINCT id) FROM events", &[])
            .await
            .unwrap();
        (
            r.get::<_, i64>(0),
            r.get::<_, i64>(1),
            stored_ids(&db).await,
        )
    });
    println!(
        "sigkill: {N} events in {:.1} s; killed at {:.1} s with {} acknowledged, restarted at \
         {:.1} s; client stats: accepted {} sent {} duplicates {} (acknowledged as already \
         stored: lost acks) retried {} (event re-sends after 503/connection errors) requests {} \
         rejected {} dropped {}; db count {count} distinct {distinct}",
        elapsed.as_secs_f64(),
        killed_at.as_secs_f64(),
        before_kill.delivered(),
        restarted_at.as_secs_f64(),
        stats.accepted,
        stats.sent,
        stats.duplicates,
        stats.retried,
        stats.requests,
        stats.rejected,
        stats.dropped.total()
    );
    assert_eq!(tracked.len(), N);
    assert_eq!(count, N as i64, "rows");
    assert_eq!(distinct, N as i64, "distinct ids");
    let stored_set: HashSet<Uuid> = stored.keys().copied().collect();
    assert_eq!(stored_set, tracked, "stored ids == tracked ids");
    assert_eq!(stats.accepted, N as u64, "{stats:?}");
    assert_eq!(stats.delivered(), N as u64, "{stats:?}");
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
    assert!(stats.retried > 0, "the kill caused retries: {stats:?}");
    client.shutdown(Duration::from_secs(10)).unwrap();
    drop(pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_restart_under_sdk_load() {
    let mut env = common::Env::start().await;
    let key = env.key(Some("acme"), &[Scope::Ingest]).await;
    let client = client(&env.base, &key, 500_000);

    // Track ~5,000 events/s until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let tracker = {
        let (client, stop) = (client.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut ids = HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..50 {
                    let e = small_event("acme");
                    ids.insert(e.id);
                    client.track(e).unwrap();
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            ids
        })
    };
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let before = client.stats();
    tokio::task::block_in_place(|| env.pg.stop()).unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    tokio::task::block_in_place(|| env.pg.start_again()).unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.store(true, Ordering::Relaxed);
    let tracked = tokio::task::block_in_place(|| tracker.join()).unwrap();
    let started_flush = Instant::now();
    tokio::task::block_in_place(|| client.flush(Duration::from_secs(60))).unwrap();
    let flush_took = started_flush.elapsed();
    let stats = client.stats();

    env.db = connect(&env.pg.database_url()).await;
    let stored = stored_ids(&env.db).await;
    let rolled: i64 = env
        .count("SELECT coalesce(sum(events), 0)::int8 FROM rollup_hourly")
        .await;
    println!(
        "pg restart: tracked {} events ({} acknowledged before the stop); flush after restart \
         took {:.2} s; client stats: accepted {} sent {} duplicates {} retried {} requests {} \
         rejected {} dropped {}; stored {} rows, rollups count {rolled}",
        tracked.len(),
        before.delivered(),
        flush_took.as_secs_f64(),
        stats.accepted,
        stats.sent,
        stats.duplicates,
        stats.retried,
        stats.requests,
        stats.rejected,
        stats.dropped.total(),
        stored.values().sum::<i64>(),
    );
    assert!(stored.values().all(|&c| c == 1), "an event stored twice");
    let stored_set: HashSet<Uuid> = stored.keys().copied().collect();
    assert_eq!(stored_set.len(), tracked.len(), "stored count");
    assert_eq!(stored_set, tracked, "stored ids == tracked ids");
    assert_eq!(rolled, tracked.len() as i64, "rollups exact under retries");
    assert_eq!(stats.accepted, tracked.len() as u64, "{stats:?}");
    assert_eq!(stats.delivered(), tracked.len() as u64, "{stats:?}");
    assert_eq!(stats.dropped.total(), 0, "{stats:?}");
    assert!(stats.retried > 0, "the client saw the outage: {stats:?}");
    tokio::task::block_in_place(|| client.shutdown(Duration::from_secs(10))).unwrap();
    env.shutdown().await;
}
