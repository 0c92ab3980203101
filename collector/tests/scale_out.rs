//! Scale-out on one machine: the collector keeps no state of its own, so two collector processes
//! (the binary, `serve --database-url`) against one PostgreSQL behave as one. Every batch of
//! 50,000 events is posted to both at once (a retry landing on the other replica, as behind a
//! load balancer): each event is stored once, every copy is answered accepted or duplicate, and
//! the hourly and daily rollups equal the raw rows, counts and cost sums exactly.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use agenttally_collector::{EmbeddedPostgres, Scope};
use common::{batch, event, join_all};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const EVENTS: usize = 50_000;
const PER_BATCH: usize = 500;
/// Batches in flight at once (each posted to both replicas).
const IN_FLIGHT: usize = 4;
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const MODELS: [(&str, &str); 3] = [
    ("openai", "gpt-4o"),
    ("anthropic", "claude-sonnet-4"),
    ("google", "gemini-2.5-pro"),
];
const COSTS: [&str; 6] = [
    "0.0123",
    "0.000000123",
    "0.10",
    "1.5",
    "0",
    "12.345678901234",
];

/// A replica: the collector binary, stopped with SIGTERM when dropped.
struct Replica {
    child: Option<Child>,
    base: String,
}

impl Replica {
    fn start(url: &str) -> Replica {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agenttally-collector"))
            .args(["serve", "--database-url", url, "--listen", "127.0.0.1:0"])
            .args(["--commit-interval-ms", "5", "--writers", "2"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn collector");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => Replica {
                child: Some(child),
                base: format!("http://{addr}"),
            },
            Err(e) => {
                let _ = child.kill();
                panic!("collector did not start: {e}");
            }
        }
    }

    fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(s)) = child.try_wait() {
                assert!(s.success(), "collector exited with {s}");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("collector did not stop within 30 s of SIGTERM");
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Post `body` until the replica answers 200 (a 503 is retried after a pause, as the SDK does).
/// Returns (accepted, duplicates, 503s seen).
async fn post_until_ok(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    body: Vec<u8>,
) -> (i64, i64, u64) {
    let mut unavailable = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(Instant::now() < deadline, "{base}: no 200 within 120 s");
        let resp = http
            .post(format!("{base}/v1/batch"))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("send");
        match resp.status().as_u16() {
            200 => {
                let v: Value = resp.json().await.expect("json");
                assert_eq!(v["rejected"], json!([]), "{v}");
                let accepted = v["accepted"].as_i64().expect("accepted");
                let duplicates = v["duplicates"].as_i64().expect("duplicates");
                assert_eq!(accepted + duplicates, PER_BATCH as i64, "{v}");
                return (accepted, duplicates, unavailable);
            }
            503 => {
                unavailable += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            s => panic!(
                "{base}: status {s}: {}",
                resp.text().await.unwrap_or_default()
            ),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_one_database_store_each_event_once() {
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start_ephemeral)
        .await
        .expect("join")
        .expect("ephemeral PostgreSQL");
    let url = pg.database_url();
    // Migrate once up front; two replicas migrating at once is covered by the advisory lock.
    agenttally_collector::migrate(&url).await.expect("migrate");
    let key = agenttally_collector::create_key(&url, None, &[Scope::Ingest])
        .await
        .expect("key");
    let a = Replica::start(&url);
    let b = Replica::start(&url);
    let http = reqwest::Client::new();

    let mut expected_cost = Decimal::ZERO;
    let batches: Vec<Vec<u8>> = (0..EVENTS / PER_BATCH)
        .map(|n| {
            let events: Vec<Value> = (0..PER_BATCH)
                .map(|j| {
                    let i = n * PER_BATCH + j;
                    let (provider, model) = MODELS[i % MODELS.len()];
                    let cost = COSTS[i % COSTS.len()];
                    expected_cost += Decimal::from_str(cost).expect("decimal");
                    event(
                        TENANTS[i % TENANTS.len()],
                        json!({"provider": provider, "model": model, "cost_usd": cost,
                               "duration_ms": 1 + i % 3000, "queue_ms": i % 17}),
                    )
                })
                .collect();
            batch(&events)
        })
        .collect();

    let started = Instant::now();
    let (mut accepted, mut duplicates, mut unavailable) = (0i64, 0i64, 0u64);
    // Events each replica stored (accepted), to show both did real work.
    let mut by_replica = [0i64; 2];
    for group in batches.chunks(IN_FLIGHT) {
        let posts = group.iter().map(|body| {
            let (http, key, a, b) = (&http, &key, &a.base, &b.base);
            async move {
                tokio::join!(
                    post_until_ok(http, a, key, body.clone()),
                    post_until_ok(http, b, key, body.clone())
                )
            }
        });
        let mut handles = Vec::new();
        for p in posts {
            handles.push(p);
        }
        for (x, y) in join_all(handles).await {
            for (r, (acc, dup, u)) in [x, y].into_iter().enumerate() {
                by_replica[r] += acc;
                accepted += acc;
                duplicates += dup;
                unavailable += u;
            }
        }
    }
    let elapsed = started.elapsed();
    a.stop();
    b.stop();

    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let count = |sql: &'static str| {
        let db = &db;
        async move { db.query_one(sql, &[]).await.expect(sql).get::<_, i64>(0) }
    };
    let n = EVENTS as i64;
    println!(
        "scale-out: {EVENTS} events, every batch of {PER_BATCH} posted to two collectors, in \
         {:.1} s; accepted {accepted} (A {}, B {}), duplicates {duplicates}, 503s retried \
         {unavailable}",
        elapsed.as_secs_f64(),
        by_replica[0],
        by_replica[1]
    );
    assert!(
        by_replica.iter().all(|&r| r > 0),
        "both replicas stored events: {by_replica:?}"
    );
    assert_eq!(accepted, n, "each event accepted once across both replicas");
    assert_eq!(duplicates, n, "the other copy answered duplicate");
    for sql in [
        "SELECT count(*) FROM events",
        "SELECT count(DISTINCT (tenant_id, id)) FROM events",
        "SELECT count(*) FROM event_ids",
        "SELECT sum(events)::int8 FROM rollup_hourly",
        "SELECT sum(events)::int8 FROM rollup_daily",
        "SELECT sum(costed_events)::int8 FROM rollup_daily",
        "SELECT sum(duration_count)::int8 FROM rollup_hourly",
        "SELECT sum(value::int8)::int8 FROM rollup_daily, jsonb_each_text(queue_hist)",
    ] {
        assert_eq!(count(sql).await, n, "{sql}");
    }
    for sql in [
        "SELECT sum(cost_usd) FROM events",
        "SELECT sum(cost_usd) FROM rollup_hourly",
        "SELECT sum(cost_usd) FROM rollup_daily",
    ] {
        let got: Decimal = db.query_one(sql, &[]).await.expect(sql).get(0);
        assert_eq!(got, expected_cost, "{sql}");
    }
    for table in ["rollup_hourly", "rollup_daily"] {
        let sql = format!(
            "SELECT count(*) FROM ( \
               SELECT tenant_id, provider, model, sum(events) AS n, sum(duration_sum_ms) AS d, \
                 sum(cost_usd) AS c FROM {table} GROUP BY 1, 2, 3) r \
             FULL JOIN ( \
               SELECT tenant_id, provider, model, count(*) AS n, sum(duration_ms) AS d, \
                 sum(cost_usd) AS c FROM events GROUP BY 1, 2, 3) e \
             USING (tenant_id, provider, model) \
             WHERE r.n IS DISTINCT FROM e.n OR r.d IS DISTINCT FROM e.d \
               OR r.c IS DISTINCT FROM e.c"
        );
        let differing: i64 = db.query_one(&sql, &[]).await.expect("join").get(0);
        assert_eq!(
            differing, 0,
            "{table} equals the raw rows per tenant, provider, model"
        );
    }
    drop(db);
    drop(pg);
}
