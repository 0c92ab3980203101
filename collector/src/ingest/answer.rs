//! Answering a batch: hand the admitted events to the writer, wait for their commit, and say
//! per event what happened (`{accepted, duplicates, rejected: [...]}`).

use std::sync::atomic::Ordering;

use agenttally::AnalyticsEvent;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api_error::ApiError;
use crate::state::AppState;
use crate::store::writer::Outcome;

/// A rejected event and the reason it is counted under in the metrics.
pub type Rejection = (RejectedEvent, &'static str);

/// The outcome of admission (`super::admit`), which the answer is built from: events to store (with their index in the batch) and refusals.
#[derive(Debug, Default)]
pub struct Admitted {
    pub events: Vec<(usize, AnalyticsEvent)>,
    pub rejected: Vec<Rejection>,
}

/// The answer to a batch.
#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
pub struct BatchResponse {
    /// Events newly stored by this request.
    pub accepted: usize,
    /// Events already stored before (same tenant_id and id): safe to drop, nothing to resend.
    pub duplicates: usize,
    /// Events refused, each by itself; the rest of the batch is stored.
    pub rejected: Vec<RejectedEvent>,
}

/// One refused event.
#[derive(Debug, Serialize, PartialEq, Eq, ToSchema)]
pub struct RejectedEvent {
    /// Position in the batch.
    pub index: usize,
    /// The event's id whenever it could be read (`null` only when it could not).
    #[schema(required = true)]
    pub id: Option<Uuid>,
    /// What was wrong, naming the field (`batch[3].duration_ms: must be >= 0, got -5`).
    pub error: String,
    /// Whether resending this event unchanged (same id) may succeed. Always present; the client
    /// resends exactly the `true` ones. Every rejection the collector makes today is final.
    pub retryable: bool,
}

/// Hand the admitted events to the writer and answer once they are committed: the outcome per
/// event, rejections in batch order. 503 (nothing acknowledged) when the writer cannot take or
/// commit them.
pub async fn store_and_answer(
    st: &AppState,
    admitted: Admitted,
) -> Result<BatchResponse, ApiError> {
    let Admitted {
        events: valid,
        mut rejected,
    } = admitted;
    let indexes: Vec<(usize, Uuid)> = valid.iter().map(|(i, e)| (*i, e.id)).collect();
    // Priced here, not in a route, so every ingest route stores the same costs.
    let books = st.prices.books();
    let events: Vec<AnalyticsEvent> = valid
        .into_iter()
        .map(|(_, mut e)| {
            crate::pricing::price_at_ingest(books.for_tenant(&e.tenant_id), &mut e);
            e
        })
        .collect();
    let outcomes = st
        .writer
        .write(events)
        .await
        .map_err(|e| ApiError::retry_later(&e.0))?;
    let (mut accepted, mut duplicates) = (0, 0);
    for ((index, id), outcome) in indexes.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Inserted => accepted += 1,
            Outcome::Duplicate => duplicates += 1,
            // Final: the writer reports only a row the database refused for this event alone
            // (a data error); every other storage failure answers the whole request 503.
            Outcome::Failed(m) => rejected.push((
                RejectedEvent {
                    index,
                    id: Some(id),
                    error: format!("batch[{index}]: could not be stored: {m}"),
                    retryable: false,
                },
                "storage",
            )),
        }
    }
    let m = &st.metrics;
    m.accepted.fetch_add(accepted as u64, Ordering::Relaxed);
    m.duplicates.fetch_add(duplicates as u64, Ordering::Relaxed);
    for (_, reason) in &rejected {
        m.reject(reason);
    }
    let mut rejected: Vec<RejectedEvent> = rejected.into_iter().map(|(r, _)| r).collect();
    rejected.sort_by_key(|r| r.index);
    Ok(BatchResponse {
        accepted,
        duplicates,
        rejected,
    })
}
