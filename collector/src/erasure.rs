//! The erasure routes (GDPR Art. 17, scope `admin`): `DELETE /v1/tenants/{tenant_id}/data` and
//! `DELETE /v1/tenants/{tenant_id}/users/{user_id}`. By default (`mode=erase`) the personal
//! fields of the raw events go at once and the rows after the grace period
//! (`--erasure-grace-days`); `mode=purge` deletes now (`store::erasure`).

use std::collections::{BTreeMap, HashMap};

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

use crate::api_error::{ApiError, ReadErrors};
use crate::auth::{Principal, Scope, Tenant};
use crate::error::Error;
use crate::state::SharedState;
use crate::store::erasure::{self, Subject, ERASED_FIELDS};

/// The query parameters of the erasure routes.
const ERASE_PARAMS: &[&str] = &["mode"];

/// Longest user id (the wire format's limit).
const MAX_USER_ID: usize = 256;

/// How to erase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Personal fields now, the raw rows after the grace period (default).
    Erase,
    /// Everything now.
    Purge,
}

/// The erasure routes' query.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EraseParams {
    /// `erase` (default): personal fields cleared now, raw rows deleted after the grace period;
    /// `purge`: deleted now.
    #[param(inline)]
    pub mode: Option<Mode>,
}

/// What an erasure did.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErasureAnswer {
    pub tenant_id: String,
    /// Set when one user's events were erased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[schema(inline)]
    pub mode: Mode,
    /// `erase`: events whose personal fields were cleared now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events_erased: Option<u64>,
    /// `erase`: the fields cleared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields_erased: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erased_at: Option<DateTime<Utc>>,
    /// `erase`: the erased raw rows are deleted by the first upkeep round after this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<DateTime<Utc>>,
    /// `purge`: rows deleted now, per table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted: Option<BTreeMap<String, u64>>,
}

/// A path that cannot be read (percent-encoding that is not UTF-8): 422 rather than axum's
/// plain-text 400.
fn path_error(e: PathRejection) -> ApiError {
    ApiError::unprocessable(
        "invalid_path",
        format!("path: could not be read ({})", e.body_text()),
    )
}

/// The tenant named in the path, for a caller with scope `admin` allowed to act for it.
fn admin_for(principal: Principal, tenant_id: &str) -> Result<Tenant, ApiError> {
    let tenant = Tenant::resolve(principal, Some(tenant_id))?;
    tenant.principal.require(Scope::Admin)?;
    Ok(tenant)
}

fn mode(params: Result<Query<HashMap<String, String>>, QueryRejection>) -> Result<Mode, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::unprocessable(
            "invalid_query",
            format!("query: could not be read ({})", e.body_text()),
        )
    })?;
    crate::read_api::known_params(&params, ERASE_PARAMS)?;
    match params.get("mode").map(String::as_str) {
        None | Some("erase") => Ok(Mode::Erase),
        Some("purge") => Ok(Mode::Purge),
        Some(other) => Err(ApiError::unprocessable(
            "invalid_parameter",
            format!("mode: must be erase or purge, got `{other}`"),
        )),
    }
}

async fn client(st: &SharedState) -> Result<deadpool_postgres::Object, ApiError> {
    st.pool
        .get()
        .await
        .map_err(|e| ApiError::from_store(&Error::from(e)))
}

/// Erase a tenant's data. `mode=erase` (default): the personal fields of every raw event stored
/// so far are cleared now (202, with when the rows go); rollups keep their totals. `mode=purge`:
/// every row of the tenant in every table — raw events, rollups, billing, prices, export links,
/// API keys — is deleted now (200, with the rows per table).
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant_id}/data",
    tag = "erasure",
    security(("bearer" = [])),
    params(
        ("tenant_id" = String, Path, description = "The tenant to erase.",
            pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        EraseParams,
    ),
    responses(
        (status = 202, description = "`mode=erase`: personal fields cleared; rows deleted after \
            `purge_after`.", body = ErasureAnswer),
        (status = 200, description = "`mode=purge`: everything deleted.", body = ErasureAnswer),
        ReadErrors,
    )
)]
pub async fn erase_tenant(
    State(st): State<SharedState>,
    principal: Principal,
    path: Result<Path<String>, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(tenant_id) = path.map_err(path_error)?;
    let tenant = admin_for(principal, &tenant_id)?;
    let mode = mode(params)?;
    let mut client = client(&st).await?;
    let answer = match mode {
        Mode::Erase => {
            let done = erasure::erase(
                &mut client,
                &tenant.id,
                Subject::Tenant,
                st.config.erasure_grace_days,
            )
            .await
            .map_err(|e| ApiError::from_store(&e))?;
            tracing::info!(
                "erasure of tenant `{}` by {}: {} events erased, rows deleted after {}",
                tenant.id,
                tenant.principal.credential_id,
                done.events,
                done.purge_after
            );
            erased(tenant.id, None, &done)
        }
        Mode::Purge => {
            let deleted = erasure::purge_tenant(&mut client, &tenant.id)
                .await
                .map_err(|e| ApiError::from_store(&e))?;
            tracing::info!(
                "purge of tenant `{}` by {}: {deleted:?}",
                tenant.id,
                tenant.principal.credential_id
            );
            purged(tenant.id, None, deleted)
        }
    };
    Ok(answer)
}

