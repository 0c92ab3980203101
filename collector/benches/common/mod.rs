//! What the ingest and query benchmarks share: the event mix, the raw row a `\copy` baseline
//! loads for an event (exactly the values the collector's writer inserts, the savings
//! baselines priced at ingest included), `psql`, knobs.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use agenttally::pricing::PriceBook;
use agenttally::{AgentEvent, AnalyticsEvent, CustomerEvent, ProviderEvent, Usage};
use agenttally_collector::pricing::{price_at_ingest, Prices, SavingsPricer};
use rust_decimal::Decimal;

pub const COSTS: [&str; 6] = ["0.0123", "0.000000123", "0.10", "1.5", "0.004125", "0.0375"];

/// The `i`-th event of a realistic mix (70% provider calls with usage and cost).
pub fn event(i: usize, tenant: &str) -> AnalyticsEvent {
    let agent = format!("agent-{}", i % 7);
    let b = match i % 10 {
        0..=6 => {
            let (p, m) = [
                ("openai", "gpt-4o"),
                ("anthropic", "claude-sonnet-4"),
                ("google", "gemini-2.5-pro"),
            ][i % 3];
            ProviderEvent::api_call(tenant, p, m)
                .usage(Usage {
                    input_tokens: 100 + (i as u64 % 900),
                    cached_input_tokens: (i as u64 % 3) * 64,
                    output_tokens: 20 + (i as u64 % 300),
                    requests: 1,
                    ..Usage::default()
                })
                .cost_usd(Decimal::from_str(COSTS[i % COSTS.len()]).unwrap())
                .duration_ms(50 + (i as u64 % 2000))
                .task_type(["code", "chat", "summarize"][i % 3])
                .agent_id(agent)
        }
        7 => AgentEvent::started(tenant, agent).task_type("code"),
        8 => AgentEvent::completed(tenant, agent).duration_ms(100 + (i as u64 % 5000)),
        _ => CustomerEvent::dashboard_view(tenant, format!("user-{}", i % 50)),
    };
    b.correlation_id(format!("run-{}", i / 10)).build().unwrap()
}

pub const COLUMNS: &str = "tenant_id, id, ts, event_type, correlation_id, user_id, agent_id, \
    workflow_id, duration_ms, queue_ms, cost_usd, cost_status, price_version, provider, model, \
    task_type, service_tier, input_tokens, cached_input_tokens, cache_write_tokens, \
    cache_write_1h_tokens, output_tokens, reasoning_tokens, requests, success, error_code, \
    metadata, baselines";

/// How the collector prices what it stores: the built-in book (the default) and the savings
/// baselines `names` (`ServerConfig::savings_baselines`).
pub struct IngestPricing {
    book: PriceBook,
    savings: SavingsPricer,
}

impl IngestPricing {
    pub fn new(names: &[String]) -> Self {
        let book = PriceBook::builtin();
        let savings =
            SavingsPricer::new(Arc::new(Prices::new(book.clone())), names).expect("baselines");
        IngestPricing { book, savings }
    }

    /// `e` as the writer stores it (priced if it came unpriced), and its `baselines` JSON.
    pub fn stored(&self, mut e: AnalyticsEvent) -> (AnalyticsEvent, Option<String>) {
        price_at_ingest(&self.book, &mut e);
        let baselines = self
            .savings
            .price(&self.book, &e)
            .map(|b| self.savings.to_json(&b));
        (e, baselines)
    }
}

/// One CSV line with exactly the values the collector's writer inserts for `e` (already priced
/// as at ingest) with `baselines`.
pub fn csv_row(out: &mut Vec<u8>, e: &AnalyticsEvent, baselines: Option<&str>) {
    fn text(out: &mut Vec<u8>, v: Option<&str>) {
        if let Some(s) = v {
            out.push(b'"');
            out.extend_from_slice(s.replace('"', "\"\"").as_bytes());
            out.push(b'"');
        }
        out.push(b',');
    }
    fn num<T: ToString>(out: &mut Vec<u8>, v: Option<T>) {
        if let Some(n) = v {
            out.extend_from_slice(n.to_string().as_bytes());
        }
        out.push(b',');
    }
    text(out, Some(&e.tenant_id));
    num(out, Some(e.id));
    num(out, Some(e.timestamp.to_rfc3339()));
    text(out, Some(e.event_type.as_str()));
    text(out, Some(&e.correlation_id));
    text(out, e.user_id.as_deref());
    text(out, e.agent_id.as_deref());
    text(out, e.workflow_id.as_deref());
    num(out, e.duration_ms);
    num(out, e.queue_ms);
    num(out, e.cost_usd);
    text(out, e.cost_status.map(|c| c.as_str()));
    text(out, e.price_version.as_deref());
    text(out, e.provider.as_deref());
    text(out, e.model.as_deref());
    text(out, e.task_type.as_deref());
    text(out, e.service_tier.map(|t| t.as_str()));
    let u = e.usage;
    num(out, u.map(|u| u.input_tokens));
    num(out, u.map(|u| u.cached_input_tokens));
    num(out, u.map(|u| u.cache_write_tokens));
    num(out, u.map(|u| u.cache_write_1h_tokens));
    num(out, u.map(|u| u.output_tokens));
    num(out, u.map(|u| u.reasoning_tokens));
    num(out, u.map(|u| u.requests));
    num(out, Some(e.success));
    text(out, e.error_code.as_deref());
    let meta = serde_json::Value::Object(e.metadata.clone()).to_string();
    text(out, Some(&meta));
    text(out, baselines);
    // The last field ends the line: its comma becomes the newline.
    out.pop();
    out.push(b'\n');
}

/// Write the CSV of `n` events of `tenant` (`event(0..n)`) to `path` and sync it: what a `\copy`
/// baseline loads, written before its clock starts. The rows are those the collector stores for
/// these events, priced by `pricing`; `None` leaves `baselines` empty (NULL), as the copy of the
/// earlier passes in benches/README.md did (`INGEST_BENCH_COPY_BASELINES=0`), for comparison.
pub fn write_csv(path: &Path, tenant: &str, n: usize, pricing: Option<&IngestPricing>) {
    let mut buf = Vec::with_capacity(n * 480);
    for i in 0..n {
        let e = event(i, tenant);
        match pricing {
            Some(p) => {
                let (e, b) = p.stored(e);
                csv_row(&mut buf, &e, b.as_deref());
            }
            None => csv_row(&mut buf, &e, None),
        }
    }
    let mut f = std::fs::File::create(path).expect("create the CSV");
    f.write_all(&buf).expect("write the CSV");
    f.sync_all().expect("sync the CSV");
}

pub fn psql() -> PathBuf {
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()).join("psql"));
    match from_pg_config {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("/usr/lib/postgresql/15/bin/psql"),
    }
}

/// A numeric environment variable, or `default`.
pub fn env_or<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub fn copy(url: &str, csv: &Path) -> f64 {
    let cmd = format!("\\copy events({COLUMNS}) FROM '{}' CSV", csv.display());
    let t0 = Instant::now();
    let out = Command::new(psql())
        .args([url, "-v", "ON_ERROR_STOP=1", "-c", &cmd])
        .output()
        .expect("run psql");
    let secs = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "psql \\copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    secs
}
