//! Routing recommendations and budget alerts for one tenant, from the rollups: per task type,
//! the cheapest provider/model whose success rate is within a margin of the best one (each with
//! a minimum number of tasks), and what routing there would save in a month; and, with a
//! monthly budget configured, whether this month's spend is on course to pass it
//! (docs/metrics.md).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use super::metrics::{decimal_string, usage_rows, DecimalString, Range, SPEND_ROWS};
use super::period::{cents, days, local_date, month_name, percent};
use crate::error::Result;
use crate::store::TenantTx;

/// What a recommendation needs besides the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// A candidate's success rate may be this far (0–1) below the best one's.
    pub margin: Decimal,
    /// A candidate needs at least this many tasks in the range.
    pub min_tasks: i64,
    /// The tenant's monthly budget, if one is set.
    pub monthly_budget_usd: Option<Decimal>,
}

/// One provider/model that ran tasks of a type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Candidate {
    pub provider: String,
    pub model: String,
    pub tasks: i64,
    pub successes: i64,
    /// `successes / tasks`, exact.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub success_rate: Decimal,
    /// Spend of the tasks whose cost is known, and how many those are.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub cost_usd: Decimal,
    pub costed_tasks: i64,
    /// `cost_usd / costed_tasks`; `null` without a known cost.
    #[serde(serialize_with = "super::savings::optional_decimal_string")]
    #[schema(value_type = Option<DecimalString>, required = true)]
    pub avg_cost_usd: Option<Decimal>,
    /// Enough tasks to be judged (`min_tasks`).
    pub eligible: bool,
}

/// The advice for one task type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TaskTypeAdvice {
    pub task_type: String,
    pub tasks: i64,
    /// Average known cost per task across every candidate.
    #[serde(serialize_with = "super::savings::optional_decimal_string")]
    #[schema(value_type = Option<DecimalString>, required = true)]
    pub current_avg_cost_usd: Option<Decimal>,
    /// The best success rate among eligible candidates.
    #[serde(serialize_with = "super::savings::optional_decimal_string")]
    #[schema(value_type = Option<DecimalString>, required = true)]
    pub best_success_rate: Option<Decimal>,
    /// The cheapest eligible candidate within the margin of the best success rate.
    #[schema(required = true)]
    pub recommended: Option<Candidate>,
    /// `(current − recommended) average cost × tasks per month` at this range's pace, to the
    /// cent; 0 when routing is already there or dearer.
    #[serde(serialize_with = "super::savings::optional_decimal_string")]
    #[schema(value_type = Option<DecimalString>, required = true)]
    pub projected_monthly_saving_usd: Option<Decimal>,
    /// Why there is no recommendation, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// Every provider/model seen, cheapest first.
    pub candidates: Vec<Candidate>,
}

/// The month's spend against the budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Budget {
    /// `YYYY-MM`, a calendar month in `tz`.
    pub month: String,
    /// The month's first instant.
    pub month_start: DateTime<Utc>,
    /// The next month's first instant.
    pub month_end: DateTime<Utc>,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub monthly_budget_usd: Decimal,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub month_to_date_usd: Decimal,
    /// Month-to-date spend at its pace so far, extended to the whole month (to the cent).
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub projected_usd: Decimal,
    /// `projected / budget × 100`, to 2 places.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub projected_percent_of_budget: Decimal,
    /// Spend events of the month whose cost is unknown (the spend is at least this much).
    pub unpriced_events: i64,
    /// The projection passes the budget.
    pub alert: bool,
}

/// The answer of `GET /v1/metrics/recommendations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Recommendations {
    pub tenant_id: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub margin: Decimal,
    pub min_tasks: i64,
    pub by_task_type: Vec<TaskTypeAdvice>,
    /// The sum of the task types' projected savings.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub projected_monthly_saving_usd: Decimal,
    /// `null` when no monthly budget is configured.
    #[schema(required = true)]
    pub budget: Option<Budget>,
    /// The IANA time zone of the budget's month.
    pub tz: String,
}

