//! The writer's post-commit seam: what each commit stored, per tenant, handed to subscribers
//! (live updates) only after the transaction committed, so nothing a subscriber sees can still
//! roll back. Costs nothing while nobody subscribes: the writer checks for receivers before it
//! keeps a copy of the deltas, and keeps the newest events of a commit (`recent`) only while
//! someone holds a `RecentInterest` (an open live connection).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agenttally::AnalyticsEvent;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::rollups::{Delta, Deltas};

/// The newest events of one tenant a commit keeps for `Committed::recent`, at most.
pub const RECENT_PER_COMMIT: usize = 20;

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
    /// The newest of those events (by timestamp, newest first, at most `RECENT_PER_COMMIT`);
    /// empty unless someone held a `RecentInterest` when the commit was made.
    pub recent: Vec<RecentEvent>,
}

/// One stored event as the live updates show it.
#[derive(Debug, Clone, PartialEq)]
pub struct RecentEvent {
    pub id: Uuid,
    pub ts: DateTime<Utc>,
    pub event_type: &'static str,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub task_type: Option<String>,
    pub agent_id: Option<String>,
    /// Absent when the event has no cost (unpriced).
    pub cost_usd: Option<Decimal>,
    pub success: bool,
}

impl RecentEvent {
    fn of(e: &AnalyticsEvent) -> Self {
        RecentEvent {
            id: e.id,
            ts: e.timestamp,
            event_type: e.event_type.as_str(),
            provider: e.provider.clone(),
            model: e.model.clone(),
            task_type: e.task_type.clone(),
            agent_id: e.agent_id.clone(),
            cost_usd: e.cost_usd,
            success: e.success,
        }
    }
}

/// The newest `RECENT_PER_COMMIT` of `events` (all stored for one tenant), newest first; ties
/// broken by id, so the choice does not depend on the order events arrived in.
pub(crate) fn recent(events: &[&AnalyticsEvent]) -> Vec<RecentEvent> {
    let newest_first = |a: &&AnalyticsEvent, b: &&AnalyticsEvent| {
        b.timestamp.cmp(&a.timestamp).then(b.id.cmp(&a.id))
    };
    let mut picked: Vec<&AnalyticsEvent> = events.to_vec();
    if picked.len() > RECENT_PER_COMMIT {
        picked.select_nth_unstable_by(RECENT_PER_COMMIT - 1, newest_first);
        picked.truncate(RECENT_PER_COMMIT);
    }
    picked.sort_unstable_by(newest_first);
    picked.into_iter().map(RecentEvent::of).collect()
}

/// What the writer keeps of a commit for the subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Keep {
    /// The hourly deltas (anyone subscribed).
    pub deltas: bool,
    /// The newest events too (someone holds a `RecentInterest`).
    pub recent: bool,
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
    /// An itemized terminal agent event (`pricing::is_itemized`): not spend.
    pub itemized: bool,
    pub delta: Delta,
}

/// The sending side, held by the writer; `subscribe` for a receiver.
#[derive(Debug, Clone)]
pub struct CommitFeed {
    tx: broadcast::Sender<Arc<Committed>>,
    /// Live `RecentInterest`s.
    recent_wanted: Arc<AtomicUsize>,
}

/// A feed with no subscribers yet.
pub fn feed() -> CommitFeed {
    CommitFeed {
        tx: broadcast::channel(FEED_CAPACITY).0,
        recent_wanted: Arc::new(AtomicUsize::new(0)),
    }
}

impl CommitFeed {
    /// What each commit stores from now on, per tenant.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Committed>> {
        self.tx.subscribe()
    }

    /// While the returned value lives, commits carry their newest events (`Committed::recent`).
    pub fn want_recent(&self) -> RecentInterest {
        self.recent_wanted.fetch_add(1, Ordering::Relaxed);
        RecentInterest(self.recent_wanted.clone())
    }

    /// What the writer should keep of the next commit.
    pub(crate) fn keep(&self) -> Keep {
        let deltas = self.tx.receiver_count() > 0;
        Keep {
            deltas,
            recent: deltas && self.recent_wanted.load(Ordering::Relaxed) > 0,
        }
    }

    /// Publish one commit's record; an error only means every subscriber left meanwhile.
    pub(crate) fn send(&self, c: Committed) {
        let _ = self.tx.send(Arc::new(c));
    }
}

/// Interest in `Committed::recent`, held by each open live connection; dropping it withdraws it.
#[derive(Debug)]
pub struct RecentInterest(Arc<AtomicUsize>);

impl Drop for RecentInterest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use agenttally::ProviderEvent;

    fn at(secs: i64) -> AnalyticsEvent {
        let mut e = ProviderEvent::api_call("acme", "openai", "gpt-4o")
            .build()
            .expect("event");
        e.timestamp = DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time");
        e
    }

    #[test]
    fn recent_keeps_the_newest_first_and_at_most_its_cap() {
        let events: Vec<AnalyticsEvent> = (0..50).map(|i| at((i * 7) % 50)).collect();
        let refs: Vec<&AnalyticsEvent> = events.iter().collect();
        let r = recent(&refs);
        assert_eq!(r.len(), RECENT_PER_COMMIT);
        let secs: Vec<i64> = r.iter().map(|e| e.ts.timestamp() - 1_800_000_000).collect();
        assert_eq!(secs, (30..50).rev().collect::<Vec<_>>());
        let few = recent(&refs[..3]);
        assert_eq!(few.len(), 3);
        assert!(few.windows(2).all(|w| w[0].ts >= w[1].ts));
    }

    #[test]
    fn recent_is_kept_only_while_someone_wants_it() {
        let f = feed();
        assert_eq!(f.keep(), Keep::default());
        let _rx = f.subscribe();
        assert_eq!(
            f.keep(),
            Keep {
                deltas: true,
                recent: false
            }
        );
        let interest = f.want_recent();
        assert_eq!(
            f.keep(),
            Keep {
                deltas: true,
                recent: true
            }
        );
        drop(interest);
        assert!(!f.keep().recent);
    }
}
