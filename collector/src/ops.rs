//! Operational endpoints: `/healthz` (readiness) and `/metrics` (Prometheus text).

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use crate::api_error::ApiError;
use crate::state::SharedState;

/// Readiness: 200 when the database answers, else 503.
pub async fn healthz(State(st): State<SharedState>) -> Result<Json<serde_json::Value>, ApiError> {
    let check = async {
        let c = st.pool.get().await.map_err(|e| e.to_string())?;
        c.simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(())) => Ok(Json(serde_json::json!({"status": "ok"}))),
        Ok(Err(e)) => Err(ApiError::unavailable(&e)),
        Err(_) => Err(ApiError::unavailable(&"timed out")),
    }
}

pub async fn metrics(State(st): State<SharedState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(),
    )
}
