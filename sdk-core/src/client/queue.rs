//! The hot path: what `track()` does between validation and return. A bounded lock-free
//! `ArrayQueue` plus an atomic byte budget; no lock, no I/O, no allocation beyond the event.

use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;
use uuid::Uuid;

use super::config::{ClientBuilder, OverflowPolicy};
use super::spool::{Spool, SpoolConfig};
use super::stats::{load, Counters, Dropped, Stats};
use super::{AutoPrice, Encoded};
use crate::event::validate;
use crate::{AnalyticsEvent, Error};

/// One accepted event waiting for the worker, already serialized: `track()` serializes once
/// (the size check needs the length anyway), so memory held is what `max_queue_bytes` counts and
/// the worker only concatenates.
#[derive(Debug)]
pub(crate) struct Item {
    pub rec: Encoded,
    pub at: Instant,
}

impl Item {
    /// Serialized size, counted against `max_queue_bytes` until the event is settled.
    pub(crate) fn size(&self) -> usize {
        self.rec.json.len()
    }
}

thread_local! {
    static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(4096));
}

/// The wire JSON in an exactly-sized allocation (serialized into a reused per-thread buffer, then
/// copied once), so held memory matches the byte accounting.
fn encode(event: &AnalyticsEvent) -> Vec<u8> {
    BUF.with_borrow_mut(|b| {
        b.clear();
        // Serializing this type cannot fail (see `AnalyticsEvent::to_json`).
        let _ = serde_json::to_writer(&mut *b, event);
        let out = b.as_slice().to_vec();
        if b.capacity() > 64 * 1024 {
            *b = Vec::with_capacity(4096);
        }
        out
    })
}

const CLOSED: usize = 1 << (usize::BITS - 1);

/// State shared by `track()` callers and the worker.
pub(crate) struct Shared {
    pub queue: ArrayQueue<Item>,
    /// `spool` policy: events the full queue could not take, for the worker to write to disk.
    pub overflow: Option<ArrayQueue<Item>>,
    /// Serialized bytes of queued and in-flight events.
    pub bytes: AtomicUsize,
    /// High bit: closed. Low bits: `track()` calls between their closed check and their push.
    state: AtomicUsize,
    pub counters: Arc<Counters>,
    pub notify: tokio::sync::Notify,
    pub woken: AtomicBool,
    pub spool: Mutex<Option<Spool>>,
    pub started: Instant,
    max_bytes: usize,
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
        let capacity = if cfg.disabled {
            1
        } else {
            cfg.max_queue_events
        };
        Ok(Shared {
            queue: ArrayQueue::new(capacity),
            overflow: (cfg.overflow == OverflowPolicy::Spool && !cfg.disabled)
                .then(|| ArrayQueue::new(capacity.clamp(1, 4096))),
            bytes: AtomicUsize::new(0),
            state: AtomicUsize::new(0),
            counters,
            notify: tokio::sync::Notify::new(),
            woken: AtomicBool::new(false),
            spool: Mutex::new(spool),
            started: Instant::now(),
            max_bytes: cfg.max_queue_bytes,
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
        self.state.fetch_or(CLOSED, AcqRel);
    }

    /// `track()` calls still between their closed check and their push.
    pub(crate) fn tracks_in_progress(&self) -> usize {
        self.state.load(Acquire) & !CLOSED
    }

    fn enter(&self) -> Result<Entered<'_>, Error> {
        let s = self.state.fetch_add(1, Acquire);
        let g = Entered(&self.state);
        if s & CLOSED != 0 {
            return Err(Error::Closed("track() after shutdown".into()));
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
        validate::validate_fields(&event)?;
        let json = encode(&event);
        validate::check_encoded_len(&event, json.len())?;
        if self.disabled {
            return Ok(());
        }
        let _entered = self.enter()?;
        let item = Item {
            rec: Encoded { id: event.id, json },
            at: Instant::now(),
        };
        match self.push(item) {
            Ok(()) => {
                self.accepted();
                Ok(())
            }
            Err(item) => self.overflowed(item),
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
        self.counters.accepted.fetch_add(1, Relaxed);
        if self.queue.len() >= self.flush_at && !self.woken.swap(true, AcqRel) {
            self.notify.notify_one();
        }
    }

    fn push(&self, item: Item) -> Result<(), Item> {
        let size = item.size();
        if self.bytes.fetch_add(size, AcqRel) + size > self.max_bytes {
            self.bytes.fetch_sub(size, AcqRel);
            return Err(item);
        }
        self.queue.push(item).inspect_err(|_| {
            self.bytes.fetch_sub(size, AcqRel);
        })
    }

    #[cold]
    fn overflowed(&self, mut item: Item) -> Result<(), Error> {
        match self.policy {
            OverflowPolicy::DropNewest => {}
            OverflowPolicy::DropOldest => {
                // Bounded: each round evicts one; in-flight bytes cannot be evicted.
                for _ in 0..64 {
                    let Some(old) = self.queue.pop() else { break };
                    self.bytes.fetch_sub(old.size(), AcqRel);
                    self.counters.dropped_evicted.fetch_add(1, Relaxed);
                    match self.push(item) {
                        Ok(()) => {
                            self.accepted();
                            return Ok(());
                        }
                        Err(back) => item = back,
                    }
                }
            }
            OverflowPolicy::Spool => {
                if let Some(ov) = &self.overflow {
                    match ov.push(item) {
                        Ok(()) => {
                            self.counters.accepted.fetch_add(1, Relaxed);
                            if !self.woken.swap(true, AcqRel) {
                                self.notify.notify_one();
                            }
                            return Ok(());
                        }
                        Err(back) => item = back,
                    }
                }
                // The worker is behind on disk writes too: write this one here rather than lose it.
                let written = self.spool().as_mut().map_or(0, |s| s.append(&[item.rec]));
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
            self.bytes.load(Relaxed),
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
            queue_depth: (self.queue.len() + self.overflow.as_ref().map_or(0, ArrayQueue::len))
                as u64
                + load(&c.in_flight_events),
            queue_bytes: self.bytes.load(Relaxed) as u64,
            spooled: load(&c.spooled),
            replayed: load(&c.replayed),
            spool_pending: load(&c.spool_events),
            spool_bytes: load(&c.spool_bytes),
            spool_corrupt: load(&c.spool_corrupt),
            oldest_queued_age,
        }
    }
}
