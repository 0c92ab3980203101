//! Client benchmarks, each a ratio against a baseline measured in the same run:
//! (a) `track()` of a pre-built event vs a bare `std::sync::mpsc` send and a bounded
//!     `crossbeam_channel` send of the same event, with criterion, and again as alternating
//!     blocks whose per-round ratios are robust to a busy machine (the criterion estimates are
//!     taken seconds apart); events with no metadata and with 3 small metadata keys; the blocks
//!     run with the worker idle (each block delivered before the next) and busy (flush_at 1000,
//!     a live HTTP sink, the worker delivering the previous blocks meanwhile);
//! (b) sustained throughput through the worker to a local HTTP sink (gzip) that decompresses
//!     and counts;
//! (c) memory held while the endpoint is down vs `max_queue_bytes`.
//! A summary with the ratio lines is printed at the end. Options: criterion's (e.g. a filter such
//! as `hot_path` runs only the criterion part of (a); the summary still runs everything).
#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttally::client::{Response, SendFuture, Transport};
use agenttally::{AnalyticsEvent, Client, OverflowPolicy, ProviderEvent, Usage};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use criterion::{BatchSize, Criterion};

fn event() -> AnalyticsEvent {
    ProviderEvent::api_call("acme-corp", "openai", "gpt-4o")
        .usage(Usage {
            input_tokens: 1834,
            cached_input_tokens: 512,
            output_tokens: 412,
            ..Usage::default()
        })
        .agent_id("code-reviewer-7")
        .task_type("code_review")
        .workflow_id("wf-2026-11-25-0001")
        .duration_ms(2310)
        .build()
        .unwrap()
}

/// The (a) event with 3 small metadata keys, as a caller typically adds them.
fn event_meta() -> AnalyticsEvent {
    let mut e = event();
    e.metadata.insert("repo".into(), "acme/api".into());
    e.metadata.insert("branch".into(), "main".into());
    e.metadata.insert("attempt".into(), 2.into());
    e.validate().unwrap();
    e
}

/// Medians over the rounds of (a) interleaved: ns/event of each block, and of per-round ratios.
#[derive(Debug, Default)]
struct Rounds {
    mpsc: f64,
    xbeam: f64,
    track: f64,
    track_meta: f64,
    /// track with metadata / crossbeam send of the same event.
    meta_vs_xbeam: f64,
    /// track without metadata / mpsc send (the figure kept from earlier runs).
    plain_vs_mpsc: f64,
    /// track with metadata / track without.
    meta_vs_plain: f64,
}

