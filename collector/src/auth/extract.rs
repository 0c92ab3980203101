//! Request extractors: `Principal` (who calls: the bearer credential, verified) and `Tenant`
//! (the tenant the request acts on). Generic over the router's state through `FromRef`, so this
//! module does not depend on the application state.

use axum::extract::{FromRef, FromRequestParts, Query};
use axum::http::request::Parts;
use serde::Deserialize;

use super::cache::AuthState;
use super::principal::Principal;
use crate::api_error::ApiError;

impl<S> FromRequestParts<S> for Principal
where
    AuthState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Authenticated once, by the access layer (`crate::access`), when the route has one.
        if let Some(p) = parts.extensions.get::<Principal>() {
            return Ok(p.clone());
        }
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing_credentials",
                    "missing `Authorization: Bearer <api key or JWT>` header",
                )
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                let (scheme, rest) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "invalid_credentials",
                    "the Authorization header must be `Bearer <api key or JWT>`",
                )
            })?;
        AuthState::from_ref(state).authenticate_bearer(token).await
    }
}

/// The tenant a request acts on: the tenant its credential is bound to, or for a platform
/// credential the `tenant_id` query parameter. Carries the principal it was resolved for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub principal: Principal,
}

#[derive(Debug, Deserialize)]
struct TenantParam {
    tenant_id: Option<String>,
}

impl Tenant {
    /// Resolve the tenant of a request made by `principal` with `?tenant_id=` `asked`: 403 when a
    /// tenant credential names another tenant, 422 naming `tenant_id` when a platform credential
    /// names none (or an invalid one).
    pub fn resolve(principal: Principal, asked: Option<&str>) -> Result<Tenant, ApiError> {
        match (&principal.tenant, asked) {
            (Some(bound), Some(asked)) if bound != asked => Err(ApiError::forbidden(
                "tenant_forbidden",
                format!(
                    "tenant_id: this {} is bound to tenant `{bound}` and may not act for \
                     tenant `{asked}`",
                    principal.describe()
                ),
            )),
            (Some(bound), _) => Ok(Tenant {
                id: bound.clone(),
                principal,
            }),
            (None, None) => Err(ApiError::unprocessable(
                "missing_tenant_id",
                "tenant_id: required with a platform-wide API key (add `?tenant_id=<tenant>`)",
            )),
            (None, Some(asked)) if !agenttally::event::is_valid_tenant_id(asked) => {
                Err(ApiError::unprocessable(
                    "invalid_tenant_id",
                    format!(
                        "tenant_id: must be 1-128 characters of A-Z a-z 0-9 . _ : -, got `{asked}`"
                    ),
                ))
            }
            (None, Some(asked)) => Ok(Tenant {
                id: asked.to_string(),
                principal,
            }),
        }
    }
}

impl<S> FromRequestParts<S> for Tenant
where
    AuthState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Resolved once, by the access layer, when the route has one.
        if let Some(t) = parts.extensions.get::<Tenant>() {
            return Ok(t.clone());
        }
        let principal = Principal::from_request_parts(parts, state).await?;
        let Query(param) = Query::<TenantParam>::try_from_uri(&parts.uri).map_err(|e| {
            ApiError::unprocessable(
                "invalid_query",
                format!("query: could not be read ({})", e.body_text()),
            )
        })?;
        Tenant::resolve(principal, param.tenant_id.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Scope;

    fn principal(tenant: Option<&str>) -> Principal {
        Principal {
            tenant: tenant.map(str::to_string),
            scopes: vec![Scope::Read],
            credential_id: "at_00000000".into(),
            kind: crate::auth::CredentialKind::Key,
            sub: None,
        }
    }

    #[test]
    fn a_tenant_credential_acts_for_its_tenant_only() {
        let p = principal(Some("acme"));
        assert_eq!(
            Tenant::resolve(p.clone(), None).map(|t| t.id),
            Ok("acme".into())
        );
        assert_eq!(
            Tenant::resolve(p.clone(), Some("acme")).map(|t| t.id),
            Ok("acme".into())
        );
        let e = Tenant::resolve(p, Some("globex")).expect_err("another tenant");
        assert_eq!(e.status.as_u16(), 403);
        assert_eq!(e.code, "tenant_forbidden");
        assert!(e.message.contains("`globex`"), "{}", e.message);
    }

    #[test]
    fn a_platform_credential_names_the_tenant() {
        let p = principal(None);
        assert_eq!(
            Tenant::resolve(p.clone(), Some("acme")).map(|t| t.id),
            Ok("acme".into())
        );
        let e = Tenant::resolve(p.clone(), None).expect_err("no tenant");
        assert_eq!(e.status.as_u16(), 422);
        assert!(e.message.starts_with("tenant_id:"), "{}", e.message);
        let e = Tenant::resolve(p, Some("bad tenant")).expect_err("invalid tenant");
        assert_eq!(e.status.as_u16(), 422);
        assert!(e.message.starts_with("tenant_id:"), "{}", e.message);
    }
}
