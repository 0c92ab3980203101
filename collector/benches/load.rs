//! Mixed load on loopback: many clients ingesting and querying at once, for a bounded time.
//!
//! `cargo bench -p agenttally-collector --bench load` (release). Knobs: `LOAD_BENCH_CLIENTS`
//! (default 200), `LOAD_BENCH_SECS` (60), `LOAD_BENCH_TENANTS` (20), `LOAD_BENCH_BATCH` (events
//! per ingest request, 50).
//!
//! An embedded PostgreSQL (fsync on) and an in-process collector with its default settings,
//! rate limits included. Each tenant has one tenant-bound key (scopes ingest + read); the clients
//! are spread evenly over the tenants. Each client loops until the deadline: POST a batch, then
//! one read (summary, timeseries, savings, peaks, recommendations, billing usage in turn). Query
//! rate limits (per credential and per tenant) are meant to bite: a 429 with `Retry-After` is a
//! deliberate answer, counted apart. Any other non-2xx answer, or a transport error, is an error;
//! the bench prints them and exits 1 if there was any.
//!
//! Prints, per route: requests, 2xx, 429, errors, requests/s, p50 and p99 latency; and events
//! accepted per second.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttally_collector::{EmbeddedOptions, EmbeddedPostgres, Scope, Server, ServerConfig};
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

/// The read routes the clients take turns on (path and query).
const READS: &[(&str, &str)] = &[
    ("/v1/metrics/summary", ""),
    (
        "/v1/metrics/timeseries",
        "?metric=cost_usd&interval=hour&group_by=model",
    ),
    ("/v1/metrics/savings", ""),
    ("/v1/metrics/peaks", ""),
    ("/v1/metrics/recommendations", ""),
    ("/v1/billing/usage", ""),
];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A batch of `n` realistic provider calls of `tenant`.
fn batch(tenant: &str, client: usize, seq: usize, n: usize) -> Vec<u8> {
    let now = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let k = seq * n + i;
            let (provider, model) = [
                ("openai", "gpt-4o"),
                ("anthropic", "claude-sonnet-4"),
                ("google", "gemini-2.5-pro"),
            ][k % 3];
            let task_type = ["code", "chat", "summarize"][k % 3];
            json!({
                "id": Uuid::now_v7().to_string(),
                "tenant_id": tenant,
                "event_type": "provider.api_call",
                "timestamp": now,
                "correlation_id": format!("run-{client}-{seq}"),
                "agent_id": format!("agent-{}", k % 7),
                "provider": provider,
                "model": model,
                "task_type": task_type,
                "usage": {"input_tokens": 100 + k % 900, "output_tokens": 20 + k % 300, "requests": 1},
                "duration_ms": 50 + k % 2000,
                "success": !k.is_multiple_of(17),
            })
        })
        .collect();
    serde_json::to_vec(&json!({"batch": events, "sent_at": now})).unwrap()
}

/// What one route saw.
#[derive(Default)]
struct Tally {
    ok: u64,
    limited: u64,
    errors: u64,
    /// Latency of every answer, µs.
    micros: Vec<u64>,
    events: u64,
    first_errors: Vec<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.limited += o.limited;
        self.errors += o.errors;
        self.micros.extend(o.micros);
        self.events += o.events;
        for e in o.first_errors {
            if self.first_errors.len() < 5 {
                self.first_errors.push(e);
            }
        }
    }

    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(what);
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

