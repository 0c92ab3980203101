//! `agenttally-collector report`: a plain-text account of what is stored, per tenant — runs and
//! success rate, cost by provider from the rollups, and routing savings priced by sdk-core.

use std::fmt::Write as _;

use agenttally::pricing::{display_round, Baseline, PriceBook, SavingsSummary, Task};
use agenttally::Usage;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::error::Result;
use crate::store;

/// Render the report for `tenants` (all tenants with stored data when empty).
pub async fn report(database_url: &str, tenants: &[String]) -> Result<String> {
    let pool = store::connect_pool(database_url, 1)?;
    let mut client = pool.get().await?;
    let tenants: Vec<String> = if tenants.is_empty() {
        client
            .query(
                "SELECT DISTINCT tenant_id FROM rollup_daily ORDER BY tenant_id",
                &[],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        tenants.to_vec()
    };
    let book = PriceBook::builtin();
    let mut out = String::new();
    for tenant in &tenants {
        // Read as the application role with the tenant set, so row-level security applies.
        let tx = store::tenant_tx(&mut client, tenant).await?;
        let outcomes = tx
            .query(
                "SELECT event_type, sum(events)::bigint FROM rollup_daily
                 WHERE event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
                 GROUP BY event_type",
                &[],
            )
            .await?;
        let count = |t: &str| -> i64 {
            outcomes
                .iter()
                .find(|r| r.get::<_, String>(0) == t)
                .map_or(0, |r| r.get(1))
        };
        let (done, failed, timeout) = (
            count("agent.completed"),
            count("agent.failed"),
            count("agent.timeout"),
        );
        let runs = done + failed + timeout;
        let _ = writeln!(out, "tenant {tenant}");
        let rate = if runs > 0 {
            format!("{:.1}%", done as f64 * 100.0 / runs as f64)
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "  runs: {runs} (completed {done}, failed {failed}, timed out {timeout}), success rate {rate}"
        );
        let by_provider = tx
            .query(
                "SELECT provider, sum(events)::bigint, sum(cost_usd), sum(unpriced_events)::bigint,
                        sum(input_tokens + cached_input_tokens + cache_write_tokens
                            + cache_write_1h_tokens + output_tokens)::bigint
                 FROM rollup_daily WHERE event_type = 'provider.api_call'
                 GROUP BY provider ORDER BY sum(cost_usd) DESC",
                &[],
            )
            .await?;
        let _ = writeln!(
            out,
            "  {:<20} {:>7} {:>12} {:>14} {:>9}",
            "provider", "calls", "tokens", "cost_usd", "unpriced"
        );
        let mut total = Decimal::ZERO;
        for r in &by_provider {
            let cost: Decimal = r.get(2);
            total += cost;
            let _ = writeln!(
                out,
                "  {:<20} {:>7} {:>12} {:>14} {:>9}",
                r.get::<_, String>(0),
                r.get::<_, i64>(1),
                r.get::<_, i64>(4),
                display_round(cost, 6).normalize(),
                r.get::<_, i64>(3)
            );
        }
        let _ = writeln!(
            out,
            "  {:<20} {:>7} {:>12} {:>14}",
            "total",
            "",
            "",
            display_round(total, 6)
        );

        // Savings: every provider call, with the outcome of its run, against the most
        // expensive model in the book that prices the same usage on the same date and tier.
        let rows = tx
            .query(
                "SELECT c.provider, c.model, c.task_type, c.service_tier, c.ts, c.cost_usd,
                        coalesce(c.input_tokens, 0), coalesce(c.cached_input_tokens, 0),
                        coalesce(c.cache_write_tokens, 0), coalesce(c.cache_write_1h_tokens, 0),
                        coalesce(c.output_tokens, 0), coalesce(c.reasoning_tokens, 0),
                        coalesce(c.requests, 0),
                        coalesce(o.success, c.success)
                 FROM events c
                 LEFT JOIN events o
                   ON o.tenant_id = c.tenant_id AND o.correlation_id = c.correlation_id
                  AND o.event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
                 WHERE c.event_type = 'provider.api_call' AND c.model IS NOT NULL",
                &[],
            )
            .await?;
        tx.commit().await?;
        let tasks: Vec<Task> = rows
            .iter()
            .map(|r| {
                let n = |i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
                let usage = Usage {
                    input_tokens: n(6),
                    cached_input_tokens: n(7),
                    cache_write_tokens: n(8),
                    cache_write_1h_tokens: n(9),
                    output_tokens: n(10),
                    reasoning_tokens: n(11),
                    requests: n(12).max(1),
                };
                let at: DateTime<Utc> = r.get(4);
                let mut t = Task::new(r.get::<_, String>(1), usage, at);
                t.provider = r.get(0);
                t.task_type = r.get(2);
                t.tier = r
                    .get::<_, Option<String>>(3)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_default();
                t.actual_usd = r.get(5);
                t.success = r.get(13);
                t
            })
            .collect();
        let s = book.savings(&tasks, &Baseline::MostExpensive);
        let _ = writeln!(
            out,
            "  savings vs the most expensive model pricing each call (failed runs save nothing):"
        );
        let _ = writeln!(
            out,
            "  {:<22} {:>12} {:>12} {:>12} {:>8} {:>12} {:>8} {:>14}",
            "scope", "actual", "baseline", "saved", "saved%", "saved(ok)", "saved%", "per ok task"
        );
        write_savings(&mut out, "all tasks", &s.total);
        for (task_type, sum) in &s.by_task_type {
            write_savings(&mut out, task_type, sum);
        }
        out.push('\n');
    }
    if tenants.is_empty() {
        out.push_str("no events stored yet\n");
    }
    Ok(out)
}

fn write_savings(out: &mut String, label: &str, s: &SavingsSummary) {
    let usd = |d: Decimal| format!("${}", display_round(d, 4));
    let pct =
        |p: Option<Decimal>| p.map_or("-".to_string(), |p| format!("{}%", display_round(p, 1)));
    let _ = writeln!(
        out,
        "  {:<22} {:>12} {:>12} {:>12} {:>8} {:>12} {:>8} {:>14}",
        label,
        usd(s.actual_usd),
        usd(s.baseline_usd),
        usd(s.savings_usd),
        pct(s.savings_percent),
        usd(s.successful_savings_usd),
        pct(s.successful_savings_percent),
        s.cost_per_successful_task.map_or("-".to_string(), usd),
    );
}
