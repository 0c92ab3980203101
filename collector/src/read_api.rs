//! The read API: `GET /v1/metrics/{summary,timeseries,savings,peaks,recommendations}` (scope
//! `read`), answered from the rollups through the named queries of `crate::query`, for the
//! tenant the credential acts on (`auth::Tenant`). Parameters are checked here; a bad one is a 422
//! naming it. Each handler's `#[utoipa::path]` and the `*Params` types describe the same
//! parameters for the OpenAPI document (`crate::openapi`, whose tests compare both).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, DurationRound, Offset, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::api_error::{ApiError, ReadErrors};
use crate::auth::Tenant;
use crate::error::Error;
use crate::query::csv::{self, Table};
use crate::query::metrics::{self, GroupBy, Interval, Metric, Range, Series, Summary};
use crate::query::peaks::{self, PeakMetric, Peaks};
use crate::query::recommend::{self, Policy, Recommendations};
use crate::query::savings::{self, Savings};
use crate::state::SharedState;
use crate::store::rollups::Grain;
use crate::store::tenant_read_tx;

/// The range used when `from` / `to` are not given: the last 30 days.
pub const DEFAULT_RANGE_DAYS: i64 = 30;

/// The parameters every read endpoint takes (documentation of the query string; the handlers
/// read it as a map, to name unknown parameters).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RangeParams {
    /// Start of the range, inclusive (RFC 3339); default: `to` − 30 days. With `from` and `to`
    /// at 00:00 UTC the daily rollups are read; otherwise the hourly ones (widened to whole hours,
    /// and the range must start within their retention, else 422 naming `from`).
    pub from: Option<DateTime<Utc>>,
    /// End of the range, exclusive (RFC 3339), after `from`; default: now.
    pub to: Option<DateTime<Utc>>,
    /// The tenant to read: required with a platform key; with a tenant key, its own tenant
    /// (another is a 403).
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub tenant_id: Option<String>,
    /// `json` (default) or `csv`: a `text/csv` download of the same figures.
    #[param(inline)]
    pub format: Option<Format>,
    /// The IANA time zone (`Europe/Berlin`, `America/New_York`; exact name) of day and month
    /// buckets, months and hours of day; default `UTC`. POSIX strings (`UTC+3`) are a 422
    /// naming `tz`, and so is a zone whose day or month starts in the range are not whole UTC
    /// hours (`Asia/Kolkata`), or, off UTC midnights, a range older than the hourly rollups'
    /// retention (docs/metrics.md).
    #[param(example = "Europe/Berlin")]
    pub tz: Option<String>,
}

/// The parameters `summary` reads (`tz` is checked but changes nothing: its range is not
/// calendar-bound).
pub(crate) const SUMMARY_PARAMS: &[&str] = &["from", "to", "tenant_id", "format", "tz"];

/// The metrics summary of the range: executions and outcomes, spend, API calls, tokens,
/// durations.
#[utoipa::path(
    get,
    path = "/v1/metrics/summary",
    tag = "metrics",
    security(("bearer" = [])),
    params(RangeParams),
    responses(
        (status = 200, description = "The summary (`format=csv`: `field,value` rows).", content(
            (Summary = "application/json"),
            (String = "text/csv"),
        )),
        ReadErrors,
    )
)]
pub async fn summary(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = read_params(params, SUMMARY_PARAMS)?;
    let format = format(&params)?;
    zone(&params)?;
    let range = range(
        params.get("from").map(String::as_str),
        params.get("to").map(String::as_str),
        Utc::now(),
        st.config.hourly_retention_days,
    )?;
    let mut client = client(&st).await?;
    let tx = tenant_read_tx(&mut client, &tenant.id)
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))?;
    let s = metrics::summary(&tx, &tenant.id, &range)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    respond(&s, format, "summary", csv::fields)
}

