//! The worker: its own thread running a current-thread tokio runtime. It takes batches off the
//! queue (by count, bytes and interval), sends them with retries, spools what cannot be
//! delivered, replays the spool, and answers `flush`/`shutdown`.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::Deserialize;
use tokio::sync::{mpsc as tmpsc, watch};
use tokio::task::{Id, JoinError, JoinSet};

use super::config::ClientBuilder;
use super::queue::{Ready, Shared};
use super::spool::Spool;
use super::stats::Counters;
use super::transport::{Response, Transport, TransportError};
use super::Encoded;
use crate::event::{encoded_batch_len, now_micros, pack_encoded};
use crate::{Batch, BatchLimits};

pub(crate) enum Ctrl {
    /// Answered `true` once everything accepted before it is delivered, `false` if some of it
    /// was dropped on the way (spool full, spool I/O, no spool when the retry budget ran out).
    Flush { reply: mpsc::Sender<bool> },
    Shutdown {
        deadline: Instant,
        reply: mpsc::Sender<()>,
    },
}

/// Settings a delivery task needs.
struct Policy {
    transport: Arc<dyn Transport>,
    counters: Arc<Counters>,
    max_retry_time: Duration,
    min_delay: Duration,
    max_delay: Duration,
    /// The last answer of any delivery task asked for a retry (5xx, 429, timeout, no
    /// connection): known while tasks still retry, before their outcome says so.
    failing: AtomicBool,
}

/// What the worker remembers about a task in flight, to settle its events when it returns.
struct Meta {
    /// Smallest pop sequence among its queue events (`u64::MAX` for spool replays).
    min_seq: u64,
    events: usize,
    bytes: usize,
    oldest: Option<Instant>,
    segment: Option<u64>,
    /// When its first request was sent.
    sent: Instant,
}

/// A `flush` waiting for its events: first those queued before it (by pop sequence), then the
/// spool segments that existed once those were settled (they may hold some of them, and hold
/// what overflowed or was left by an earlier process).
struct PendingFlush {
    /// Every event with a pop sequence below it must be settled.
    target: u64,
    /// Once the queue part is done: `Some(newest segment then)`, or `Some(None)` for no spool
    /// work; the flush is done when no segment at or below it is left.
    spool_upto: Option<Option<u64>>,
    /// Events lost (dropped after acceptance) when the flush began.
    lost_at: u64,
    reply: mpsc::Sender<bool>,
}

/// What a delivery task hands back.
struct Outcome {
    /// Events not delivered within the retry budget or before the stop deadline.
    undelivered: Vec<Encoded>,
    /// Whether the collector answered the last request like a working collector.
    healthy: bool,
    /// Whether any answer asked to slow down or come back later (408, 429, 5xx, a failed or
    /// timed-out request, a per-event retryable rejection).
    congested: bool,
}

/// How many requests may be in flight at once: additive increase, multiplicative decrease, as
/// TCP and the adaptive-concurrency HTTP clients of log shippers do. The limit starts at
/// [`INITIAL_IN_FLIGHT`](super::config::defaults::INITIAL_IN_FLIGHT) (or `max_in_flight`, if
/// lower), grows by one for each request answered while every slot was busy (a backlog is
/// waiting: more requests at once make larger commits on the collector and drain it sooner), up
/// to `max_in_flight`, and halves when an answer asks to slow down. Requests sent before the last
/// cut do not cut it again, so one overloaded moment halves it once, not once per request.
#[derive(Debug)]
struct Concurrency {
    cap: usize,
    limit: usize,
    cut_at: Option<Instant>,
}

impl Concurrency {
    fn new(cap: usize) -> Self {
        Concurrency {
            cap,
            limit: cap.clamp(1, super::config::defaults::INITIAL_IN_FLIGHT),
            cut_at: None,
        }
    }

    fn limit(&self) -> usize {
        self.limit
    }

