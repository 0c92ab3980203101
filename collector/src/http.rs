//! The router: which handler serves which route (`routes`, the one list the OpenAPI document is
//! checked against), and the layers around them all — request tracing, panics answered as a
//! logged 500, a whole-request timeout and a limit on requests served at once.

use std::any::Any;

use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::Router;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::api_error::ApiError;
use crate::config::{MAX_CONCURRENT_REQUESTS, REQUEST_TIMEOUT};
use crate::state::SharedState;
use crate::{dashboard, ingest, openapi, ops, read_api};

/// One route: its method and path, and the handler serving them.
#[derive(Debug)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    handler: MethodRouter<SharedState>,
}

impl Route {
    fn get<H: Handler<T, SharedState>, T: 'static>(path: &'static str, handler: H) -> Route {
        Route {
            method: Method::GET,
            path,
            handler: get(handler),
        }
    }

    fn post<H: Handler<T, SharedState>, T: 'static>(path: &'static str, handler: H) -> Route {
        Route {
            method: Method::POST,
            path,
            handler: post(handler),
        }
    }
}

/// Every route the collector serves. Each must be described in the OpenAPI document
/// (`openapi::ApiDoc`, whose tests compare it with this list).
pub fn routes() -> Vec<Route> {
    vec![
        Route::post("/v1/batch", ingest::post_batch),
        Route::get("/v1/metrics/summary", read_api::summary),
        Route::get("/v1/metrics/timeseries", read_api::timeseries),
        Route::get("/v1/metrics/savings", read_api::savings),
        Route::get("/v1/metrics/peaks", read_api::peaks),
        Route::get("/v1/metrics/recommendations", read_api::recommendations),
        Route::get("/v1/billing/usage", crate::billing::api::usage),
        Route::get("/healthz", ops::healthz),
        Route::get("/metrics", ops::metrics),
        Route::get("/openapi.json", openapi::openapi_json),
        Route::get("/", dashboard::root),
        Route::get("/dashboard", dashboard::page),
        Route::get("/assets/{file}", dashboard::asset),
    ]
}

/// The collector's router.
pub fn router(state: SharedState) -> Router {
    let routes = routes()
        .into_iter()
        .fold(Router::new(), |r, route| r.route(route.path, route.handler))
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