/// What every read handler does first (the access layer has checked the credential's scope and
/// resolved `tenant`): the query string must parse, and it may name only `allowed` parameters.
pub(crate) fn read_params(
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::unprocessable(
            "invalid_query",
            format!("query: could not be read ({})", e.body_text()),
        )
    })?;
    known_params(&params, allowed)?;
    Ok(params)
}

/// 422 naming the first parameter that is not one of `allowed` (a misspelt `form=` would
/// otherwise silently answer for the default range).
pub(crate) fn known_params(
    params: &HashMap<String, String>,
    allowed: &[&str],
) -> Result<(), ApiError> {
    let mut unknown: Vec<&String> = params
        .keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(k) => Err(ApiError::unprocessable(
            "invalid_parameter",
            format!("{k}: unknown parameter (allowed: {})", allowed.join(", ")),
        )),
    }
}

pub(crate) fn instant(name: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            ApiError::unprocessable(
                "invalid_parameter",
                format!("{name}: must be an RFC 3339 time like 2026-11-01T00:00:00Z, got `{text}`"),
            )
        })
}

/// `from` and `to` as given, or their defaults (the `DEFAULT_RANGE_DAYS` ending now); `to` after
/// `from`.
fn instants(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let to = match to {
        Some(t) => instant("to", t)?,
        None => now,
    };
    let from = match from {
        Some(f) => instant("from", f)?,
        None => to
            .checked_sub_signed(TimeDelta::days(DEFAULT_RANGE_DAYS))
            .unwrap_or(DateTime::<Utc>::MIN_UTC),
    };
    if from >= to {
        return Err(ApiError::unprocessable(
            "invalid_parameter",
            format!(
                "to: must be after from ({}), got {}",
                from.to_rfc3339(),
                to.to_rfc3339()
            ),
        ));
    }
    Ok((from, to))
}

/// The range a summary covers. Day-aligned `from` and `to` read the daily rollups (kept
/// forever); any other range reads the hourly ones, widened to whole hours, and must start within
/// the hourly retention, or its answer would miss what retention dropped.
pub fn range(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
    hourly_retention_days: u32,
) -> Result<Range, ApiError> {
    let (from, to) = instants(from, to, now)?;
    let day = |t: DateTime<Utc>| Grain::Daily.bucket(t) == t;
    if day(from) && day(to) {
        return Ok(Range {
            from,
            to,
            grain: Grain::Daily,
        });
    }
    hourly(from, to, now, hourly_retention_days)
}

/// `[from, to)` widened to whole hours, on the hourly rollups; 422 naming `from` when it starts
/// before the hourly retention.
fn hourly(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
    hourly_retention_days: u32,
) -> Result<Range, ApiError> {
    let hour_from = Grain::Hourly.bucket(from);
    let hour_to = if Grain::Hourly.bucket(to) == to {
        to
    } else {
        to.duration_trunc(TimeDelta::hours(1))
            .ok()
            .and_then(|t| t.checked_add_signed(TimeDelta::hours(1)))
            .unwrap_or(to)
    };
    let kept_since = hourly_kept_since(now, hourly_retention_days);
    if hour_from < kept_since {
        return Err(ApiError::unprocessable(
            "invalid_parameter",
            format!(
                "from: a range starting before {} (hourly rollups are kept {hourly_retention_days} \
                 days) must have from and to at whole UTC days, got {}",
                kept_since.to_rfc3339(),
                from.to_rfc3339()
            ),
        ));
    }
    Ok(Range {
        from: hour_from,
        to: hour_to,
        grain: Grain::Hourly,
    })
}

/// The first UTC day the hourly rollups still hold (they are kept `hourly_retention_days`,
/// today included).
pub(crate) fn hourly_kept_since(now: DateTime<Utc>, hourly_retention_days: u32) -> DateTime<Utc> {
    Grain::Daily.bucket(now) - TimeDelta::days(i64::from(hourly_retention_days).saturating_sub(1))
}

