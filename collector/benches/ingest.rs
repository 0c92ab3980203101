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
//!    The rows are those the collector stores for these events, the savings baselines it prices
//!    at ingest (`events.baselines`) included; a `rows` line compares both sides' rows.
//!    Copy writes only `events`; ingest also writes `event_ids` (dedupe) and the rollup tables.
//!    `INGEST_BENCH_COPY_BASELINES=0` leaves `baselines` out of the copy's rows (NULL), as the
//!    copy of the earlier passes in benches/README.md did, to compare with their figures.
//!
//!    Steps 1 and 2 run in `INGEST_BENCH_ROUNDS` rounds (default 3), each with its own tenants,
//!    ingest first in rounds 1, 3, ... and copy first in rounds 2, 4, ..., so a change of the
//!    machine's speed during the run weighs on both sides alike. Each round's ratio is printed;
//!    the ratio reported is their median.
//! 3. latency: events tracked at a steady rate (a quarter of the measured ingest rate), each
//!    stamped with its track time (`timestamp`); p50/p95 of `received_at - ts` by SQL.
//!    `received_at` is `now()`, the start of the writer's transaction, so the figure leaves out
//!    the commit itself; the mean commit duration (from `/metrics`) is printed beside it.
//!
//! The `cpu` columns divide the CPU time of steps 1 and 2 by the rows: PostgreSQL (every process of
//! the cluster, exited backends included) and this process (SDK client + collector) for ingest,
//! PostgreSQL and `psql` for copy. Copy keeps one core busy, ingest can use all of them, so
//! `ratio ≈ cores × copy CPU/row ÷ ingest CPU/event` when nothing else runs on the machine.
//!
//! Knobs: `INGEST_BENCH_ROUNDS`; `INGEST_BENCH_CLIENTS`, `INGEST_BENCH_FLUSH_AT`,
//! `INGEST_BENCH_IN_FLIGHT` (client); `INGEST_BENCH_COMMIT_MS`, `INGEST_BENCH_COMMIT_EVENTS`,
//! `INGEST_BENCH_WRITERS`,
//! `INGEST_BENCH_BASELINES` (the savings baselines priced at ingest, 1 to 8, comma separated)
//! (collector); `INGEST_BENCH_PG_SETTINGS` (the cluster's `--embedded-pg-setting`s, `;` between
//! them, e.g. `shared_preload_libraries=pg_stat_statements;pg_stat_statements.track=all` to time
//! each statement); `INGEST_BENCH_LOG=1` (collector debug log on stderr, e.g. each commit's size
//! and time).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use agenttally::{AnalyticsEvent, Client};
use agenttally_collector::{EmbeddedOptions, EmbeddedPostgres, Scope, Server, ServerConfig};

mod common;
use common::{copy, env_or, event, write_csv};

/// Where and how the SDK clients send: the collector, its key, and the client knobs
/// (`INGEST_BENCH_FLUSH_AT`, `INGEST_BENCH_IN_FLIGHT`), read once.
struct Sender {
    endpoint: String,
    key: String,
    flush_at: usize,
    max_in_flight: usize,
}

impl Sender {
    fn client(&self, max_queue: usize) -> Client {
        Client::builder()
            .endpoint(&self.endpoint)
            .api_key(&self.key)
            .flush_at(self.flush_at)
            .max_in_flight(self.max_in_flight)
            .max_queue_events(max_queue)
            .max_queue_bytes(1024 * 1024 * 1024)
            .max_retry_time(Duration::from_secs(300))
            .build()
            .unwrap()
    }
}

