//! Prometheus metrics in the text exposition format, kept in atomics (no registry crate needed
//! for a handful of series): ingested, duplicates, rejected by reason, latencies, queue depth,
//! the result of the last accuracy check, rate-limit refusals and audit write failures.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A fixed-bucket latency histogram, in seconds.
#[derive(Debug)]
pub struct LatencyHistogram {
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

const BOUNDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            counts: BOUNDS.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (b, c) in BOUNDS.iter().zip(&self.counts) {
            if s <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in BOUNDS.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {n}");
    }
}

/// Every metric the collector exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    responses: Mutex<BTreeMap<u16, u64>>,
    /// Events waiting for the writer (enqueued, not yet taken into a commit).
    pub queue_events: AtomicI64,
    pub commits: AtomicU64,
    pub commit_failures: AtomicU64,
    /// Time from a batch request's arrival to its response.
    pub batch_latency: LatencyHistogram,
    pub commit_latency: LatencyHistogram,
    /// The last accuracy check (`store::verify`): when it ended (Unix seconds, 0 before the
    /// first), the rollup rows it compared and the differences it found.
    pub verify_last_run: AtomicI64,
    pub verify_rows_checked: AtomicU64,
    pub verify_differences: AtomicU64,
    /// Requests refused by a rate limit, by class: query, export, ingest.
    pub rate_limited: [AtomicU64; 3],
    /// Audit records that could not be written (each answered 503 when it was a success).
    pub audit_failures: AtomicU64,
}

impl Metrics {
    /// Count one rejected event under a short reason label.
    pub fn reject(&self, reason: &'static str) {
        if let Ok(mut m) = self.rejected.lock() {
            *m.entry(reason).or_default() += 1;
        }
    }

    pub fn response(&self, status: u16) {
        if let Ok(mut m) = self.responses.lock() {
            *m.entry(status).or_default() += 1;
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        counter(
            &mut out,
            "agenttally_ingest_events_accepted_total",
            "Events newly stored.",
            self.accepted.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "agenttally_ingest_events_duplicate_total",
            "Events already stored (same tenant_id and id).",
            self.duplicates.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP agenttally_ingest_events_rejected_total Events rejected, by reason.\n\
             # TYPE agenttally_ingest_events_rejected_total counter"
        );
        if let Ok(m) = self.rejected.lock() {
            for (reason, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "agenttally_ingest_events_rejected_total{{reason=\"{reason}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP agenttally_ingest_responses_total Batch responses, by HTTP status.\n\
             # TYPE agenttally_ingest_responses_total counter"
        );
        if let Ok(m) = self.responses.lock() {
            for (status, n) in m.iter() {
                let _ = writeln!(
                    out,
                    "agenttally_ingest_responses_total{{status=\"{status}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP agenttally_writer_queue_events Events waiting for the writer.\n\
             # TYPE agenttally_writer_queue_events gauge\nagenttally_writer_queue_events {}",
            self.queue_events.load(Ordering::Relaxed).max(0)
        );
        counter(
            &mut out,
            "agenttally_writer_commits_total",
            "Committed write transactions.",
            self.commits.load(Ordering::Relaxed),
        );
        counter(
            &mut out,
            "agenttally_writer_commit_failures_total",
            "Write transactions that failed (then retried or isolated).",
            self.commit_failures.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP agenttally_rate_limited_total Requests refused by a rate limit, by class.\n\
             # TYPE agenttally_rate_limited_total counter"
        );
        for (class, n) in ["query", "export", "ingest"].iter().zip(&self.rate_limited) {
            let _ = writeln!(
                out,
                "agenttally_rate_limited_total{{class=\"{class}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        counter(
            &mut out,
            "agenttally_audit_write_failures_total",
            "Audit records that could not be written (a success is then answered 503).",
            self.audit_failures.load(Ordering::Relaxed),
        );
        self.batch_latency.render(
            &mut out,
            "agenttally_ingest_batch_duration_seconds",
            "Time to answer POST /v1/batch.",
        );
        self.commit_latency.render(
            &mut out,
            "agenttally_writer_commit_duration_seconds",
            "Time to store one commit group.",
        );
        let gauge = |out: &mut String, name: &str, help: &str, v: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        gauge(
            &mut out,
            "agenttally_verify_last_run_timestamp_seconds",
            "When the last accuracy check (rollups recomputed from raw rows) ended; 0: none yet.",
            self.verify_last_run.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "agenttally_verify_rows_checked",
            "Rollup rows the last accuracy check compared.",
            self.verify_rows_checked.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "agenttally_verify_differences",
            "Differences between stored and recomputed rollup rows the last accuracy check found.",
            self.verify_differences.load(Ordering::Relaxed).to_string(),
        );
        out
    }
}