/// The `tz` parameter: an exact IANA zone name, `UTC` when absent; 422 naming it otherwise.
pub(crate) fn zone(params: &HashMap<String, String>) -> Result<Tz, ApiError> {
    match params.get("tz") {
        None => Ok(Tz::UTC),
        Some(name) => crate::query::period::zone(name).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_parameter",
                format!(
                    "tz: must be an IANA time zone name such as Europe/Berlin, America/New_York \
                     or UTC (spelt as in the database; POSIX strings such as UTC+3 are not \
                     accepted), got `{name}`"
                ),
            )
        }),
    }
}

/// The rollups a calendar breakdown in `tz` can be read from exactly: every one of `cuts` (the
/// starts and ends of its local days or months) must be the edge of a rollup bucket. The daily
/// rollups when `grain` is daily and every cut is a UTC midnight; else the hourly ones, when
/// every cut is a whole UTC hour and `from` (the first hour read) is within their retention.
/// Anything else would put some hours in the wrong bucket: a 422 naming `tz` and the rule.
pub(crate) fn cut_grain(
    tz: Tz,
    grain: Grain,
    cuts: &[DateTime<Utc>],
    from: DateTime<Utc>,
    now: DateTime<Utc>,
    hourly_retention_days: u32,
) -> Result<Grain, ApiError> {
    if grain == Grain::Daily && cuts.iter().all(|t| Grain::Daily.bucket(*t) == *t) {
        return Ok(Grain::Daily);
    }
    if let Some(t) = cuts.iter().find(|t| Grain::Hourly.bucket(**t) != **t) {
        let local = t.with_timezone(&tz);
        return Err(ApiError::unprocessable(
            "invalid_parameter",
            format!(
                "tz: day and month starts must fall on whole UTC hours (the rollups are UTC \
                 hours), but {} starts a day at {} ({}); use interval=hour or a zone with \
                 whole-hour offsets",
                tz.name(),
                local.to_rfc3339(),
                t.to_rfc3339(),
            ),
        ));
    }
    let kept_since = hourly_kept_since(now, hourly_retention_days);
    if from < kept_since {
        return Err(ApiError::unprocessable(
            "invalid_parameter",
            format!(
                "tz: days and months of {} that do not start at UTC midnight are cut from the \
                 hourly rollups, kept {hourly_retention_days} days: the range must start on or \
                 after {} in this zone (or use tz=UTC), got {}",
                tz.name(),
                kept_since.to_rfc3339(),
                from.to_rfc3339()
            ),
        ));
    }
    Ok(Grain::Hourly)
}

/// 422 naming `tz` when, in some hour of `[from, to)` (up to `now` plus a week: no event is
/// later), `tz` is not a whole number of hours off UTC: a UTC hour would then span two local
/// hours of day.
fn whole_hour_offsets(
    tz: Tz,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let end = to.min(now + TimeDelta::days(7));
    let mut t = from;
    while t < end {
        let local = t.with_timezone(&tz);
        if local.offset().fix().local_minus_utc() % 3600 != 0 || local.minute() != 0 {
            return Err(ApiError::unprocessable(
                "invalid_parameter",
                format!(
                    "tz: hours of day need a zone a whole number of hours off UTC (the rollups \
                     are UTC hours), but {} is {} at {}",
                    tz.name(),
                    local.offset().fix(),
                    t.to_rfc3339()
                ),
            ));
        }
        t += TimeDelta::hours(1);
    }
    Ok(())
}

/// Most points a series may have per group.
pub const MAX_BUCKETS: i64 = 10_000;

