//! Live-update latency and the cost of a client that stops reading, in one run on one embedded
//! PostgreSQL cluster (fsync on). Not run in CI.
//!
//! `cargo bench -p agenttally-collector --bench live` (release).
//!
//! 1. latency: the SDK client (`flush_interval` 100 ms) tracks `LIVE_BENCH_EVENTS` events
//!    (default 1,000) at `LIVE_BENCH_RATE` a second (default 100: with at most 10 updates a
//!    second listing the newest 20 events each, a faster stream would not list every event); one
//!    WebSocket and one SSE client of the tenant note when each event first appears in an
//!    update's `recent`. Latency = that instant − the instant of its `track()`, p50/p95/max per
//!    client, over the events listed; and over every event, to the first update whose running
//!    `delta.events` count covers it (a commit of more than 20 events lists only its newest
//!    20). Beside it, track → commit start from SQL and the mean commit time, which the live
//!    path adds to.
//! 2. stalled client: events tracked as fast as the SDK client sends them for
//!    `LIVE_BENCH_STALL_SECS` (default 40; clients of 20,000 events, each flushed: everything
//!    counted is committed), without a live client, then with a WebSocket client of the tenant
//!    that never reads (a 4 KiB receive buffer) connected for the whole run, alternated twice.
//!    The events carry long names, so updates are large and the stalled client's buffers fill
//!    within the run; printed beside: when the collector dropped it (from `/metrics`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agenttally::{AnalyticsEvent, Client, ProviderEvent, Usage};
use agenttally_collector::{EmbeddedOptions, EmbeddedPostgres, Scope, Server, ServerConfig};
use futures_util::StreamExt;
use rust_decimal::Decimal;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

const TENANT: &str = "bench-live";
/// Events per SDK client in the stalled-client runs.
const STALL_CHUNK: usize = 20_000;

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The `i`-th event: a provider call. `long`: with 120-character model and task names and a
/// 240-character agent id, so each update is large and a stalled client's buffers fill sooner.
fn event(i: usize, tenant: &str, long: bool) -> AnalyticsEvent {
    let (p, m) = [("openai", "gpt-4o"), ("anthropic", "claude-sonnet-4")][i % 2];
    let pad = |s: &str, n: usize| {
        if long {
            format!("{s}{}", "x".repeat(n - s.len()))
        } else {
            s.to_string()
        }
    };
    ProviderEvent::api_call(tenant, p, pad(m, 120))
        .usage(Usage {
            input_tokens: 100 + (i as u64 % 900),
            output_tokens: 20 + (i as u64 % 300),
            requests: 1,
            ..Usage::default()
        })
        .cost_usd(Decimal::from_str("0.0123").unwrap())
        .task_type(pad("code", 120))
        .agent_id(pad(&format!("agent-{}", i % 7), 240))
        .correlation_id(format!("run-{}", i / 10))
        .build()
        .unwrap()
}

fn client(endpoint: &str, key: &str, flush_interval: Duration, max_queue: usize) -> Client {
    Client::builder()
        .endpoint(endpoint)
        .api_key(key)
        .flush_interval(flush_interval)
        .max_queue_events(max_queue)
        .max_queue_bytes(1024 * 1024 * 1024)
        .build()
        .unwrap()
}

/// What one client saw: the first arrival of each event id in `recent`, and the arrival of each
/// update with the events counted so far (`delta.events` summed).
#[derive(Default)]
struct Seen {
    ids: HashMap<Uuid, Instant>,
    counts: Vec<(i64, Instant)>,
}

fn note_update(seen: &Mutex<Seen>, text: &str) {
    let v: serde_json::Value = serde_json::from_str(text).unwrap();
    if v["type"] != "update" {
        return;
    }
    let now = Instant::now();
    let mut seen = seen.lock().unwrap();
    for e in v["recent"].as_array().unwrap() {
        let id = Uuid::parse_str(e["id"].as_str().unwrap()).unwrap();
        seen.ids.entry(id).or_insert(now);
    }
    let total = seen.counts.last().map_or(0, |c| c.0) + v["delta"]["events"].as_i64().unwrap();
    seen.counts.push((total, now));
}

/// `(p50, p95)` of `received_at - ts` in ms for `tenant`: track → the start of the commit's
/// transaction.
async fn to_commit(db: &tokio_postgres::Client, tenant: &str) -> (f64, f64) {
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

/// `(sum, count)` of a Prometheus histogram.
fn histogram(metrics: &str, name: &str) -> (f64, f64) {
    let get = |suffix: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}{suffix} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN)
    };
    (get("_sum"), get("_count"))
}