/// Erase one user's events of a tenant (`user_id` as sent in the events). `mode=erase`
/// (default): their personal fields now, their rows after the grace period (202). `mode=purge`:
/// their raw events deleted now (200); the rollups keep their totals.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tenant_id}/users/{user_id}",
    tag = "erasure",
    security(("bearer" = [])),
    params(
        ("tenant_id" = String, Path, description = "The tenant.",
            pattern = "^[A-Za-z0-9._:-]{1,128}$"),
        ("user_id" = String, Path, description = "The user, as the events' `user_id`."),
        EraseParams,
    ),
    responses(
        (status = 202, description = "`mode=erase`: personal fields cleared; rows deleted after \
            `purge_after`.", body = ErasureAnswer),
        (status = 200, description = "`mode=purge`: the user's raw events deleted.",
            body = ErasureAnswer),
        ReadErrors,
    )
)]
pub async fn erase_user(
    State(st): State<SharedState>,
    principal: Principal,
    path: Result<Path<(String, String)>, PathRejection>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path((tenant_id, user_id)) = path.map_err(path_error)?;
    let tenant = admin_for(principal, &tenant_id)?;
    if user_id.is_empty() || user_id.chars().count() > MAX_USER_ID || user_id.contains('\0') {
        return Err(ApiError::unprocessable(
            "invalid_parameter",
            format!("user_id: must be 1-{MAX_USER_ID} characters without NUL"),
        ));
    }
    let mode = mode(params)?;
    let mut client = client(&st).await?;
    let answer = match mode {
        Mode::Erase => {
            let done = erasure::erase(
                &mut client,
                &tenant.id,
                Subject::User(&user_id),
                st.config.erasure_grace_days,
            )
            .await
            .map_err(|e| ApiError::from_store(&e))?;
            tracing::info!(
                "erasure of a user of tenant `{}` by {}: {} events erased",
                tenant.id,
                tenant.principal.credential_id,
                done.events
            );
            erased(tenant.id, Some(user_id), &done)
        }
        Mode::Purge => {
            let n = erasure::purge_user(&mut client, &tenant.id, &user_id)
                .await
                .map_err(|e| ApiError::from_store(&e))?;
            tracing::info!(
                "purge of a user of tenant `{}` by {}: {n} events deleted",
                tenant.id,
                tenant.principal.credential_id
            );
            let deleted = BTreeMap::from([("events".to_string(), n)]);
            purged(tenant.id, Some(user_id), deleted)
        }
    };
    Ok(answer)
}

fn erased(tenant_id: String, user_id: Option<String>, done: &erasure::Erased) -> Response {
    let body = ErasureAnswer {
        tenant_id,
        user_id,
        mode: Mode::Erase,
        events_erased: Some(done.events),
        fields_erased: Some(ERASED_FIELDS.to_vec()),
        erased_at: Some(done.erased_at),
        purge_after: Some(done.purge_after),
        deleted: None,
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn purged(tenant_id: String, user_id: Option<String>, deleted: BTreeMap<String, u64>) -> Response {
    let body = ErasureAnswer {
        tenant_id,
        user_id,
        mode: Mode::Purge,
        events_erased: None,
        fields_erased: None,
        erased_at: None,
        purge_after: None,
        deleted: Some(deleted),
    };
    (StatusCode::OK, Json(body)).into_response()
}
