//! `agenttally-collector report`: a plain-text account of what is stored, per tenant, over all
//! time (the daily rollups). Every figure comes from the read API's query functions — the
//! summary, savings on each baseline priced at ingest, and the routing recommendations — so the
//! report and `GET /v1/metrics/...` never disagree; this module only lays them out.

use std::fmt::Write as _;

use agenttally::pricing::display_round;
use chrono::{DateTime, DurationRound, TimeDelta, TimeZone, Utc};
use rust_decimal::Decimal;

use crate::error::Result;
use crate::query::metrics::{self, Range, Summary};
use crate::query::recommend::{self, Policy, Recommendations};
use crate::query::savings::{self, Figures};
use crate::query::summary;
use crate::store::{self, rollups::Grain};

/// Tasks a provider/model needs for the report's routing advice.
pub const REPORT_MIN_TASKS: i64 = 10;

/// Render the report for `tenants` (all tenants with stored data when empty).
pub async fn report(database_url: &str, tenants: &[String]) -> Result<String> {
    let pool = store::connect_pool(database_url, 1)?;
    let mut client = pool.get().await?;
    let tenants: Vec<String> = if tenants.is_empty() {
        summary::tenants_with_data(&**client).await?
    } else {
        tenants.to_vec()
    };
    let now = Utc::now();
    let range = all_time(now);
    // All time: a smaller sample per candidate than the API's default is still telling.
    let policy = Policy {
        margin: crate::read_api::DEFAULT_MARGIN,
        min_tasks: REPORT_MIN_TASKS,
        monthly_budget_usd: None,
    };
    let mut out = String::new();
    for tenant in &tenants {
        let tx = store::tenant_tx(&mut client, tenant).await?;
        let s = metrics::summary(&tx, tenant, &range).await?;
        let mut by_baseline = Vec::new();
        let mut names = savings::baselines(&tx, tenant).await?;
        // The policy of the seed first.
        names.sort_by_key(|b| b != crate::pricing::MOST_EXPENSIVE);
        // UTC months (the report does not list them).
        let months = crate::query::period::month_starts(chrono_tz::Tz::UTC, range.from, range.to);
        for b in names {
            by_baseline.push(
                savings::savings(&tx, tenant, &range, &b, &months, chrono_tz::Tz::UTC).await?,
            );
        }
        // No budget: the month is not read.
        let month = range;
        let rec = recommend::recommendations(
            &tx,
            tenant,
            &range,
            &policy,
            now,
            &month,
            chrono_tz::Tz::UTC,
        )
        .await?;
        tx.commit().await?;
        write_summary(&mut out, tenant, &s);
        for sv in &by_baseline {
            let _ = writeln!(
                out,
                "  savings vs {} (per call, priced at ingest; saved(ok): successful tasks only):",
                match sv.baseline.as_str() {
                    crate::pricing::MOST_EXPENSIVE =>
                        "the most expensive model pricing each call".to_string(),
                    m => format!("everything on `{m}`"),
                }
            );
            let _ = writeln!(
                out,
                "  {:<22} {:>12} {:>12} {:>12} {:>8} {:>12} {:>8} {:>14}",
                "scope",
                "actual",
                "baseline",
                "saved",
                "saved%",
                "saved(ok)",
                "saved%",
                "per ok task"
            );
            write_savings(&mut out, "all tasks", &sv.total);
            for (task_type, f) in &sv.by_task_type {
                write_savings(&mut out, task_type, f);
            }
        }
        write_recommendations(&mut out, &rec);
        out.push('\n');
    }
    if tenants.is_empty() {
        out.push_str("no events stored yet\n");
    }
    Ok(out)
}

/// Every whole UTC day up to and including today, on the daily rollups.
fn all_time(now: DateTime<Utc>) -> Range {
    let tomorrow = now
        .duration_trunc(TimeDelta::days(1))
        .map_or(now, |d| d + TimeDelta::days(1));
    Range {
        from: Utc
            .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or(now),
        to: tomorrow,
        grain: Grain::Daily,
    }
}

fn write_summary(out: &mut String, tenant: &str, s: &Summary) {
    let _ = writeln!(out, "tenant {tenant}");
    let rate = s
        .success_rate
        .map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
    let by_type = |t: &str| s.executions_by_type.get(t).copied().unwrap_or(0);
    // Scripts and tests read this line: keep its shape.
    let _ = writeln!(
        out,
        "  runs: {} (completed {}, failed {}, timed out {}), success rate {rate}",
        s.executions,
        by_type("agent.completed"),
        by_type("agent.failed"),
        by_type("agent.timeout")
    );
    let _ = writeln!(
        out,
        "  {:<20} {:>7} {:>12} {:>14} {:>9}",
        "provider", "calls", "tokens", "cost_usd", "unpriced"
    );
    let mut rows: Vec<_> = s.spend_by_provider.iter().collect();
    rows.sort_by(|a, b| b.1.cost_usd.cmp(&a.1.cost_usd).then(a.0.cmp(b.0)));
    for (provider, p) in rows {
        let name = if provider.is_empty() {
            "(runs, summary-only)"
        } else {
            provider.as_str()
        };
        let _ = writeln!(
            out,
            "  {:<20} {:>7} {:>12} {:>14} {:>9}",
            name,
            s.api_calls_by_provider.get(provider).copied().unwrap_or(0),
            p.tokens,
            display_round(p.cost_usd, 6).normalize(),
            p.unpriced_events
        );
    }
    let _ = writeln!(
        out,
        "  {:<20} {:>7} {:>12} {:>14} {:>9}",
        "total",
        s.api_calls,
        "",
        display_round(s.cost_usd, 6).normalize(),
        s.unpriced_events
    );
}

fn write_savings(out: &mut String, label: &str, s: &Figures) {
    let usd = |d: Decimal| {
        let r = display_round(d, 4);
        if r.is_sign_negative() && !r.is_zero() {
            format!("-${}", r.abs())
        } else {
            format!("${}", r.abs())
        }
    };
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

fn write_recommendations(out: &mut String, r: &Recommendations) {
    let advised: Vec<_> = r
        .by_task_type
        .iter()
        .filter(|t| t.projected_monthly_saving_usd > Some(Decimal::ZERO))
        .filter_map(|t| Some((t, t.recommended.as_ref()?)))
        .collect();
    if advised.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  routing advice (cheapest within {} success-rate points of the best, >= {} tasks):",
        display_round(r.margin * Decimal::ONE_HUNDRED, 1).normalize(),
        r.min_tasks
    );
    for (t, c) in advised {
        let _ = writeln!(
            out,
            "  {:<22} -> {}/{} (success {:.1}%, avg ${}), saves ~${} a month",
            t.task_type,
            c.provider,
            c.model,
            c.success_rate * Decimal::ONE_HUNDRED,
            c.avg_cost_usd
                .map_or("-".into(), |a| display_round(a, 6).normalize().to_string()),
            t.projected_monthly_saving_usd
                .unwrap_or_default()
                .normalize()
        );
    }
}
