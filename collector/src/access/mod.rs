//! Access control for every route, in one place: each row of `http::routes()` carries a
//! `Policy` (who may call it, its rate class, whether it is audited), and `guard` — the layer
//! the router puts on each non-public route — authenticates once, checks the scope, resolves the
//! tenant, applies the rate limits, runs the handler and writes the audit record. Handlers only
//! extract `auth::Tenant` / `auth::Principal` (which the guard has put in the request).
//!
//! `rate` holds the in-memory limits, `audit` the audit log and its route, `keys` the key admin
//! routes, `views` the dashboard-view events recorded for JWT users.

pub mod audit;
pub mod keys;
pub mod rate;
pub mod views;

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use axum::extract::{FromRequestParts, Query, RawPathParams, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::api_error::ApiError;
use crate::auth::{looks_like_jwt, Principal, Scope, Tenant, KEY_PREFIX};
use crate::state::SharedState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without a credential.
    Public,
    /// A credential with this scope, acting for one tenant: its own, or for a platform
    /// credential the `tenant_id` query (or path) parameter.
    Tenant(Scope),
    /// A credential with this scope whose request names its tenants item by item (a batch of
    /// events: each event's tenant is checked by the handler).
    Items(Scope),
}

impl Access {
    /// The scope needed, `None` for a public route.
    pub fn scope(self) -> Option<Scope> {
        match self {
            Access::Public => None,
            Access::Tenant(s) | Access::Items(s) => Some(s),
        }
    }
}

/// Which rate limit a route counts against (`rate::RateLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    None,
    Query,
    Export,
    Ingest,
}

impl RateClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RateClass::None => "none",
            RateClass::Query => "query",
            RateClass::Export => "export",
            RateClass::Ingest => "ingest",
        }
    }
}

/// What a route needs: its row in the access table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub access: Access,
    pub rate: RateClass,
    /// Every call is written to the audit log (once its tenant is known).
    pub audited: bool,
}

/// No credential, no limit, not audited: health, metrics, the API description.
pub const PUBLIC: Policy = Policy {
    access: Access::Public,
    rate: RateClass::None,
    audited: false,
};
/// Ingest: scope `ingest`, each event's tenant checked by the handler; not audited, so
/// it is not slowed.
pub const INGEST: Policy = Policy {
    access: Access::Items(Scope::Ingest),
    rate: RateClass::Ingest,
    audited: false,
};
/// Reads of a tenant's figures.
pub const READ: Policy = Policy {
    access: Access::Tenant(Scope::Read),
    rate: RateClass::Query,
    audited: true,
};
/// Exports of a tenant's events.
pub const EXPORT: Policy = Policy {
    access: Access::Tenant(Scope::Export),
    rate: RateClass::Export,
    audited: true,
};
/// Administration of a tenant: keys, the audit log, erasure.
pub const ADMIN: Policy = Policy {
    access: Access::Tenant(Scope::Admin),
    rate: RateClass::Query,
    audited: true,
};

/// What the guard of one route knows: the shared state and the route's row.
#[derive(Debug, Clone)]
pub struct Guard {
    pub st: SharedState,
    pub method: Method,
    pub path: &'static str,
    pub policy: Policy,
}

#[derive(Debug, Deserialize)]
struct TenantParam {
    tenant_id: Option<String>,
}

/// The layer of every non-public route (see the module doc).
pub async fn guard(State(g): State<Guard>, req: Request, next: Next) -> Response {
    let Some(scope) = g.policy.access.scope() else {
        return next.run(req).await;
    };
    let (mut parts, body) = req.into_parts();
    let principal = match Principal::from_request_parts(&mut parts, &g.st).await {
        Ok(p) => p,
        Err(e) => {
            // No tenant is known: logged, not in the audit log.
            tracing::info!(
                "{} {}: {} {} ({})",
                g.method,
                g.path,
                e.status.as_u16(),
                e.code,
                e.message
            );
            return g.refused(e);
        }
    };
    let path = match RawPathParams::from_request_parts(&mut parts, &()).await {
        Ok(raw) => raw
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        Err(_) => HashMap::new(),
    };
    let params = g.policy.audited.then(|| params_json(&parts.uri, &path));
    let decided = decide(&g, &parts, &path, &principal, scope);
    // The tenant the call is recorded under: the one it acts on, else the credential's own.
    let audit_tenant = match &decided {
        Ok(Some(t)) => Some(t.id.clone()),
        _ => principal.tenant.clone(),
    };
    let resp = match decided {
        Ok(tenant) => {
            if let Err(e) = g.st.rates.check(g.policy.rate, &principal, tenant.as_ref()) {
                let class = match g.policy.rate {
                    RateClass::Export => 1,
                    RateClass::Ingest => 2,
                    RateClass::Query | RateClass::None => 0,
                };
                g.st.metrics.rate_limited[class].fetch_add(1, Ordering::Relaxed);
                // Not audited: a flood of refused calls must not become a flood of writes.
                tracing::info!(
                    "{} {}: 429 for {} ({})",
                    g.method,
                    g.path,
                    principal.credential_id,
                    e.message
                );
                return g.refused(e);
            }
            if let Some(t) = tenant {
                parts.extensions.insert(t);
            }
            parts.extensions.insert(principal.clone());
            next.run(Request::from_parts(parts, body)).await
        }
        Err(e) => g.refused(e),
    };
    let resp = match (audit_tenant.as_deref(), params) {
        (Some(tenant), Some(params)) => {
            let call = audit::Call {
                tenant,
                principal: &principal,
                method: g.method.as_str(),
                route: g.path,
                params,
            };
            audit::record(&g.st, call, resp).await
        }
        (None, Some(_)) => {
            tracing::info!(
                "{} {}: {} for {} (no tenant: not audited)",
                g.method,
                g.path,
                resp.status().as_u16(),
                principal.credential_id
            );
            resp
        }
        (_, None) => resp,
    };
    if resp.status().is_success() && scope == Scope::Read {
        if let (Some(tenant), Some(sub)) = (&audit_tenant, &principal.sub) {
            g.st.views.viewed(&g.st, tenant, sub);
        }
    }
    resp
}

