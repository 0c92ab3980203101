//! `GET /v1/billing/usage` (scope `read`): the tenant's plan usage this period
//! (`super::usage`).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use chrono::Utc;

use crate::api_error::ApiError;
use crate::auth::Tenant;
use crate::error::Error;
use crate::query::csv;
use crate::read_api::{client, format, read_params, respond};
use crate::state::SharedState;
use crate::store::tenant_tx;

/// The parameters `usage` reads.
const USAGE_PARAMS: &[&str] = &["tenant_id", "format"];

pub async fn usage(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = read_params(&tenant, params, USAGE_PARAMS)?;
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
