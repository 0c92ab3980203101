//! The hot path: what `track()` does between validation and return. A lock-free segmented
//! queue that events move into (`segqueue.rs`), bounded by an atomic memory budget: no lock, no
//! I/O, no serialization; no allocation either while the worker keeps up, since the queue reuses
//! the blocks of 127 slots the worker drained.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::config::{ClientBuilder, OverflowPolicy};
use super::segqueue::SegQueue;
use super::spool::{Spool, SpoolConfig};
use super::stats::{load, Counters, Dropped, Stats};
use super::{AutoPrice, Encoded};
use crate::event::{size, validate};
use crate::{AnalyticsEvent, Error};

/// One accepted event waiting for the worker, as the caller made it: `track()` only validates
/// and moves it into the queue; the worker serializes it when it takes it.
#[derive(Debug)]
pub(crate) struct Item {
    pub event: AnalyticsEvent,
    /// Memory the event holds while queued (its queue slot and its heap), counted against
    /// `max_queue_bytes`.
    pub held: usize,
    pub at: Instant,
}

/// An event the worker has taken off the queue and serialized (in flight or next in line).
#[derive(Debug)]
pub(crate) struct Ready {
    pub rec: Encoded,
    /// Memory held once serialized, counted against `max_queue_bytes` until settled.
    pub held: usize,
    pub at: Instant,
}

impl Item {
    /// The event's wire record (id and JSON).
    pub(crate) fn record(&self) -> Encoded {
        Encoded {
            id: self.event.id,
            json: encode(&self.event),
        }
    }

    /// Serialize for the wire. Returns how the memory held changes (the caller applies it to
    /// the budget, once per batch rather than once per event).
    pub(crate) fn encode(self) -> (Ready, isize) {
        let rec = self.record();
        let held = size::chunk(rec.json.len()) + std::mem::size_of::<Encoded>();
        let delta = held as isize - self.held as isize;
        let ready = Ready {
            rec,
            held,
            at: self.at,
        };
        (ready, delta)
    }
}

impl Ready {
    /// Serialized size, for the batch limits.
    pub(crate) fn size(&self) -> usize {
        self.rec.json.len()
    }
}

/// The wire JSON in an exactly-sized allocation.
pub(crate) fn encode(event: &AnalyticsEvent) -> Vec<u8> {
    crate::event::json::to_vec(event)
}

/// Memory of one queue slot: the item and the slot's state word (blocks of 127 slots). The blocks
/// kept for reuse (at most 2 per queue, ~57 KB each) are a fixed cost outside the budget, like
/// the unused slots of the block being filled.
const SLOT: usize = std::mem::size_of::<Item>() + std::mem::size_of::<usize>();

/// `spool` policy: events waiting for the worker to write them to disk, at most.
const OVERFLOW_EVENTS: usize = 4096;

/// Why `reserve` refused room for an event.
enum Refused {
    Full,
    Closed,
}

fn closed() -> Error {
    Error::Closed("track() after shutdown".into())
}

/// The budget word: events above this bit, bytes below (1 TiB; the builder caps both).
pub(crate) const EVENT_SHIFT: u32 = 40;
const ONE_EVENT: u64 = 1 << EVENT_SHIFT;
const BYTES: u64 = ONE_EVENT - 1;

const CLOSED: usize = 1 << (usize::BITS - 1);

/// State shared by `track()` callers and the worker.
pub(crate) struct Shared {
    /// Unbounded in itself (blocks of slots allocated as it grows, at most a few drained ones
    /// kept for reuse, the rest freed); bounded by `max_queue_events` and the `bytes` budget.
    pub queue: SegQueue<Item>,
    /// `spool` policy: events the full queue could not take, for the worker to write to disk.
    pub overflow: Option<SegQueue<Item>>,
    /// Queued events (high bits) and the memory held by queued and in-flight events (low bits):
    /// one atomic add reserves both on the hot path.
    budget: AtomicU64,
    /// High bit: closed. Low bits: `track()` calls between their closed check and their push.
    state: AtomicUsize,
    pub counters: Arc<Counters>,
    pub notify: tokio::sync::Notify,
    pub woken: AtomicBool,
    pub spool: Mutex<Option<Spool>>,
    pub started: Instant,
    max_bytes: usize,
    max_events: usize,
    flush_at: usize,
    policy: OverflowPolicy,
    disabled: bool,
    pricer: Option<Arc<dyn AutoPrice>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Entered<'a>(&'a AtomicUsize);

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Release);
    }
}

