//! Billing: a tenant's usage of its plan this period (a calendar month, in the request's time
//! zone; UTC by default and for the watcher) against the limits
//! of its tier, the linear projection to the period's end and its overage, past months, and the
//! tier that would have cost least; and the watcher that records crossing 80% and 100% of a
//! limit once (`watch`). Tiers are configured (`tiers`); a tenant's tier is its latest
//! `billing.subscription_created|upgraded` event's `metadata.tier`, or an admin's setting.

pub mod api;
pub mod tiers;
pub mod watch;

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use tokio_postgres::GenericClient;
use utoipa::ToSchema;

use crate::error::Result;
use crate::query::metrics::{decimal_string, DecimalString, OUTCOME_ROWS, SPEND_ROWS, TOKENS_SUM};
use crate::query::period::{cents, days, local_date, month_in, month_name, month_starts, percent};
use crate::store::rollups::Grain;
use crate::store::TenantTx;
use tiers::{Tier, Tiers, METRICS};

/// Usage of one period.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub executions: i64,
    pub tokens: i64,
    pub cost_usd: Decimal,
    /// Spend events without a known cost: `cost_usd` is at least what it says.
    pub unpriced_events: i64,
}

impl Usage {
    /// The value of `metric` (one of `tiers::METRICS`).
    pub fn get(&self, metric: &str) -> Decimal {
        match metric {
            "executions" => self.executions.into(),
            "tokens" => self.tokens.into(),
            "cost_usd" => self.cost_usd,
            _ => Decimal::ZERO,
        }
    }
}

/// Usage by UTC calendar month (`YYYY-MM`) over `[from, to)` (whole UTC days) from the daily
/// rollups.
pub async fn usage_by_month(
    tx: &impl GenericClient,
    tenant: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<BTreeMap<String, Usage>> {
    let starts = month_starts(Tz::UTC, from, to);
    usage_by_period(tx, tenant, Grain::Daily, &starts, to, Tz::UTC).await
}

/// Usage by period over `[starts[0], to)` cut at `starts` (the first instants of calendar
/// months in `tz`, each a bucket edge of the `grain` rollups), keyed by the month's `YYYY-MM`;
/// periods without data are absent.
pub async fn usage_by_period(
    tx: &impl GenericClient,
    tenant: &str,
    grain: Grain,
    starts: &[DateTime<Utc>],
    to: DateTime<Utc>,
    tz: Tz,
) -> Result<BTreeMap<String, Usage>> {
    let Some(from) = starts.first() else {
        return Ok(BTreeMap::new());
    };
    let sql = format!(
        "SELECT width_bucket(bucket, $4::timestamptz[]),
                coalesce(sum(events) FILTER (WHERE {OUTCOME_ROWS}), 0)::bigint,
                coalesce(sum({TOKENS_SUM}) FILTER (WHERE {SPEND_ROWS}), 0)::bigint,
                coalesce(sum(cost_usd) FILTER (WHERE {SPEND_ROWS}), 0),
                coalesce(sum(unpriced_events) FILTER (WHERE {SPEND_ROWS}), 0)::bigint
         FROM {table}
         WHERE tenant_id = $1 AND bucket >= $2 AND bucket < $3
         GROUP BY 1",
        table = grain.table()
    );
    let rows = tx.query(&sql, &[&tenant, from, &to, &starts]).await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let i = usize::try_from(r.get::<_, i32>(0) - 1).ok()?;
            let start = starts.get(i)?;
            let cost: Decimal = r.get(3);
            Some((
                month_name(&local_date(tz, *start)),
                Usage {
                    executions: r.get(1),
                    tokens: r.get(2),
                    cost_usd: cost.normalize(),
                    unpriced_events: r.get(4),
                },
            ))
        })
        .collect())
}

/// The tenant's recorded tier: name, where it came from (`event` or `admin`) and since when.
pub async fn recorded_tier(
    tx: &TenantTx<'_>,
    tenant: &str,
) -> Result<Option<(String, String, DateTime<Utc>)>> {
    let row = tx
        .query_opt(
            "SELECT tier, source, effective_at FROM tenant_tiers WHERE tenant_id = $1",
            &[&tenant],
        )
        .await?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
}

