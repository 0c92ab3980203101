//! The writer's post-commit seam: what each commit stored, per tenant, handed to subscribers
//! (live updates) only after the transaction committed, so nothing a subscriber sees can still
//! roll back. Costs nothing while nobody subscribes: the writer checks for receivers before it
//! keeps a copy of the deltas.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::broadcast;

use super::rollups::{Delta, Deltas};

/// Commits a slow subscriber may fall behind by before it misses some (it is told how many,
/// `RecvError::Lagged`, and can re-read the rollups).
pub const FEED_CAPACITY: usize = 1_024;

/// What one commit stored for one tenant: the newly inserted events only (duplicates and
/// rejected events are not in it), as hourly rollup deltas.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub tenant: String,
    /// Events newly stored for `tenant` by this commit.
    pub events: usize,
    /// The hourly rollup deltas of those events, in key order.
    pub hourly: Vec<CommittedDelta>,
}

/// One hourly rollup key and what the commit added to it.
#[derive(Debug, Clone, PartialEq)]
pub struct CommittedDelta {
    pub bucket: DateTime<Utc>,
    pub event_type: String,
    /// Absent dimensions are `""`, as in the rollup tables.
    pub provider: String,
    pub model: String,
    pub task_type: String,
    /// An itemized terminal agent event (`rollups::is_itemized`): not spend.
    pub itemized: bool,
    pub delta: Delta,
}

/// The sending side, held by the writer; `subscribe` for a receiver.
pub type CommitFeed = broadcast::Sender<Arc<Committed>>;

/// A feed with no subscribers yet.
pub fn feed() -> CommitFeed {
    broadcast::channel(FEED_CAPACITY).0
}

/// An owned copy of `hourly` (whose keys borrow from the events) for a `Committed`.
pub(crate) fn owned(hourly: &Deltas<'_>) -> Vec<CommittedDelta> {
    hourly
        .iter()
        .map(|((bucket, et, p, m, t, itemized), d)| CommittedDelta {
            bucket: *bucket,
            event_type: (*et).to_string(),
            provider: (*p).to_string(),
            model: (*m).to_string(),
            task_type: (*t).to_string(),
            itemized: *itemized,
            delta: d.clone(),
        })
        .collect()
}