async fn ws_client(
    base: &str,
    query: &str,
    rcvbuf: Option<u32>,
) -> tokio_tungstenite::WebSocketStream<tokio::net::TcpStream> {
    let url = format!("{}/v1/live{query}", base.replacen("http", "ws", 1));
    let req = url.into_client_request().unwrap();
    let addr: std::net::SocketAddr = base.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(n) = rcvbuf {
        socket.set_recv_buffer_size(n).unwrap();
    }
    let stream = socket.connect(addr).await.unwrap();
    tokio_tungstenite::client_async(req, stream)
        .await
        .unwrap()
        .0
}

async fn live_token(http: &reqwest::Client, base: &str, key: &str) -> String {
    let v: serde_json::Value = http
        .post(format!("{base}/v1/live/token"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// Track `n` events as fast as the client takes them, then flush: events per second.
fn ingest_fast(endpoint: &str, key: &str, tenant: &str, n: usize, long: bool) -> f64 {
    let c = client(
        endpoint,
        key,
        agenttally::client::defaults::FLUSH_INTERVAL,
        n + 1_000,
    );
    let t0 = Instant::now();
    for i in 0..n {
        c.track(event(i, tenant, long)).unwrap();
    }
    c.flush(Duration::from_secs(600)).unwrap();
    let s = t0.elapsed().as_secs_f64();
    let stats = c.stats();
    assert_eq!(stats.sent, n as u64, "{stats:?}");
    n as f64 / s
}

fn metrics(rt: &tokio::runtime::Runtime, http: &reqwest::Client, base: &str) -> String {
    rt.block_on(async {
        http.get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

fn dropped_slow(rt: &tokio::runtime::Runtime, http: &reqwest::Client, base: &str) -> u64 {
    metrics(rt, http, base)
        .lines()
        .find_map(|l| l.strip_prefix("agenttally_live_slow_clients_dropped_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let n: usize = env_or("LIVE_BENCH_EVENTS", 1_000);
    let rate: f64 = env_or("LIVE_BENCH_RATE", 100.0);
    let stall_secs: u64 = env_or("LIVE_BENCH_STALL_SECS", 40);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("agenttally-live-bench-{}", std::process::id()));
    let pg = EmbeddedPostgres::start(&EmbeddedOptions::new(&dir)).unwrap();
    let url = pg.database_url();
    let server = rt
        .block_on(Server::start({
            let mut cfg = ServerConfig::new(url.clone());
            cfg.listen = "127.0.0.1:0".parse().unwrap();
            cfg
        }))
        .unwrap();
    let base = format!("http://{}", server.addr());
    let ingest_key = rt
        .block_on(agenttally_collector::create_key(
            &url,
            None,
            &[Scope::Ingest],
        ))
        .unwrap();
    let read_key = rt
        .block_on(agenttally_collector::create_key(
            &url,
            Some(TENANT),
            &[Scope::Read],
        ))
        .unwrap();
    let http = reqwest::Client::new();
    // Warm up connections, prepared statements and today's partition.
    ingest_fast(&base, &ingest_key, "bench-warmup", 5_000, false);

    // 1. Latency from track() to `recent`, on a WebSocket and an SSE client.
    let ws_seen: Arc<Mutex<Seen>> = Arc::default();
    let sse_seen: Arc<Mutex<Seen>> = Arc::default();
    let token = rt.block_on(live_token(&http, &base, &read_key));
    let mut ws = rt.block_on(ws_client(&base, &format!("?token={token}"), None));
    let ws_task = {
        let seen = ws_seen.clone();
        rt.spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                if let Message::Text(t) = m {
                    note_update(&seen, &t);
                }
            }
        })
    };
    let sse_task = {
        let seen = sse_seen.clone();
        let req = http
            .get(format!("{base}/v1/live"))
            .bearer_auth(&read_key)
            .header("accept", "text/event-stream");
        rt.spawn(async move {
            let mut resp = req.send().await.unwrap();
            let mut buf = String::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                buf.push_str(std::str::from_utf8(&chunk).unwrap());
                while let Some(end) = buf.find("\n\n") {
                    let frame: String = buf.drain(..end + 2).collect();
                    if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                        note_update(&seen, data);
                    }
                }
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let commits0 = histogram(
        &metrics(&rt, &http, &base),
        "agenttally_writer_commit_duration_seconds",
    );
    let c = client(&base, &ingest_key, Duration::from_millis(100), n + 1_000);
    let mut tracked: Vec<(Uuid, Instant)> = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let e = event(i, TENANT, false);
        tracked.push((e.id, Instant::now()));
        c.track(e).unwrap();
    }
    c.flush(Duration::from_secs(60)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let counted = |s: &Arc<Mutex<Seen>>| s.lock().unwrap().counts.last().map_or(0, |c| c.0);
    while Instant::now() < deadline
        && (counted(&ws_seen) < n as i64 || counted(&sse_seen) < n as i64)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let commits1 = histogram(
        &metrics(&rt, &http, &base),
        "agenttally_writer_commit_duration_seconds",
    );
    println!("latency, {n} events at {rate}/s, SDK flush interval 100 ms (p50 / p95 / max):");
    let summary = |lat: &mut Vec<Duration>| {
        lat.sort();
        format!(
            "{} / {} / {}",
            ms(percentile(lat, 0.50)),
            ms(percentile(lat, 0.95)),
            ms(lat.last().copied().unwrap_or_default())
        )
    };
    for (name, seen) in [("websocket", &ws_seen), ("sse", &sse_seen)] {
        let seen = seen.lock().unwrap();
        let mut listed: Vec<Duration> = tracked
            .iter()
            .filter_map(|(id, at)| seen.ids.get(id).map(|s| s.saturating_duration_since(*at)))
            .collect();
        let listed_n = listed.len();
        // Every event: the first update whose running count covers it (the k-th tracked event
        // counted by the update that brings the count past k; commits keep the tracking order
        // but for batches in flight at once, so this is close, not exact).
        let mut counted: Vec<Duration> = tracked
            .iter()
            .enumerate()
            .filter_map(|(k, (_, at))| {
                let i = seen.counts.partition_point(|c| c.0 <= k as i64);
                seen.counts
                    .get(i)
                    .map(|c| c.1.saturating_duration_since(*at))
            })
            .collect();
        println!(
            "  {name:<9} track() -> listed in `recent`: {} ({listed_n} of {n} listed)",
            summary(&mut listed)
        );
        println!(
            "  {name:<9} track() -> counted in `delta`: {} ({} of {n} counted)",
            summary(&mut counted),
            counted.len()
        );
    }
    let (p50, p95) = rt.block_on(async {
        let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        to_commit(&db, TENANT).await
    });
    println!(
        "  of which track() -> commit start (SQL, received_at - ts): {p50:.0} / {p95:.0} ms; \
         mean commit {:.0} ms over {} commits",
        (commits1.0 - commits0.0) / (commits1.1 - commits0.1) * 1e3,
        commits1.1 - commits0.1
    );
    ws_task.abort();
    sse_task.abort();

    // 2. Ingest rate without a live client, and with a client that never reads.
    println!(
        "ingest for {stall_secs} s per run, as fast as the SDK client sends (batches of {STALL_CHUNK}):"
    );
    let stall_tenant = "bench-stall";
    let stall_key = rt
        .block_on(agenttally_collector::create_key(
            &url,
            Some(stall_tenant),
            &[Scope::Read],
        ))
        .unwrap();
    let run = |secs: u64| {
        let t0 = Instant::now();
        let mut events = 0;
        while t0.elapsed() < Duration::from_secs(secs) {
            ingest_fast(&base, &ingest_key, stall_tenant, STALL_CHUNK, true);
            events += STALL_CHUNK;
        }
        events as f64 / t0.elapsed().as_secs_f64()
    };
    let mut with = Vec::new();
    let mut without = Vec::new();
    for round in 0..2 {
        let r = run(stall_secs);
        println!("  round {round}: no live client                {r:>7.0} events/s");
        without.push(r);
        let dropped_before = dropped_slow(&rt, &http, &base);
        let token = rt.block_on(live_token(&http, &base, &stall_key));
        // Connected, then never read.
        let stalled = rt.block_on(ws_client(&base, &format!("?token={token}"), Some(4096)));
        let opened = Instant::now();
        let watch = {
            let (http, base) = (http.clone(), base.clone());
            rt.spawn(async move {
                loop {
                    let text = http
                        .get(format!("{base}/metrics"))
                        .send()
                        .await
                        .unwrap()
                        .text()
                        .await
                        .unwrap();
                    let n: u64 = text
                        .lines()
                        .find_map(|l| l.strip_prefix("agenttally_live_slow_clients_dropped_total "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if n > dropped_before {
                        return opened.elapsed();
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        };
        let r = run(stall_secs);
        let dropped = match rt
            .block_on(async { tokio::time::timeout(Duration::from_millis(200), watch).await })
        {
            Ok(Ok(t)) => format!("dropped {} after it connected", ms(t)),
            _ => "not dropped during the run".to_string(),
        };
        println!("  round {round}: a WebSocket that never reads {r:>7.0} events/s ({dropped})");
        with.push(r);
        drop(stalled);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "  with/without the stalled client: {:.2}",
        mean(&with) / mean(&without)
    );
    rt.block_on(server.shutdown(Duration::from_secs(30)))
        .unwrap();
    pg.shutdown().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
