//! Savings of one tenant over a time range against one baseline, from the savings rollups:
//! actual spend beside what the same calls would have cost on the baseline (priced per call at
//! ingest), gross and over successful tasks only, signed, with breakdowns by provider, task type
//! and month (docs/metrics.md). The figures mean what sdk-core's `SavingsSummary` means.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use super::metrics::{decimal_string, DecimalString, Granularity, Range};
use crate::error::Result;
use crate::store::rollups::Grain;
use crate::store::TenantTx;

/// The fields of `Figures`, in order (the columns of the CSV form).
pub const FIGURES: &[&str] = &[
    "tasks",
    "successful_tasks",
    "compared_tasks",
    "actual_unpriced",
    "baseline_unpriced",
    "unpriced_tokens",
    "estimated_tasks",
    "actual_usd",
    "baseline_usd",
    "savings_usd",
    "savings_percent",
    "successful_actual_usd",
    "successful_baseline_usd",
    "successful_savings_usd",
    "successful_savings_percent",
    "cost_per_successful_task",
];

/// Savings figures of a group of tasks (spend events). Sums cover the *compared* tasks, whose
/// actual and baseline costs are both known; the others are counted beside them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Figures {
    pub tasks: i64,
    pub successful_tasks: i64,
    pub compared_tasks: i64,
    /// Tasks whose actual cost is unknown (`cost_status = unpriced`).
    pub actual_unpriced: i64,
    /// Tasks the baseline could not price (no usage, or no model of the book prices it).
    pub baseline_unpriced: i64,
    /// Tokens of the tasks left out of the sums.
    pub unpriced_tokens: i64,
    /// Compared tasks priced with a fallback (`estimated`) on either side.
    pub estimated_tasks: i64,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub actual_usd: Decimal,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub baseline_usd: Decimal,
    /// `baseline_usd − actual_usd`: negative when routing cost more (never clamped).
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub savings_usd: Decimal,
    /// `savings / baseline × 100`, exact; `null` when the baseline is 0.
    #[serde(serialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<DecimalString>, required = true)]
    pub savings_percent: Option<Decimal>,
    /// The same over compared successful tasks only: a failed task saves nothing.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub successful_actual_usd: Decimal,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub successful_baseline_usd: Decimal,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub successful_savings_usd: Decimal,
    #[serde(serialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<DecimalString>, required = true)]
    pub successful_savings_percent: Option<Decimal>,
    /// All compared actual spend (failures included) / compared successful tasks.
    #[serde(serialize_with = "optional_decimal_string")]
    #[schema(value_type = Option<DecimalString>, required = true)]
    pub cost_per_successful_task: Option<Decimal>,
    #[serde(skip)]
    compared_successful: i64,
}

pub(crate) fn optional_decimal_string<S: serde::Serializer>(
    d: &Option<Decimal>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match d {
        Some(d) => decimal_string(d, s),
        None => s.serialize_none(),
    }
}

fn percent(part: Decimal, whole: Decimal) -> Option<Decimal> {
    if whole.is_zero() {
        return None;
    }
    part.checked_mul(Decimal::ONE_HUNDRED)?
        .checked_div(whole)
        .map(|d| d.normalize())
}

/// One row of the savings rollups, summed over buckets.
struct Row {
    success: bool,
    tasks: i64,
    compared: i64,
    actual_unpriced: i64,
    baseline_unpriced: i64,
    unpriced_tokens: i64,
    estimated: i64,
    actual_usd: Decimal,
    baseline_usd: Decimal,
}

impl Figures {
    fn add(&mut self, r: &Row) {
        self.tasks += r.tasks;
        self.compared_tasks += r.compared;
        self.actual_unpriced += r.actual_unpriced;
        self.baseline_unpriced += r.baseline_unpriced;
        self.unpriced_tokens += r.unpriced_tokens;
        self.estimated_tasks += r.estimated;
        self.actual_usd += r.actual_usd;
        self.baseline_usd += r.baseline_usd;
        if r.success {
            self.successful_tasks += r.tasks;
            self.compared_successful += r.compared;
            self.successful_actual_usd += r.actual_usd;
            self.successful_baseline_usd += r.baseline_usd;
        }
    }