/// The range a series covers: whole buckets of `interval`. Hours read the hourly rollups
/// (within their retention); days and months (local, in `tz`) the daily ones when every bucket
/// starts at a UTC midnight, else the hourly ones (`cut_grain`).
pub fn series_range(
    from: Option<&str>,
    to: Option<&str>,
    now: DateTime<Utc>,
    hourly_retention_days: u32,
    interval: Interval,
    tz: Tz,
) -> Result<Range, ApiError> {
    let (from, to) = instants(from, to, now)?;
    let mut range = match interval {
        Interval::Hour => hourly(from, to, now, hourly_retention_days)?,
        Interval::Day | Interval::Month => {
            let start = interval.start(to, tz);
            let end = if start == to {
                Some(to)
            } else {
                interval.next(start, tz)
            };
            Range {
                from: interval.start(from, tz),
                to: end.unwrap_or(to),
                grain: Grain::Daily,
            }
        }
    };
    let span = range.to - range.from;
    let buckets = match interval {
        Interval::Hour => span.num_hours(),
        Interval::Day => span.num_days(),
        Interval::Month => span.num_days() / 28,
    };
    if buckets > MAX_BUCKETS {
        return Err(ApiError::unprocessable(
            "invalid_parameter",
            format!(
                "interval: at most {MAX_BUCKETS} buckets per series, got about {buckets} \
                 (use a wider interval or a shorter range)"
            ),
        ));
    }
    if interval != Interval::Hour {
        let mut cuts = interval.starts(range.from, range.to, tz);
        cuts.push(range.to);
        range.grain = cut_grain(
            tz,
            Grain::Daily,
            &cuts,
            range.from,
            now,
            hourly_retention_days,
        )?;
    }
    Ok(range)
}

/// A numeric parameter within `allowed`, or `default` when absent; 422 naming it and `rule`
/// otherwise.
pub(crate) fn number_in<T: std::str::FromStr + PartialOrd>(
    params: &HashMap<String, String>,
    name: &str,
    default: T,
    allowed: std::ops::RangeInclusive<T>,
    rule: &str,
) -> Result<T, ApiError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<T>()
            .ok()
            .filter(|n| allowed.contains(n))
            .ok_or_else(|| {
                ApiError::unprocessable(
                    "invalid_parameter",
                    format!("{name}: must be {rule}, got `{v}`"),
                )
            }),
    }
}

/// The value of a required or optional enumerated parameter, 422 naming it when unknown.
fn choice<T>(
    params: &HashMap<String, String>,
    name: &str,
    allowed: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(v) => parse(v).map(Some).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_parameter",
                format!("{name}: must be one of {allowed}, got `{v}`"),
            )
        }),
    }
}

/// The parameters `savings` reads besides `RangeParams`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SavingsParams {
    /// `most_expensive` or a model the collector prices at ingest (`--savings-baseline`);
    /// default: the first configured. Any other is a 422 naming `baseline`.
    pub baseline: Option<String>,
}

/// The parameters `savings` reads.
pub(crate) const SAVINGS_PARAMS: &[&str] = &["from", "to", "tenant_id", "baseline", "format", "tz"];

/// What routing saved against a baseline, gross and over successful tasks, with breakdowns by
/// provider, task type and month.
#[utoipa::path(
    get,
    path = "/v1/metrics/savings",
    tag = "metrics",
    security(("bearer" = [])),
    params(SavingsParams, RangeParams),
    responses(
        (status = 200, description = "The savings (`format=csv`: `scope,key,<figures>` rows).", content(
            (Savings = "application/json"),
            (String = "text/csv"),
        )),
        ReadErrors,
    )
)]
pub async fn savings(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = read_params(params, SAVINGS_PARAMS)?;
    let format = format(&params)?;
    let names: Vec<&str> = st.savings.names().collect();
    let baseline = match params.get("baseline") {
        None => names
            .first()
            .copied()
            .unwrap_or(crate::pricing::MOST_EXPENSIVE),
        Some(b) if names.contains(&b.as_str()) => b.as_str(),
        Some(b) => {
            return Err(ApiError::unprocessable(
                "invalid_parameter",
                format!(
                    "baseline: must be one of the baselines this collector prices at ingest \
                     ({}), got `{b}` (add it with --savings-baseline)",
                    names.join(", ")
                ),
            ))
        }
    };
    let tz = zone(&params)?;
    let now = Utc::now();
    let mut range = range(
        params.get("from").map(String::as_str),
        params.get("to").map(String::as_str),
        now,
        st.config.hourly_retention_days,
    )?;
    // `by_month` cuts the range at the month starts of `tz` inside it.
    let months = crate::query::period::month_starts(tz, range.from, range.to);
    range.grain = cut_grain(
        tz,
        range.grain,
        &months[1..],
        range.from,
        now,
        st.config.hourly_retention_days,
    )?;
    let mut client = client(&st).await?;
    let tx = tenant_read_tx(&mut client, &tenant.id)
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))?;
    let s = savings::savings(&tx, &tenant.id, &range, baseline, &months, tz)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    respond(&s, format, "savings", |v| {
        csv::groups(
            v,
            Some("total"),
            &[
                ("by_provider", "provider"),
                ("by_task_type", "task_type"),
                ("by_month", "month"),
            ],
            savings::FIGURES,
        )
    })
}

