//! Counters the client keeps with relaxed atomics (the hot path pays one add), and the
//! [`Stats`] snapshot `Client::stats()` returns.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub accepted: AtomicU64,
    pub sent: AtomicU64,
    pub duplicates: AtomicU64,
    pub retried: AtomicU64,
    pub requests: AtomicU64,
    pub rejected: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_evicted: AtomicU64,
    pub dropped_undeliverable: AtomicU64,
    pub dropped_shutdown: AtomicU64,
    pub dropped_spool_full: AtomicU64,
    pub dropped_spool_io: AtomicU64,
    pub spooled: AtomicU64,
    pub replayed: AtomicU64,
    pub spool_corrupt: AtomicU64,
    pub spool_events: AtomicU64,
    pub spool_bytes: AtomicU64,
    pub in_flight_events: AtomicU64,
    /// Delivery requests running now (batches and spool replays).
    pub requests_in_flight: AtomicU64,
    /// The worker's current limit on requests at once (0 for a disabled client).
    pub in_flight_limit: AtomicU64,
    /// The event the worker has taken off the queue for its next batch (0 or 1).
    pub head_events: AtomicU64,
    /// Nanoseconds since the client started at which the oldest held event was accepted; 0 = none.
    pub oldest_at_ns: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: usize) {
        if n > 0 {
            c.fetch_add(n as u64, Relaxed);
        }
    }

    /// Accepted events lost on the way to the collector (not delivered, not on disk): what makes
    /// a `flush` fail.
    pub(crate) fn lost(&self) -> u64 {
        [
            &self.dropped_undeliverable,
            &self.dropped_spool_full,
            &self.dropped_spool_io,
            &self.spool_corrupt,
        ]
        .iter()
        .map(|c| c.load(Relaxed))
        .sum()
    }
}

/// Events dropped, by reason. Every accepted event ends up sent, rejected, spooled or here.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dropped {
    /// Refused by `track()` because the queue was full (`drop_newest`). Never accepted.
    pub queue_full: u64,
    /// Evicted from the queue to make room for a newer event (`drop_oldest`).
    pub evicted: u64,
    /// Retry budget spent (or a shutdown deadline passed) with no spool to keep them.
    pub undeliverable: u64,
    /// Still queued when the shutdown deadline passed, with no spool.
    pub shutdown: u64,
    /// Deleted from the spool because it reached `spool_max_bytes` (oldest first).
    pub spool_full: u64,
    /// A spool write failed.
    pub spool_io: u64,
}

impl Dropped {
    /// All drops, `queue_full` included.
    pub fn total(&self) -> u64 {
        self.queue_full
            + self.evicted
            + self.undeliverable
            + self.shutdown
            + self.spool_full
            + self.spool_io
    }
}

/// A snapshot of the client's counters and gauges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// `track()` calls that returned `Ok` (disabled clients count nothing).
    pub accepted: u64,
    /// Events the collector acknowledged as newly stored.
    pub sent: u64,
    /// Events the collector acknowledged as already stored (a retry after a lost ack, or a spool
    /// replay of an event that had been delivered): delivered, not stored twice.
    pub duplicates: u64,
    /// Event sends beyond the first (retries of whole batches and of per-event retryable errors).
    pub retried: u64,
    /// HTTP requests made (attempts).
    pub requests: u64,
    /// Events the collector refused for good (4xx other than 408/413/429, per-event rejections).
    pub rejected: u64,
    /// Dropped events, by reason.
    pub dropped: Dropped,
    /// Events held in memory: queued and in flight.
    pub queue_depth: u64,
    /// Memory held by queued and in-flight events (the figure `max_queue_bytes` bounds).
    pub queue_bytes: u64,
    /// Events written to the spool (overflow, retry budget spent, shutdown).
    pub spooled: u64,
    /// Events read back from the spool for delivery.
    pub replayed: u64,
    /// Events on disk in the spool now.
    pub spool_pending: u64,
    /// Bytes on disk in the spool now.
    pub spool_bytes: u64,
    /// Spool records skipped because their checksum or length was bad (e.g. a torn last write).
    pub spool_corrupt: u64,
    /// Age of the oldest event held in memory (zero when none).
    pub oldest_queued_age: Duration,
    /// Delivery requests running now (batches and spool replays).
    pub requests_in_flight: u64,
    /// How many requests the client lets run at once now: it grows while a backlog keeps every
    /// slot busy, up to `max_in_flight`, and halves when the collector asks to slow down
    /// (0 for a disabled client).
    pub in_flight_limit: u64,
}

impl Stats {
    /// Events acknowledged by the collector (`sent + duplicates`).
    pub fn delivered(&self) -> u64 {
        self.sent + self.duplicates
    }
}

pub(crate) fn load(c: &AtomicU64) -> u64 {
    c.load(Relaxed)
}