/// One limited metric this period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct MetricUsage {
    pub metric: &'static str,
    /// Used so far (a count, or USD for `cost_usd`), as a decimal string.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub used: Decimal,
    /// `null`: unlimited.
    #[serde(serialize_with = "crate::query::savings::optional_decimal_string")]
    #[schema(value_type = Option<DecimalString>, required = true)]
    pub limit: Option<Decimal>,
    /// `used / limit × 100`, to 2 places.
    #[serde(serialize_with = "crate::query::savings::optional_decimal_string")]
    #[schema(value_type = Option<DecimalString>, required = true)]
    pub percent_used: Option<Decimal>,
    /// `used` at this period's pace so far, extended to its end (counts rounded up).
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub projected: Decimal,
    /// What the projected use above the limit costs at the tier's overage rate, to the cent.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub projected_overage_usd: Decimal,
}

/// A past period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct PastPeriod {
    pub period: String,
    pub executions: i64,
    pub tokens: i64,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub cost_usd: Decimal,
    pub unpriced_events: i64,
    /// Under the tenant's current tier, to the cent.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub overage_usd: Decimal,
}

/// A tier and what the projected period would cost on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TierCost {
    pub name: String,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub monthly_price_usd: Decimal,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub projected_overage_usd: Decimal,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub projected_total_usd: Decimal,
}

/// The answer of `GET /v1/billing/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct BillingUsage {
    pub tenant_id: String,
    /// The IANA time zone of the periods (calendar months).
    pub tz: String,
    /// `YYYY-MM`: the current period, a calendar month in `tz`.
    pub period: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    /// `null`: no plan (none recorded and no default tier): no limits.
    #[schema(required = true)]
    pub tier: Option<String>,
    /// `event` (latest subscription event), `admin`, `default` (none recorded: the configured
    /// default tier) or `none`.
    pub tier_source: String,
    #[serde(serialize_with = "crate::query::savings::optional_decimal_string")]
    #[schema(value_type = Option<DecimalString>, required = true)]
    pub monthly_price_usd: Option<Decimal>,
    pub usage: Vec<MetricUsage>,
    /// Spend events of the period without a known cost.
    pub unpriced_events: i64,
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub projected_overage_usd: Decimal,
    /// Price plus projected overage.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub projected_total_usd: Decimal,
    /// Up to 12 previous periods with data, oldest first.
    pub history: Vec<PastPeriod>,
    /// The first instant `history` covers: 12 periods back; later when the months of `tz` do
    /// not start at UTC midnight, as such months are cut from the hourly rollups and only those
    /// starting within their retention are listed (earlier ones cannot be split exactly).
    pub history_from: DateTime<Utc>,
    /// The tier whose price plus projected overage is lowest (ties: the cheaper price).
    #[schema(required = true)]
    pub recommended_tier: Option<TierCost>,
    /// Every tier, as for `recommended_tier`.
    pub tier_costs: Vec<TierCost>,
}

/// Usage at the period's pace so far, extended to its end.
fn projected(used: Decimal, metric: &str, elapsed: Decimal, whole: Decimal) -> Decimal {
    let p = used * whole / elapsed;
    if metric == "cost_usd" {
        cents(p)
    } else {
        p.ceil()
    }
}

fn overage_of(tier: &Tier, usage: impl Fn(&str) -> Decimal) -> Decimal {
    METRICS
        .iter()
        .map(|m| match tier.limit(m) {
            Some(limit) => tier.overage_usd(m, usage(m) - limit),
            None => Decimal::ZERO,
        })
        .sum()
}

/// Where the billing periods of a request are read from: the calendar months of `tz` from
/// `starts[0]` (the current one last) to `end`, on rollups that can be cut at each of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Periods {
    pub tz: Tz,
    pub grain: Grain,
    pub starts: Vec<DateTime<Utc>>,
    pub end: DateTime<Utc>,
}

