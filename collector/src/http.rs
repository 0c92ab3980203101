//! The router: which handler serves which route and what calling it takes (`routes`, the access
//! table, the one list the OpenAPI document and docs/security.md are checked against), each
//! non-public route behind its access guard (`crate::access`), and the layers around them all —
//! request tracing, panics answered as a logged 500, a whole-request timeout and a limit on
//! requests served at once.

use std::any::Any;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::access::{self, Access, Guard, Policy, ADMIN, EXPORT, INGEST, LINK, LIVE, PUBLIC, READ};
use crate::api_error::ApiError;
use crate::config::{MAX_CONCURRENT_REQUESTS, REQUEST_TIMEOUT};
use crate::state::SharedState;
use crate::{dashboard, erasure, export, ingest, openapi, ops, read_api};

/// One route: its method and path, the handler serving them, and what it takes to call it
/// (its row of the access table: scope, rate class, audit; `crate::access`).
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    pub policy: Policy,
    handler: MethodRouter<SharedState>,
}

impl Route {
    fn new(
        method: Method,
        path: &'static str,
        policy: Policy,
        handler: MethodRouter<SharedState>,
    ) -> Route {
        Route {
            method,
            path,
            policy,
            handler,
        }
    }

    fn get<H: Handler<T, SharedState>, T: 'static>(
        path: &'static str,
        policy: Policy,
        handler: H,
    ) -> Route {
        Route::new(Method::GET, path, policy, get(handler))
    }

    fn post<H: Handler<T, SharedState>, T: 'static>(
        path: &'static str,
        policy: Policy,
        handler: H,
    ) -> Route {
        Route::new(Method::POST, path, policy, post(handler))
    }

    fn delete<H: Handler<T, SharedState>, T: 'static>(
        path: &'static str,
        policy: Policy,
        handler: H,
    ) -> Route {
        Route::new(Method::DELETE, path, policy, delete(handler))
    }
}

/// Every route the collector serves, with its access policy: the access table (documented in
/// docs/security.md, which a test compares with it). Each must be described in the OpenAPI
/// document (`openapi::ApiDoc`, whose tests compare it with this list). A route added here is
/// authenticated, limited and audited by its policy, with no code in its handler.
pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/v1/batch", INGEST, ingest::post_batch),
        Route::get("/v1/metrics/summary", READ, read_api::summary),
        Route::get("/v1/metrics/timeseries", READ, read_api::timeseries),
        Route::get("/v1/metrics/savings", READ, read_api::savings),
        Route::get("/v1/metrics/peaks", READ, read_api::peaks),
        Route::get(
            "/v1/metrics/recommendations",
            READ,
            read_api::recommendations,
        ),
        Route::get("/v1/billing/usage", READ, crate::billing::api::usage),
        Route::post("/v1/keys", ADMIN, access::keys::create),
        Route::get("/v1/keys", ADMIN, access::keys::list),
        Route::delete("/v1/keys/{prefix}", ADMIN, access::keys::revoke),
        Route::get("/v1/audit", ADMIN, access::audit::list),
        Route::get("/v1/export", EXPORT, export::api::export),
        Route::post("/v1/exports", EXPORT, export::api::create_link),
        Route::get("/v1/exports/{token}", LINK, export::api::download_link),
        Route::delete("/v1/tenants/{tenant_id}/data", ADMIN, erasure::erase_tenant),
        Route::delete(
            "/v1/tenants/{tenant_id}/users/{user_id}",
            ADMIN,
            erasure::erase_user,
        ),
        Route::post("/v1/live/token", READ, crate::live::api::token),
        Route::get("/v1/live", LIVE, crate::live::api::live),
        Route::get("/healthz", PUBLIC, ops::healthz),
        Route::get("/metrics", PUBLIC, ops::metrics),
        Route::get("/openapi.json", PUBLIC, openapi::openapi_json),
        Route::get("/", PUBLIC, dashboard::root),
        Route::get("/dashboard", PUBLIC, dashboard::page),
        Route::get("/assets/{file}", PUBLIC, dashboard::asset),
    ]
}

