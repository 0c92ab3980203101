//! Peak usage of one tenant over a time range, from the hour totals (`rollup_tenant_hourly`, the
//! hourly usage rollup summed per tenant-hour at ingest): activity by hour of day and by day of
//! week (local, in the request's time zone), the busiest of each, and the top hours of the range
//! — the figures capacity planning and rate-limit tuning start from (docs/metrics.md).

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::metrics::{decimal_string, DecimalString, Range};
use crate::error::Result;
use crate::store::TenantTx;

/// What the busiest hours are ranked by (`metric=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(default = "executions")]
pub enum PeakMetric {
    Executions,
    Failures,
    ApiCalls,
    CostUsd,
    Tokens,
}

impl PeakMetric {
    pub const NAMES: &'static str = "executions, failures, api_calls, cost_usd, tokens";

    pub fn parse(s: &str) -> Option<PeakMetric> {
        Some(match s {
            "executions" => PeakMetric::Executions,
            "failures" => PeakMetric::Failures,
            "api_calls" => PeakMetric::ApiCalls,
            "cost_usd" => PeakMetric::CostUsd,
            "tokens" => PeakMetric::Tokens,
            _ => return None,
        })
    }
}

/// The fields of `Activity`, in order (the columns of the CSV form).
pub const ACTIVITY: &[&str] = &[
    "executions",
    "failures",
    "api_calls",
    "cost_usd",
    "unpriced_events",
    "tokens",
];

/// Activity of one slot (an hour of day, a weekday, or one hour of the range).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct Activity {
    pub executions: i64,
    pub failures: i64,
    pub api_calls: i64,
    /// Spend, as the summary counts it; with `unpriced_events` beside it.
    #[serde(serialize_with = "decimal_string")]
    #[schema(value_type = DecimalString)]
    pub cost_usd: Decimal,
    pub unpriced_events: i64,
    /// Prompt plus output tokens of spend events.
    pub tokens: i64,
}

impl Activity {
    fn add(&mut self, o: &Activity) {
        self.executions += o.executions;
        self.failures += o.failures;
        self.api_calls += o.api_calls;
        self.cost_usd += o.cost_usd;
        self.unpriced_events += o.unpriced_events;
        self.tokens += o.tokens;
    }

    /// The ranking key: exact for every metric (money compared as a decimal).
    fn rank(&self, m: PeakMetric) -> Decimal {
        match m {
            PeakMetric::Executions => self.executions.into(),
            PeakMetric::Failures => self.failures.into(),
            PeakMetric::ApiCalls => self.api_calls.into(),
            PeakMetric::CostUsd => self.cost_usd,
            PeakMetric::Tokens => self.tokens.into(),
        }
    }
}

/// The activity of one hour of day, over every day of the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct HourOfDay {
    /// 0–23, local (in `tz`).
    #[schema(minimum = 0, maximum = 23)]
    pub hour: u32,
    #[serde(flatten)]
    pub activity: Activity,
}

/// The activity of one day of the week, over every week of the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DayOfWeek {
    /// `monday` … `sunday` (local days, in `tz`).
    #[schema(schema_with = weekday)]
    pub day: &'static str,
    #[serde(flatten)]
    pub activity: Activity,
}

/// The activity of one hour of the range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TopHour {
    /// The hour's start.
    pub t: DateTime<Utc>,
    #[serde(flatten)]
    pub activity: Activity,
}

/// The answer of `GET /v1/metrics/peaks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Peaks {
    pub tenant_id: String,
    /// The range covered (whole hours), `from` inclusive.
    pub from: DateTime<Utc>,
    /// The end of the range covered, exclusive.
    pub to: DateTime<Utc>,
    /// What the busiest slots are ranked by.
    pub metric: PeakMetric,
    /// The IANA time zone of the hours of day and days of week.
    pub tz: String,
    /// All 24 hours, 0 first.
    pub by_hour_of_day: Vec<HourOfDay>,
    /// All 7 days, Monday first.
    pub by_day_of_week: Vec<DayOfWeek>,
    /// Hours of day with any activity, busiest first (ties: earlier hour first), at most 3.
    #[schema(schema_with = busiest_hours)]
    pub busiest_hours_of_day: Vec<u32>,
    /// Days with any activity, busiest first (ties: earlier in the week first), at most 3.
    #[schema(schema_with = busiest_days)]
    pub busiest_days_of_week: Vec<&'static str>,
    /// The busiest hours of the range, busiest first (ties: earlier first), at most `limit`.
    pub top_hours: Vec<TopHour>,
}

const DAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// The schema of a day of the week as the answers name it.
fn weekday() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(DAYS))
        .into()
}

/// The schema of `busiest_hours_of_day`.
fn busiest_hours() -> Schema {
    let hour = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(23));
    ArrayBuilder::new().items(hour).max_items(Some(3)).into()
}

/// The schema of `busiest_days_of_week`.
fn busiest_days() -> Schema {
    ArrayBuilder::new()
        .items(RefOr::T(weekday()))
        .max_items(Some(3))
        .into()
}

/// Peaks of the tenant `tx` acts for over `range` (hour totals, whole hours), hours of day
/// and days of week in `tz` (a whole number of hours off UTC over the range: the caller checks
/// it, so each UTC hour is one local hour).
pub async fn peaks(
    tx: &TenantTx<'_>,
    tenant: &str,
    range: &Range,
    metric: PeakMetric,
    limit: usize,
    tz: Tz,
) -> Result<Peaks> {
    // One row per hour (`rollup_tenant_hourly`), summed at ingest as the summary counts them.
    let sql = "SELECT bucket, executions, failures, api_calls, cost_usd, unpriced_events, tokens
         FROM rollup_tenant_hourly
         WHERE tenant_id = $1 AND bucket >= $2 AND bucket < $3";
    let rows = tx.query(sql, &[&tenant, &range.from, &range.to]).await?;
    let mut hours: Vec<(DateTime<Utc>, Activity)> = rows
        .iter()
        .map(|r| {
            (
                r.get::<_, DateTime<Utc>>(0),
                Activity {
                    executions: r.get(1),
                    failures: r.get(2),
                    api_calls: r.get(3),
                    cost_usd: r.get(4),
                    unpriced_events: r.get(5),
                    tokens: r.get(6),
                },
            )
        })
        .collect();
    let mut by_hour: BTreeMap<u32, Activity> = (0..24).map(|h| (h, Activity::default())).collect();
    let mut by_day: BTreeMap<u32, Activity> = (0..7).map(|d| (d, Activity::default())).collect();
    for (t, a) in &hours {
        let local = t.with_timezone(&tz);
        by_hour.entry(local.hour()).or_default().add(a);
        by_day
            .entry(local.weekday().num_days_from_monday())
            .or_default()
            .add(a);
    }
    for a in by_hour.values_mut().chain(by_day.values_mut()) {
        a.cost_usd = a.cost_usd.normalize();
    }
    let busiest = |m: &BTreeMap<u32, Activity>| -> Vec<u32> {
        let mut v: Vec<(u32, Decimal)> = m
            .iter()
            .map(|(k, a)| (*k, a.rank(metric)))
            .filter(|(_, r)| *r > Decimal::ZERO)
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().take(3).map(|(k, _)| k).collect()
    };
    let busiest_hours_of_day = busiest(&by_hour);
    let busiest_days_of_week = busiest(&by_day)
        .into_iter()
        .map(|d| DAYS[d as usize])
        .collect();
    hours.retain(|(_, a)| a.rank(metric) > Decimal::ZERO);
    hours.sort_by(|a, b| b.1.rank(metric).cmp(&a.1.rank(metric)).then(a.0.cmp(&b.0)));
    hours.truncate(limit);
    Ok(Peaks {
        tenant_id: tenant.to_string(),
        from: range.from,
        to: range.to,
        metric,
        tz: tz.name().to_string(),
        by_hour_of_day: by_hour
            .into_iter()
            .map(|(hour, activity)| HourOfDay { hour, activity })
            .collect(),
        by_day_of_week: by_day
            .into_iter()
            .map(|(d, activity)| DayOfWeek {
                day: DAYS[d as usize],
                activity,
            })
            .collect(),
        busiest_hours_of_day,
        busiest_days_of_week,
        top_hours: hours
            .into_iter()
            .map(|(t, mut activity)| {
                activity.cost_usd = activity.cost_usd.normalize();
                TopHour { t, activity }
            })
            .collect(),
    })
}
