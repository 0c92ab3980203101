//! Live updates (`GET /v1/live`, WebSocket or Server-Sent Events): what each commit stored, per
//! tenant, pushed to that tenant's open connections. One fan-out task reads the writer's
//! post-commit feed (`store::committed`) and routes each `Committed` to the connections of its
//! tenant only, folding it into each connection's pending update (`Slot`) without ever waiting
//! for one; each connection sends its pending update at most `MESSAGES_PER_SECOND` times a
//! second, and is dropped when a send does not complete within `SEND_TIMEOUT`.
//!
//! `token` issues and checks the short-lived tokens a browser puts in the URL, `api` holds the
//! two handlers and the per-connection loops, `message` the JSON messages.

pub mod api;
pub mod message;
pub mod token;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::{broadcast, watch, Notify};
use tokio::task::JoinHandle;

use crate::api_error::ApiError;
use crate::config::ServerConfig;
use crate::store::committed::{CommitFeed, Committed, RecentEvent, RecentInterest};
pub use message::LiveDelta;

/// Protocol messages a connection is sent per second, at most (updates are coalesced between).
pub const MESSAGES_PER_SECOND: u32 = 10;
/// The shortest time between two messages of one connection.
pub const MIN_INTERVAL: Duration = Duration::from_millis(1_000 / MESSAGES_PER_SECOND as u64);
/// A keep-alive (SSE comment, WebSocket ping) after this long without a message.
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
/// A send that does not complete within this (the client stopped reading and its socket buffer
/// is full) drops the connection.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Events an update lists in `recent`, at most (newest first).
pub const RECENT_MAX: usize = crate::store::committed::RECENT_PER_COMMIT;
/// Seconds a refused connection (over a cap) is told to wait.
const RETRY_AFTER_SECS: u32 = 5;

/// What a connection has not been sent yet: everything committed for its tenant since its last
/// message, coalesced. Its size is bounded whatever the commit rate: sums, and `RECENT_MAX`
/// events.
#[derive(Debug, Default, PartialEq)]
pub struct Pending {
    /// Commits folded in.
    pub commits: u64,
    pub delta: LiveDelta,
    /// Newest first.
    pub recent: Vec<RecentEvent>,
    /// Updates were lost (the fan-out fell behind the feed): send `resync` first.
    pub resync: bool,
}

impl Pending {
    /// Fold in one commit's delta and newest events.
    pub fn add(&mut self, delta: &LiveDelta, recent: &[RecentEvent]) {
        self.commits += 1;
        self.delta.add(delta);
        merge_recent(&mut self.recent, recent);
    }

    pub fn is_empty(&self) -> bool {
        self.commits == 0 && !self.resync
    }
}

/// Merge `new` (newest first) into `kept` (newest first), keeping the newest `RECENT_MAX`.
/// Commits of concurrent writers can arrive out of time order, hence a merge, not a prepend.
fn merge_recent(kept: &mut Vec<RecentEvent>, new: &[RecentEvent]) {
    if new.is_empty() {
        return;
    }
    let newer = |a: &RecentEvent, b: &RecentEvent| (a.ts, a.id) >= (b.ts, b.id);
    let old = std::mem::take(kept);
    let mut old = old.into_iter().peekable();
    let mut new = new.iter().peekable();
    while kept.len() < RECENT_MAX {
        let take_old = match (old.peek(), new.peek()) {
            (Some(o), Some(n)) => newer(o, n),
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        let next = if take_old {
            old.next()
        } else {
            new.next().cloned()
        };
        kept.extend(next);
    }
}

/// One connection's mailbox: the fan-out folds commits in and rings; the connection takes the
/// whole pending update when it may send.
#[derive(Debug, Default)]
pub struct Slot {
    pending: Mutex<Pending>,
    ready: Notify,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // Nothing panics while holding it; a poisoned lock still holds consistent sums.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, delta: &LiveDelta, recent: &[RecentEvent]) {
        self.lock().add(delta, recent);
        self.ready.notify_one();
    }

    /// Updates were lost: drop what is pending, and say `resync` next.
    fn resync(&self) {
        *self.lock() = Pending {
            resync: true,
            ..Pending::default()
        };
        self.ready.notify_one();
    }

    /// Everything pending, leaving the slot empty.
    pub fn take(&self) -> Pending {
        std::mem::take(&mut *self.lock())
    }

    /// Resolves once something was pushed since the last `take` (a ring is never lost).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }
}