/// The collector's router: each route behind its access guard (`access::guard`).
pub fn router(state: SharedState) -> Router {
    let routes = routes()
        .into_iter()
        .fold(Router::new(), |r, route| {
            let handler = if route.policy.access == Access::Public {
                route.handler
            } else {
                let guard = Guard {
                    st: state.clone(),
                    method: route.method.clone(),
                    path: route.path,
                    policy: route.policy,
                };
                route
                    .handler
                    .route_layer(middleware::from_fn_with_state(guard, access::guard))
            };
            r.route(route.path, handler)
        })
        // The batch handler reads the body itself, with its own caps.
        .layer(DefaultBodyLimit::disable())
        .fallback(not_found)
        .with_state(state);
    with_layers(routes)
}

/// The layers every route runs in, outermost first: tracing, so the answer to a panic or a
/// timeout is logged with its request; panics; the timeout, which also bounds the wait for a
/// place under the limit; the limit.
pub fn with_layers(routes: Router) -> Router {
    routes
        .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .layer(axum::middleware::map_response(json_for_bare_errors))
        .layer(CatchPanicLayer::custom(answer_panic))
        .layer(TraceLayer::new_for_http())
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}

/// A panic in a handler: logged, and answered as any other internal error.
fn answer_panic(panic: Box<dyn Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!("a request handler panicked: {what}");
    ApiError::internal().into_response()
}

/// Errors made by a layer (the timeout's 503) come without a body: give them the JSON error
/// every other answer has, and Retry-After with a 503.
async fn json_for_bare_errors(resp: Response) -> Response {
    let bare = !resp.headers().contains_key(header::CONTENT_TYPE);
    match resp.status() {
        StatusCode::SERVICE_UNAVAILABLE if bare => {
            tracing::warn!(
                "a request did not finish within {} s, answered 503",
                REQUEST_TIMEOUT.as_secs()
            );
            ApiError::unavailable(&"the request took too long").into_response()
        }
        _ => resp,
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn call(app: Router, path: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::get(path).body(Body::empty()).expect("request");
        let resp = app.oneshot(req).await.expect("infallible");
        let status = resp.status();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        (status, serde_json::from_slice(&bytes).expect("json body"))
    }

    /// The access table of docs/security.md is the code's, row for row (role columns included).
    #[test]
    fn the_documented_access_table_is_the_code_table() {
        use crate::auth::Role;
        let doc = include_str!("../../docs/security.md");
        let table = doc
            .split("<!-- access-table -->")
            .nth(1)
            .and_then(|rest| rest.split("<!-- /access-table -->").next())
            .expect("docs/security.md has the access table between its markers");
        let documented: Vec<Vec<String>> = table
            .lines()
            .filter(|l| l.starts_with("| `"))
            .map(|l| {
                l.trim_matches('|')
                    .split('|')
                    .map(|c| c.trim().trim_matches('`').to_string())
                    .collect()
            })
            .collect();
        let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
        let code: Vec<Vec<String>> = routes()
            .iter()
            .map(|r| {
                let (access, scope) = match r.policy.access {
                    Access::Public => ("public", None),
                    Access::Tenant(s) => ("tenant", Some(s)),
                    Access::Items(s) => ("items", Some(s)),
                    Access::Stream(s) => ("stream", Some(s)),
                };
                let mut row = vec![
                    r.method.to_string(),
                    r.path.to_string(),
                    access.to_string(),
                    scope.map_or("—".to_string(), |s| s.as_str().to_string()),
                    r.policy.rate.as_str().to_string(),
                    yes(r.policy.audited),
                ];
                for role in Role::ALL {
                    row.push(yes(scope.is_none_or(|s| role.scopes().contains(&s))));
                }
                row
            })
            .collect();
        assert_eq!(
            documented, code,
            "docs/security.md and http::routes() differ"
        );
    }

    #[tokio::test]
    async fn a_panic_is_answered_500_json_and_the_server_goes_on() {
        #[allow(clippy::unreachable)]
        async fn boom() -> &'static str {
            panic!("handler bug")
        }
        async fn fine() -> Response {
            axum::Json(serde_json::json!({"ok": true})).into_response()
        }
        let app = with_layers(
            Router::new()
                .route("/boom", get(boom))
                .route("/fine", get(fine)),
        );
        let (status, body) = call(app.clone(), "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body["error"]["code"], "internal");
        let (status, body) = call(app, "/fine").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["ok"], true);
    }
}
