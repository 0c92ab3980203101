//! `GET /v1/billing/usage` (scope `read`): the tenant's plan usage this period
//! (`super::usage`).

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
use crate::read_api::{client, format, read_params, respond, Format};
use crate::state::SharedState;
use crate::store::tenant_tx;

/// The parameters `usage` reads.
pub const USAGE_PARAMS: &[&str] = &["tenant_id", "format"];

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
}

/// The tenant's plan usage this period (a UTC calendar month) against its tier's limits, the
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
    let mut client = client(&st).await?;
    let tx = tenant_tx(&mut client, &tenant.id)
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))?;
    let u = super::usage(&tx, &tenant.id, &st.tiers, Utc::now())
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    respond(&u, format, "billing-usage", csv::fields)
}
