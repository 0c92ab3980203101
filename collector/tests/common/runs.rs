//! Agent runs for the read-API tests: both instrumentation patterns (itemized runs, whose
//! terminal event repeats the calls' cost and usage with `metadata.calls`, and summary-only
//! runs), costs reported, priced at ingest and unpriced, spread over the last three days.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

/// A small deterministic generator (no randomness between runs).
pub struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Runs of `tenant`: itemized ones (calls + a terminal event with `metadata.calls` and the
/// summed cost and usage), summary-only ones (cost on the terminal event only), starts.
pub fn tenant_events(tenant: &str, seed: u64, runs: usize, now: DateTime<Utc>) -> Vec<Value> {
    let mut g = Lcg(seed);
    let models = [
        ("openai", "gpt-4o"),
        ("openai", "gpt-4o-mini"),
        ("nowhere", "no-such-model-xyz"),
        ("anthropic", "claude-sonnet-4-5"),
    ];
    let mut out = Vec::new();
    for run in 0..runs {
        let start = now - TimeDelta::minutes(10 + g.next(3 * 24 * 60) as i64);
        let corr = format!("{tenant}-run-{run}");
        let task = ["code", "review", "docs"][g.next(3) as usize];
        let itemized = g.next(2) == 0;
        out.push(json!({
            "id": Uuid::now_v7().to_string(), "tenant_id": tenant,
            "event_type": "agent.started", "timestamp": ts(start),
            "correlation_id": corr, "agent_id": "a1", "task_type": task, "success": true,
        }));
        let mut usage_sum = (0u64, 0u64);
        let calls = if itemized { 1 + g.next(3) } else { 0 };
        for c in 0..calls {
            let (provider, model) = models[g.next(models.len() as u64) as usize];
            let (input, output) = (1 + g.next(5_000), g.next(2_000));
            usage_sum = (usage_sum.0 + input, usage_sum.1 + output);
            let mut call = json!({
                "id": Uuid::now_v7().to_string(), "tenant_id": tenant,
                "event_type": "provider.api_call",
                "timestamp": ts(start + TimeDelta::seconds(c as i64 + 1)),
                "correlation_id": corr, "agent_id": "a1", "task_type": task,
                "provider": provider, "model": model,
                "usage": {"input_tokens": input, "output_tokens": output,
                          "reasoning_tokens": output / 4, "requests": 1},
                "duration_ms": 1 + g.next(4_000), "success": true,
            });
            // A third report their own cost; the rest are priced (or not) at ingest.
            if g.next(3) == 0 {
                call["cost_usd"] = json!(format!("0.{:04}", g.next(10_000)));
            }
            out.push(call);
        }
        let (event_type, success) = match g.next(5) {
            0 => ("agent.failed", false),
            1 => ("agent.timeout", false),
            _ => ("agent.completed", true),
        };
        let end = start + TimeDelta::seconds(30);
        let mut terminal = json!({
            "id": Uuid::now_v7().to_string(), "tenant_id": tenant,
            "event_type": event_type, "timestamp": ts(end),
            "correlation_id": corr, "agent_id": "a1", "task_type": task,
            "duration_ms": 1 + g.next(120_000), "queue_ms": 1 + g.next(900),
            "cost_usd": format!("{}.{:03}", g.next(3), g.next(1_000)),
            "success": success,
        });
        if event_type == "agent.failed" {
            terminal["error_code"] = json!("boom");
        }
        if itemized {
            terminal["metadata"] = json!({"calls": calls});
            terminal["usage"] = json!({"input_tokens": usage_sum.0, "output_tokens": usage_sum.1});
        } else {
            let input = 1 + g.next(9_000);
            terminal["usage"] = json!({"input_tokens": input, "output_tokens": g.next(900)});
            if g.next(4) == 0 {
                // An explicit zero: still summary-only.
                terminal["metadata"] = json!({"calls": 0});
            }
        }
        out.push(terminal);
    }
    out
}
