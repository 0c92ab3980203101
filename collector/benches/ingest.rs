//! Sustained ingest vs `psql \copy`, measured in one run on one PostgreSQL cluster (fsync on).
//!
//! `cargo bench -p agenttally-collector --bench ingest` (release). `INGEST_BENCH_EVENTS` sets the
//! event count (default 200,000).
//!
//! 1. ingest: the SDK client (`agenttally::Client`, default gzip/in-flight settings, batches of
//!    1,000) → in-process collector (defaults: 2 writers, each committing whatever is waiting, up
//!    to 5,000 events, as soon as the channel is dry) → committed. The events are built before
//!    the clock starts (as the copy's CSV is written before its clock starts); timed from the
//!    first `track()` to `flush()` returning (every event acknowledged = committed).
//!    `INGEST_BENCH_CLIENTS=k` sends through k clients at once (one thread each, the events dealt
//!    round-robin), as a platform with several worker processes does.
//! 2. copy: the same rows (same generator, fresh ids, another tenant) as CSV, loaded with
//!    `psql -c "\copy events(...) FROM file CSV"` into the same table and day partition.
//!    Copy writes only `events`; ingest also writes `event_ids` (dedupe) and both rollup tables.
//! 3. latency: events tracked at a steady rate (a quarter of the measured ingest rate), each
//!    stamped with its track time (`timestamp`); p50/p95 of `received_at - ts` by SQL.
//!    `received_at` is `now()`, the start of the writer's transaction, so the figure leaves out
//!    the commit itself; the mean commit duration (from `/metrics`) is printed beside it.
//!
//! The `cpu` line divides the CPU time of steps 1 and 2 by the rows: PostgreSQL (every process of
//! the cluster, exited backends included) and this process (SDK client + collector) for ingest,
//! PostgreSQL and `psql` for copy. Copy keeps one core busy, ingest can use all of them, so
//! `ratio ≈ cores × copy CPU/row ÷ ingest CPU/event` when nothing else runs on the machine.
//!
//! Knobs: `INGEST_BENCH_CLIENTS`, `INGEST_BENCH_FLUSH_AT`, `INGEST_BENCH_IN_FLIGHT` (client),
//! `INGEST_BENCH_COMMIT_MS`, `INGEST_BENCH_WRITERS`, `INGEST_BENCH_BASELINES` (the savings
//! baselines priced at ingest, 1 to 8, comma separated) (collector), `INGEST_BENCH_LOG=1`
//! (collector debug log on stderr, e.g. each commit's size and time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use agenttally::{AnalyticsEvent, Client};
use agenttally_collector::{EmbeddedOptions, EmbeddedPostgres, Scope, Server, ServerConfig};

mod common;
use common::{copy, csv_row, env_or, event};

fn client(endpoint: &str, key: &str, max_queue: usize) -> Client {
    Client::builder()
        .endpoint(endpoint)
        .api_key(key)
        .flush_at(env_or("INGEST_BENCH_FLUSH_AT", 1_000))
        .max_in_flight(env_or(
            "INGEST_BENCH_IN_FLIGHT",
            agenttally::client::defaults::MAX_IN_FLIGHT,
        ))
        .max_queue_events(max_queue)
        .max_queue_bytes(1024 * 1024 * 1024)
        .max_retry_time(Duration::from_secs(300))
        .build()
        .unwrap()
}

