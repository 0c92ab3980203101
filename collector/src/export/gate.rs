//! The cap on exports running at once (`ServerConfig::max_concurrent_exports`): a sub-state of
//! `AppState`, so it imports nothing from the handlers.

use std::sync::Arc;

use axum::http::StatusCode;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::api_error::ApiError;

/// Seconds a client is told to wait when every export slot is taken.
pub const BUSY_RETRY_AFTER_SECS: u32 = 5;

/// The cap on exports running at once.
#[derive(Debug, Clone)]
pub struct ExportGate {
    permits: Arc<Semaphore>,
}

impl ExportGate {
    pub fn new(max: usize) -> ExportGate {
        ExportGate {
            permits: Arc::new(Semaphore::new(max)),
        }
    }

    /// A slot for one export, held until its body ends; 503 + Retry-After when all are taken.
    pub fn try_enter(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "exports_busy",
                "the most exports that may run at once are running, retry later",
            )
            .with_retry_after(BUSY_RETRY_AFTER_SECS)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_up_to_its_cap() {
        let gate = ExportGate::new(1);
        let held = gate.try_enter().expect("a slot");
        let e = gate.try_enter().expect_err("full");
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after, Some(BUSY_RETRY_AFTER_SECS));
        drop(held);
        assert!(gate.try_enter().is_ok());
    }
}
