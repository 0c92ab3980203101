//! The key admin routes (scope `admin`): `POST /v1/keys` creates a key of the tenant the call
//! acts on (the caller's own, or for a platform admin credential `?tenant_id=`) and shows it
//! once; `GET /v1/keys` lists the tenant's keys (never a hash); `DELETE /v1/keys/{prefix}`
//! revokes one. Keys made here are always bound to a tenant: platform-wide keys are made with
//! the CLI only. `api_keys` is a reference table (keys are looked up by hash before any tenant is
//! known), so every statement here names the tenant the access layer resolved.

use std::collections::HashMap;

use axum::body::{to_bytes, Body};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api_error::{ApiError, ErrorBody, ReadErrors};
use crate::auth::{create_named_key, is_key_prefix, Scope, Tenant};
use crate::read_api::{client, read_params};
use crate::state::SharedState;
use crate::store::keys::{self, KeyInfo};

/// The largest body `POST /v1/keys` reads.
const MAX_BODY: usize = 16 * 1024;
/// The longest key name.
const MAX_NAME_CHARS: usize = 200;

/// The rule a key's name follows (API and CLI): 1 to 200 characters, not only spaces, no
/// control characters.
pub const NAME_RULE: &str = "must be a string of 1 to 200 characters without control characters";

/// Whether `n` follows `NAME_RULE`.
pub fn valid_name(n: &str) -> bool {
    !n.trim().is_empty() && n.chars().count() <= MAX_NAME_CHARS && !n.chars().any(char::is_control)
}
/// The parameters the key routes read.
pub const KEYS_PARAMS: &[&str] = &["tenant_id"];

/// The query string of the key routes.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct KeysParams {
    /// The tenant whose keys these are: required with a platform key; with a tenant credential,
    /// its own tenant (another is a 403).
    #[param(pattern = "^[A-Za-z0-9._:-]{1,128}$")]
    pub tenant_id: Option<String>,
}

/// The body of `POST /v1/keys`.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // (documentation: the handler reads the body itself, to name bad fields)
pub struct NewKey {
    /// What the key may do, at least one scope.
    #[schema(min_items = 1)]
    scopes: Vec<ScopeName>,
    /// A name for people (at most 200 characters, no control characters).
    #[schema(min_length = 1, max_length = 200)]
    name: Option<String>,
}

/// A scope, as the body of `POST /v1/keys` names it.
#[derive(Debug, ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // (documentation only)
pub enum ScopeName {
    Ingest,
    Read,
    Export,
    Admin,
}

/// A new key: the secret is in this answer only.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The secret, `at_` and 64 hex digits: shown once, only its hash is stored.
    pub key: String,
    /// The tenant the key is bound to.
    pub tenant_id: String,
    #[serde(flatten)]
    pub info: KeyInfo,
}

/// The tenant's keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    /// Newest first, revoked ones included.
    pub keys: Vec<KeyInfo>,
}