    fn finish(&mut self) {
        self.actual_usd = self.actual_usd.normalize();
        self.baseline_usd = self.baseline_usd.normalize();
        self.successful_actual_usd = self.successful_actual_usd.normalize();
        self.successful_baseline_usd = self.successful_baseline_usd.normalize();
        self.savings_usd = (self.baseline_usd - self.actual_usd).normalize();
        self.savings_percent = percent(self.savings_usd, self.baseline_usd);
        self.successful_savings_usd =
            (self.successful_baseline_usd - self.successful_actual_usd).normalize();
        self.successful_savings_percent =
            percent(self.successful_savings_usd, self.successful_baseline_usd);
        self.cost_per_successful_task = (self.compared_successful > 0)
            .then(|| (self.actual_usd / Decimal::from(self.compared_successful)).normalize());
    }
}

/// The answer of `GET /v1/metrics/savings`: the figures of the whole range, beside the
/// breakdowns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Savings {
    pub tenant_id: String,
    /// The range covered: whole buckets of `granularity`, `from` inclusive.
    pub from: DateTime<Utc>,
    /// The end of the range covered, exclusive.
    pub to: DateTime<Utc>,
    pub granularity: Granularity,
    /// The baseline compared against (`most_expensive` or a model).
    pub baseline: String,
    #[serde(flatten)]
    pub total: Figures,
    /// By provider (the model when a task has no provider).
    pub by_provider: BTreeMap<String, Figures>,
    /// By task type; tasks without one under `""`.
    pub by_task_type: BTreeMap<String, Figures>,
    /// By calendar month (UTC), `YYYY-MM`.
    pub by_month: BTreeMap<String, Figures>,
}

/// The baselines the tenant has savings on, in name order (each configured baseline from the
/// time it was configured).
pub async fn baselines(tx: &TenantTx<'_>, tenant: &str) -> Result<Vec<String>> {
    Ok(tx
        .query(
            "SELECT DISTINCT baseline FROM rollup_savings_daily WHERE tenant_id = $1 ORDER BY 1",
            &[&tenant],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The savings of the tenant `tx` acts for against `baseline` (one of the configured ones).
pub async fn savings(
    tx: &TenantTx<'_>,
    tenant: &str,
    range: &Range,
    baseline: &str,
) -> Result<Savings> {
    let table = match range.grain {
        Grain::Hourly => "rollup_savings_hourly",
        Grain::Daily => "rollup_savings_daily",
    };
    let sql = format!(
        "SELECT CASE WHEN provider = '' THEN model ELSE provider END, task_type, success,
                date_trunc('month', bucket AT TIME ZONE 'UTC'),
                sum(tasks)::bigint, sum(compared)::bigint, sum(actual_unpriced)::bigint,
                sum(baseline_unpriced)::bigint, sum(unpriced_tokens)::bigint,
                sum(estimated)::bigint, sum(actual_usd), sum(baseline_usd)
         FROM {table}
         WHERE tenant_id = $1 AND baseline = $4 AND bucket >= $2 AND bucket < $3
         GROUP BY 1, 2, 3, 4"
    );
    let rows = tx
        .query(&sql, &[&tenant, &range.from, &range.to, &baseline])
        .await?;
    let mut out = Savings {
        tenant_id: tenant.to_string(),
        from: range.from,
        to: range.to,
        granularity: range.grain.into(),
        baseline: baseline.to_string(),
        total: Figures::default(),
        by_provider: BTreeMap::new(),
        by_task_type: BTreeMap::new(),
        by_month: BTreeMap::new(),
    };
    for r in &rows {
        let provider: String = r.get(0);
        let task_type: String = r.get(1);
        let month: chrono::NaiveDateTime = r.get(3);
        let row = Row {
            success: r.get(2),
            tasks: r.get(4),
            compared: r.get(5),
            actual_unpriced: r.get(6),
            baseline_unpriced: r.get(7),
            unpriced_tokens: r.get(8),
            estimated: r.get(9),
            actual_usd: r.get(10),
            baseline_usd: r.get(11),
        };
        out.total.add(&row);
        out.by_provider.entry(provider).or_default().add(&row);
        out.by_task_type.entry(task_type).or_default().add(&row);
        out.by_month
            .entry(format!("{:04}-{:02}", month.year(), month.month()))
            .or_default()
            .add(&row);
    }
    out.total.finish();
    for f in out
        .by_provider
        .values_mut()
        .chain(out.by_task_type.values_mut())
        .chain(out.by_month.values_mut())
    {
        f.finish();
    }
    Ok(out)
}
