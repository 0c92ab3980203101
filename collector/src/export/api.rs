//! The export routes: `GET /v1/export` (scope `export`), `POST /v1/exports` (scope `export`:
//! make a one-time link) and `GET /v1/exports/{token}` (no credential: the link is one).

use std::collections::HashMap;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::links::{self, Claim, Link};
use super::{parse_params, start, Format, Job, Params};
use crate::access::audit;
use crate::api_error::{ApiError, ReadErrors};
use crate::auth::{CredentialKind, Principal, Scope, Tenant};
use crate::error::Error;
use crate::state::SharedState;

/// The query parameters of `GET /v1/export` (any other is a 422).
pub const EXPORT_PARAMS: &[&str] = &["format", "from", "to", "tenant_id"];
/// Largest body `POST /v1/exports` reads.
const LINK_BODY_LIMIT: usize = 16 * 1024;

/// The export parameters (documentation of the query string).
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportParams {
    /// `ndjson` (default), `csv` or `json`.
    #[param(inline)]
    pub format: Option<ExportFormat>,
    /// Start of the range, inclusive (RFC 3339); default: the first event.
    pub from: Option<DateTime<Utc>>,
    /// End of the range, exclusive (RFC 3339), after `from`; default: no end.
    pub to: Option<DateTime<Utc>>,
    /// The tenant to export: required with a platform key; with a tenant key, its own tenant
    /// (another is a 403).
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub tenant_id: Option<String>,
}

/// An export's file format.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Ndjson,
    Csv,
    Json,
}

/// 422 naming the query's first problem, else its parameters.
fn query(
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    allowed: &[&str],
) -> Result<HashMap<String, String>, ApiError> {
    let Query(params) = params.map_err(|e| {
        ApiError::unprocessable(
            "invalid_query",
            format!("query: could not be read ({})", e.body_text()),
        )
    })?;
    crate::read_api::known_params(&params, allowed)?;
    Ok(params)
}

fn pool_error(e: deadpool_postgres::PoolError) -> ApiError {
    ApiError::from_store(&Error::from(e))
}

/// Every raw event of the tenant in the range, ordered by (timestamp, id), streamed as a file
/// download: each as the wire format plus `received_at` (and `erased_at` when erased),
/// `cost_usd` exactly as stored. The export is recorded as a `customer.export_data` event. A
/// failure after the first byte aborts the response rather than ending it.
#[utoipa::path(
    get,
    path = "/v1/export",
    tag = "export",
    security(("bearer" = [])),
    params(ExportParams),
    responses(
        (status = 200, description = "The events, as an attachment.", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
            (String = "application/json"),
        )),
        ReadErrors,
    )
)]
pub async fn export(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Response, ApiError> {
    tenant.principal.require(Scope::Export)?;
    let params = query(params, EXPORT_PARAMS)?;
    let Params { format, from, to } = parse_params(&params)?;
    let permit = st.exports.try_enter()?;
    let client = st.pool.get().await.map_err(pool_error)?;
    let job = Job {
        tenant: tenant.id,
        format,
        from,
        to,
        requested_by: tenant.principal.credential_id,
        via: "api",
    };
    start(&st, client, job, permit).await
}

/// What a link exports, in the body of `POST /v1/exports` (each may come in the query
/// instead, not in both).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// `ndjson` (default), `csv` or `json`.
    pub format: Option<String>,
    /// Start of the range, inclusive (RFC 3339).
    pub from: Option<String>,
    /// End of the range, exclusive (RFC 3339).
    pub to: Option<String>,
}

