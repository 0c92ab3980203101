//! The router: which handler serves which route, and the layers around them all.

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;

use crate::api_error::ApiError;
use crate::state::SharedState;
use crate::{ingest, ops};

/// The collector's routes.
pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/v1/batch", post(ingest::post_batch))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        // The batch handler reads the body itself, with its own caps.
        .layer(DefaultBodyLimit::disable())
        .fallback(not_found)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route")
}