/// Create a key for the tenant (scope `admin`). A tenant credential creates keys of its own
/// tenant; a platform credential of `tenant_id`. The key is bound to that tenant.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "admin",
    security(("bearer" = [])),
    params(KeysParams),
    request_body(content = NewKey, content_type = "application/json"),
    responses(
        (status = 201, description = "The key, shown once.", body = CreatedKey),
        (status = 400, description = "The body is not a JSON object.", body = ErrorBody),
        (status = 413, description = "The body is over 16 KiB.", body = ErrorBody),
        ReadErrors,
    )
)]
pub async fn create(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    read_params(params, KEYS_PARAMS)?;
    let bytes = to_bytes(body, MAX_BODY)
        .await
        .map_err(|_| ApiError::too_large(format!("body: at most {MAX_BODY} bytes")))?;
    let (scopes, name) = new_key(&bytes)?;
    let client = client(&st).await?;
    let (key, info) = create_named_key(&**client, Some(&tenant.id), &scopes, name.as_deref())
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    tracing::info!(
        "key {} created for tenant {} by {}",
        info.prefix,
        tenant.id,
        tenant.principal.credential_id
    );
    let created = CreatedKey {
        key,
        tenant_id: tenant.id,
        info,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// The scopes and name of a `POST /v1/keys` body; 400 / 422 naming the field and the rule.
fn new_key(bytes: &[u8]) -> Result<(Vec<Scope>, Option<String>), ApiError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("invalid_body", format!("body: not valid JSON ({e})"))
    })?;
    let Value::Object(obj) = v else {
        return Err(ApiError::bad_request(
            "invalid_body",
            "body: must be a JSON object like {\"scopes\": [\"read\"]}",
        ));
    };
    let bad = |m: String| ApiError::unprocessable("invalid_field", m);
    for k in obj.keys() {
        match k.as_str() {
            "scopes" | "name" => {}
            "tenant_id" => {
                return Err(bad(
                    "tenant_id: give the tenant as the `tenant_id` query parameter (platform \
                     credentials only)"
                        .into(),
                ))
            }
            other => {
                return Err(bad(format!(
                    "{other}: unknown field (allowed: scopes, name)"
                )))
            }
        }
    }
    let list = match obj.get("scopes") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) | None => {
            return Err(bad("scopes: at least one scope is required".into()))
        }
        Some(_) => return Err(bad("scopes: must be an array of scope names".into())),
    };
    let mut scopes = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let scope: Scope = s
            .as_str()
            .ok_or_else(|| bad(format!("scopes[{i}]: must be a string")))?
            .parse()
            .map_err(|e| bad(format!("scopes[{i}]: {e}")))?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let name = match obj.get("name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) if valid_name(n) => Some(n.clone()),
        Some(_) => return Err(bad(format!("name: {NAME_RULE}"))),
    };
    Ok((scopes, name))
}

/// The tenant's keys (scope `admin`): prefix, name, scopes, creation and revocation times.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "admin",
    security(("bearer" = [])),
    params(KeysParams),
    responses(
        (status = 200, description = "The tenant's keys.", body = KeyList),
        ReadErrors,
    )
)]
pub async fn list(
    State(st): State<SharedState>,
    tenant: Tenant,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<KeyList>, ApiError> {
    read_params(params, KEYS_PARAMS)?;
    let client = client(&st).await?;
    let keys = keys::list(&**client, &tenant.id)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    Ok(Json(KeyList { keys }))
}

/// Revoke a key of the tenant (scope `admin`). It is refused on this collector at once and on
/// every collector within 5 s. Revoking a revoked key answers it unchanged.
#[utoipa::path(
    delete,
    path = "/v1/keys/{prefix}",
    tag = "admin",
    security(("bearer" = [])),
    params(
        ("prefix" = String, Path, description = "The key's prefix: `at_` and 8 hex digits.",
            pattern = "^at_[0-9a-f]{8}$"),
        KeysParams,
    ),
    responses(
        (status = 200, description = "The revoked key.", body = KeyInfo),
        (status = 404, description = "The tenant has no key with this prefix.", body = ErrorBody),
        ReadErrors,
    )
)]
pub async fn revoke(
    State(st): State<SharedState>,
    tenant: Tenant,
    Path(prefix): Path<String>,
    params: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<KeyInfo>, ApiError> {
    read_params(params, KEYS_PARAMS)?;
    if !is_key_prefix(&prefix) {
        return Err(ApiError::unprocessable(
            "invalid_parameter",
            format!("prefix: must be `at_` and 8 lowercase hex digits, got `{prefix}`"),
        ));
    }
    let client = client(&st).await?;
    let revoked = keys::revoke(&**client, &tenant.id, &prefix)
        .await
        .map_err(|e| ApiError::from_store(&e))?;
    st.auth.forget_key(&prefix);
    let Some(info) = revoked else {
        return Err(ApiError::not_found(format!(
            "prefix: tenant `{}` has no key `{prefix}`",
            tenant.id
        )));
    };
    tracing::info!(
        "key {prefix} of tenant {} revoked by {}",
        tenant.id,
        tenant.principal.credential_id
    );
    Ok(Json(info))
}