/// A new one-time link.
#[derive(Debug, Serialize, ToSchema)]
pub struct LinkCreated {
    /// `GET` it, without a credential, once, before `expires_at`.
    pub url: String,
    pub expires_at: DateTime<Utc>,
    #[schema(inline)]
    pub format: ExportFormat,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

/// Make a signed one-time link to an export of the tenant (format and range as `GET
/// /v1/export`, in the query or a JSON body). The token in the URL is the only copy: the
/// collector stores its SHA-256.
#[utoipa::path(
    post,
    path = "/v1/exports",
    tag = "export",
    security(("bearer" = [])),
    params(ExportParams),
    request_body(content = Option<LinkRequest>, content_type = "application/json"),
    responses(
        (status = 201, description = "The link.", body = LinkCreated),
        ReadErrors,
    )
)]
pub async fn create_link(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    tenant.principal.require(Scope::Export)?;
    let mut params = query(params, EXPORT_PARAMS)?;
    let bytes = axum::body::to_bytes(body, LINK_BODY_LIMIT)
        .await
        .map_err(|_| ApiError::too_large(format!("body: at most {LINK_BODY_LIMIT} bytes")))?;
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let req: LinkRequest = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::unprocessable("invalid_body", format!("body: {e}")))?;
        for (name, value) in [("format", req.format), ("from", req.from), ("to", req.to)] {
            if let Some(v) = value {
                if params.contains_key(name) {
                    return Err(ApiError::unprocessable(
                        "invalid_parameter",
                        format!("{name}: given both in the query and in the body"),
                    ));
                }
                params.insert(name.to_string(), v);
            }
        }
    }
    let Params { format, from, to } = parse_params(&params)?;
    let ttl = TimeDelta::from_std(st.config.export_link_ttl).unwrap_or(TimeDelta::hours(1));
    let link = Link {
        tenant: tenant.id,
        format,
        from,
        to,
        created_by: tenant.principal.credential_id,
        expires_at: Utc::now() + ttl,
    };
    let (token, hash) = links::new_token().map_err(|e| {
        tracing::error!("{e}");
        ApiError::internal()
    })?;
    let mut client = st.pool.get().await.map_err(pool_error)?;
    links::insert(&mut client, &hash, &link)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    let created = LinkCreated {
        url: format!("/v1/exports/{token}"),
        expires_at: link.expires_at,
        format: match format {
            Format::Ndjson => ExportFormat::Ndjson,
            Format::Csv => ExportFormat::Csv,
            Format::Json => ExportFormat::Json,
        },
        from,
        to,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Download the export a one-time link names. No credential: the token is one. The first
/// download spends the link; a used or expired link is a 410, an unknown one a 404.
#[utoipa::path(
    get,
    path = "/v1/exports/{token}",
    tag = "export",
    params(("token" = String, Path, description = "The token of `POST /v1/exports`'s url.")),
    responses(
        (status = 200, description = "The events, as an attachment.", content(
            (String = "application/x-ndjson"),
            (String = "text/csv"),
            (String = "application/json"),
        )),
        (status = 404, description = "No such link.", body = crate::api_error::ErrorBody),
        (status = 410, description = "The link was used or has expired.",
            body = crate::api_error::ErrorBody),
        (status = 503, description = "Every export slot is taken, or the database is \
            unavailable: retry after `Retry-After`.", body = crate::api_error::ErrorBody),
    )
)]
pub async fn download_link(
    State(st): State<SharedState>,
    token: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let unknown = || ApiError::not_found("no such export link");
    let Ok(Path(token)) = token else {
        return Err(unknown());
    };
    if !links::well_formed(&token) {
        return Err(unknown());
    }
    // A slot first: a link is not spent on a download that cannot start.
    let permit = st.exports.try_enter()?;
    let mut client = st.pool.get().await.map_err(pool_error)?;
    let link = match links::claim(&mut client, &links::hash(&token))
        .await
        .map_err(|e| ApiError::from_store(&e))?
    {
        Claim::Claimed(link) => link,
        Claim::Used => {
            return Err(ApiError::gone(
                "link_used",
                "this export link was used already: links work once (make a new one)",
            ))
        }
        Claim::Expired(at) => {
            return Err(ApiError::gone(
                "link_expired",
                format!(
                    "this export link expired at {} (make a new one)",
                    at.to_rfc3339()
                ),
            ))
        }
        Claim::Unknown => return Err(unknown()),
    };
    // The link's creator is the principal of the audit record (the token itself is a
    // credential: never recorded).
    let principal = Principal {
        tenant: Some(link.tenant.clone()),
        scopes: vec![Scope::Export],
        credential_id: link.created_by.clone(),
        kind: CredentialKind::Link,
        sub: None,
    };
    let tenant = link.tenant.clone();
    let job = Job {
        tenant: link.tenant,
        format: link.format,
        from: link.from,
        to: link.to,
        requested_by: link.created_by,
        via: "link",
    };
    let resp = start(&st, client, job, permit)
        .await
        .unwrap_or_else(IntoResponse::into_response);
    let call = audit::Call {
        tenant: &tenant,
        principal: &principal,
        method: "GET",
        route: "/v1/exports/{token}",
        params: serde_json::json!({"query": {}, "path": {}}),
    };
    Ok(audit::record(&st, call, resp).await)
}