    /// A delivery whose first request was sent at `sent` has finished; `saturated`: every slot
    /// was busy until it did.
    fn answered(&mut self, sent: Instant, congested: bool, saturated: bool, now: Instant) {
        if congested {
            if self.cut_at.is_none_or(|t| sent >= t) {
                self.limit = (self.limit / 2).max(1);
                self.cut_at = Some(now);
                tracing::debug!(limit = self.limit, "agenttally requests in flight halved");
            }
        } else if saturated && self.limit < self.cap {
            self.limit += 1;
        }
    }
}

pub(crate) struct WorkerState {
    shared: Arc<Shared>,
    policy: Arc<Policy>,
    rx: tmpsc::UnboundedReceiver<Ctrl>,
    flush_at: usize,
    flush_interval: Duration,
    in_flight: Concurrency,
    has_spool: bool,
    tasks: JoinSet<Outcome>,
    meta: HashMap<Id, Meta>,
    head: Option<(u64, Ready)>,
    /// Change in memory held by events serialized since the budget was last adjusted.
    delta: isize,
    /// Events taken off the queue since the budget was last adjusted.
    popped: usize,
    next_seq: u64,
    flushes: Vec<PendingFlush>,
    stop_tx: watch::Sender<Option<Instant>>,
    /// Shutdown: (deadline, when tasks must give up, reply).
    stopping: Option<(Instant, Instant, mpsc::Sender<()>)>,
    replay: VecDeque<(u64, Vec<Encoded>)>,
    replays_in_flight: usize,
    healthy: bool,
    next_probe: Instant,
}

impl WorkerState {
    pub(crate) fn new(
        shared: Arc<Shared>,
        transport: Arc<dyn Transport>,
        cfg: &ClientBuilder,
        rx: tmpsc::UnboundedReceiver<Ctrl>,
    ) -> Self {
        let has_spool = shared.spool().is_some();
        let w = WorkerState {
            policy: Arc::new(Policy {
                transport,
                counters: shared.counters.clone(),
                max_retry_time: cfg.max_retry_time,
                min_delay: cfg.retry_min_delay,
                max_delay: cfg.retry_max_delay,
                failing: AtomicBool::new(false),
            }),
            shared,
            rx,
            flush_at: cfg.flush_at,
            flush_interval: cfg.flush_interval,
            in_flight: Concurrency::new(cfg.max_in_flight),
            has_spool,
            tasks: JoinSet::new(),
            meta: HashMap::new(),
            head: None,
            delta: 0,
            popped: 0,
            next_seq: 0,
            flushes: Vec::new(),
            stop_tx: watch::channel(None).0,
            stopping: None,
            replay: VecDeque::new(),
            replays_in_flight: 0,
            healthy: true,
            next_probe: Instant::now(),
        };
        // `stats()` reads the gauges before the worker's first turn too.
        w.publish_gauges();
        w
    }