/// The parameters `peaks` reads besides `RangeParams`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeaksParams {
    /// What the busiest slots are ranked by; default `executions`.
    #[param(inline)]
    pub metric: Option<PeakMetric>,
    /// How many top hours to list.
    #[param(default = 10, minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
}

/// The parameters `peaks` reads.
pub(crate) const PEAKS_PARAMS: &[&str] =
    &["from", "to", "tenant_id", "metric", "limit", "format", "tz"];

/// Most top hours `peaks` lists.
pub const MAX_TOP_HOURS: usize = 100;

/// Peak usage: activity by hour of day and day of week (local, in `tz`), the busiest of each,
/// and the top hours of the range (always from the hourly rollups).
#[utoipa::path(
    get,
    path = "/v1/metrics/peaks",
    tag = "metrics",
    security(("bearer" = [])),
    params(PeaksParams, RangeParams),
    responses(
        (status = 200, description = "The peaks (`format=csv`: `scope,key,<activity>` rows).", content(
            (Peaks = "application/json"),
            (String = "text/csv"),
        )),
        ReadErrors,
    )
)]
pub async fn peaks(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = read_params(params, PEAKS_PARAMS)?;
    let format = format(&params)?;
    let metric = choice(&params, "metric", PeakMetric::NAMES, PeakMetric::parse)?
        .unwrap_or(PeakMetric::Executions);
    let limit = number_in(
        &params,
        "limit",
        10,
        1..=MAX_TOP_HOURS,
        &format!("an integer from 1 to {MAX_TOP_HOURS}"),
    )?;
    // Hours of day need hourly buckets: always the hourly rollups.
    let now = Utc::now();
    let (from, to) = instants(
        params.get("from").map(String::as_str),
        params.get("to").map(String::as_str),
        now,
    )?;
    let tz = zone(&params)?;
    let range = hourly(from, to, now, st.config.hourly_retention_days)?;
    whole_hour_offsets(tz, range.from, range.to, now)?;
    let mut client = client(&st).await?;
    let tx = tenant_read_tx(&mut client, &tenant.id)
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))?;
    let p = peaks::peaks(&tx, &tenant.id, &range, metric, limit, tz)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    respond(&p, format, "peaks", |v| {
        csv::groups(
            v,
            None,
            &[
                ("by_hour_of_day", "hour_of_day"),
                ("by_day_of_week", "day_of_week"),
                ("top_hours", "top_hour"),
            ],
            peaks::ACTIVITY,
        )
    })
}

/// The parameters `recommendations` reads besides `RangeParams`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendParams {
    /// How far below the best success rate a candidate's may be: a decimal from 0 to 1
    /// (0.05 = 5 points).
    #[param(default = "0.05", pattern = r"^(0(\.[0-9]+)?|1(\.0+)?)$")]
    pub margin: Option<String>,
    /// Tasks a provider/model needs in the range to be judged.
    #[param(default = 20, minimum = 1, maximum = 1_000_000)]
    pub min_tasks: Option<u32>,
}

