//! Operational endpoints: `/healthz` (readiness) and `/metrics` (Prometheus text).

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;

use crate::api_error::{ApiError, ErrorBody};
use crate::state::SharedState;

/// The answer of a ready collector.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    #[schema(inline)]
    pub status: HealthStatus,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
}

/// Readiness: 200 when the database answers, else 503. No credential needed.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready: the database answers.", body = Health),
        (status = 503, description = "The database does not answer.", body = ErrorBody,
            headers(("Retry-After" = u32, description = "Seconds to wait before retrying."))),
    )
)]
pub async fn healthz(State(st): State<SharedState>) -> Result<Json<Health>, ApiError> {
    let check = async {
        let c = st.pool.get().await.map_err(|e| e.to_string())?;
        c.simple_query("SELECT 1")
            .await
            .map_err(|e| e.to_string())?;
        Ok::<_, String>(())
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(())) => Ok(Json(Health {
            status: HealthStatus::Ok,
        })),
        Ok(Err(e)) => Err(ApiError::unavailable(&e)),
        Err(_) => Err(ApiError::unavailable(&"timed out")),
    }
}

/// The collector's own metrics, in the Prometheus text format. No credential needed.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses(
        (status = 200, description = "Prometheus text exposition format 0.0.4.",
            body = String, content_type = "text/plain"),
    )
)]
pub async fn metrics(State(st): State<SharedState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        {
            let mut out = st.metrics.render();
            st.live.render_metrics(&mut out);
            out
        },
    )
}