    pub(crate) async fn run(mut self) {
        loop {
            self.drain_overflow();
            if self.stopping.is_some() && self.has_spool && self.policy.failing.load(Relaxed) {
                self.spool_memory();
            }
            self.launch();
            self.publish_gauges();
            self.check_flushes();
            if let Some((_, task_stop, _)) = &self.stopping {
                // A shutdown delivers the spool's backlog too, while the deadline allows.
                if (self.idle() && !self.spool_backlog()) || Instant::now() >= *task_stop {
                    break;
                }
            }
            let wake = tokio::time::Instant::from_std(self.next_wake());
            // `track()` wakes the worker (a system call) once per `flush_at` events while
            // `woken` is clear. With every slot busy a wake can start nothing, and a finishing
            // task wakes the loop anyway: the flag stays set, so `track()` skips the call. Not
            // with a spool's overflow buffer, which only the worker drains.
            let busy = self.tasks.len() >= self.in_flight.limit() && self.shared.overflow.is_none();
            self.shared.woken.store(busy, Relaxed);
            tokio::select! {
                Some(res) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    self.finished(res);
                }
                cmd = self.rx.recv() => self.command(cmd),
                _ = self.shared.notify.notified() => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
        self.finish().await;
    }

    fn command(&mut self, cmd: Option<Ctrl>) {
        match cmd {
            Some(Ctrl::Flush { reply }) => {
                // What overflowed before the call goes to the spool now, so the spool part of the
                // flush covers it.
                self.drain_overflow();
                self.flushes.push(PendingFlush {
                    target: self.next_seq + self.shared.queue.len() as u64,
                    spool_upto: None,
                    lost_at: self.shared.counters.lost(),
                    reply,
                });
            }
            Some(Ctrl::Shutdown { deadline, reply }) => {
                let now = Instant::now();
                // Leave time to write what is left (up to a full queue) to the spool before the
                // deadline: a quarter of it, at most half a second.
                let margin =
                    (deadline.saturating_duration_since(now) / 4).min(Duration::from_millis(500));
                let task_stop = deadline.checked_sub(margin).unwrap_or(deadline);
                self.stop_tx.send_replace(Some(task_stop));
                self.stopping = Some((deadline, task_stop, reply));
            }
            // Every sender is gone without a shutdown (cannot happen through `Client`): stop now.
            None => {
                if self.stopping.is_none() {
                    let now = Instant::now();
                    self.stop_tx.send_replace(Some(now));
                    self.stopping = Some((now, now, mpsc::channel().0));
                }
            }
        }
    }

    fn idle(&self) -> bool {
        self.head.is_none()
            && self.shared.queue.is_empty()
            && self.shared.overflow.as_ref().is_none_or(|o| o.is_empty())
            && self.tasks.is_empty()
            && self.shared.tracks_in_progress() == 0
    }

    fn next_wake(&self) -> Instant {
        let now = Instant::now();
        // `track()` wakes the worker only once per `flush_at` events, so an event that arrives
        // while the worker sleeps with nothing queued is seen at the next wake: at most
        // `flush_interval` away, so it is sent within about that (and at least once a second).
        let mut at = now + self.flush_interval.min(Duration::from_secs(1));
        // With every slot busy a due batch cannot start, and a finishing task wakes the loop
        // anyway: waking for the head's deadline then would spin.
        if let Some((_, h)) = &self.head {
            if self.tasks.len() < self.in_flight.limit() {
                at = at.min(h.at + self.flush_interval);
            }
        }
        if !self.healthy && (!self.replay.is_empty() || self.spool_pending()) {
            at = at.min(self.next_probe.max(now + Duration::from_millis(10)));
        }
        if let Some((_, task_stop, _)) = &self.stopping {
            at = at.min(*task_stop);
        }
        at
    }

    fn spool_pending(&self) -> bool {
        self.has_spool && self.shared.counters.spool_events.load(Relaxed) > 0
    }

    /// Spooled events not delivered yet: on disk, or read back and waiting or in flight.
    fn spool_backlog(&self) -> bool {
        self.spool_pending() || !self.replay.is_empty() || self.replays_in_flight > 0
    }

    /// `spool` policy: write what overflowed the queue to disk.
    fn drain_overflow(&mut self) {
        let Some(ov) = &self.shared.overflow else {
            return;
        };
        if ov.is_empty() {
            return;
        }
        let recs: Vec<Encoded> = std::iter::from_fn(|| ov.pop())
            .map(|i| i.record())
            .collect();
        // The spool counts what it cannot take itself; without one, all of it is lost.
        match self.shared.spool().as_mut() {
            Some(s) => {
                s.append(&recs);
            }
            None => Counters::add(&self.shared.counters.dropped_spool_io, recs.len()),
        }
    }

    /// Stopping while the collector fails: what is in memory goes to the spool now rather than
    /// at the deadline, so the stop has nothing left to write then (a full queue takes a while
    /// to serialize); replay probes still deliver it if the collector answers before the deadline.
    fn spool_memory(&mut self) {
        let mut rest = Vec::new();
        self.take_memory(&mut rest);
        self.keep(rest, true);
    }

    /// Move the head and every queued event, as wire records, into `out`, releasing their
    /// memory from the budget.
    fn take_memory(&mut self, out: &mut Vec<Encoded>) {
        self.apply_delta();
        if let Some((_, item)) = self.head.take() {
            self.shared.release(0, item.held);
            out.push(item.rec);
        }
        let (mut events, mut bytes) = (0, 0);
        while let Some(item) = self.shared.queue.pop() {
            events += 1;
            bytes += item.held;
            out.push(item.record());
        }
        self.shared.release(events, bytes);
    }

    fn pop_head(&mut self) {
        if self.head.is_none() {
            if let Some(item) = self.shared.queue.pop() {
                let (ready, delta) = item.encode();
                self.delta += delta;
                self.popped += 1;
                self.head = Some((self.next_seq, ready));
                self.next_seq += 1;
            }
        }
    }

    fn launch(&mut self) {
        let now = Instant::now();
        let stopping = self.stopping.is_some();
        if self.stopping.as_ref().is_some_and(|s| now >= s.1) {
            return;
        }
        let limits = BatchLimits::V1;
        self.pop_head();
        while self.tasks.len() < self.in_flight.limit() {
            let Some((_, h)) = &self.head else { break };
            let due = stopping
                || !self.flushes.is_empty()
                || self.shared.queue.len() + 1 >= self.flush_at
                || now.duration_since(h.at) >= self.flush_interval;
            if !due {
                break;
            }
            let mut events = Vec::with_capacity(self.flush_at.min(self.shared.queue.len() + 1));
            let (mut min_seq, mut oldest) = (u64::MAX, None::<Instant>);
            let (mut held, mut json) = (0usize, 0usize);
            while events.len() < self.flush_at {
                let Some((seq, item)) = self.head.take() else {
                    break;
                };
                let size = item.size();
                if !limits.fits(events.len(), json, size) {
                    self.head = Some((seq, item));
                    break;
                }
                held += item.held;
                json += size;
                min_seq = min_seq.min(seq);
                oldest = Some(oldest.map_or(item.at, |o: Instant| o.min(item.at)));
                events.push(item.rec);
                self.pop_head();
            }
            let n = events.len();
            self.spawn(
                events,
                Meta {
                    min_seq,
                    events: n,
                    bytes: held,
                    oldest,
                    segment: None,
                    sent: now,
                },
            );
        }
        self.apply_delta();
        self.launch_replay(now);
    }

    fn apply_delta(&mut self) {
        self.shared.adjust(std::mem::take(&mut self.delta));
        self.shared.release(std::mem::take(&mut self.popped), 0);
    }

    /// Replay the spool in the slots fresh events leave free (they go first, and one slot stays
    /// theirs): fully when the collector looks healthy, one probing batch when it does not.
    fn launch_replay(&mut self, now: Instant) {
        if !self.has_spool {
            return;
        }
        // A task still retrying counts as much as a finished one that gave up.
        let healthy = self.healthy && !self.policy.failing.load(Relaxed);
        let cap = if healthy {
            self.in_flight.limit().saturating_sub(1).max(1)
        } else {
            1
        };
        if !healthy && now < self.next_probe {
            return;
        }
        while self.tasks.len() < self.in_flight.limit() && self.replays_in_flight < cap {
            if self.replay.is_empty() {
                let got = self
                    .shared
                    .spool()
                    .as_mut()
                    .and_then(|s| s.checkout(healthy));
                let Some((seg, recs)) = got else { return };
                let ranges = pack_encoded(recs.iter().map(|r| r.json.len()), &BatchLimits::V1);
                let mut it = recs.into_iter();
                for r in ranges {
                    self.replay
                        .push_back((seg, it.by_ref().take(r.len()).collect()));
                }
            }
            let Some((seg, batch)) = self.replay.pop_front() else {
                return;
            };
            self.replays_in_flight += 1;
            let n = batch.len();
            self.spawn(
                batch,
                Meta {
                    min_seq: u64::MAX,
                    events: n,
                    bytes: 0,
                    oldest: None,
                    segment: Some(seg),
                    sent: now,
                },
            );
            if !healthy {
                self.next_probe = now + self.policy.max_delay.max(Duration::from_secs(1));
            }
        }
    }

    fn spawn(&mut self, batch: Vec<Encoded>, meta: Meta) {
        if meta.segment.is_none() {
            Counters::add(&self.shared.counters.in_flight_events, meta.events);
        }
        let handle = self.tasks.spawn(deliver(
            self.policy.clone(),
            batch,
            self.stop_tx.subscribe(),
        ));
        self.meta.insert(handle.id(), meta);
    }

    fn finished(&mut self, res: Result<(Id, Outcome), JoinError>) {
        let (id, outcome) = match res {
            Ok((id, o)) => (id, Some(o)),
            Err(e) => {
                tracing::error!(error = %e, "agenttally delivery task failed");
                (e.id(), None)
            }
        };
        let Some(meta) = self.meta.remove(&id) else {
            return;
        };
        // The finished task no longer counts in `tasks`.
        let saturated = self.tasks.len() + 1 >= self.in_flight.limit();
        let c = &self.shared.counters;
        if meta.segment.is_none() {
            self.shared.release(0, meta.bytes);
            c.in_flight_events.fetch_sub(meta.events as u64, Relaxed);
        } else {
            self.replays_in_flight = self.replays_in_flight.saturating_sub(1);
        }
        let undelivered = match outcome {
            Some(o) => {
                self.in_flight
                    .answered(meta.sent, o.congested, saturated, Instant::now());
                self.healthy = o.healthy;
                if !o.healthy {
                    self.next_probe = Instant::now() + self.policy.max_delay;
                }
                o.undelivered
            }
            None => {
                Counters::add(&c.dropped_undeliverable, meta.events);
                Vec::new()
            }
        };
        match meta.segment {
            None => self.keep(undelivered, false),
            // A replayed batch that failed goes back to the front of the replay, still part of
            // its segment: nothing is rewritten, and the segment stays whole on disk until its
            // records are delivered.
            Some(seg) => {
                let settled = meta.events - undelivered.len();
                if !undelivered.is_empty() {
                    self.replay.push_front((seg, undelivered));
                }
                if let Some(s) = self.shared.spool().as_mut() {
                    s.settle(seg, settled as u64);
                }
            }
        }
    }

    /// Spool undelivered events, or count them as dropped when there is no spool.
    fn keep(&mut self, recs: Vec<Encoded>, shutdown: bool) {
        if recs.is_empty() {
            return;
        }
        let mut spool = self.shared.spool();
        match spool.as_mut() {
            Some(s) => {
                s.append(&recs);
            }
            None => {
                let c = &self.shared.counters;
                let reason = if shutdown {
                    &c.dropped_shutdown
                } else {
                    &c.dropped_undeliverable
                };
                tracing::warn!(
                    events = recs.len(),
                    "agenttally dropped undeliverable events"
                );
                Counters::add(reason, recs.len());
            }
        }
    }

    fn publish_gauges(&self) {
        let mut oldest = self.head.as_ref().map(|(_, h)| h.at);
        for m in self.meta.values() {
            if let Some(o) = m.oldest {
                oldest = Some(oldest.map_or(o, |x| x.min(o)));
            }
        }
        let ns = oldest.map_or(0, |o| {
            o.saturating_duration_since(self.shared.started).as_nanos() as u64 + 1
        });
        let c = &self.shared.counters;
        c.oldest_at_ns.store(ns, Relaxed);
        c.head_events.store(u64::from(self.head.is_some()), Relaxed);
        c.requests_in_flight.store(self.tasks.len() as u64, Relaxed);
        c.in_flight_limit
            .store(self.in_flight.limit() as u64, Relaxed);
    }

    fn check_flushes(&mut self) {
        if self.flushes.is_empty() {
            return;
        }
        let mut min_outstanding = self.head.as_ref().map_or(u64::MAX, |(s, _)| *s);
        for m in self.meta.values() {
            min_outstanding = min_outstanding.min(m.min_seq);
        }
        let next = self.next_seq;
        let (newest, oldest) = match self.shared.spool().as_ref() {
            Some(s) => (s.newest_segment(), s.oldest_segment()),
            None => (None, None),
        };
        let lost = self.shared.counters.lost();
        self.flushes.retain_mut(|f| {
            if f.spool_upto.is_none() && next >= f.target && min_outstanding >= f.target {
                f.spool_upto = Some(newest);
            }
            let done = match f.spool_upto {
                None => false,
                Some(None) => true,
                Some(Some(upto)) => oldest.is_none_or(|o| o > upto),
            };
            if done {
                let _ = f.reply.send(lost == f.lost_at);
            }
            !done
        });
    }

    /// After the stop deadline (or once idle): collect the tasks, which give up at the deadline,
    /// then spool (or drop) whatever is still in memory, release the spool and answer.
    async fn finish(mut self) {
        while let Some(res) = self.tasks.join_next_with_id().await {
            self.finished(res);
        }
        let deadline = self.stopping.as_ref().map_or_else(Instant::now, |s| s.0);
        let mut rest = Vec::new();
        if self.head.is_some() {
            self.shared.counters.in_flight_events.store(0, Relaxed);
        }
        // A track() that reserved its place before the close is about to push (or to give the
        // place back): wait for it, then take what it pushed.
        loop {
            self.drain_overflow();
            self.take_memory(&mut rest);
            let settled = self.shared.queued_events() == 0 && self.shared.tracks_in_progress() == 0;
            if settled || Instant::now() >= deadline {
                break;
            }
            std::thread::yield_now();
        }
        self.keep(rest, true);
        // Replay batches not sent: a segment none of whose records were settled goes back on
        // disk as it is (nothing to rewrite: the usual case when the collector is down); the
        // rest of a partly delivered one is appended to the active segment so the file can go.
        while let Some((seg, batch)) = self.replay.pop_front() {
            let whole = self
                .shared
                .spool()
                .as_mut()
                .is_some_and(|s| s.check_in(seg));
            if whole {
                self.replay.retain(|(s, _)| *s != seg);
                continue;
            }
            let n = batch.len() as u64;
            self.keep(batch, true);
            if let Some(s) = self.shared.spool().as_mut() {
                s.settle(seg, n);
            }
        }
        let spool: Option<Spool> = self.shared.spool().take();
        if let Some(mut s) = spool {
            s.sync();
        }
        self.publish_gauges();
        // A flush still waiting when the worker stops is answered by its own deadline (or by
        // the closed channel): what it waited for is on disk now, not delivered.
        self.flushes.clear();
        if let Some((_, _, reply)) = self.stopping.take() {
            let _ = reply.send(());
        }
    }
}

/// Resolves when the stop deadline is set and reached; never otherwise.
async fn stopped(rx: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let at = *rx.borrow_and_update();
        if let Some(t) = at {
            tokio::time::sleep_until(tokio::time::Instant::from_std(t)).await;
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

fn past(rx: &watch::Receiver<Option<Instant>>) -> bool {
    rx.borrow().is_some_and(|t| Instant::now() >= t)
}

fn body_of(batch: &[Encoded]) -> Arc<Vec<u8>> {
    let held = batch.iter().map(|e| e.json.len()).sum();
    let mut out = Vec::with_capacity(encoded_batch_len(batch.len(), held));
    Batch::encode_raw(&mut out, batch.iter().map(|e| &e.json[..]), now_micros());
    Arc::new(out)
}

enum Verdict {
    Ack(Response),
    TooLarge,
    Reject,
    Retry(Option<Duration>),
}

fn classify(res: Result<Response, TransportError>) -> Verdict {
    match res {
        Ok(r) if (200..300).contains(&r.status) => Verdict::Ack(r),
        Ok(r) if r.status == 413 => Verdict::TooLarge,
        Ok(r) if matches!(r.status, 408 | 429) || r.status >= 500 => Verdict::Retry(r.retry_after),
        Ok(r) => {
            tracing::warn!(
                status = r.status,
                body = %String::from_utf8_lossy(&r.body[..r.body.len().min(512)]),
                "agenttally collector rejected a batch"
            );
            Verdict::Reject
        }
        Err(e) => {
            tracing::debug!(error = %e, "agenttally send failed; will retry");
            Verdict::Retry(None)
        }
    }
}

/// The collector's 200 body: `{accepted, duplicates, rejected: [{index, id, error, retryable}]}`.
#[derive(Deserialize)]
struct AckBody {
    // `accepted` is informational: what was acknowledged and is not a duplicate was stored.
    #[serde(default)]
    duplicates: u64,
    #[serde(default)]
    rejected: Vec<RejectedEvent>,
}

/// One per-event rejection. `retryable` is the whole protocol: `true` means the same bytes may
/// succeed later (re-sent with the same id within the batch's retry budget); absent or `false`
/// means never (the event itself is at fault).
#[derive(Deserialize)]
struct RejectedEvent {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<uuid::Uuid>,
    #[serde(default)]
    error: serde_json::Value,
    #[serde(default)]
    retryable: bool,
}

/// Apply a 200 answer: count what was stored, rejected or duplicate; return the events to
/// send again (per-event retryable errors).
fn apply_ack(r: &Response, batch: &[Encoded], c: &Counters) -> Vec<usize> {
    let n = batch.len();
    let Ok(body) = serde_json::from_slice::<AckBody>(&r.body) else {
        // A 2xx without the documented body: the batch was taken.
        Counters::add(&c.sent, n);
        return Vec::new();
    };
    // One verdict per position, so a malformed answer (an index listed twice) cannot miscount.
    let mut verdict: Vec<Option<bool>> = vec![None; n];
    for rej in &body.rejected {
        let idx = rej
            .index
            .filter(|i| *i < n && rej.id.is_none_or(|id| batch[*i].id == id))
            .or_else(|| rej.id.and_then(|id| batch.iter().position(|e| e.id == id)));
        let Some(i) = idx else { continue };
        if verdict[i].is_none() && !rej.retryable {
            tracing::warn!(id = %batch[i].id, error = %rej.error, "agenttally collector rejected an event");
        }
        verdict[i] = Some(rej.retryable);
    }
    let retry: Vec<usize> = (0..n).filter(|&i| verdict[i] == Some(true)).collect();
    let permanent = verdict.iter().filter(|v| **v == Some(false)).count();
    let acked = n - permanent - retry.len();
    let duplicates = (body.duplicates as usize).min(acked);
    let sent = acked - duplicates;
    Counters::add(&c.sent, sent);
    Counters::add(&c.duplicates, duplicates);
    Counters::add(&c.rejected, permanent);
    retry
}

fn full_jitter(d: Duration) -> Duration {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    Duration::from_nanos(fastrand::u64(0..=nanos))
}

/// Events to send, the body already built for them (kept for a retry), and whether it is a re-send.
type Work = (Vec<Encoded>, Option<Arc<Vec<u8>>>, bool);

/// Deliver one batch: retries with capped exponential backoff and full jitter (never sooner than
/// `Retry-After`), splits on 413, re-sends only per-event retryable rejections, and gives up at
/// the retry budget or the stop deadline, handing back what it could not deliver. Ids never
/// change: the bytes sent on a retry are the bytes sent the first time.
async fn deliver(
    p: Arc<Policy>,
    batch: Vec<Encoded>,
    mut stop: watch::Receiver<Option<Instant>>,
) -> Outcome {
    let c = &*p.counters;
    let budget_end = Instant::now() + p.max_retry_time;
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(p.min_delay)
        .with_max_delay(p.max_delay)
        .with_factor(2.0)
        .without_max_times()
        .build();
    let mut out = Outcome {
        undelivered: Vec::new(),
        healthy: true,
        congested: false,
    };
    let mut work: VecDeque<Work> = VecDeque::new();
    work.push_back((batch, None, false));
    while let Some((batch, body, resend)) = work.pop_front() {
        if past(&stop) {
            out.undelivered.extend(batch);
            work.drain(..).for_each(|w| out.undelivered.extend(w.0));
            break;
        }
        let body = body.unwrap_or_else(|| body_of(&batch));
        if resend {
            Counters::add(&c.retried, batch.len());
        }
        c.requests.fetch_add(1, Relaxed);
        let res = tokio::select! {
            biased;
            _ = stopped(&mut stop) => None,
            r = p.transport.send(body.clone()) => Some(r),
        };
        let Some(res) = res else {
            out.undelivered.extend(batch);
            work.drain(..).for_each(|w| out.undelivered.extend(w.0));
            break;
        };
        let retry_after = match classify(res) {
            Verdict::Ack(r) => {
                out.healthy = true;
                p.failing.store(false, Relaxed);
                let again = apply_ack(&r, &batch, c);
                if again.is_empty() {
                    continue;
                }
                out.congested = true;
                let mut keep: Vec<Option<Encoded>> = batch.into_iter().map(Some).collect();
                let sub: Vec<Encoded> = again.iter().filter_map(|&i| keep[i].take()).collect();
                work.push_front((sub, None, true));
                None
            }
            Verdict::TooLarge => {
                out.healthy = true;
                p.failing.store(false, Relaxed);
                if batch.len() == 1 {
                    tracing::warn!(id = %batch[0].id, "agenttally collector refused an event as too large");
                    Counters::add(&c.rejected, 1);
                } else {
                    let mut left = batch;
                    let right = left.split_off(left.len() / 2);
                    work.push_front((right, None, true));
                    work.push_front((left, None, true));
                }
                continue;
            }
            Verdict::Reject => {
                out.healthy = true;
                p.failing.store(false, Relaxed);
                Counters::add(&c.rejected, batch.len());
                continue;
            }
            Verdict::Retry(ra) => {
                out.healthy = false;
                out.congested = true;
                p.failing.store(true, Relaxed);
                work.push_front((batch, Some(body), true));
                ra
            }
        };
        let delay =
            full_jitter(backoff.next().unwrap_or(p.max_delay)).max(retry_after.unwrap_or_default());
        if Instant::now() + delay > budget_end {
            work.drain(..).for_each(|w| out.undelivered.extend(w.0));
            break;
        }
        tokio::select! {
            biased;
            _ = stopped(&mut stop) => {}
            _ = tokio::time::sleep(delay) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_grows_by_one_per_busy_answer_up_to_the_cap() {
        let t = Instant::now();
        let mut c = Concurrency::new(16);
        assert_eq!(c.limit(), 4);
        // Answers while slots were free leave it alone.
        c.answered(t, false, false, t);
        assert_eq!(c.limit(), 4);
        for _ in 0..20 {
            c.answered(t, false, true, t);
        }
        assert_eq!(c.limit(), 16);
        // A cap below the initial limit is the limit.
        assert_eq!(Concurrency::new(2).limit(), 2);
        let mut one = Concurrency::new(1);
        one.answered(t, false, true, t);
        assert_eq!(one.limit(), 1);
    }

    #[test]
    fn one_overloaded_moment_halves_the_limit_once() {
        let t0 = Instant::now();
        let mut c = Concurrency::new(16);
        for _ in 0..12 {
            c.answered(t0, false, true, t0);
        }
        assert_eq!(c.limit(), 16);
        let t1 = t0 + Duration::from_millis(10);
        // Every request in flight (sent at t0) is told to slow down: one cut.
        for _ in 0..16 {
            c.answered(t0, true, true, t1);
        }
        assert_eq!(c.limit(), 8);
        // A request sent after that cut and told again cuts again, never below one.
        let t2 = t1 + Duration::from_millis(10);
        c.answered(t2, true, true, t2);
        assert_eq!(c.limit(), 4);
        for i in 0..10u64 {
            let t = t2 + Duration::from_millis(i + 1);
            c.answered(t, true, false, t);
        }
        assert_eq!(c.limit(), 1);
        // Healthy answers while busy bring it back.
        c.answered(t2, false, true, t2);
        assert_eq!(c.limit(), 2);
    }
}