/// Track `n` events of `tenant` as fast as possible through `clients` SDK clients (one thread
/// each, `n / clients` events each), then flush; seconds taken. The events are built first:
/// like the CSV of the copy, the application's data is ready before the clock starts.
fn ingest(
    endpoint: &str,
    key: &str,
    tenant: &str,
    n: usize,
    clients: usize,
) -> (f64, agenttally::Stats) {
    let clients = clients.clamp(1, n.max(1));
    let mut parts: Vec<Vec<AnalyticsEvent>> = (0..clients).map(|_| Vec::new()).collect();
    for i in 0..n {
        parts[i % clients].push(event(i, tenant));
    }
    let cs: Vec<Client> = parts
        .iter()
        .map(|p| client(endpoint, key, p.len() + 1_000))
        .collect();
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for (c, part) in cs.iter().zip(parts) {
            s.spawn(move || {
                for e in part {
                    c.track(e).unwrap();
                }
                c.flush(Duration::from_secs(600)).unwrap();
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    let mut stats = agenttally::Stats::default();
    for c in cs {
        let st = c.stats();
        stats.sent += st.sent;
        stats.requests += st.requests;
        stats.retried += st.retried;
        c.shutdown(Duration::from_secs(10)).unwrap();
    }
    assert_eq!(stats.sent, n as u64, "{stats:?}");
    (secs, stats)
}

/// Track `n` events at `rate` per second (in ticks of 10 ms), then flush.
fn paced(endpoint: &str, key: &str, tenant: &str, n: usize, rate: f64) {
    let c = client(endpoint, key, n + 1_000);
    let t0 = Instant::now();
    let mut i = 0;
    while i < n {
        let due = ((t0.elapsed().as_secs_f64() * rate) as usize).min(n);
        while i < due {
            c.track(event(i, tenant)).unwrap();
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    c.flush(Duration::from_secs(120)).unwrap();
    c.shutdown(Duration::from_secs(10)).unwrap();
}

/// `(p50, p95)` of `received_at - ts` in ms for `tenant`.
async fn latency(db: &tokio_postgres::Client, tenant: &str) -> (f64, f64) {
    let r = db
        .query_one(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY d), \
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY d) \
             FROM (SELECT extract(epoch FROM received_at - ts) * 1000 AS d \
                   FROM events WHERE tenant_id = $1) x",
            &[&tenant],
        )
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

/// `sum / count` of a Prometheus histogram, in ms.
fn mean_ms(metrics: &str, name: &str) -> f64 {
    let get = |suffix: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{suffix} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    get("_sum") / get("_count") * 1000.0
}

fn main() {
    if std::env::var_os("INGEST_BENCH_LOG").is_some() {
        use tracing_subscriber::prelude::*;
        let filter = tracing_subscriber::filter::Targets::new()
            .with_target("agenttally_collector", tracing::Level::DEBUG);
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .with(filter)
            .init();
    }
    let n: usize = env_or("INGEST_BENCH_EVENTS", 200_000);
    let commit_ms: u64 = env_or("INGEST_BENCH_COMMIT_MS", 0);
    let clients: usize = env_or("INGEST_BENCH_CLIENTS", 1);
    let writers: usize = env_or(
        "INGEST_BENCH_WRITERS",
        agenttally_collector::config::DEFAULT_WRITERS,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("agenttally-bench-{}", std::process::id()));
    // fsync on (the default): both sides pay for durable commits.
    let pg = EmbeddedPostgres::start(&EmbeddedOptions::new(&dir)).unwrap();
    let url = pg.database_url();
    let server = rt
        .block_on(Server::start({
            let mut cfg = ServerConfig::new(url.clone());
            cfg.listen = "127.0.0.1:0".parse().unwrap();
            cfg.commit_interval = Duration::from_millis(commit_ms);
            cfg.writers = writers;
            if let Ok(list) = std::env::var("INGEST_BENCH_BASELINES") {
                cfg.savings_baselines = list
                    .split(',')
                    .filter(|b| !b.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            cfg
        }))
        .unwrap();
    let endpoint = format!("http://{}", server.addr());
    let key = rt
        .block_on(agenttally_collector::create_key(
            &url,
            None,
            &[Scope::Ingest],
        ))
        .unwrap();
    let db = rt.block_on(async {
        let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        db
    });

    // Warm up connections, prepared statements and today's partition.
    ingest(&endpoint, &key, "bench-warmup", 5_000, clients);
    // 1. SDK → collector → commit.
    let postmaster = rt.block_on(postmaster_pid(&db));
    let cpu0 = (postgres_cpu(postmaster.as_ref()), own_cpu());
    let (ingest_s, stats) = ingest(&endpoint, &key, "bench-sdk", n, clients);
    let ingest_cpu = (
        postgres_cpu(postmaster.as_ref()) - cpu0.0,
        own_cpu().0 - (cpu0.1).0,
    );
    let metrics = fetch_metrics(&rt, &endpoint);
    // 2. psql \copy of the same rows.
    let csv_path =
        std::env::temp_dir().join(format!("agenttally-bench-{}.csv", std::process::id()));
    {
        let mut buf = Vec::with_capacity(n * 400);
        for i in 0..n {
            csv_row(&mut buf, &event(i, "bench-copy"));
        }
        let mut f = std::fs::File::create(&csv_path).unwrap();
        f.write_all(&buf).unwrap();
        f.sync_all().unwrap();
    }
    let cpu1 = (postgres_cpu(postmaster.as_ref()), own_cpu());
    let copy_s = copy(&url, &csv_path);
    // psql's backend exits with psql; its CPU time reaches the postmaster's children times only
    // once the postmaster has reaped it (read too early, copy once showed 0.1 µs/row).
    std::thread::sleep(Duration::from_millis(500));
    let copy_cpu = (
        postgres_cpu(postmaster.as_ref()) - cpu1.0,
        own_cpu().1 - (cpu1.1).1,
    );
    let _ = std::fs::remove_file(&csv_path);

    let counts: Vec<i64> = rt.block_on(async {
        let mut v = Vec::new();
        for t in ["bench-sdk", "bench-copy"] {
            let r = db
                .query_one("SELECT count(*) FROM events WHERE tenant_id = $1", &[&t])
                .await
                .unwrap();
            v.push(r.get(0));
        }
        v
    });
    assert_eq!(counts, vec![n as i64, n as i64], "rows stored by each side");

    // 3. Latency at a steady rate below capacity, and under the saturating burst of step 1.
    let ingest_rate = n as f64 / ingest_s;
    let rate = (ingest_rate / 4.0).max(1_000.0);
    let lat_n = ((rate * 5.0) as usize).max(5_000);
    paced(&endpoint, &key, "bench-latency", lat_n, rate);
    let (p50, p95) = rt.block_on(latency(&db, "bench-latency"));
    let (b50, b95) = rt.block_on(latency(&db, "bench-sdk"));
    let metrics_after = fetch_metrics(&rt, &endpoint);

    let copy_rate = n as f64 / copy_s;
    println!();
    println!(
        "config  {clients} client(s), flush_at {} max_in_flight {}  collector commit_interval {commit_ms} ms, \
         max_commit_events {}, writers {writers}  fsync on",
        env_or("INGEST_BENCH_FLUSH_AT", 1_000),
        env_or(
            "INGEST_BENCH_IN_FLIGHT",
            agenttally::client::defaults::MAX_IN_FLIGHT
        ),
        agenttally_collector::config::DEFAULT_MAX_COMMIT_EVENTS,
    );
    println!("ingest  sdk→collector→commit  {n} events  {ingest_s:.2} s  {ingest_rate:.0} ev/s");
    println!("copy    psql \\copy            {n} rows    {copy_s:.2} s  {copy_rate:.0} rows/s");
    println!(
        "ratio   ingest/copy           {:.2}   (target >= 0.7)",
        ingest_rate / copy_rate
    );
    let us = |secs: f64| secs * 1e6 / n as f64;
    println!(
        "cpu     ingest {:.1} µs/event = PostgreSQL {:.1} + SDK client and collector {:.1};  \
         copy {:.1} µs/row = PostgreSQL {:.1} + psql {:.1}  ({} cores)",
        us(ingest_cpu.0 + ingest_cpu.1),
        us(ingest_cpu.0),
        us(ingest_cpu.1),
        us(copy_cpu.0 + copy_cpu.1),
        us(copy_cpu.0),
        us(copy_cpu.1),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    println!(
        "latency track→commit p50 {p50:.1} ms  p95 {p95:.1} ms  ({lat_n} events paced at {rate:.0} ev/s)"
    );
    println!(
        "        under the burst of step 1: p50 {b50:.0} ms  p95 {b95:.0} ms (queueing in the client)"
    );
    println!(
        "detail  requests {}  retried {}  mean commit {:.1} ms  mean batch request {:.1} ms  (burst); mean commit {:.1} ms (all)",
        stats.requests,
        stats.retried,
        mean_ms(&metrics, "agenttally_writer_commit_duration_seconds"),
        mean_ms(&metrics, "agenttally_ingest_batch_duration_seconds"),
        mean_ms(&metrics_after, "agenttally_writer_commit_duration_seconds"),
    );
    let commits = metrics
        .lines()
        .find_map(|l| l.strip_prefix("agenttally_writer_commits_total "))
        .unwrap_or("?")
        .to_string();
    println!("        writer commits (warmup + burst) {commits}");

    rt.block_on(server.shutdown(Duration::from_secs(30)))
        .unwrap();
    drop(db);
    pg.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fields after the command name of `/proc/<pid>/stat` (`state` is field 0, `ppid` field 1).
fn proc_stat(pid: &str) -> Option<Vec<String>> {
    let st = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = st.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// CPU seconds of fields `a` and `b` of a `/proc/<pid>/stat` (utime/stime or cutime/cstime).
fn cpu_fields(f: &[String], a: usize, b: usize) -> f64 {
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(a) + tick(b)) / 100.0 // USER_HZ
}

/// `(own, children)` CPU seconds of this process (children: waited-for `psql`).
fn own_cpu() -> (f64, f64) {
    proc_stat("self").map_or((0.0, 0.0), |f| {
        (cpu_fields(&f, 11, 12), cpu_fields(&f, 13, 14))
    })
}

/// The postmaster of the cluster `db` is connected to: the parent of its backend.
async fn postmaster_pid(db: &tokio_postgres::Client) -> Option<String> {
    let backend: i32 = db
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .ok()?
        .get(0);
    proc_stat(&backend.to_string())?.get(1).cloned()
}

/// CPU seconds used so far by the cluster: the postmaster, its live processes and (through the
/// postmaster's children times) its exited backends. 0 without `/proc`.
fn postgres_cpu(postmaster: Option<&String>) -> f64 {
    let Some(pm) = postmaster else { return 0.0 };
    let Some(f) = proc_stat(pm) else { return 0.0 };
    let mut total = cpu_fields(&f, 11, 12) + cpu_fields(&f, 13, 14);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some(f) = proc_stat(pid).filter(|f| f.get(1) == Some(pm)) {
            total += cpu_fields(&f, 11, 12);
        }
    }
    total
}

/// The collector's Prometheus text.
fn fetch_metrics(rt: &tokio::runtime::Runtime, endpoint: &str) -> String {
    rt.block_on(async {
        reqwest::get(format!("{endpoint}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}
