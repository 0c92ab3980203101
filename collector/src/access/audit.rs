//! The audit log: one record per call of an audited route whose tenant is known, written after
//! the handler answered and before the answer leaves (a failed write turns a success into a
//! 503: no unaudited access); and `GET /v1/audit` (scope `admin`), the tenant's records newest
//! first.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::api_error::{ApiError, ReadErrors};
use crate::auth::{Principal, Tenant};
use crate::error::Error;
use crate::read_api::{client, instant, number_in, read_params};
use crate::state::SharedState;
use crate::store::audit::{self, Entry, NewEntry};
use crate::store::tenant_tx;

/// One call, as the access layer saw it.
#[derive(Debug)]
pub struct Call<'a> {
    pub tenant: &'a str,
    pub principal: &'a Principal,
    pub method: &'a str,
    pub route: &'static str,
    pub params: serde_json::Value,
}

/// Write the record of `call` answered with `resp`, then let `resp` go; 503 instead of a
/// success that could not be recorded.
pub async fn record(st: &SharedState, call: Call<'_>, resp: Response) -> Response {
    let status = resp.status();
    let entry = NewEntry {
        tenant_id: call.tenant,
        credential_id: &call.principal.credential_id,
        principal_kind: call.principal.kind.as_str(),
        sub: call.principal.sub.as_deref(),
        method: call.method,
        route: call.route,
        params: &call.params,
        status: i32::from(status.as_u16()),
    };
    let write = async {
        let mut client = st.pool.get().await.map_err(Error::from)?;
        let tx = tenant_tx(&mut client, call.tenant).await?;
        audit::insert(tx.pg(), &entry).await?;
        tx.commit().await?;
        Ok::<_, Error>(())
    };
    let written = write.await;
    if written.is_err() {
        st.metrics.audit_failures.fetch_add(1, Ordering::Relaxed);
    }
    match written {
        Ok(()) => resp,
        Err(e) if status.is_success() => {
            tracing::error!(
                "{} {} for tenant {}: the audit record could not be written, answered 503: {e}",
                call.method,
                call.route,
                call.tenant
            );
            ApiError::unavailable(&"the audit log cannot be written").into_response()
        }
        Err(e) => {
            // Nothing was served: the refusal stands, and the failure is logged.
            tracing::warn!(
                "{} {} for tenant {} ({}): the audit record could not be written: {e}",
                call.method,
                call.route,
                call.tenant,
                status.as_u16()
            );
            resp
        }
    }
}

/// The parameters `list` reads.
pub const AUDIT_PARAMS: &[&str] = &["from", "to", "limit", "before", "tenant_id"];
/// Records per page, by default and at most.
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1_000;

/// The query string of `GET /v1/audit`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Records at or after this time (RFC 3339); default: 30 days before `to`.
    pub from: Option<DateTime<Utc>>,
    /// Records before this time (RFC 3339); default: now.
    pub to: Option<DateTime<Utc>>,
    /// Records per page, 1 to 1000.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    pub limit: Option<i64>,
    /// The cursor: records with an id below this one (the previous page's `next_before`).
    #[param(minimum = 1)]
    pub before: Option<i64>,
    /// The tenant to read: required with a platform key; with a tenant credential, its own
    /// tenant (another is a 403).
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub tenant_id: Option<String>,
}

/// A page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// Newest first.
    pub entries: Vec<Entry>,
    /// Pass as `before` for the next page; `null` on the last page.
    pub next_before: Option<i64>,
}

/// The tenant's audit records, newest first: who read, exported, erased or managed keys, when,
/// with which parameters and what was answered.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "admin",
    security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "A page of records, newest first.", body = AuditPage),
        ReadErrors,
    )
)]
pub async fn list(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let params = read_params(params, AUDIT_PARAMS)?;
    let to = match params.get("to") {
        Some(t) => instant("to", t)?,
        None => Utc::now(),
    };
    let from = match params.get("from") {
        Some(f) => instant("from", f)?,
        None => to
            .checked_sub_signed(TimeDelta::days(30))
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
    let limit = number_in(&params, "limit", DEFAULT_LIMIT, 1..=MAX_LIMIT, "1 to 1000")?;
    let before = match params.get("before") {
        None => None,
        Some(_) => Some(number_in(
            &params,
            "before",
            0,
            1..=i64::MAX,
            "a positive id",
        )?),
    };
    let mut client = client(&st).await?;
    let tx = tenant_tx(&mut client, &tenant.id)
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))?;
    let entries = audit::list(tx.pg(), &tenant.id, from, to, before, limit)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    tx.commit()
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))?;
    let full = i64::try_from(entries.len()).unwrap_or(i64::MAX) == limit;
    let next_before = if full {
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(AuditPage {
        entries,
        next_before,
    })
    .into_response())
}