/// (a) again, robust to a shared machine: blocks of `n` pre-built events go through a bare
/// `mpsc` send, a bounded crossbeam send (the 3-key event) and `track()` without and with
/// metadata, in turn, `rounds` times; the medians of each and of the per-round ratios (load
/// that drifts between rounds cancels). `idle`: the client delivers each block before the next
/// starts; else the worker is busy delivering earlier blocks while the next ones run.
fn interleaved(client: &Client, idle: bool, rounds: usize, n: usize) -> Rounds {
    let (plain, meta) = (event(), event_meta());
    let (tx, rx) = std::sync::mpsc::channel::<AnalyticsEvent>();
    let drain = std::thread::spawn(move || for _ in rx {});
    let (xtx, xrx) = crossbeam_channel::bounded::<AnalyticsEvent>(n);
    let xdrain = std::thread::spawn(move || for _ in xrx {});
    let settle = || {
        if idle {
            // Let the worker and the drains catch up: no block pays for another's backlog.
            client.flush(Duration::from_secs(30)).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let block = |ev: &AnalyticsEvent, f: &dyn Fn(AnalyticsEvent)| {
        let batch: Vec<_> = (0..n)
            .map(|_| {
                let mut e = ev.clone();
                e.id = uuid::Uuid::now_v7();
                e
            })
            .collect();
        let t = Instant::now();
        for e in batch {
            f(e);
        }
        let ns = t.elapsed().as_nanos() as f64 / n as f64;
        settle();
        ns
    };
    let mut v: [Vec<f64>; 7] = Default::default();
    for _ in 0..rounds {
        let m = block(&plain, &|e| tx.send(e).unwrap());
        let x = block(&meta, &|e| xtx.send(e).unwrap());
        let t = block(&plain, &|e| client.track(e).unwrap());
        let tm = block(&meta, &|e| client.track(e).unwrap());
        for (i, r) in [m, x, t, tm, tm / x, t / m, tm / t].into_iter().enumerate() {
            v[i].push(r);
        }
    }
    drop((tx, xtx));
    drain.join().unwrap();
    xdrain.join().unwrap();
    client.flush(Duration::from_secs(60)).unwrap();
    let [mpsc, xbeam, track, track_meta, meta_vs_xbeam, plain_vs_mpsc, meta_vs_plain] =
        v.map(|mut r| median(&mut r));
    Rounds {
        mpsc,
        xbeam,
        track,
        track_meta,
        meta_vs_xbeam,
        plain_vs_mpsc,
        meta_vs_plain,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The client (a) measures: every batch accepted at once, a queue that never fills.
fn hot_path_client() -> Client {
    Client::builder()
        .transport(Null)
        .flush_at(1000)
        .max_queue_events(1 << 20)
        .max_queue_bytes(1 << 30)
        .overflow(OverflowPolicy::DropOldest)
        .build()
        .unwrap()
}

/// Accepts every batch at once, so (a) measures the hot path, not a collector.
struct Null;

impl Transport for Null {
    fn send(&self, _body: Arc<Vec<u8>>) -> SendFuture {
        Box::pin(async {
            Ok(Response {
                status: 200,
                retry_after: None,
                body: Vec::new(),
            })
        })
    }
}

fn mean_ns(c: &Criterion, id: &str) -> Option<f64> {
    let _ = c;
    let dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
    let path = format!("{dir}/criterion/{id}/new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn bench_track(c: &mut Criterion) {
    let ev = event();
    let mut g = c.benchmark_group("hot_path");
    g.measurement_time(Duration::from_secs(4));
    g.warm_up_time(Duration::from_secs(1));

    let (tx, rx) = std::sync::mpsc::channel::<AnalyticsEvent>();
    let drain = std::thread::spawn(move || for _ in rx {});
    g.bench_function("mpsc_send", |b| {
        b.iter_batched(
            || ev.clone(),
            |e| tx.send(e).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("validate_then_mpsc_send", |b| {
        b.iter_batched(
            || ev.clone(),
            |e| {
                e.validate().unwrap();
                tx.send(e).unwrap()
            },
            BatchSize::SmallInput,
        )
    });
    drop(tx);
    drain.join().unwrap();

    let meta = event_meta();
    let (tx, rx) = crossbeam_channel::bounded::<AnalyticsEvent>(1 << 16);
    let drain = std::thread::spawn(move || for _ in rx {});
    g.bench_function("crossbeam_send_meta3", |b| {
        b.iter_batched(
            || meta.clone(),
            |e| tx.send(e).unwrap(),
            BatchSize::SmallInput,
        )
    });
    drop(tx);
    drain.join().unwrap();

    let client = hot_path_client();
    g.bench_function("client_track", |b| {
        b.iter_batched(
            || ev.clone(),
            |e| client.track(e).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("client_track_meta3", |b| {
        b.iter_batched(
            || meta.clone(),
            |e| client.track(e).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
    client.shutdown(Duration::from_secs(10)).unwrap();
}

async fn sink(State(n): State<Arc<AtomicU64>>, headers: HeaderMap, body: Bytes) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Env {
        batch: Vec<serde::de::IgnoredAny>,
    }
    let raw = if headers.get("content-encoding").is_some_and(|v| v == "gzip") {
        let mut out = Vec::with_capacity(body.len() * 8);
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        body.to_vec()
    };
    let env: Env = serde_json::from_slice(&raw).unwrap();
    n.fetch_add(env.batch.len() as u64, Ordering::Relaxed);
    r#"{"accepted":0,"duplicates":0,"rejected":[]}"#
}

/// A local HTTP sink on its own runtime: its address and the count of events it received.
fn start_sink(rt: &tokio::runtime::Runtime) -> (std::net::SocketAddr, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let app = Router::new()
        .route("/v1/batch", post(sink))
        .with_state(count.clone());
    rt.spawn(async move {
        let l = tokio::net::TcpListener::from_std(l).unwrap();
        axum::serve(l, app).await.unwrap();
    });
    (addr, count)
}

fn sink_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// (a) busy: a client delivering to a live sink, gzip, flush_at 1000.
fn busy_client(addr: std::net::SocketAddr) -> Client {
    Client::builder()
        .endpoint(format!("http://{addr}"))
        .gzip(true)
        .flush_at(1000)
        .max_queue_events(1 << 20)
        .max_queue_bytes(1 << 30)
        .build()
        .unwrap()
}

/// (b): events/s from the first `track()` until `flush()` returns, through gzip and HTTP.
fn throughput(n: usize) -> (f64, u64) {
    let rt = sink_runtime();
    let (addr, count) = start_sink(&rt);
    let client = Client::builder()
        .endpoint(format!("http://{addr}"))
        .gzip(true)
        .flush_at(1000)
        .max_queue_events(n)
        .max_queue_bytes(1 << 30)
        .build()
        .unwrap();
    let template = event();
    let events: Vec<_> = (0..n)
        .map(|_| {
            let mut e = template.clone();
            e.id = uuid::Uuid::now_v7();
            e
        })
        .collect();
    let start = Instant::now();
    for e in events {
        client.track(e).unwrap();
    }
    client.flush(Duration::from_secs(120)).unwrap();
    let secs = start.elapsed().as_secs_f64();
    let got = count.load(Ordering::Relaxed);
    client.shutdown(Duration::from_secs(5)).unwrap();
    (n as f64 / secs, got)
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// (c): the client's memory accounting and the process RSS growth while the endpoint is down.
/// RSS is read after the client is built and has tracked one event (runtime, threads and the
/// gzip compressor: fixed costs) and again once the queue is full.
fn memory_when_down(max_bytes: usize, events: usize) -> (u64, u64, u64, u64) {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let rss0 = rss_bytes();
    let client = Client::builder()
        .endpoint(format!("http://{addr}"))
        .max_queue_events(100_000)
        .max_queue_bytes(max_bytes)
        .overflow(OverflowPolicy::DropOldest)
        .build()
        .unwrap();
    let template = event();
    client.track(template.clone()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let rss_fixed = rss_bytes().saturating_sub(rss0);
    let mut max_acct = 0;
    for i in 0..events {
        let mut e = template.clone();
        e.id = uuid::Uuid::now_v7();
        client.track(e).unwrap();
        if i % 1000 == 0 {
            max_acct = max_acct.max(client.stats().queue_bytes);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    max_acct = max_acct.max(client.stats().queue_bytes);
    let rss_data = rss_bytes().saturating_sub(rss0).saturating_sub(rss_fixed);
    let evicted = client.stats().dropped.evicted;
    drop(client);
    (max_acct, rss_fixed, rss_data, evicted)
}

fn main() {
    // First, while the allocator has not yet grown for the other benches, so RSS growth means
    // something.
    let max_bytes = 16 * 1024 * 1024;
    let (acct, rss_fixed, rss_data, evicted) = memory_when_down(max_bytes, 200_000);

    let mut c = Criterion::default().configure_from_args();
    bench_track(&mut c);
    c.final_summary();

    let mpsc = mean_ns(&c, "hot_path/mpsc_send");
    let vmpsc = mean_ns(&c, "hot_path/validate_then_mpsc_send");
    let xbeam = mean_ns(&c, "hot_path/crossbeam_send_meta3");
    let track = mean_ns(&c, "hot_path/client_track");
    let track_meta = mean_ns(&c, "hot_path/client_track_meta3");

    let idle_client = hot_path_client();
    let idle = interleaved(&idle_client, true, 41, 20_000);
    idle_client.shutdown(Duration::from_secs(10)).unwrap();
    let rt = sink_runtime();
    let (addr, _) = start_sink(&rt);
    let busy_client = busy_client(addr);
    let busy = interleaved(&busy_client, false, 41, 20_000);
    busy_client.shutdown(Duration::from_secs(30)).unwrap();
    drop(rt);

    let runs: Vec<_> = (0..3).map(|_| throughput(200_000)).collect();
    let best = runs.iter().map(|r| r.0).fold(0.0, f64::max);

    println!("\n==== agenttally client bench summary ====");
    if let (Some(m), Some(v), Some(x), Some(t), Some(tm)) = (mpsc, vmpsc, xbeam, track, track_meta)
    {
        println!(
            "(a) criterion: mpsc send {m:.0} ns | validate+mpsc send {v:.0} ns | crossbeam send (3-key event) {x:.0} ns | client.track {t:.0} ns | client.track 3-key metadata {tm:.0} ns"
        );
        println!(
            "(a) criterion RATIO track / mpsc send = {:.2}x (target <= 3x); track / (validate + mpsc send) = {:.2}x",
            t / m,
            t / v
        );
        println!(
            "(a) criterion RATIO track 3-key metadata / crossbeam send = {:.2}x (target <= 3x, idle); track with metadata / without = {:.2}x",
            tm / x,
            tm / t
        );
    } else {
        println!("(a) criterion estimates not found (run with `cargo bench`)");
    }
    for (name, r) in [("IDLE", &idle), ("BUSY", &busy)] {
        println!(
            "(a) INTERLEAVED {name} 41 rounds x 20k events: mpsc send {:.0} ns | crossbeam send (3-key event) {:.0} ns | track {:.0} ns | track 3-key metadata {:.0} ns",
            r.mpsc, r.xbeam, r.track, r.track_meta
        );
        println!(
            "(a) INTERLEAVED {name} RATIO (medians of per-round ratios) track 3-key metadata / crossbeam send = {:.2}x{} | track with metadata / without = {:.2}x | track / mpsc send = {:.2}x",
            r.meta_vs_xbeam,
            if name == "IDLE" { " (target <= 3x)" } else { "" },
            r.meta_vs_plain,
            r.plain_vs_mpsc,
        );
    }
    println!(
        "(b) THROUGHPUT gzip HTTP: runs {:?} events/s; best {best:.0} events/s = {:.2}x the 300k/s target; all counted: {}",
        runs.iter().map(|r| r.0 as u64).collect::<Vec<_>>(),
        best / 300_000.0,
        runs.iter().all(|r| r.1 == 200_000)
    );
    println!(
        "(c) MEMORY endpoint down, 200k events, max_queue_bytes {max_bytes}: client memory accounting max {acct} = {:.3}x of the limit; RSS growth while filling {rss_data} = {:.3}x of the limit (target <= 1.10x; allocator overhead included), plus {rss_fixed} fixed (runtime, threads); evicted {evicted}",
        acct as f64 / max_bytes as f64,
        rss_data as f64 / max_bytes as f64,
    );
}