/// Average days in a month (365.25 / 12): the pace of a range extended to a month.
fn days_per_month() -> Decimal {
    Decimal::new(304_375, 4)
}

/// The usage rollup columns `spend` reads.
const SPEND_COLUMNS: &str =
    "task_type, provider, model, event_type, itemized, events, successes, cost_usd, \
     costed_events, unpriced_events";

/// Spend rows (`SPEND_ROWS`) of the tenant over `range`, summed by task type, provider and
/// model: whole days of an hourly range from the daily rollup, its edges from the hourly one
/// (`usage_rows`), so a long range reads a day's rows once instead of 24 hours of them.
async fn spend(tx: &TenantTx<'_>, tenant: &str, range: &Range) -> Result<Vec<tokio_postgres::Row>> {
    let (rows_sql, days) = usage_rows(range, SPEND_COLUMNS);
    let sql = format!(
        "SELECT task_type, provider, model, sum(events)::bigint, sum(successes)::bigint,
                sum(cost_usd), sum(costed_events)::bigint, sum(unpriced_events)::bigint
         FROM ({rows_sql}) r
         WHERE {SPEND_ROWS}
         GROUP BY 1, 2, 3"
    );
    Ok(match days {
        Some((d0, d1)) => {
            tx.query(&sql, &[&tenant, &range.from, &range.to, &d0, &d1])
                .await?
        }
        None => tx.query(&sql, &[&tenant, &range.from, &range.to]).await?,
    })
}

/// Recommendations for the tenant `tx` acts for over `range`; the budget is `month`'s (this
/// calendar month in `tz`, on rollups cut exactly at its edges: the caller picks them) as of
/// `now`.
pub async fn recommendations(
    tx: &TenantTx<'_>,
    tenant: &str,
    range: &Range,
    policy: &Policy,
    now: DateTime<Utc>,
    month: &Range,
    tz: Tz,
) -> Result<Recommendations> {
    let rows = spend(tx, tenant, range).await?;
    let mut by_type: BTreeMap<String, Vec<Candidate>> = BTreeMap::new();
    for r in &rows {
        let (provider, model): (String, String) = (r.get(1), r.get(2));
        // Nothing to route to: summary-only runs that name no provider or model.
        if provider.is_empty() && model.is_empty() {
            continue;
        }
        let tasks: i64 = r.get(3);
        let successes: i64 = r.get(4);
        let cost: Decimal = r.get(5);
        let costed: i64 = r.get(6);
        by_type.entry(r.get(0)).or_default().push(Candidate {
            provider,
            model,
            tasks,
            successes,
            success_rate: if tasks > 0 {
                (Decimal::from(successes) / Decimal::from(tasks)).normalize()
            } else {
                Decimal::ZERO
            },
            cost_usd: cost.normalize(),
            costed_tasks: costed,
            avg_cost_usd: (costed > 0).then(|| (cost / Decimal::from(costed)).normalize()),
            eligible: tasks >= policy.min_tasks,
        });
    }
    let pace = days_per_month() / days(range.from, range.to);
    let mut total_saving = Decimal::ZERO;
    let mut advice = Vec::new();
    for (task_type, mut candidates) in by_type {
        candidates.sort_by(|a, b| {
            let key = |c: &Candidate| c.avg_cost_usd.unwrap_or(Decimal::MAX);
            key(a)
                .cmp(&key(b))
                .then_with(|| (&a.provider, &a.model).cmp(&(&b.provider, &b.model)))
        });
        let tasks: i64 = candidates.iter().map(|c| c.tasks).sum();
        let (cost, costed) = candidates.iter().fold((Decimal::ZERO, 0i64), |(s, n), c| {
            (s + c.cost_usd, n + c.costed_tasks)
        });
        let current = (costed > 0).then(|| (cost / Decimal::from(costed)).normalize());
        let best = candidates
            .iter()
            .filter(|c| c.eligible)
            .map(|c| c.success_rate)
            .max();
        let recommended = best.and_then(|best| {
            candidates
                .iter()
                .find(|c| {
                    c.eligible && c.avg_cost_usd.is_some() && c.success_rate >= best - policy.margin
                })
                .cloned()
        });
        let reason = match (&best, &recommended) {
            (None, _) => Some(format!(
                "no provider/model has {} tasks of this type in the range",
                policy.min_tasks
            )),
            (Some(_), None) => Some("no eligible provider/model has a known cost".to_string()),
            _ => None,
        };
        let saving = match (&recommended, current) {
            (Some(r), Some(cur)) => r.avg_cost_usd.map(|rec| {
                let s = (cur - rec) * Decimal::from(tasks) * pace;
                cents(s.max(Decimal::ZERO))
            }),
            _ => None,
        };
        total_saving += saving.unwrap_or_default();
        advice.push(TaskTypeAdvice {
            task_type,
            tasks,
            current_avg_cost_usd: current,
            best_success_rate: best,
            recommended,
            projected_monthly_saving_usd: saving,
            reason,
            candidates,
        });
    }
    let budget = match policy.monthly_budget_usd {
        Some(b) => Some(budget(tx, tenant, b, now, month, tz).await?),
        None => None,
    };
    Ok(Recommendations {
        tenant_id: tenant.to_string(),
        from: range.from,
        to: range.to,
        margin: policy.margin.normalize(),
        min_tasks: policy.min_tasks,
        by_task_type: advice,
        projected_monthly_saving_usd: total_saving.normalize(),
        budget,
        tz: tz.name().to_string(),
    })
}

