//! The read API at scale: `QUERY_BENCH_EVENTS` (10,000,000) events of agent runs for
//! `QUERY_BENCH_TENANTS` (1,000) tenants spread over the last 90 days, then
//! `QUERY_BENCH_QUERIES` (200) random tenant/range queries per endpoint through the HTTP API,
//! each also answered by a plain SQL scan of the raw events (the reference answers of the
//! property test, `tests/common/raw.rs`), and the time both took. Then ingest alone, ingest
//! while the query mix runs, and `psql \copy` of as many rows (the rows the collector stores,
//! savings baselines included; `QUERY_BENCH_COPY_BASELINES=0` leaves those out, as the earlier
//! passes in benches/README.md did), in the same run: in rounds (`QUERY_BENCH_ROUNDS`, default
//! 3) of alternating order, the medians reported.
//!
//! `cargo bench -p agenttally-collector --bench query` (release). The data set is stored
//! through the collector's own ingest path (SDK client → HTTP → writer: raw rows and rollups in
//! the same transactions, so the rollups are exactly what ingest builds) into a PostgreSQL
//! cluster kept in `QUERY_BENCH_DIR` (default `target/query-bench`); a later run with the same
//! size reuses it (delete the directory to reload). Before measuring, the closed days' daily
//! rollups are compacted into month tables (`store::compact`, what a running collector does once
//! a day; `QUERY_BENCH_COMPACT=0` skips it, to measure the layout without it).
//! `QUERY_BENCH_ORDER=time` loads a separate set (`…-time`) in time order instead of tenant after
//! tenant, compacting at each new day as a running collector does: the layout weeks of running
//! leave (the hourly rollups written hour after hour, so a tenant's hours lie apart; the open
//! month's days appended to its month table).
//! Targets: p95 ≤ 20 ms per endpoint; ingest while queries run ≥ 0.5 of `\copy`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../tests/common/raw.rs"]
mod raw;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttally::pricing::PriceBook;
use agenttally::{AgentEvent, AnalyticsEvent, Client, ProviderEvent, Usage};
use agenttally_collector::{EmbeddedOptions, EmbeddedPostgres, Scope, Server, ServerConfig};
use chrono::{DateTime, DurationRound, NaiveDate, TimeDelta, Utc};
use common::{copy, env_or, event, write_csv};
use rust_decimal::Decimal;
use serde_json::Value;

/// A small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

const MODELS: [(&str, &str); 5] = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-sonnet-4-5"),
    ("google", "gemini-2.5-pro"),
    ("nowhere", "no-such-model"),
];
const TASKS: [&str; 4] = ["bug_fix", "feature", "test_generation", "review"];

/// One agent run of `tenant` starting at `start`: `agent.started`, 0–3 provider calls (priced
/// at ingest, or unpriced for the unknown model), and a terminal event — itemized
/// (`metadata.calls`) when it had calls, else carrying the run's cost itself.
fn run(g: &mut Rng, tenant: &str, start: DateTime<Utc>, out: &mut Vec<AnalyticsEvent>) {
    let corr = format!("{tenant}-{}", g.next(u64::MAX));
    let agent = format!("agent-{}", g.next(8));
    let task = TASKS[g.next(TASKS.len() as u64) as usize];
    let at = |s: u64| start + TimeDelta::seconds(s as i64);
    out.push(
        AgentEvent::started(tenant, &agent)
            .task_type(task)
            .correlation_id(&corr)
            .timestamp(start)
            .build()
            .unwrap(),
    );
    let calls = g.next(4);
    for c in 0..calls {
        let (p, m) = MODELS[g.next(MODELS.len() as u64) as usize];
        out.push(
            ProviderEvent::api_call(tenant, p, m)
                .usage(Usage {
                    input_tokens: 200 + g.next(8_000),
                    output_tokens: 50 + g.next(2_000),
                    requests: 1,
                    ..Usage::default()
                })
                .duration_ms(100 + g.next(8_000))
                .task_type(task)
                .agent_id(&agent)
                .correlation_id(&corr)
                .timestamp(at(c + 1))
                .build()
                .unwrap(),
        );
    }
    let end = at(30 + g.next(600));
    let b = match g.next(10) {
        0 => AgentEvent::failed(tenant, &agent, "tool_error"),
        1 => AgentEvent::timeout(tenant, &agent),
        _ => AgentEvent::completed(tenant, &agent),
    };
    let mut b = b
        .task_type(task)
        .correlation_id(&corr)
        .timestamp(end)
        .duration_ms(1_000 + g.next(600_000))
        .queue_ms(g.next(5_000));
    b = if calls > 0 {
        b.meta("calls", calls)
    } else {
        b.cost_usd(Decimal::new(g.next(500_000) as i64, 5))
    };
    out.push(b.build().unwrap());
}

