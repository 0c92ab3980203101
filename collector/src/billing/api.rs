//! `GET /v1/billing/usage` (scope `read`): the tenant's plan usage this period
//! (`super::usage`), the periods being calendar months in `tz`.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::Utc;

use crate::api_error::ApiError;
use crate::api_error::ReadErrors;
use crate::auth::Tenant;
use crate::error::Error;
use crate::query::csv;
use crate::read_api::{
    client, cut_grain, format, hourly_kept_since, read_params, respond, zone, Format,
};
use crate::state::SharedState;
use crate::store::rollups::Grain;
use crate::store::tenant_read_tx;

/// The parameters `usage` reads.
pub const USAGE_PARAMS: &[&str] = &["tenant_id", "format", "tz"];

/// The query string of `usage` (for the OpenAPI document; the handler reads it as a map).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// The tenant to read: required with a platform key; with a tenant key, its own tenant
    /// (another is a 403).
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub tenant_id: Option<String>,
    /// `json` (default) or `csv`: a `text/csv` download (`field,value` rows).
    #[param(inline)]
    pub format: Option<Format>,
    /// The IANA time zone (`Europe/Berlin`; exact name) whose calendar months are the periods;
    /// default `UTC`. POSIX strings (`UTC+3`) are a 422 naming `tz`, and so is a zone whose
    /// month starts are not whole UTC hours (`Asia/Kolkata`). Off UTC midnights, periods are
    /// cut from the hourly rollups: `history` then starts within their retention.
    #[param(example = "Europe/Berlin")]
    pub tz: Option<String>,
}

/// The tenant's plan usage this period (a calendar month in `tz`, default UTC) against its tier's limits, the
/// projection to the period's end and its overage, past periods and the recommended tier.
#[utoipa::path(
    get,
    path = "/v1/billing/usage",
    tag = "metrics",
    security(("bearer" = [])),
    params(UsageParams),
    responses(
        (status = 200, description = "The period's usage (`format=csv`: `field,value` rows).", content(
            (super::BillingUsage = "application/json"),
            (String = "text/csv"),
        )),
        ReadErrors,
    )
)]
pub async fn usage(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = read_params(params, USAGE_PARAMS)?;
    let format = format(&params)?;
    let tz = zone(&params)?;
    let now = Utc::now();
    let periods = periods(tz, now, st.config.hourly_retention_days)?;
    let mut client = client(&st).await?;
    let tx = tenant_read_tx(&mut client, &tenant.id)
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))?;
    let u = super::usage(&tx, &tenant.id, &st.tiers, now, &periods)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    respond(&u, format, "billing-usage", csv::fields)
}

/// The periods of a request in `tz` at `now`: the current calendar month and up to 12 before
/// it, from the daily rollups when every month starts at a UTC midnight; else from the hourly
/// ones, the current period exactly (or a 422 naming `tz`) and only past months that start
/// within their retention.
pub fn periods(
    tz: chrono_tz::Tz,
    now: chrono::DateTime<Utc>,
    hourly_retention_days: u32,
) -> Result<super::Periods, ApiError> {
    let mut p = super::Periods::around(tz, now);
    let midnight = |t: &chrono::DateTime<Utc>| Grain::Daily.bucket(*t) == *t;
    if p.starts.iter().all(midnight) && midnight(&p.end) {
        return Ok(p);
    }
    let current = p.starts.last().copied().unwrap_or(p.end);
    cut_grain(
        tz,
        Grain::Hourly,
        &[current, p.end],
        current,
        now,
        hourly_retention_days,
    )?;
    let kept_since = hourly_kept_since(now, hourly_retention_days);
    p.starts.retain(|s| *s >= kept_since || *s == current);
    let mut cuts = p.starts.clone();
    cuts.push(p.end);
    let from = p.starts.first().copied().unwrap_or(current);
    p.grain = cut_grain(tz, Grain::Hourly, &cuts, from, now, hourly_retention_days)?;
    Ok(p)
}
