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

use rate::RateClass;

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
    /// As `Tenant`, or — with no `Authorization` header — a short-lived live token in the
    /// `token` query parameter, which the handler verifies (a browser's `EventSource` cannot
    /// send a header; the token was made by an audited, rate-limited call of a credential with
    /// this scope).
    Stream(Scope),
}

impl Access {
    /// The scope needed, `None` for a public route.
    pub fn scope(self) -> Option<Scope> {
        match self {
            Access::Public => None,
            Access::Tenant(s) | Access::Items(s) | Access::Stream(s) => Some(s),
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
/// Live updates: a read, or a live token (`Access::Stream`).
pub const LIVE: Policy = Policy {
    access: Access::Stream(Scope::Read),
    rate: RateClass::Query,
    audited: true,
};
/// A one-time export link: the token in its path is the credential, so no bearer and no guard;
/// the handler claims the link and writes the audit record itself, under the credential that
/// made the link (`CredentialKind::Link`).
pub const LINK: Policy = Policy {
    access: Access::Public,
    rate: RateClass::None,
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
    if matches!(g.policy.access, Access::Stream(_))
        && !req
            .headers()
            .contains_key(axum::http::header::AUTHORIZATION)
        && req
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.split('=').next() == Some("token")))
    {
        // The handler verifies the live token (and refuses a key given in its place).
        return next.run(req).await;
    }
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
        // A path parameter that is not UTF-8 once percent-decoded: named here, before the
        // tenant is looked for in it.
        Err(e) => {
            return g.refused(ApiError::unprocessable(
                "invalid_path",
                format!("path: could not be read ({})", e.body_text()),
            ))
        }
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
            g.st.views.viewed(&g.st.writer, tenant, sub);
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
    if !matches!(g.policy.access, Access::Tenant(_) | Access::Stream(_)) {
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

/// Longest parameter value kept in an audit record, and most query parameters kept.
const PARAM_CHARS: usize = 512;
const MAX_PARAMS: usize = 64;

/// The query string and path parameters of a request, for the audit log: `{"query": {...},
/// "path": {...}}`, a repeated query parameter as an array, at most `MAX_PARAMS` query
/// parameters of at most `PARAM_CHARS` characters. A value that looks like a credential (an API
/// key or a JWT) is replaced by `***`.
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
            for (k, v) in pairs.into_iter().take(MAX_PARAMS) {
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
    use std::sync::Arc;

    use axum::body::Body;
    use axum::routing::get;
    use axum::Router;
    use http_body_util::BodyExt;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use tower::ServiceExt;

    use super::*;
    use crate::auth::JwtSettings;
    use crate::config::ServerConfig;
    use crate::state::AppState;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// A state whose pool never connects: enough for JWTs, scopes, tenants and rate limits.
    fn state(query_per_minute: u32) -> SharedState {
        let mut config = ServerConfig::new("postgresql://nobody@127.0.0.1:1/none");
        config.rate_query_per_minute = query_per_minute;
        config.jwt = JwtSettings {
            hs256_secret: Some(SECRET.into()),
            ..JwtSettings::default()
        };
        Arc::new(AppState::unconnected(config))
    }

    fn token(tenant: &str, role: &str) -> String {
        let claims = serde_json::json!({"tenant_id": tenant, "role": role, "sub": "u",
                                        "exp": chrono::Utc::now().timestamp() + 60});
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign")
    }

    /// A route with a `{tenant_id}` path parameter behind the guard, answering the tenant the
    /// guard resolved.
    fn app(st: SharedState, policy: Policy) -> Router {
        async fn which(t: Tenant) -> String {
            t.id
        }
        let guard = Guard {
            st: st.clone(),
            method: Method::GET,
            path: "/v1/tenants/{tenant_id}/thing",
            policy,
        };
        Router::new()
            .route(
                "/v1/tenants/{tenant_id}/thing",
                get(which).route_layer(axum::middleware::from_fn_with_state(guard, super::guard)),
            )
            .with_state(st)
    }

    async fn call(app: &Router, uri: &str, bearer: &str) -> (u16, String) {
        let req = axum::http::Request::get(uri)
            .header("authorization", format!("Bearer {bearer}"))
            .body(Body::empty())
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("infallible");
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&bytes).to_string())
    }

    #[tokio::test]
    async fn the_path_tenant_is_the_asked_tenant() {
        let policy = Policy {
            audited: false,
            ..READ
        };
        let reader = app(state(0), policy);
        let acme = token("acme", "viewer");
        assert_eq!(
            call(&reader, "/v1/tenants/acme/thing", &acme).await,
            (200, "acme".into())
        );
        let (s, body) = call(&reader, "/v1/tenants/globex/thing", &acme).await;
        assert_eq!(s, 403, "{body}");
        assert!(body.contains("tenant_forbidden"), "{body}");
        let (s, body) = call(&reader, "/v1/tenants/acme/thing?tenant_id=globex", &acme).await;
        assert_eq!(s, 422, "{body}");
        assert!(body.contains("tenant_id: the path names `acme`"), "{body}");
        // The scope comes first: a viewer on an admin route.
        let admin_only = app(
            state(0),
            Policy {
                audited: false,
                ..ADMIN
            },
        );
        let (s, body) = call(&admin_only, "/v1/tenants/acme/thing", &acme).await;
        assert_eq!(s, 403, "{body}");
        assert!(
            body.contains("insufficient_scope") && body.contains("`admin`"),
            "{body}"
        );
        let (s, _) = call(
            &admin_only,
            "/v1/tenants/acme/thing",
            &token("acme", "admin"),
        )
        .await;
        assert_eq!(s, 200);
    }

    #[tokio::test]
    async fn a_limited_route_answers_429_with_retry_after() {
        let app = app(
            state(2),
            Policy {
                audited: false,
                ..READ
            },
        );
        let acme = token("acme", "viewer");
        for _ in 0..2 {
            assert_eq!(call(&app, "/v1/tenants/acme/thing", &acme).await.0, 200);
        }
        let (s, body) = call(&app, "/v1/tenants/acme/thing", &acme).await;
        assert_eq!(s, 429, "{body}");
        assert!(body.contains("2 requests per minute"), "{body}");
    }

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