#[allow(clippy::too_many_arguments)]
async fn client_loop(
    http: reqwest::Client,
    base: Arc<str>,
    key: Arc<str>,
    tenant: Arc<str>,
    client: usize,
    batch_size: usize,
    deadline: Instant,
) -> BTreeMap<&'static str, Tally> {
    let mut tallies: BTreeMap<&'static str, Tally> = BTreeMap::new();
    let mut seq = 0usize;
    while Instant::now() < deadline {
        // Ingest.
        let body = batch(&tenant, client, seq, batch_size);
        let t0 = Instant::now();
        let resp = http
            .post(format!("{base}/v1/batch"))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let tally = tallies.entry("/v1/batch").or_default();
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                tally.micros.push(t0.elapsed().as_micros() as u64);
                match status {
                    200 => {
                        tally.ok += 1;
                        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        tally.events += v["accepted"].as_u64().unwrap_or(0);
                    }
                    429 => tally.limited += 1,
                    s => tally.error(format!("POST /v1/batch → {s}: {text}")),
                }
            }
            Err(e) => tally.error(format!("POST /v1/batch: {e}")),
        }
        // One read.
        let (path, query) = READS[(client + seq) % READS.len()];
        let t0 = Instant::now();
        let resp = http
            .get(format!("{base}{path}{query}"))
            .header("authorization", format!("Bearer {key}"))
            .send()
            .await;
        let tally = tallies.entry(path).or_default();
        match resp {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                let text = r.text().await.unwrap_or_default();
                tally.micros.push(t0.elapsed().as_micros() as u64);
                match status {
                    200..=299 => tally.ok += 1,
                    429 if retry_after => tally.limited += 1,
                    s => tally.error(format!("GET {path} → {s}: {text}")),
                }
            }
            Err(e) => tally.error(format!("GET {path}: {e}")),
        }
        seq += 1;
    }
    tallies
}

fn main() {
    let clients: usize = env_or("LOAD_BENCH_CLIENTS", 200);
    let secs: u64 = env_or("LOAD_BENCH_SECS", 60);
    let tenants: usize = env_or("LOAD_BENCH_TENANTS", 20).max(1);
    let batch_size: usize = env_or("LOAD_BENCH_BATCH", 50).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("agenttally-load-{}", std::process::id()));
    let pg = EmbeddedPostgres::start(&EmbeddedOptions::new(&dir)).unwrap();
    let url = pg.database_url();
    let server = rt
        .block_on(Server::start({
            let mut cfg = ServerConfig::new(url.clone());
            cfg.listen = "127.0.0.1:0".parse().unwrap();
            cfg
        }))
        .unwrap();
    let base: Arc<str> = format!("http://{}", server.addr()).into();
    let keys: Vec<(Arc<str>, Arc<str>)> = (0..tenants)
        .map(|t| {
            let tenant = format!("load-{t}");
            let key = rt
                .block_on(agenttally_collector::create_key(
                    &url,
                    Some(&tenant),
                    &[Scope::Ingest, Scope::Read],
                ))
                .unwrap();
            (tenant.into(), key.into())
        })
        .collect();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    println!(
        "load: {clients} clients, {tenants} tenants, {secs} s, ingest batches of {batch_size}"
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs(secs);
    let total = rt.block_on(async {
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (tenant, key) = keys[c % keys.len()].clone();
                tokio::spawn(client_loop(
                    http.clone(),
                    base.clone(),
                    key,
                    tenant,
                    c,
                    batch_size,
                    deadline,
                ))
            })
            .collect();
        let mut total: BTreeMap<&'static str, Tally> = BTreeMap::new();
        for t in tasks {
            for (route, tally) in t.await.unwrap() {
                total.entry(route).or_default().merge(tally);
            }
        }
        total
    });
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{:<30} {:>8} {:>8} {:>7} {:>6} {:>9} {:>9} {:>9}",
        "route", "requests", "2xx", "429", "errors", "req/s", "p50 ms", "p99 ms"
    );
    let mut errors = 0;
    let mut events = 0;
    for (route, mut t) in total {
        t.micros.sort_unstable();
        let n = t.ok + t.limited + t.errors;
        println!(
            "{:<30} {:>8} {:>8} {:>7} {:>6} {:>9.1} {:>9.2} {:>9.2}",
            route,
            n,
            t.ok,
            t.limited,
            t.errors,
            n as f64 / elapsed,
            percentile(&t.micros, 0.50),
            percentile(&t.micros, 0.99),
        );
        for e in &t.first_errors {
            println!("    error: {}", e.chars().take(300).collect::<String>());
        }
        errors += t.errors;
        events += t.events;
    }
    println!(
        "events accepted: {events} in {elapsed:.1} s = {:.0} events/s; errors (not 429): {errors}",
        events as f64 / elapsed
    );
    rt.block_on(server.shutdown(Duration::from_secs(30)))
        .unwrap();
    drop(pg);
    let _ = std::fs::remove_dir_all(&dir);
    if errors > 0 {
        std::process::exit(1);
    }
}