/// Track `n` events of `tenant` as fast as possible through `clients` SDK clients (one thread
/// each, `n / clients` events each), then flush; seconds taken. The events are built first:
/// like the CSV of the copy, the application's data is ready before the clock starts.
fn ingest(to: &Sender, tenant: &str, n: usize, clients: usize) -> (f64, agenttally::Stats) {
    let clients = clients.clamp(1, n.max(1));
    let mut parts: Vec<Vec<AnalyticsEvent>> = (0..clients).map(|_| Vec::new()).collect();
    for i in 0..n {
        parts[i % clients].push(event(i, tenant));
    }
    let cs: Vec<Client> = parts.iter().map(|p| to.client(p.len() + 1_000)).collect();
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
fn paced(to: &Sender, tenant: &str, n: usize, rate: f64) {
    let c = to.client(n + 1_000);
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
    let rounds: usize = env_or("INGEST_BENCH_ROUNDS", 3usize).max(1);
    let writers: usize = env_or(
        "INGEST_BENCH_WRITERS",
        agenttally_collector::config::DEFAULT_WRITERS,
    );
    let commit_events: usize = env_or(
        "INGEST_BENCH_COMMIT_EVENTS",
        agenttally_collector::config::DEFAULT_MAX_COMMIT_EVENTS,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("agenttally-bench-{}", std::process::id()));
    // fsync on (the default): both sides pay for durable commits.
    let mut opts = EmbeddedOptions::new(&dir);
    if let Ok(list) = std::env::var("INGEST_BENCH_PG_SETTINGS") {
        opts.settings = list
            .split(';')
            .filter(|s| !s.trim().is_empty())
            .map(|s| agenttally_collector::embedded_pg::parse_setting(s).unwrap())
            .collect();
    }
    let pg = EmbeddedPostgres::start(&opts).unwrap();
    let url = pg.database_url();
    let baselines: Vec<String> = match std::env::var("INGEST_BENCH_BASELINES") {
        Ok(list) => list
            .split(',')
            .filter(|b| !b.is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => ServerConfig::new(url.clone()).savings_baselines,
    };
    // The copy loads the rows the collector stores, `baselines` included, unless
    // `INGEST_BENCH_COPY_BASELINES=0` (the copy of the earlier passes, for comparison).
    let copy_pricing = (env_or("INGEST_BENCH_COPY_BASELINES", 1u8) != 0)
        .then(|| common::IngestPricing::new(&baselines));
    let server = rt
        .block_on(Server::start({
            let mut cfg = ServerConfig::new(url.clone());
            cfg.listen = "127.0.0.1:0".parse().unwrap();
            cfg.commit_interval = Duration::from_millis(commit_ms);
            cfg.writers = writers;
            cfg.max_commit_events = commit_events;
            cfg.savings_baselines = baselines.clone();
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
    let sender = Sender {
        endpoint: endpoint.clone(),
        key,
        flush_at: env_or("INGEST_BENCH_FLUSH_AT", 1_000),
        max_in_flight: env_or(
            "INGEST_BENCH_IN_FLIGHT",
            agenttally::client::defaults::MAX_IN_FLIGHT,
        ),
    };
    let db = rt.block_on(async {
        let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        db
    });

    // Warm up connections, prepared statements and today's partition.
    ingest(&sender, "bench-warmup", 5_000, clients);
    let postmaster = rt.block_on(postmaster_pid(&db));
    // Rounds of 1. SDK → collector → commit and 2. psql \copy of the same rows, the order
    // alternating (ingest first in odd rounds, copy first in even ones), so a drift of the
    // machine's speed during the run moves both sides alike; the ratio reported is the median.
    let mut measured = Vec::with_capacity(rounds);
    let mut rows_stored = None;
    let mut burst = None;
    for r in 0..rounds {
        let sdk = format!("bench-sdk-{r}");
        let csv = format!("bench-copy-{r}");
        let mut ingest_side = None;
        let mut copy_side = None;
        let mut wal = [Wal::default(); 2];
        for step in if r % 2 == 0 { [0, 1] } else { [1, 0] } {
            let wal0 = rt.block_on(Wal::now(&db));
            if step == 0 {
                let cpu0 = (postgres_cpu(postmaster.as_ref()), own_cpu());
                let (secs, stats) = ingest(&sender, &sdk, n, clients);
                let cpu = (
                    postgres_cpu(postmaster.as_ref()) - cpu0.0,
                    own_cpu().0 - (cpu0.1).0,
                );
                if burst.is_none() {
                    burst = Some((sdk.clone(), stats, fetch_metrics(&rt, &endpoint)));
                }
                ingest_side = Some((secs, cpu));
            } else {
                copy_side = Some(copy_round(
                    &url,
                    postmaster.as_ref(),
                    &csv,
                    n,
                    copy_pricing.as_ref(),
                ));
            }
            wal[step] = rt.block_on(Wal::now(&db)).since(&wal0);
        }
        let (Some(i), Some(c)) = (ingest_side, copy_side) else {
            unreachable!("each round runs both steps")
        };
        measured.push(Round {
            ingest: i,
            copy: c,
            wal,
        });
        // Both sides store the same rows: as many, as many with `baselines`, the same size.
        let stored: Vec<(i64, i64, f64)> = rt.block_on(async {
            let mut v = Vec::new();
            for t in [&sdk, &csv] {
                let r = db
                    .query_one(
                        "SELECT count(*), count(baselines), avg(pg_column_size(e.*))::float8
                         FROM events e WHERE tenant_id = $1",
                        &[t],
                    )
                    .await
                    .unwrap();
                v.push((r.get(0), r.get(1), r.get(2)));
            }
            v
        });
        assert_eq!(
            (stored[0].0, stored[1].0),
            (n as i64, n as i64),
            "rows stored by each side"
        );
        if copy_pricing.is_some() {
            assert_eq!(
                stored[0].1, stored[1].1,
                "rows with baselines, ingest vs copy"
            );
            // Only the tenant names differ (one character).
            assert!(
                (stored[0].2 - stored[1].2).abs() < 2.0,
                "mean row size, ingest vs copy: {stored:?}"
            );
        }
        rows_stored.get_or_insert(stored);
    }
    let (burst_tenant, stats, metrics) = burst.expect("at least one round");

    // 3. Latency at a steady rate below capacity, and under the saturating burst of step 1.
    let median_round = median_by(&measured, |m| m.ratio());
    let ingest_rate = n as f64 / median_round.ingest.0;
    let rate = (ingest_rate / 4.0).max(1_000.0);
    let lat_n = ((rate * 5.0) as usize).max(5_000);
    paced(&sender, "bench-latency", lat_n, rate);
    let (p50, p95) = rt.block_on(latency(&db, "bench-latency"));
    let (b50, b95) = rt.block_on(latency(&db, &burst_tenant));
    let metrics_after = fetch_metrics(&rt, &endpoint);

    println!();
    println!(
        "config  {clients} client(s), flush_at {} max_in_flight {}  collector commit_interval {commit_ms} ms, \
         max_commit_events {}, writers {writers}  fsync on  {} cores  {n} events per side and round",
        sender.flush_at,
        sender.max_in_flight,
        commit_events,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
    );
    let us = |secs: f64| secs * 1e6 / n as f64;
    println!(
        "round  first   ingest ev/s  copy rows/s  ratio   cpu: ingest µs/event = PostgreSQL + \
         client and collector   copy µs/row = PostgreSQL + psql"
    );
    for (r, m) in measured.iter().enumerate() {
        let (is, ic) = m.ingest;
        let (cs, cc) = m.copy;
        let ingest_cpu = format!("{:.1} = {:.1} + {:.1}", us(ic.0 + ic.1), us(ic.0), us(ic.1));
        println!(
            "{:>5}  {:<6} {:>12.0} {:>12.0}  {:>5.2}        {ingest_cpu:<43} {:.1} = {:.1} + {:.1}",
            r + 1,
            if r % 2 == 0 { "ingest" } else { "copy" },
            n as f64 / is,
            n as f64 / cs,
            m.ratio(),
            us(cc.0 + cc.1),
            us(cc.0),
            us(cc.1),
        );
    }
    println!(
        "round  WAL bytes/row: ingest  copy   full-page images: ingest  copy   checkpoints: ingest  copy   \
         backend writes: ingest  copy"
    );
    for (r, m) in measured.iter().enumerate() {
        let [i, c] = m.wal;
        println!(
            "{:>5}  {:>22.0} {:>5.0}   {:>24} {:>5}   {:>19} {:>5}   {:>22} {:>5}",
            r + 1,
            i.bytes / n as f64,
            c.bytes / n as f64,
            i.full_page_images,
            c.full_page_images,
            i.checkpoints,
            c.checkpoints,
            i.backend_writes,
            c.backend_writes,
        );
    }
    let ratios: Vec<f64> = measured.iter().map(|m| m.ratio()).collect();
    println!(
        "ratio   ingest/copy  median {:.2} of {} rounds (range {:.2}–{:.2})   (target >= 0.7)",
        median_round.ratio(),
        measured.len(),
        ratios.iter().copied().fold(f64::INFINITY, f64::min),
        ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    let rows = rows_stored.expect("at least one round");
    println!(
        "rows    per side {}: with baselines ingest {} copy {}{}; mean row ingest {:.1} bytes, copy {:.1}",
        rows[0].0,
        rows[0].1,
        rows[1].1,
        if copy_pricing.is_some() {
            ""
        } else {
            " (INGEST_BENCH_COPY_BASELINES=0)"
        },
        rows[0].2,
        rows[1].2,
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

/// One round: `(seconds, (PostgreSQL CPU s, own or psql CPU s))` of each side.
struct Round {
    ingest: (f64, (f64, f64)),
    copy: (f64, (f64, f64)),
    /// What each side (ingest, copy) made the cluster write.
    wal: [Wal; 2],
}

/// The cluster's write counters (`pg_stat_wal`, `pg_stat_bgwriter`), or the change between two.
#[derive(Debug, Default, Clone, Copy)]
struct Wal {
    bytes: f64,
    full_page_images: i64,
    checkpoints: i64,
    /// Buffers a backend had to write itself (no clean buffer free).
    backend_writes: i64,
}

impl Wal {
    async fn now(db: &tokio_postgres::Client) -> Wal {
        let r = db
            .query_one(
                "SELECT w.wal_bytes::float8, w.wal_fpi, b.checkpoints_timed + b.checkpoints_req,
                        b.buffers_backend
                 FROM pg_stat_wal w, pg_stat_bgwriter b",
                &[],
            )
            .await
            .unwrap();
        Wal {
            bytes: r.get(0),
            full_page_images: r.get(1),
            checkpoints: r.get(2),
            backend_writes: r.get(3),
        }
    }

    fn since(&self, before: &Wal) -> Wal {
        Wal {
            bytes: self.bytes - before.bytes,
            full_page_images: self.full_page_images - before.full_page_images,
            checkpoints: self.checkpoints - before.checkpoints,
            backend_writes: self.backend_writes - before.backend_writes,
        }
    }
}

impl Round {
    /// Ingest's rate over copy's (both sides move the same number of rows).
    fn ratio(&self) -> f64 {
        self.copy.0 / self.ingest.0
    }
}

/// The element whose `key` is the median (the lower middle one for an even count).
fn median_by<T>(items: &[T], key: impl Fn(&T) -> f64) -> &T {
    let mut order: Vec<&T> = items.iter().collect();
    order.sort_by(|a, b| key(a).total_cmp(&key(b)));
    order[(order.len() - 1) / 2]
}

/// Writes `n` rows of `tenant` as CSV, then times `psql \copy` of it: `(seconds, (PostgreSQL
/// CPU s, psql CPU s))`. The CSV is written before the clock starts, as ingest's events are built.
fn copy_round(
    url: &str,
    postmaster: Option<&String>,
    tenant: &str,
    n: usize,
    pricing: Option<&common::IngestPricing>,
) -> (f64, (f64, f64)) {
    let csv_path =
        std::env::temp_dir().join(format!("agenttally-bench-{}.csv", std::process::id()));
    write_csv(&csv_path, tenant, n, pricing);
    let cpu1 = (postgres_cpu(postmaster), own_cpu());
    let secs = copy(url, &csv_path);
    // psql's backend exits with psql; its CPU time reaches the postmaster's children times only
    // once the postmaster has reaped it (read too early, copy once showed 0.1 µs/row).
    std::thread::sleep(Duration::from_millis(500));
    let cpu = (postgres_cpu(postmaster) - cpu1.0, own_cpu().1 - (cpu1.1).1);
    let _ = std::fs::remove_file(&csv_path);
    (secs, cpu)
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