impl Guard {
    /// A refusal before the handler; counted with ingest's answers on an ingest route (whose
    /// handler counts the answers it gives itself).
    fn refused(&self, e: ApiError) -> Response {
        if self.policy.rate == RateClass::Ingest {
            self.st.metrics.response(e.status.as_u16());
        }
        e.into_response()
    }
}

/// The scope check and the tenant: `Ok(None)` when the route names its tenants item by item.
fn decide(
    g: &Guard,
    parts: &Parts,
    path: &HashMap<String, String>,
    principal: &Principal,
    scope: Scope,
) -> Result<Option<Tenant>, ApiError> {
    principal.require(scope)?;
    if !matches!(g.policy.access, Access::Tenant(_)) {
        return Ok(None);
    }
    let Query(param) = Query::<TenantParam>::try_from_uri(&parts.uri).map_err(|e| {
        ApiError::unprocessable(
            "invalid_query",
            format!("query: could not be read ({})", e.body_text()),
        )
    })?;
    let asked = match (path.get("tenant_id"), param.tenant_id) {
        (Some(p), Some(q)) if *p != q => {
            return Err(ApiError::unprocessable(
                "invalid_parameter",
                format!("tenant_id: the path names `{p}` and the query `{q}`"),
            ))
        }
        (Some(p), _) => Some(p.clone()),
        (None, q) => q,
    };
    Tenant::resolve(principal.clone(), asked.as_deref()).map(Some)
}

/// Longest parameter value kept in an audit record.
const PARAM_CHARS: usize = 512;

/// The query string and path parameters of a request, for the audit log: `{"query": {...},
/// "path": {...}}`, a repeated query parameter as an array. A value that looks like a credential
/// (an API key or a JWT) is replaced by `***`.
pub(crate) fn params_json(uri: &Uri, path: &HashMap<String, String>) -> Value {
    let clean = |v: &str| -> Value {
        // (A key's prefix, `at_` + 8 hex digits, names it and is kept.)
        if (v.starts_with(KEY_PREFIX) && v.len() > 16) || looks_like_jwt(v) {
            Value::from("***")
        } else {
            Value::from(v.chars().take(PARAM_CHARS).collect::<String>())
        }
    };
    let mut query = Map::new();
    let pairs = uri
        .query()
        .map(|_| Query::<Vec<(String, String)>>::try_from_uri(uri));
    match pairs {
        None => {}
        Some(Ok(Query(pairs))) => {
            for (k, v) in pairs {
                let k: String = k.chars().take(PARAM_CHARS).collect();
                match query.get_mut(&k) {
                    Some(Value::Array(a)) => a.push(clean(&v)),
                    Some(old) => *old = Value::Array(vec![old.take(), clean(&v)]),
                    None => {
                        query.insert(k, clean(&v));
                    }
                }
            }
        }
        Some(Err(_)) => {
            query.insert(
                "(unreadable)".into(),
                clean(uri.query().unwrap_or_default()),
            );
        }
    }
    let path: Map<String, Value> = path.iter().map(|(k, v)| (k.clone(), clean(v))).collect();
    serde_json::json!({"query": query, "path": path})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_params_keep_the_query_and_path_but_no_credential() {
        let path: HashMap<String, String> =
            [("prefix".to_string(), "at_1234abcd".to_string())].into();
        let key = format!("at_{}", "0".repeat(64));
        let uri: Uri = format!("/v1/x?from=2026-01-01T00:00:00Z&g=a&g=b&token=a.b.c&k={key}")
            .parse()
            .expect("uri");
        let v = params_json(&uri, &path);
        assert_eq!(v["query"]["from"], "2026-01-01T00:00:00Z");
        assert_eq!(v["query"]["g"], serde_json::json!(["a", "b"]));
        assert_eq!(v["query"]["token"], "***");
        assert_eq!(v["query"]["k"], "***");
        assert_eq!(v["path"]["prefix"], "at_1234abcd");
        let bare: Uri = "/v1/x".parse().expect("uri");
        assert_eq!(
            params_json(&bare, &HashMap::new()),
            serde_json::json!({"query": {}, "path": {}})
        );
    }
}