fn client(endpoint: &str, key: &str) -> Client {
    Client::builder()
        .endpoint(endpoint)
        .api_key(key)
        .flush_at(1_000)
        .max_queue_events(2_000_000)
        .max_queue_bytes(2 * 1024 * 1024 * 1024)
        .max_retry_time(Duration::from_secs(600))
        .build()
        .unwrap()
}

/// Store `n` events (whole runs) for `tenants` tenants over the 90 days before `now`, one
/// tenant after another (as tenants' own clients send them: each batch holds one tenant).
fn load(endpoint: &str, key: &str, n: usize, tenants: usize, now: DateTime<Utc>) {
    let c = client(endpoint, key);
    let mut g = Rng(7);
    let mut buf = Vec::with_capacity(8);
    let (mut sent, mut mark, t0) = (0usize, 1_000_000usize, Instant::now());
    let span = 90 * 86_400 - 3_600;
    for t in 0..tenants {
        let tenant = format!("tenant-{t:04}");
        let share = n * (t + 1) / tenants;
        while sent < share {
            let start = now - TimeDelta::seconds(3_600 + g.next(span) as i64);
            sent += track_run(&c, &mut g, &tenant, start, &mut buf);
        }
        if sent >= mark {
            mark += 1_000_000;
            // Keep the client's queue bounded: wait for the collector to catch up.
            c.flush(Duration::from_secs(3_600)).unwrap();
            eprintln!(
                "load: {sent} events stored, {:.0} s",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    finish(c, sent, t0);
}

/// As [`load`], but in time order, as a running collector receives them: hour after hour of the
/// 90 days, every tenant's runs that start in that hour (each tenant its share of `n`, spread
/// evenly), and at each new UTC day `day(date)` — the bench runs the daily compaction there, so
/// the month tables and the hourly rollups are laid out as weeks of running leave them.
fn load_in_time_order(
    endpoint: &str,
    key: &str,
    n: usize,
    tenants: usize,
    now: DateTime<Utc>,
    mut day: impl FnMut(NaiveDate),
) {
    let c = client(endpoint, key);
    let mut g = Rng(7);
    let mut buf = Vec::with_capacity(8);
    let (mut sent, mut mark, t0) = (0usize, 1_000_000usize, Instant::now());
    let first = now - TimeDelta::days(90);
    let hours = 90 * 24 - 1;
    let mut by_tenant = vec![0usize; tenants];
    let mut date = first.date_naive();
    for h in 0..hours {
        let slot = first + TimeDelta::hours(h as i64);
        if slot.date_naive() != date {
            date = slot.date_naive();
            c.flush(Duration::from_secs(3_600)).unwrap();
            day(date);
        }
        for (t, done) in by_tenant.iter_mut().enumerate() {
            let tenant = format!("tenant-{t:04}");
            let share = n * (t + 1) / tenants - n * t / tenants;
            while *done < share * (h + 1) / hours {
                let start = slot + TimeDelta::seconds(g.next(3_600) as i64);
                let k = track_run(&c, &mut g, &tenant, start, &mut buf);
                *done += k;
                sent += k;
            }
        }
        if sent >= mark {
            mark += 1_000_000;
            eprintln!(
                "load: {sent} events tracked, {:.0} s",
                t0.elapsed().as_secs_f64()
            );
        }
    }
    finish(c, sent, t0);
}

/// Track one run of `tenant` starting at `start`; the number of its events.
fn track_run(
    c: &Client,
    g: &mut Rng,
    tenant: &str,
    start: DateTime<Utc>,
    buf: &mut Vec<AnalyticsEvent>,
) -> usize {
    buf.clear();
    run(g, tenant, start, buf);
    let k = buf.len();
    for e in buf.drain(..) {
        c.track(e).unwrap();
    }
    k
}

/// Wait until the `sent` events tracked since `t0` are stored, and say how fast it went.
fn finish(c: Client, sent: usize, t0: Instant) {
    c.flush(Duration::from_secs(3_600)).unwrap();
    let stats = c.stats();
    c.shutdown(Duration::from_secs(10)).unwrap();
    // A batch retried after its answer was lost comes back as duplicates: stored once.
    assert_eq!(stats.sent + stats.duplicates, sent as u64, "{stats:?}");
    eprintln!(
        "load: {sent} events stored in {:.0} s ({:.0} ev/s)",
        t0.elapsed().as_secs_f64(),
        sent as f64 / t0.elapsed().as_secs_f64()
    );
}

/// A random range: the last 1, 7, 30 or 90 days, whole UTC days (daily rollups) or not (hourly).
fn range(g: &mut Rng, now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let days = [1, 7, 30, 89][g.next(4) as usize];
    if g.next(2) == 0 {
        let today = now.duration_trunc(TimeDelta::days(1)).unwrap();
        (today - TimeDelta::days(days), today)
    } else {
        let to = now - TimeDelta::minutes(g.next(600) as i64);
        (to - TimeDelta::days(days) + TimeDelta::minutes(17), to)
    }
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[derive(Clone, Copy, PartialEq)]
enum Endpoint {
    Summary,
    Series,
    Savings,
    Peaks,
    Recommend,
    Billing,
}

const ENDPOINTS: [(Endpoint, &str); 6] = [
    (Endpoint::Summary, "summary"),
    (Endpoint::Series, "timeseries"),
    (Endpoint::Savings, "savings"),
    (Endpoint::Peaks, "peaks"),
    (Endpoint::Recommend, "recommendations"),
    (Endpoint::Billing, "billing/usage"),
];

fn path(e: Endpoint, tenant: &str, from: DateTime<Utc>, to: DateTime<Utc>, g: &mut Rng) -> String {
    let r = format!("tenant_id={tenant}&from={}&to={}", ts(from), ts(to));
    match e {
        Endpoint::Summary => format!("/v1/metrics/summary?{r}"),
        Endpoint::Series => {
            let metric =
                ["cost_usd", "executions", "tokens", "p95_duration_ms"][g.next(4) as usize];
            let group = [
                "",
                "&group_by=provider",
                "&group_by=task_type",
                "&group_by=model",
            ][g.next(4) as usize];
            format!("/v1/metrics/timeseries?{r}&metric={metric}&interval=day{group}")
        }
        Endpoint::Savings => format!("/v1/metrics/savings?{r}"),
        Endpoint::Peaks => format!("/v1/metrics/peaks?{r}"),
        Endpoint::Recommend => format!("/v1/metrics/recommendations?{r}"),
        Endpoint::Billing => format!("/v1/billing/usage?tenant_id={tenant}"),
    }
}

/// The same answer by a plain SQL scan of the raw rows (the property test's references).
async fn reference(
    db: &tokio_postgres::Client,
    book: &PriceBook,
    e: Endpoint,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Value {
    match e {
        Endpoint::Summary => raw::summary(db, tenant, from, to).await.0,
        Endpoint::Series => {
            let (b, _) = raw::series(db, tenant, from, to, "day", Some("provider")).await;
            Value::from(b.len())
        }
        Endpoint::Savings => raw::savings(db, book, tenant, from, to, "most_expensive").await,
        Endpoint::Peaks => raw::peaks(db, tenant, from, to, "executions", 10).await,
        Endpoint::Recommend => {
            raw::recommendations(db, tenant, from, to, Decimal::new(5, 2), 20)
                .await
                .0
        }
        Endpoint::Billing => {
            let (start, end) = raw::month(to);
            let since = start - TimeDelta::days(366);
            Value::from(raw::usage_by_month(db, tenant, since, end).await.len())
        }
    }
}

fn main() {
    let n: usize = env_or("QUERY_BENCH_EVENTS", 10_000_000);
    let tenants: usize = env_or("QUERY_BENCH_TENANTS", 1_000);
    let queries: usize = env_or("QUERY_BENCH_QUERIES", 200);
    let time_order = std::env::var("QUERY_BENCH_ORDER").is_ok_and(|v| v == "time");
    let dir = std::env::var_os("QUERY_BENCH_DIR").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/query-bench")
                .join(format!(
                    "{n}-{tenants}{}",
                    if time_order { "-time" } else { "" }
                ))
        },
        PathBuf::from,
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let fresh = !dir.join("loaded").exists();
    let pg = EmbeddedPostgres::start(&EmbeddedOptions::new(&dir)).unwrap();
    let url = pg.database_url();
    let cfg = {
        let mut cfg = ServerConfig::new(url.clone());
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        cfg.commit_interval = Duration::ZERO;
        // 90 days of raw rows (the reference scans them); no query rate limit here.
        cfg.raw_retention_days = 100;
        cfg.hourly_retention_days = 100;
        cfg.rate_query_per_minute = 1_000_000;
        cfg
    };
    // What the copy prices its rows' baselines on: the collector's own.
    let baselines = cfg.savings_baselines.clone();
    let server = rt.block_on(Server::start(cfg)).unwrap();
    let endpoint = format!("http://{}", server.addr());
    let key = rt
        .block_on(agenttally_collector::create_key(
            &url,
            None,
            &[Scope::Ingest, Scope::Read],
        ))
        .unwrap();
    let now = Utc::now();
    let (mut db, conn) = rt
        .block_on(tokio_postgres::connect(&url, tokio_postgres::NoTls))
        .unwrap();
    rt.spawn(conn);
    if fresh {
        if time_order {
            load_in_time_order(&endpoint, &key, n, tenants, now, |today| {
                rt.block_on(agenttally_collector::store::compact::run_once(
                    &mut db, today,
                ))
                .unwrap();
            });
        } else {
            load(&endpoint, &key, n, tenants, now);
        }
        std::fs::write(dir.join("loaded"), now.to_rfc3339()).unwrap();
    }
    let stored: i64 = rt
        .block_on(db.query_one("SELECT count(*) FROM events", &[]))
        .unwrap()
        .get(0);
    if env_or("QUERY_BENCH_COMPACT", 1u8) != 0 {
        let t0 = Instant::now();
        let done = rt
            .block_on(agenttally_collector::store::compact::run_once(
                &mut db,
                now.date_naive(),
            ))
            .unwrap();
        println!(
            "compact {} daily rollup rows moved into month tables, {} month tables rewritten \
             ({:.1} s)",
            done.moved,
            done.rewritten.len(),
            t0.elapsed().as_secs_f64()
        );
    }
    rt.block_on(db.batch_execute("VACUUM ANALYZE")).unwrap();
    println!(
        "data    {stored} events, {tenants} tenants, 90 days ({})",
        if fresh { "loaded now" } else { "reused" }
    );

    let http = reqwest::Client::new();
    let book = PriceBook::builtin();
    let mut g = Rng(42);
    println!(
        "{:<16} {:>8} {:>8} {:>8}   {:>9} {:>9}   {:>7}",
        "endpoint", "p50 ms", "p95 ms", "max ms", "raw p50", "raw p95", "raw/api"
    );
    let mut worst = 0.0f64;
    for (e, name) in ENDPOINTS {
        let (mut api, mut scan) = (Vec::new(), Vec::new());
        for _ in 0..queries {
            let tenant = format!("tenant-{:04}", g.next(tenants as u64));
            let (from, to) = range(&mut g, now);
            let p = path(e, &tenant, from, to, &mut g);
            let t0 = Instant::now();
            let resp = rt
                .block_on(
                    http.get(format!("{endpoint}{p}"))
                        .header("authorization", format!("Bearer {key}"))
                        .send(),
                )
                .unwrap();
            let status = resp.status();
            let body: Value = rt.block_on(resp.json()).unwrap();
            api.push(t0.elapsed().as_secs_f64() * 1e3);
            assert!(status.is_success(), "{p}: {status} {body}");
            let (f, t) = match (body["from"].as_str(), body["to"].as_str()) {
                (Some(f), Some(t)) => (
                    DateTime::parse_from_rfc3339(f).unwrap().to_utc(),
                    DateTime::parse_from_rfc3339(t).unwrap().to_utc(),
                ),
                _ => (from, to),
            };
            let t0 = Instant::now();
            let want = rt.block_on(reference(&db, &book, e, &tenant, f, t));
            scan.push(t0.elapsed().as_secs_f64() * 1e3);
            if e == Endpoint::Summary {
                for field in ["executions", "successes", "cost_usd", "api_calls"] {
                    assert_eq!(body[field], want[field], "{p}: {field}");
                }
            }
        }
        let (p50, p95, max) = (pct(&mut api, 0.5), pct(&mut api, 0.95), pct(&mut api, 1.0));
        let (r50, r95) = (pct(&mut scan, 0.5), pct(&mut scan, 0.95));
        worst = worst.max(p95);
        println!(
            "{name:<16} {p50:>8.1} {p95:>8.1} {max:>8.1}   {r50:>9.1} {r95:>9.1}   {:>6.1}x",
            r95 / p95
        );
    }
    println!("worst p95 {worst:.1} ms  (target <= 20 ms per endpoint)");

    // Ingest alone, ingest while the query mix runs, and `\copy` of as many rows, in rounds
    // (`QUERY_BENCH_ROUNDS`, default 3) whose order alternates (alone, busy, copy; then copy,
    // busy, alone; ...), so a change of the machine's speed during the run weighs on every side
    // alike; the ratios reported are the medians of the rounds'. As the copy's CSV is written
    // before its clock starts, ingest's events are built before its clock starts.
    let m: usize = env_or("QUERY_BENCH_INGEST_EVENTS", 200_000);
    let rounds: usize = env_or("QUERY_BENCH_ROUNDS", 3usize).max(1);
    let ingest = |tenant: &str| -> f64 {
        let events: Vec<AnalyticsEvent> = (0..m).map(|i| event(i, tenant)).collect();
        let c = client(&endpoint, &key);
        let t0 = Instant::now();
        for e in events {
            c.track(e).unwrap();
        }
        c.flush(Duration::from_secs(600)).unwrap();
        let s = t0.elapsed().as_secs_f64();
        c.shutdown(Duration::from_secs(10)).unwrap();
        m as f64 / s
    };
    // Ingest while two readers send the query mix back to back: (events/s, queries/s).
    let busy = |tenant: &str| -> (f64, f64) {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (stop, served, endpoint, key) =
                    (stop.clone(), served.clone(), endpoint.clone(), key.clone());
                std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    let http = reqwest::Client::new();
                    let mut g = Rng(1_000 + r);
                    let now = Utc::now();
                    while !stop.load(Ordering::Relaxed) {
                        let e = ENDPOINTS[g.next(ENDPOINTS.len() as u64) as usize].0;
                        let tenant = format!("tenant-{:04}", g.next(tenants as u64));
                        let (from, to) = range(&mut g, now);
                        let p = path(e, &tenant, from, to, &mut g);
                        let ok = rt
                            .block_on(
                                http.get(format!("{endpoint}{p}"))
                                    .header("authorization", format!("Bearer {key}"))
                                    .send(),
                            )
                            .is_ok_and(|r| r.status().is_success());
                        assert!(ok, "{p}");
                        served.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        let t0 = Instant::now();
        let rate = ingest(tenant);
        let qps = served.load(Ordering::Relaxed) as f64 / t0.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        (rate, qps)
    };
    // The copy loads the rows the collector stores (its default savings baselines included),
    // unless `QUERY_BENCH_COPY_BASELINES=0` (the copy of the earlier passes, for comparison).
    let pricing = (env_or("QUERY_BENCH_COPY_BASELINES", 1u8) != 0)
        .then(|| common::IngestPricing::new(&baselines));
    let copy_rows = |tenant: &str| -> f64 {
        let csv = dir.join("copy.csv");
        write_csv(&csv, tenant, m, pricing.as_ref());
        let rate = m as f64 / copy(&url, &csv);
        std::fs::remove_file(&csv).unwrap();
        rate
    };
    println!("round  order               alone ev/s  busy ev/s  queries/s  copy rows/s  busy/copy  alone/copy");
    let (mut busy_ratios, mut alone_ratios) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let forward = r % 2 == 0;
        let (mut alone, mut loaded, mut copied) = (0.0, (0.0, 0.0), 0.0);
        for step in 0..3 {
            match if forward { step } else { 2 - step } {
                0 => alone = ingest(&format!("bench-ingest-alone-{r}")),
                1 => loaded = busy(&format!("bench-ingest-busy-{r}")),
                _ => copied = copy_rows(&format!("bench-copy-{r}")),
            }
        }
        let (b, a) = (loaded.0 / copied, alone / copied);
        busy_ratios.push(b);
        alone_ratios.push(a);
        println!(
            "{:>5}  {:<18} {alone:>11.0} {:>10.0} {:>10.0} {copied:>12.0} {b:>10.2} {a:>11.2}",
            r + 1,
            if forward {
                "alone, busy, copy"
            } else {
                "copy, busy, alone"
            },
            loaded.0,
            loaded.1,
        );
    }
    rt.block_on(db.batch_execute(
        "DELETE FROM events WHERE tenant_id LIKE 'bench-%';
         DELETE FROM event_ids WHERE tenant_id LIKE 'bench-%'",
    ))
    .unwrap();
    println!(
        "ratio   ingest while querying / copy: median {:.2} of {rounds} rounds  (target >= 0.5); \
         alone / copy: median {:.2}",
        pct(&mut busy_ratios, 0.5),
        pct(&mut alone_ratios, 0.5),
    );
    rt.block_on(server.shutdown(Duration::from_secs(30)))
        .unwrap();
}