#[derive(Debug, Default)]
struct Conns {
    by_tenant: HashMap<String, Vec<(u64, Arc<Slot>)>>,
    total: usize,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
struct Counters {
    opened: AtomicU64,
    refused: AtomicU64,
    dropped_slow: AtomicU64,
    resyncs: AtomicU64,
}

/// The open live connections of this collector, by tenant, and the fan-out that feeds them.
#[derive(Debug)]
pub struct LiveHub {
    conns: Mutex<Conns>,
    next_id: AtomicU64,
    per_tenant: usize,
    max_total: usize,
    feed: CommitFeed,
    signer: token::Signer,
    stop: watch::Sender<bool>,
    counters: Counters,
}

impl LiveHub {
    /// A hub over `feed` with the caps and token key of `cfg`.
    pub fn new(feed: CommitFeed, cfg: &ServerConfig) -> Result<Arc<LiveHub>, String> {
        let signer = token::Signer::new(cfg.live_token_secret.as_deref())?;
        if !signer.shared() {
            tracing::info!(
                "no live token secret set: live tokens open streams on this collector only"
            );
        }
        Ok(Arc::new(LiveHub {
            conns: Mutex::default(),
            next_id: AtomicU64::new(0),
            per_tenant: cfg.live_max_connections_per_tenant,
            max_total: cfg.live_max_connections,
            feed,
            signer,
            stop: watch::channel(false).0,
            counters: Counters::default(),
        }))
    }

    fn conns(&self) -> MutexGuard<'_, Conns> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn signer(&self) -> &token::Signer {
        &self.signer
    }

    /// Open connections, all tenants.
    pub fn connections(&self) -> usize {
        self.conns().total
    }

