//! Savings of one tenant over a time range against one baseline, from the savings rollups:
//! actual spend beside what the same calls would have cost on the baseline (priced per call at
//! ingest), gross and over successful tasks only, signed, with breakdowns by provider, task type
//! and month (docs/metrics.md). The figures are sdk-core's `SavingsSummary`, derived from the
//! rollups' sums by `SavingsSummary::from_sums`.

use std::collections::BTreeMap;

use agenttally::pricing::{SavingsSummary, SavingsSums};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

use super::metrics::{decimal_string, rollup_rows, DecimalString, Granularity, Range};
use super::period::{local_date, month_name};
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
}

impl From<SavingsSummary> for Figures {
    fn from(s: SavingsSummary) -> Self {
        // Sums of bigint columns: far below i64::MAX.
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        Figures {
            tasks: count(s.tasks),
            successful_tasks: count(s.successful_tasks),
            compared_tasks: count(s.compared_tasks),
            actual_unpriced: count(s.actual_unpriced),
            baseline_unpriced: count(s.baseline_unpriced),
            unpriced_tokens: count(s.unpriced_tokens),
            estimated_tasks: count(s.estimated_tasks),
            actual_usd: s.actual_usd,
            baseline_usd: s.baseline_usd,
            savings_usd: s.savings_usd,
            savings_percent: s.savings_percent,
            successful_actual_usd: s.successful_actual_usd,
            successful_baseline_usd: s.successful_baseline_usd,
            successful_savings_usd: s.successful_savings_usd,
            successful_savings_percent: s.successful_savings_percent,
            cost_per_successful_task: s.cost_per_successful_task,
        }
    }
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
    /// By calendar month in `tz`, `YYYY-MM`.
    pub by_month: BTreeMap<String, Figures>,
    /// The IANA time zone of the months.
    pub tz: String,
}

/// The savings-rollup columns `savings` reads.
const SAVINGS_COLUMNS: &str = "bucket, provider, model, task_type, success, tasks, compared,
    actual_unpriced, baseline_unpriced, unpriced_tokens, estimated, actual_usd, baseline_usd";

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

/// The savings of the tenant `tx` acts for against `baseline` (one of the configured ones);
/// `months` are the starts of the range's pieces in each calendar month of `tz` (the range's
/// start first; each a bucket edge of the range's rollups: the caller checks it).
pub async fn savings(
    tx: &TenantTx<'_>,
    tenant: &str,
    range: &Range,
    baseline: &str,
    months: &[DateTime<Utc>],
    tz: Tz,
) -> Result<Savings> {
    // Whole UTC days come from the daily rollups (as the summary's) when each month after the
    // first starts at a UTC midnight (a day is then inside one month); else the hourly rows.
    let tables = ("rollup_savings_hourly", "rollup_savings_daily");
    let filter = "AND baseline = $4";
    let (rows_sql, days) = if months.iter().skip(1).all(|t| Grain::Daily.bucket(*t) == *t) {
        rollup_rows(range, tables, SAVINGS_COLUMNS, filter, 6)
    } else {
        // Only an hourly range has a month starting elsewhere (a bucket edge of its rollups).
        (
            format!(
                "SELECT {SAVINGS_COLUMNS} FROM {} \
                 WHERE tenant_id = $1 {filter} AND bucket >= $2 AND bucket < $3",
                tables.0
            ),
            None,
        )
    };
    let sql = format!(
        "SELECT CASE WHEN provider = '' THEN model ELSE provider END, task_type, success,
                width_bucket(bucket, $5::timestamptz[]),
                sum(tasks)::bigint, sum(compared)::bigint, sum(actual_unpriced)::bigint,
                sum(baseline_unpriced)::bigint, sum(unpriced_tokens)::bigint,
                sum(estimated)::bigint, sum(actual_usd), sum(baseline_usd)
         FROM ({rows_sql}) r
         GROUP BY 1, 2, 3, 4"
    );
    let rows = match days {
        Some((d0, d1)) => {
            tx.query(
                &sql,
                &[
                    &tenant,
                    &range.from,
                    &range.to,
                    &baseline,
                    &months,
                    &d0,
                    &d1,
                ],
            )
            .await?
        }
        None => {
            tx.query(&sql, &[&tenant, &range.from, &range.to, &baseline, &months])
                .await?
        }
    };
    let mut total = SavingsSums::default();
    let mut by_provider: BTreeMap<String, SavingsSums> = BTreeMap::new();
    let mut by_task_type: BTreeMap<String, SavingsSums> = BTreeMap::new();
    let mut by_month: BTreeMap<String, SavingsSums> = BTreeMap::new();
    for r in &rows {
        let piece: i32 = r.get(3);
        let month = usize::try_from(piece - 1)
            .ok()
            .and_then(|i| months.get(i))
            .map_or_else(String::new, |t| month_name(&local_date(tz, *t)));
        let sums = row_sums(r);
        total += &sums;
        *by_provider.entry(r.get(0)).or_default() += &sums;
        *by_task_type.entry(r.get(1)).or_default() += &sums;
        *by_month.entry(month).or_default() += &sums;
    }
    let figures = |groups: BTreeMap<String, SavingsSums>| {
        groups
            .into_iter()
            .map(|(k, sums)| (k, SavingsSummary::from_sums(&sums).into()))
            .collect()
    };
    Ok(Savings {
        tenant_id: tenant.to_string(),
        from: range.from,
        to: range.to,
        granularity: range.grain.into(),
        baseline: baseline.to_string(),
        total: SavingsSummary::from_sums(&total).into(),
        by_provider: figures(by_provider),
        by_task_type: figures(by_task_type),
        by_month: figures(by_month),
        tz: tz.name().to_string(),
    })
}

/// One row of the query in `savings` as the sums it adds to its groups.
fn row_sums(r: &tokio_postgres::Row) -> SavingsSums {
    // Sums of non-negative counts.
    let count = |i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
    let success: bool = r.get(2);
    let (tasks, compared) = (count(4), count(5));
    let (actual_usd, baseline_usd): (Decimal, Decimal) = (r.get(10), r.get(11));
    let if_success = |d: Decimal| if success { d } else { Decimal::ZERO };
    SavingsSums {
        tasks,
        successful_tasks: if success { tasks } else { 0 },
        compared_tasks: compared,
        compared_successful_tasks: if success { compared } else { 0 },
        actual_unpriced: count(6),
        baseline_unpriced: count(7),
        unpriced_tokens: count(8),
        estimated_tasks: count(9),
        actual_usd,
        baseline_usd,
        successful_actual_usd: if_success(actual_usd),
        successful_baseline_usd: if_success(baseline_usd),
    }
}