impl Periods {
    /// The 12 months of `tz` before the one holding `now`, and that one.
    pub fn around(tz: Tz, now: DateTime<Utc>) -> Periods {
        let (start, end) = month_in(tz, now);
        let mut starts = vec![start];
        for _ in 0..12 {
            let first = starts[0];
            let prev = month_in(tz, first - chrono::TimeDelta::days(1)).0;
            if prev >= first {
                break;
            }
            starts.insert(0, prev);
        }
        Periods {
            tz,
            grain: Grain::Daily,
            starts,
            end,
        }
    }
}

/// The billing picture of `tenant` at `now`, over `periods` (`Periods::around(tz, now)`, maybe
/// trimmed to those the rollups hold exactly).
pub async fn usage(
    tx: &TenantTx<'_>,
    tenant: &str,
    tiers: &Tiers,
    now: DateTime<Utc>,
    periods: &Periods,
) -> Result<BillingUsage> {
    let tz = periods.tz;
    let end = periods.end;
    let start = periods.starts.last().copied().unwrap_or(end);
    let history_from = periods.starts.first().copied().unwrap_or(start);
    let mut months =
        usage_by_period(tx.pg(), tenant, periods.grain, &periods.starts, end, tz).await?;
    let current = months
        .remove(&month_name(&local_date(tz, start)))
        .unwrap_or_default();
    let (tier, source) = match recorded_tier(tx, tenant).await? {
        Some((name, source, _)) if tiers.get(&name).is_some() => {
            (tiers.resolve(Some(&name)), source)
        }
        _ => match tiers.resolve(None) {
            Some(t) => (Some(t), "default".to_string()),
            None => (None, "none".to_string()),
        },
    };
    let elapsed = days(start, now.max(start));
    let whole = days(start, end);
    let proj: BTreeMap<&str, Decimal> = METRICS
        .iter()
        .map(|m| (*m, projected(current.get(m), m, elapsed, whole)))
        .collect();
    let usage: Vec<MetricUsage> = METRICS
        .iter()
        .map(|m| {
            let used = current.get(m);
            let limit = tier.and_then(|t| t.limit(m));
            MetricUsage {
                metric: m,
                used,
                limit,
                percent_used: limit.and_then(|l| percent(used, l)),
                projected: proj[m],
                projected_overage_usd: cents(match (tier, limit) {
                    (Some(t), Some(l)) => t.overage_usd(m, proj[m] - l),
                    _ => Decimal::ZERO,
                }),
            }
        })
        .collect();
    let overage: Decimal = usage.iter().map(|u| u.projected_overage_usd).sum();
    let tier_costs: Vec<TierCost> = tiers
        .tiers
        .iter()
        .map(|t| {
            let o = cents(overage_of(t, |m| proj[m]));
            TierCost {
                name: t.name.clone(),
                monthly_price_usd: t.monthly_price_usd.normalize(),
                projected_overage_usd: o,
                projected_total_usd: (t.monthly_price_usd + o).normalize(),
            }
        })
        .collect();
    let recommended_tier = tier_costs
        .iter()
        .min_by(|a, b| {
            a.projected_total_usd
                .cmp(&b.projected_total_usd)
                .then(a.monthly_price_usd.cmp(&b.monthly_price_usd))
        })
        .cloned();
    let history = months
        .into_iter()
        .map(|(period, u)| PastPeriod {
            overage_usd: cents(tier.map_or(Decimal::ZERO, |t| overage_of(t, |m| u.get(m)))),
            period,
            executions: u.executions,
            tokens: u.tokens,
            cost_usd: u.cost_usd,
            unpriced_events: u.unpriced_events,
        })
        .collect();
    Ok(BillingUsage {
        tenant_id: tenant.to_string(),
        tz: tz.name().to_string(),
        period: month_name(&local_date(tz, start)),
        period_start: start,
        period_end: end,
        tier: tier.map(|t| t.name.clone()),
        tier_source: source,
        monthly_price_usd: tier.map(|t| t.monthly_price_usd.normalize()),
        usage,
        unpriced_events: current.unpriced_events,
        projected_overage_usd: overage.normalize(),
        projected_total_usd: (tier.map_or(Decimal::ZERO, |t| t.monthly_price_usd) + overage)
            .normalize(),
        history,
        history_from,
        recommended_tier,
        tier_costs,
    })
}