    /// A place for a new connection of `tenant`, or 429 when the tenant or the collector is at
    /// its cap. The place is given back when the `Registration` is dropped.
    pub fn register(self: &Arc<Self>, tenant: &str) -> Result<Registration, ApiError> {
        let slot = Arc::new(Slot::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut conns = self.conns();
            let refused = if conns.total >= self.max_total {
                Some(format!(
                    "this collector has {} live connections open, the most it allows; retry \
                     later",
                    conns.total
                ))
            } else {
                let open = conns.by_tenant.get(tenant).map_or(0, Vec::len);
                (open >= self.per_tenant).then(|| {
                    format!(
                        "tenant `{tenant}` has {open} live connections open on this collector, \
                         the most it allows; close one or retry later"
                    )
                })
            };
            if let Some(message) = refused {
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                return Err(ApiError::too_many_requests(message, RETRY_AFTER_SECS));
            }
            conns
                .by_tenant
                .entry(tenant.to_string())
                .or_default()
                .push((id, slot.clone()));
            conns.total += 1;
        }
        self.counters.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Registration {
            hub: self.clone(),
            tenant: tenant.to_string(),
            id,
            slot,
            _recent: self.feed.want_recent(),
        })
    }

    fn unregister(&self, tenant: &str, id: u64) {
        let mut conns = self.conns();
        if let Some(v) = conns.by_tenant.get_mut(tenant) {
            let before = v.len();
            v.retain(|(i, _)| *i != id);
            let removed = before - v.len();
            if v.is_empty() {
                conns.by_tenant.remove(tenant);
            }
            conns.total -= removed;
        }
    }

    /// Fold one commit into the pending update of each connection of its tenant (and no other).
    /// Never waits for a connection.
    fn route(&self, c: &Committed) {
        let conns = self.conns();
        let Some(slots) = conns.by_tenant.get(&c.tenant) else {
            return;
        };
        let delta = LiveDelta::of(c);
        for (_, slot) in slots {
            slot.push(&delta, &c.recent);
        }
    }

    /// The fan-out missed commits: every connection is told to re-read.
    fn resync_all(&self) {
        let conns = self.conns();
        for (_, slot) in conns.by_tenant.values().flatten() {
            slot.resync();
            self.counters.resyncs.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Start the fan-out task: it ends when the hub is closed.
    pub fn spawn_fanout(self: &Arc<Self>) -> JoinHandle<()> {
        let mut rx = self.feed.subscribe();
        let mut stop = self.stop.subscribe();
        let hub = self.clone();
        tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    m = rx.recv() => m,
                };
                match m {
                    Ok(c) => hub.route(&c),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("live fan-out fell behind by {n} commits; clients resync");
                        hub.resync_all();
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    /// Tells the connections to close (graceful shutdown).
    pub fn close(&self) {
        self.stop.send_replace(true);
    }

    /// Resolves when `close` was called.
    pub fn closing(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }

    fn dropped_slow(&self) {
        self.counters.dropped_slow.fetch_add(1, Ordering::Relaxed);
    }

    /// The hub's series in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        let c = &self.counters;
        let series = [
            (
                "agenttally_live_connections",
                "gauge",
                "Live connections open.",
                self.connections() as u64,
            ),
            (
                "agenttally_live_connections_opened_total",
                "counter",
                "Live connections opened.",
                c.opened.load(Ordering::Relaxed),
            ),
            (
                "agenttally_live_connections_refused_total",
                "counter",
                "Live connections refused over a cap (429).",
                c.refused.load(Ordering::Relaxed),
            ),
            (
                "agenttally_live_slow_clients_dropped_total",
                "counter",
                "Live connections dropped because a send did not complete in time.",
                c.dropped_slow.load(Ordering::Relaxed),
            ),
            (
                "agenttally_live_resyncs_total",
                "counter",
                "Resync messages queued after the fan-out fell behind the commit feed.",
                c.resyncs.load(Ordering::Relaxed),
            ),
        ];
        for (name, kind, help, v) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }
}

/// One open connection's place in the hub; dropping it frees the place.
#[derive(Debug)]
pub struct Registration {
    hub: Arc<LiveHub>,
    pub tenant: String,
    id: u64,
    pub slot: Arc<Slot>,
    /// Commits carry their newest events while a connection is open.
    _recent: RecentInterest,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.tenant, self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;
    use rust_decimal::Decimal;
    use uuid::Uuid;

    fn ev(secs: i64) -> RecentEvent {
        RecentEvent {
            id: Uuid::now_v7(),
            ts: DateTime::from_timestamp(1_800_000_000 + secs, 0).expect("time"),
            event_type: "provider.api_call",
            provider: Some("openai".into()),
            model: None,
            task_type: None,
            agent_id: None,
            cost_usd: Some(Decimal::new(123, 4)),
            success: true,
        }
    }

    fn hub(per_tenant: usize, total: usize) -> Arc<LiveHub> {
        let mut cfg = ServerConfig::new("postgres://unused");
        cfg.live_max_connections_per_tenant = per_tenant;
        cfg.live_max_connections = total;
        LiveHub::new(crate::store::committed::feed(), &cfg).expect("hub")
    }

    #[test]
    fn recent_merges_newest_first_and_stays_bounded() {
        let mut p = Pending::default();
        for round in 0..10 {
            // Out of order across commits: round 9 holds older events than round 8.
            let base = if round == 9 { 0 } else { 100 + round * 30 };
            let batch: Vec<RecentEvent> = (0..20).rev().map(|i| ev(base + i)).collect();
            p.add(&LiveDelta::default(), &batch);
        }
        assert_eq!(p.commits, 10);
        assert_eq!(p.recent.len(), RECENT_MAX);
        assert!(p.recent.windows(2).all(|w| w[0].ts >= w[1].ts));
        assert_eq!(
            p.recent[0].ts.timestamp(),
            1_800_000_000 + 100 + 8 * 30 + 19
        );
    }

    #[test]
    fn caps_refuse_with_429_and_places_come_back() {
        let h = hub(2, 3);
        let a1 = h.register("acme").expect("first");
        let _a2 = h.register("acme").expect("second");
        let e = h.register("acme").expect_err("tenant cap");
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.message.contains("`acme`"), "{}", e.message);
        let _g1 = h.register("globex").expect("other tenant");
        let e = h.register("initech").expect_err("global cap");
        assert_eq!(e.status.as_u16(), 429);
        drop(a1);
        assert_eq!(h.connections(), 2);
        let _a3 = h.register("acme").expect("a place came back");
    }

    #[test]
    fn a_commit_reaches_its_tenant_only() {
        let h = hub(10, 10);
        let a = h.register("acme").expect("acme");
        let g = h.register("globex").expect("globex");
        let commit = |secs| Committed {
            tenant: "acme".into(),
            events: 1,
            hourly: Vec::new(),
            recent: vec![ev(secs)],
        };
        h.route(&commit(1));
        h.route(&commit(2));
        let got = a.slot.take();
        assert_eq!((got.commits, got.recent.len()), (2, 2));
        assert_eq!(got.delta.events, 2);
        assert!(g.slot.take().is_empty());
        h.resync_all();
        assert!(a.slot.take().resync && g.slot.take().resync);
    }
}