impl Shared {
    pub(crate) fn new(cfg: &ClientBuilder) -> Result<Self, Error> {
        let counters = Arc::new(Counters::default());
        let spool = match (&cfg.spool_dir, cfg.disabled) {
            (Some(dir), false) => Some(
                Spool::open(
                    dir,
                    SpoolConfig {
                        fsync: cfg.spool_fsync,
                        max_bytes: cfg.spool_max_bytes,
                        segment_bytes: cfg.spool_segment_bytes,
                    },
                    counters.clone(),
                )
                .map_err(|e| Error::Io(format!("spool_dir {}: {e}", dir.display())))?,
            ),
            _ => None,
        };
        Ok(Shared {
            queue: SegQueue::new(),
            overflow: (cfg.overflow == OverflowPolicy::Spool && !cfg.disabled).then(SegQueue::new),
            budget: AtomicU64::new(0),
            state: AtomicUsize::new(0),
            counters,
            notify: tokio::sync::Notify::new(),
            woken: AtomicBool::new(false),
            spool: Mutex::new(spool),
            started: Instant::now(),
            max_bytes: cfg.max_queue_bytes,
            max_events: cfg.max_queue_events,
            flush_at: cfg.flush_at,
            policy: cfg.overflow,
            disabled: cfg.disabled,
            pricer: cfg.price_book.clone(),
        })
    }

    pub(crate) fn disabled(&self) -> bool {
        self.disabled
    }

    pub(crate) fn close(&self) {
        // SeqCst with the budget add and load: a `track()` either sees the close or is seen by
        // the worker's last look at the budget (see `reserve`).
        self.state.fetch_or(CLOSED, SeqCst);
    }

    fn closed(&self) -> bool {
        self.state.load(SeqCst) & CLOSED != 0
    }

    /// Events reserved and not yet taken by the worker (pushes in progress included).
    pub(crate) fn queued_events(&self) -> usize {
        (self.budget.load(SeqCst) >> EVENT_SHIFT) as usize
    }

    /// Overflow-path `track()` calls between their closed check and their push.
    pub(crate) fn tracks_in_progress(&self) -> usize {
        self.state.load(Acquire) & !CLOSED
    }

