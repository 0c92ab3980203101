//! `agenttally-collector report`: a plain-text account of what is stored, per tenant — runs and
//! success rate, cost by provider from the rollups, and routing savings priced by sdk-core. The
//! numbers come from `query::summary`; this module only lays them out.

use std::fmt::Write as _;

use agenttally::pricing::{display_round, Baseline, PriceBook, SavingsSummary};
use rust_decimal::Decimal;

use crate::error::Result;
use crate::query::summary;
use crate::store;

/// Render the report for `tenants` (all tenants with stored data when empty).
pub async fn report(database_url: &str, tenants: &[String]) -> Result<String> {
    let pool = store::connect_pool(database_url, 1)?;
    let mut client = pool.get().await?;
    let tenants: Vec<String> = if tenants.is_empty() {
        summary::tenants_with_data(&**client).await?
    } else {
        tenants.to_vec()
    };
    let book = PriceBook::builtin();
    let mut out = String::new();
    for tenant in &tenants {
        let tx = store::tenant_tx(&mut client, tenant).await?;
        let runs = summary::run_outcomes(&tx).await?;
        let by_provider = summary::cost_by_provider(&tx).await?;
        let tasks = summary::priced_calls(&tx).await?;
        tx.commit().await?;

        let _ = writeln!(out, "tenant {tenant}");
        let n = runs.runs();
        let rate = if n > 0 {
            format!("{:.1}%", runs.completed as f64 * 100.0 / n as f64)
        } else {
            "-".into()
        };
        let _ = writeln!(
            out,
            "  runs: {n} (completed {}, failed {}, timed out {}), success rate {rate}",
            runs.completed, runs.failed, runs.timed_out
        );
        let _ = writeln!(
            out,
            "  {:<20} {:>7} {:>12} {:>14} {:>9}",
            "provider", "calls", "tokens", "cost_usd", "unpriced"
        );
        let mut total = Decimal::ZERO;
        for p in &by_provider {
            total += p.cost_usd;
            let _ = writeln!(
                out,
                "  {:<20} {:>7} {:>12} {:>14} {:>9}",
                p.provider,
                p.calls,
                p.tokens,
                display_round(p.cost_usd, 6).normalize(),
                p.unpriced
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
