//! Dashboard views: a successful read by a JWT user records a `customer.dashboard_view` event
//! (user_id = the token's `sub`) for the tenant through the writer, at most once per tenant and
//! user per `EVERY` in this process (`--record-dashboard-views`, on by default). Recorded after
//! the answer, off the request's path.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use agenttally::CustomerEvent;

use crate::store::writer::{Outcome, WriterHandle};

/// At most one view per tenant and user in this long.
pub const EVERY: Duration = Duration::from_secs(30 * 60);
/// Remembered (tenant, user) pairs; past it, the ones older than `EVERY` are forgotten.
const MAX_REMEMBERED: usize = 100_000;

/// The last view recorded per (tenant, user).
#[derive(Debug, Default)]
pub struct DashboardViews {
    enabled: bool,
    last: Mutex<HashMap<(String, String), Instant>>,
}

impl DashboardViews {
    pub fn new(enabled: bool) -> DashboardViews {
        DashboardViews {
            enabled,
            last: Mutex::default(),
        }
    }

    /// True when a view of `tenant` by `user` is due now (and remember it as recorded).
    fn due(&self, tenant: &str, user: &str) -> bool {
        if !self.enabled {
            return false;
        }
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let key = (tenant.to_string(), user.to_string());
        if last.get(&key).is_some_and(|at| at.elapsed() < EVERY) {
            return false;
        }
        if last.len() >= MAX_REMEMBERED {
            last.retain(|_, at| at.elapsed() < EVERY);
        }
        last.insert(key, Instant::now());
        true
    }

    /// Record a view of `tenant` by `user` unless one was recorded within `EVERY`.
    pub fn viewed(&self, writer: &WriterHandle, tenant: &str, user: &str) {
        if !self.due(tenant, user) {
            return;
        }
        let event = match CustomerEvent::dashboard_view(tenant, user).build() {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("dashboard view of `{tenant}` by `{user}` not recorded: {e}");
                return;
            }
        };
        let writer = writer.clone();
        let tenant = tenant.to_string();
        tokio::spawn(async move {
            match writer.write(vec![event]).await {
                Ok(o) if matches!(o.first(), Some(Outcome::Failed(_))) => {
                    tracing::warn!("dashboard view of `{tenant}` refused: {o:?}");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("dashboard view of `{tenant}` not stored: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_view_per_tenant_and_user_per_half_hour() {
        let v = DashboardViews::new(true);
        assert!(v.due("acme", "u1"));
        assert!(!v.due("acme", "u1"));
        assert!(v.due("acme", "u2"));
        assert!(v.due("globex", "u1"));
        assert!(!DashboardViews::new(false).due("acme", "u1"));
    }
}