/// The parameters `recommendations` reads.
pub(crate) const RECOMMEND_PARAMS: &[&str] = &[
    "from",
    "to",
    "tenant_id",
    "margin",
    "min_tasks",
    "format",
    "tz",
];

/// Defaults of `margin` (success-rate points, 0–1) and `min_tasks`.
pub const DEFAULT_MARGIN: Decimal = Decimal::from_parts(5, 0, 0, false, 2);
pub const DEFAULT_MIN_TASKS: i64 = 20;

/// Per task type, the cheapest provider/model within `margin` of the best success rate and its
/// projected monthly saving; with a monthly budget configured, whether this month's spend is
/// on course to pass it.
#[utoipa::path(
    get,
    path = "/v1/metrics/recommendations",
    tag = "metrics",
    security(("bearer" = [])),
    params(RecommendParams, RangeParams),
    responses(
        (status = 200, description = "The recommendations (`format=csv`: one row per task type and candidate).", content(
            (Recommendations = "application/json"),
            (String = "text/csv"),
        )),
        ReadErrors,
    )
)]
pub async fn recommendations(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = read_params(params, RECOMMEND_PARAMS)?;
    let format = format(&params)?;
    let margin = number_in(
        &params,
        "margin",
        DEFAULT_MARGIN,
        Decimal::ZERO..=Decimal::ONE,
        "a success-rate margin from 0 to 1 (0.05 = 5 points)",
    )?;
    let min_tasks = number_in(
        &params,
        "min_tasks",
        DEFAULT_MIN_TASKS,
        1..=1_000_000,
        "an integer from 1 to 1000000",
    )?;
    let now = Utc::now();
    let range = range(
        params.get("from").map(String::as_str),
        params.get("to").map(String::as_str),
        now,
        st.config.hourly_retention_days,
    )?;
    let tz = zone(&params)?;
    // The budget month: this calendar month in `tz`.
    let (month_start, month_end) = crate::query::period::month_in(tz, now);
    let budget_grain = match st.config.monthly_budget_usd {
        Some(_) => cut_grain(
            tz,
            Grain::Daily,
            &[month_start, month_end],
            month_start,
            now,
            st.config.hourly_retention_days,
        )?,
        None => Grain::Daily,
    };
    let policy = Policy {
        margin,
        min_tasks,
        monthly_budget_usd: st.config.monthly_budget_usd,
    };
    let month = Range {
        from: month_start,
        to: month_end,
        grain: budget_grain,
    };
    let mut client = client(&st).await?;
    let tx = tenant_read_tx(&mut client, &tenant.id)
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))?;
    let r = recommend::recommendations(&tx, &tenant.id, &range, &policy, now, &month, tz)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    respond(&r, format, "recommendations", recommend::table)
}

/// The parameters `timeseries` reads.
pub(crate) const SERIES_PARAMS: &[&str] = &[
    "from",
    "to",
    "tenant_id",
    "metric",
    "interval",
    "group_by",
    "format",
    "tz",
];

/// The parameters `timeseries` reads besides `RangeParams`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeriesParams {
    /// What the series measures.
    #[param(inline)]
    pub metric: Metric,
    /// The width of a bucket: a UTC hour, or a day or calendar month in `tz` (starting at local
    /// midnight; 23 or 25 hours across a clock change); default `day`. `hour` reads the hourly
    /// rollups. At most 10,000 buckets per series (else 422 naming `interval`).
    #[param(inline)]
    pub interval: Option<Interval>,
    /// A dimension to group by; no grouping by default.
    #[param(inline)]
    pub group_by: Option<GroupBy>,
}