    fn enter(&self) -> Result<Entered<'_>, Error> {
        let s = self.state.fetch_add(1, Acquire);
        let g = Entered(&self.state);
        if s & CLOSED != 0 {
            return Err(closed());
        }
        Ok(g)
    }

    pub(crate) fn spool(&self) -> std::sync::MutexGuard<'_, Option<Spool>> {
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn track(&self, mut event: AnalyticsEvent) -> Result<(), Error> {
        if event.id.is_nil() {
            event.id = Uuid::now_v7();
        }
        self.auto_price(&mut event);
        let metadata = validate::validate_measured(&event)?;
        if self.disabled {
            return Ok(());
        }
        let held = SLOT + size::heap(&event, metadata.heap);
        let at = Instant::now();
        // Room first, then the item: a refused event is not copied into an item on the way in
        // and out of `reserve` (the event is ~400 bytes).
        match self.reserve(held) {
            Ok(()) => {
                self.queue.push(Item { event, held, at });
                self.accepted();
                Ok(())
            }
            Err(Refused::Full) => self.overflowed(Item { event, held, at }),
            Err(Refused::Closed) => Err(closed()),
        }
    }

    /// Price events that carry usage but no cost (a caller-supplied cost or status wins).
    pub(crate) fn auto_price(&self, event: &mut AnalyticsEvent) {
        if let Some(p) = &self.pricer {
            if event.cost_usd.is_none() && event.cost_status.is_none() && event.usage.is_some() {
                p.price_event(event);
            }
        }
    }

    fn accepted(&self) {
        // Every `flush_at`-th event wakes the worker (it also wakes on its interval): no queue
        // length to read on the hot path.
        let n = self.counters.accepted.fetch_add(1, Relaxed) + 1;
        if n.is_multiple_of(self.flush_at as u64) && !self.woken.swap(true, AcqRel) {
            self.notify.notify_one();
        }
    }

    /// Reserve room for one event holding `held` bytes within both budgets. On `Ok` the caller
    /// pushes the event at once (see the closed check below).
    #[inline]
    fn reserve(&self, held: usize) -> Result<(), Refused> {
        let add = ONE_EVENT | held as u64;
        let old = self.budget.fetch_add(add, SeqCst);
        let (events, bytes) = ((old >> EVENT_SHIFT) as usize, (old & BYTES) as usize);
        // An event larger than the whole budget still goes into an empty queue. The worker
        // applies the events it took off the queue once per batch, so a full count is confirmed
        // against the queue itself (off the hot path: only when the count says full).
        if (bytes + held > self.max_bytes && bytes > 0)
            || (events >= self.max_events && self.queue.len() >= self.max_events)
        {
            self.budget.fetch_sub(add, AcqRel);
            return Err(Refused::Full);
        }
        // Reserved, then the closed check: the worker looks at the budget after closing, so
        // either it sees this reservation and waits for the push, or this sees the close.
        if self.closed() {
            self.budget.fetch_sub(add, AcqRel);
            return Err(Refused::Closed);
        }
        Ok(())
    }

    /// Settle `events` that held `bytes` (delivered, dropped, spooled or evicted).
    pub(crate) fn release(&self, events: usize, bytes: usize) {
        let v = ((events as u64) << EVENT_SHIFT) | bytes as u64;
        if v > 0 {
            self.budget.fetch_sub(v, AcqRel);
        }
    }

    /// Apply the change in memory held when events were serialized.
    pub(crate) fn adjust(&self, delta: isize) {
        match delta {
            0 => {}
            d if d > 0 => {
                self.budget.fetch_add(d.unsigned_abs() as u64, AcqRel);
            }
            d => {
                self.budget.fetch_sub(d.unsigned_abs() as u64, AcqRel);
            }
        }
    }

    /// Memory held by queued and in-flight events.
    pub(crate) fn held_bytes(&self) -> usize {
        (self.budget.load(Relaxed) & BYTES) as usize
    }

    #[cold]
    fn overflowed(&self, item: Item) -> Result<(), Error> {
        let _entered = self.enter()?;
        match self.policy {
            OverflowPolicy::DropNewest => {}
            OverflowPolicy::DropOldest => {
                // Bounded: each round evicts one; in-flight bytes cannot be evicted. An empty
                // queue means the worker took it all since the push was refused: try again.
                for _ in 0..64 {
                    if let Some(old) = self.queue.pop() {
                        self.release(1, old.held);
                        self.counters.dropped_evicted.fetch_add(1, Relaxed);
                    }
                    match self.reserve(item.held) {
                        Ok(()) => {
                            self.queue.push(item);
                            self.accepted();
                            return Ok(());
                        }
                        Err(Refused::Full) => {}
                        Err(Refused::Closed) => return Err(closed()),
                    }
                }
            }
            OverflowPolicy::Spool => {
                if let Some(ov) = self.overflow.as_ref().filter(|o| o.len() < OVERFLOW_EVENTS) {
                    ov.push(item);
                    self.counters.accepted.fetch_add(1, Relaxed);
                    if !self.woken.swap(true, AcqRel) {
                        self.notify.notify_one();
                    }
                    return Ok(());
                }
                // The worker is behind on disk writes too: write this one here rather than lose it.
                let written = self
                    .spool()
                    .as_mut()
                    .map_or(0, |s| s.append(&[item.record()]));
                if written == 1 {
                    self.counters.accepted.fetch_add(1, Relaxed);
                    return Ok(());
                }
                return Err(Error::Io("spool write failed; event dropped".into()));
            }
        }
        self.counters.dropped_queue_full.fetch_add(1, Relaxed);
        Err(Error::QueueFull(format!(
            "{} events / {} bytes held (max_queue_bytes {}); the event was dropped",
            self.queue.len(),
            self.held_bytes(),
            self.max_bytes
        )))
    }

    pub(crate) fn stats(&self) -> Stats {
        let c = &*self.counters;
        let oldest = load(&c.oldest_at_ns);
        let oldest_queued_age = if oldest == 0 {
            Duration::ZERO
        } else {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_nanos(oldest - 1))
        };
        Stats {
            accepted: load(&c.accepted),
            sent: load(&c.sent),
            duplicates: load(&c.duplicates),
            retried: load(&c.retried),
            requests: load(&c.requests),
            rejected: load(&c.rejected),
            dropped: Dropped {
                queue_full: load(&c.dropped_queue_full),
                evicted: load(&c.dropped_evicted),
                undeliverable: load(&c.dropped_undeliverable),
                shutdown: load(&c.dropped_shutdown),
                spool_full: load(&c.dropped_spool_full),
                spool_io: load(&c.dropped_spool_io),
            },
            queue_depth: (self.queue.len() + self.overflow.as_ref().map_or(0, SegQueue::len))
                as u64
                + load(&c.in_flight_events)
                + load(&c.head_events),
            queue_bytes: self.held_bytes() as u64,
            spooled: load(&c.spooled),
            replayed: load(&c.replayed),
            spool_pending: load(&c.spool_events),
            spool_bytes: load(&c.spool_bytes),
            spool_corrupt: load(&c.spool_corrupt),
            oldest_queued_age,
            requests_in_flight: load(&c.requests_in_flight),
            in_flight_limit: load(&c.in_flight_limit),
        }
    }
}