/// The CSV form: one row per task type and candidate (`recommended` marks the advice), then
/// the budget as `budget` rows when there is one.
pub fn table(v: &serde_json::Value) -> super::csv::Table {
    let cols = [
        "task_type",
        "provider",
        "model",
        "tasks",
        "successes",
        "success_rate",
        "cost_usd",
        "costed_tasks",
        "avg_cost_usd",
        "eligible",
        "recommended",
        "projected_monthly_saving_usd",
    ];
    let text = |x: &serde_json::Value| match x {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s.clone(),
        o => o.to_string(),
    };
    let mut out = vec![cols.iter().map(|c| c.to_string()).collect::<Vec<_>>()];
    for t in v["by_task_type"].as_array().into_iter().flatten() {
        let rec = &t["recommended"];
        for c in t["candidates"].as_array().into_iter().flatten() {
            let is_rec =
                !rec.is_null() && rec["provider"] == c["provider"] && rec["model"] == c["model"];
            let mut row: Vec<String> = vec![text(&t["task_type"])];
            row.extend(cols[1..10].iter().map(|k| text(&c[*k])));
            row.push(is_rec.to_string());
            row.push(if is_rec {
                text(&t["projected_monthly_saving_usd"])
            } else {
                String::new()
            });
            out.push(row);
        }
    }
    out
}

/// The spend of `month` (this month; the current rollup bucket is updated as events arrive)
/// projected linearly to the month's end.
async fn budget(
    tx: &TenantTx<'_>,
    tenant: &str,
    monthly_budget_usd: Decimal,
    now: DateTime<Utc>,
    month: &Range,
    tz: Tz,
) -> Result<Budget> {
    let (start, end) = (month.from, month.to);
    let rows = spend(tx, tenant, month).await?;
    let (mut spent, mut unpriced) = (Decimal::ZERO, 0i64);
    for r in &rows {
        spent += r.get::<_, Decimal>(5);
        unpriced += r.get::<_, i64>(7);
    }
    let elapsed = days(start, now.max(start + TimeDelta::hours(1)));
    let projected = cents(spent * days(start, end) / elapsed);
    Ok(Budget {
        month: month_name(&local_date(tz, start)),
        month_start: start,
        month_end: end,
        monthly_budget_usd: monthly_budget_usd.normalize(),
        month_to_date_usd: spent.normalize(),
        projected_usd: projected,
        // 0 for a zero budget (`alert` says whether it is passed).
        projected_percent_of_budget: percent(projected, monthly_budget_usd)
            .unwrap_or(Decimal::ZERO),
        unpriced_events: unpriced,
        alert: projected > monthly_budget_usd,
    })
}