/// A metric per bucket over the range, every bucket present, optionally one series per group.
#[utoipa::path(
    get,
    path = "/v1/metrics/timeseries",
    tag = "metrics",
    security(("bearer" = [])),
    params(SeriesParams, RangeParams),
    responses(
        (status = 200, description = "The series (`format=csv`: `t,group,value,unpriced_events` rows).", content(
            (Series = "application/json"),
            (String = "text/csv"),
        )),
        ReadErrors,
    )
)]
pub async fn timeseries(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = read_params(params, SERIES_PARAMS)?;
    let format = format(&params)?;
    let metric = choice(&params, "metric", Metric::NAMES, Metric::parse)?.ok_or_else(|| {
        ApiError::unprocessable(
            "invalid_parameter",
            format!("metric: required, one of {}", Metric::NAMES),
        )
    })?;
    let interval =
        choice(&params, "interval", "hour, day, month", Interval::parse)?.unwrap_or(Interval::Day);
    let group_by = choice(&params, "group_by", GroupBy::NAMES, GroupBy::parse)?;
    let tz = zone(&params)?;
    let range = series_range(
        params.get("from").map(String::as_str),
        params.get("to").map(String::as_str),
        Utc::now(),
        st.config.hourly_retention_days,
        interval,
        tz,
    )?;
    let mut client = client(&st).await?;
    let tx = tenant_read_tx(&mut client, &tenant.id)
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))?;
    let s = metrics::timeseries(&tx, &tenant.id, &range, metric, interval, group_by, tz)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    respond(&s, format, "timeseries", |v| {
        csv::rows(v, "points", &["t", "group", "value", "unpriced_events"])
    })
}

/// How an answer is written (`format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(rename_all = "lowercase", default = "json")]
pub enum Format {
    Json,
    Csv,
}

pub(crate) fn format(params: &HashMap<String, String>) -> Result<Format, ApiError> {
    let parse = |s: &str| match s {
        "json" => Some(Format::Json),
        "csv" => Some(Format::Csv),
        _ => None,
    };
    Ok(choice(params, "format", "json, csv", parse)?.unwrap_or(Format::Json))
}

/// `answer` as JSON, or as the CSV table `table` makes of its JSON form (a download named
/// `<name>.csv`).
pub(crate) fn respond<T: Serialize>(
    answer: &T,
    format: Format,
    name: &str,
    table: impl FnOnce(&serde_json::Value) -> Table,
) -> Result<Response, ApiError> {
    match format {
        Format::Json => Ok(Json(answer).into_response()),
        Format::Csv => {
            let v = serde_json::to_value(answer).map_err(|e| {
                tracing::error!("{name}: answer not serializable: {e}");
                ApiError::internal()
            })?;
            Ok((
                [
                    (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}.csv\""),
                    ),
                ],
                csv::render(&table(&v)),
            )
                .into_response())
        }
    }
}

