//! The GDPR export of a large tenant: throughput, and the collector's memory while it streams.
//!
//! `cargo bench -p agenttally-collector --bench export` (release). `EXPORT_BENCH_EVENTS` sets the
//! event count (default 1,000,000). Not run in CI.
//!
//! 1. load: the events straight into `events` and `event_ids` by SQL (`generate_series`), spread
//!    over the last days' partitions, with costs of up to 12 decimal places;
//! 2. the collector *binary* as a child process (so its memory is its own), on the same
//!    database; its `VmRSS` read from `/proc/<pid>/status`, and its peak (`VmHWM`) reset through
//!    `/proc/<pid>/clear_refs` just before the export;
//! 3. `GET /v1/export?format=ndjson` read to the end, each line's `cost_usd` summed as an exact
//!    decimal; then the child's `VmHWM` and `VmRSS`.
//!
//! Prints rows, seconds, rows/s, RSS before / after / peak growth (target: growth < 64 MiB),
//! and whether the count and the sum of the `cost_usd` texts match the database's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use agenttally_collector::{EmbeddedPostgres, Scope};
use rust_decimal::Decimal;

const TENANT: &str = "bench";
const MIB: f64 = 1024.0 * 1024.0;

/// A field of `/proc/<pid>/status` in bytes (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

fn main() {
    let n: i64 = std::env::var("EXPORT_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let pg = EmbeddedPostgres::start_ephemeral().unwrap();
    let url = pg.database_url();
    rt.block_on(agenttally_collector::migrate(&url)).unwrap();
    let db = rt.block_on(async {
        let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        db
    });

    // 1. Load.
    let t = Instant::now();
    rt.block_on(async {
        agenttally_collector::store::retention::run_once(&db, 30, 90)
            .await
            .unwrap();
        // Spread over the last (n / 250,000) days: one row every 0.35 s.
        db.batch_execute(&format!(
            "INSERT INTO events (tenant_id, id, ts, event_type, correlation_id, user_id, agent_id,
                 duration_ms, cost_usd, cost_status, provider, model, task_type, input_tokens,
                 output_tokens, requests, success, metadata)
             SELECT '{TENANT}', gen_random_uuid(), now() - make_interval(secs => i * 0.35),
                    'provider.api_call', 'run-' || (i / 10), 'user-' || (i % 50),
                    'agent-' || (i % 7), 50 + i % 2000,
                    round((i % 9973) * 0.000123456789123, 1 + (i % 12)), 'reported',
                    'openai', 'gpt-4o', 'code', 100 + i % 900, 20 + i % 300, 1, true,
                    jsonb_build_object('step', i % 17, 'note', 'row ' || i)
             FROM generate_series(1, {n}) i;
             INSERT INTO event_ids (tenant_id, id) SELECT tenant_id, id FROM events;
             ANALYZE events;"
        ))
        .await
        .unwrap();
    });
    let load_s = t.elapsed().as_secs_f64();
    println!("loaded {n} events in {load_s:.1} s");

    // 2. The collector binary.
    let key = rt
        .block_on(agenttally_collector::create_key(
            &url,
            Some(TENANT),
            &[Scope::Export],
        ))
        .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agenttally-collector"))
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url", &url])
        .env("AGENTTALLY_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_string();
    let http = reqwest::Client::new();
    // Warm up: connections, prepared statements, the key cache.
    rt.block_on(async {
        let r = http
            .get(format!("http://{addr}/v1/export?to=1970-01-02T00:00:00Z"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    });
    std::thread::sleep(Duration::from_millis(500));
    // What the export's snapshot will hold: the loaded events and the warm-up's record.
    let (db_rows, db_sum): (i64, String) = rt.block_on(async {
        let r = db
            .query_one(
                "SELECT count(*), sum(cost_usd)::text FROM events WHERE tenant_id = $1",
                &[&TENANT],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    });
    let rss_before = status_kib(pid, "VmRSS");
    // Reset the peak to the current size (Linux 4.0+), so the peak below is the export's.
    let reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();

    // 3. Export.
    let t = Instant::now();
    let (rows, sum, bytes) = rt.block_on(async {
        let mut resp = http
            .get(format!("http://{addr}/v1/export?format=ndjson"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let (mut rows, mut sum, mut bytes) = (0i64, Decimal::ZERO, 0usize);
        let mut rest: Vec<u8> = Vec::new();
        while let Some(chunk) = resp.chunk().await.unwrap() {
            bytes += chunk.len();
            rest.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(nl) = rest[start..].iter().position(|b| *b == b'\n') {
                let l = &rest[start..start + nl];
                rows += 1;
                sum += cost_of(l);
                start += nl + 1;
            }
            rest.drain(..start);
        }
        assert!(rest.is_empty(), "the body ends with a line end");
        (rows, sum, bytes)
    });
    let secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(200));
    let rss_after = status_kib(pid, "VmRSS");
    let peak = status_kib(pid, "VmHWM");
    let _ = child.kill();
    let _ = child.wait();

    let db_sum = Decimal::from_str(&db_sum).unwrap();
    println!(
        "export ndjson: {rows} rows, {:.1} MiB in {secs:.2} s = {:.0} rows/s",
        bytes as f64 / MIB,
        rows as f64 / secs
    );
    println!(
        "collector RSS: before {:.1} MiB, after {:.1} MiB, peak {:.1} MiB, peak growth {:.1} MiB \
         (target < 64 MiB){}",
        rss_before as f64 / MIB,
        rss_after as f64 / MIB,
        peak as f64 / MIB,
        peak.saturating_sub(rss_before) as f64 / MIB,
        if reset {
            ""
        } else {
            " [VmHWM not reset: peak since start]"
        }
    );
    println!(
        "count: export {rows}, database {db_rows}: {}",
        if rows == db_rows { "match" } else { "MISMATCH" }
    );
    println!(
        "sum of cost_usd: export {}, database {}: {}",
        sum.normalize(),
        db_sum.normalize(),
        if sum == db_sum { "match" } else { "MISMATCH" }
    );
    drop(pg);
    assert_eq!(rows, db_rows);
    assert_eq!(sum, db_sum);
}

/// The `cost_usd` text of one NDJSON line, as an exact decimal (0 when absent).
fn cost_of(line: &[u8]) -> Decimal {
    const KEY: &[u8] = b"\"cost_usd\":\"";
    let Some(i) = line.windows(KEY.len()).position(|w| w == KEY) else {
        return Decimal::ZERO;
    };
    let v = &line[i + KEY.len()..];
    let end = v.iter().position(|b| *b == b'"').unwrap();
    Decimal::from_str(std::str::from_utf8(&v[..end]).unwrap()).unwrap()
}