/// A pooled connection, or the store's error as the API answers it (503 when unavailable).
pub(crate) async fn client(st: &SharedState) -> Result<deadpool_postgres::Object, ApiError> {
    st.pool
        .get()
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn ranges_pick_the_rollup_and_widen_to_whole_hours() {
        let now = Utc
            .with_ymd_and_hms(2026, 12, 2, 9, 30, 0)
            .single()
            .expect("now");
        let r = range(
            Some("2026-11-20T00:00:00Z"),
            Some("2026-11-22T00:00:00Z"),
            now,
            90,
        )
        .expect("daily");
        assert_eq!(r.grain, Grain::Daily);
        let r = range(
            Some("2026-11-20T10:15:00Z"),
            Some("2026-11-20T12:00:01Z"),
            now,
            90,
        )
        .expect("hourly");
        assert_eq!(
            (r.grain, r.from, r.to),
            (
                Grain::Hourly,
                at("2026-11-20T10:00:00Z"),
                at("2026-11-20T13:00:00Z")
            )
        );
        let r = range(None, None, now, 90).expect("default");
        assert_eq!(
            (r.grain, r.from, r.to),
            (
                Grain::Hourly,
                at("2026-11-02T09:00:00Z"),
                at("2026-12-02T10:00:00Z")
            )
        );
        // Long ago: only at whole days.
        assert!(range(
            Some("2025-01-01T00:00:00Z"),
            Some("2025-02-01T00:00:00Z"),
            now,
            90
        )
        .is_ok());
        let e = range(Some("2025-01-01T10:00:00Z"), None, now, 90).expect_err("old hourly");
        assert!(
            e.message.starts_with("from: a range starting before"),
            "{}",
            e.message
        );
    }

    #[test]
    fn zones_pick_the_rollups_that_cut_exactly() {
        let now = at("2026-12-02T09:30:00Z");
        let zone = |n: &str| crate::query::period::zone(n).expect("zone");
        let day = |tz: &str, from: &str, to: &str, retention| {
            series_range(
                Some(from),
                Some(to),
                now,
                retention,
                Interval::Day,
                zone(tz),
            )
        };
        // UTC days: the daily rollups, however old.
        let r = day("UTC", "2025-01-01T00:00:00Z", "2025-01-03T00:00:00Z", 90).expect("utc");
        assert_eq!(r.grain, Grain::Daily);
        // New York days start at 04:00 or 05:00 UTC: the hourly rollups, within retention.
        let r = day(
            "America/New_York",
            "2026-11-01T12:00:00Z",
            "2026-11-02T12:00:00Z",
            90,
        )
        .expect("ny");
        assert_eq!(
            (r.grain, r.from, r.to),
            (
                Grain::Hourly,
                at("2026-11-01T04:00:00Z"),
                at("2026-11-03T05:00:00Z")
            )
        );
        let e = day(
            "America/New_York",
            "2025-01-01T12:00:00Z",
            "2025-01-02T12:00:00Z",
            90,
        )
        .expect_err("old");
        assert!(
            e.message
                .starts_with("tz: days and months of America/New_York"),
            "{}",
            e.message
        );
        // Half-hour zones: refused for days, fine for hours.
        let e = day(
            "Asia/Kolkata",
            "2026-11-20T00:00:00Z",
            "2026-11-21T00:00:00Z",
            90,
        )
        .expect_err("kolkata");
        assert!(
            e.message
                .starts_with("tz: day and month starts must fall on whole UTC hours"),
            "{}",
            e.message
        );
        assert!(series_range(
            Some("2026-11-20T00:00:00Z"),
            Some("2026-11-21T00:00:00Z"),
            now,
            90,
            Interval::Hour,
            zone("Asia/Kolkata")
        )
        .is_ok());
        let e = whole_hour_offsets(zone("Asia/Kathmandu"), r.from, r.to, now).expect_err("npt");
        assert!(e.message.starts_with("tz: hours of day"), "{}", e.message);
        assert!(whole_hour_offsets(zone("Europe/Berlin"), r.from, r.to, now).is_ok());
        let params = HashMap::from([("tz".to_string(), "UTC+3".to_string())]);
        let e = super::zone(&params).expect_err("posix");
        assert!(
            e.message.starts_with("tz: must be an IANA time zone name"),
            "{}",
            e.message
        );
    }

    #[test]
    fn bad_parameters_are_named() {
        let now = Utc::now();
        for (from, to, name) in [
            (Some("yesterday"), None, "from:"),
            (None, Some("2026-13-01T00:00:00Z"), "to:"),
            (
                Some("2026-11-02T00:00:00Z"),
                Some("2026-11-01T00:00:00Z"),
                "to:",
            ),
        ] {
            let e = range(from, to, now, 90).expect_err("refused");
            assert_eq!(e.status.as_u16(), 422);
            assert!(e.message.starts_with(name), "{}", e.message);
        }
        let params = HashMap::from([("form".to_string(), "x".to_string())]);
        let e = known_params(&params, SUMMARY_PARAMS).expect_err("unknown");
        assert!(
            e.message.starts_with("form: unknown parameter"),
            "{}",
            e.message
        );
    }
}
