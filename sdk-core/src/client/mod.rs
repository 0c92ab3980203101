//! The delivery client: `track()` validates and enqueues without blocking; a background worker
//! batches, compresses and sends to the collector with retries, spooling to disk when asked.
//!
//! - [`config`]: the builder and every default.
//! - `queue`: the bounded lock-free queue `track()` feeds (the hot path).
//! - `worker`: the thread that batches, sends, retries and spools.
//! - [`transport`]: HTTP, and an in-memory transport for tests.
//! - `spool`: append-only checksummed segment files, replayed at start.
//! - [`stats`]: counters and the `Stats` snapshot.

pub mod config;
mod queue;
mod segqueue;
mod spool;
pub mod stats;
pub mod transport;
mod worker;

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use uuid::Uuid;

pub use config::{defaults, ClientBuilder, OverflowPolicy, SpoolFsync};
pub use stats::{Dropped, Stats};
pub use transport::{
    HttpTransport, MemoryTransport, Response, SendFuture, Transport, TransportError,
};

use crate::{AnalyticsEvent, Error};
use queue::Shared;
use worker::Ctrl;

/// Prices an event at `track()` time: called for events that carry `usage` and no cost (a
/// caller-supplied cost or `cost_status` wins). [`PriceBook`](crate::pricing::PriceBook) and
/// [`TenantPriceBooks`](crate::pricing::TenantPriceBooks) implement it; so can a custom pricer.
pub trait AutoPrice: Send + Sync + 'static {
    /// Set `cost_usd`/`cost_status`/`price_version` on `event` (or leave it unpriced).
    fn price_event(&self, event: &mut AnalyticsEvent);
}

impl AutoPrice for crate::pricing::PriceBook {
    fn price_event(&self, event: &mut AnalyticsEvent) {
        crate::pricing::PriceBook::price_event(self, event);
    }
}

impl AutoPrice for crate::pricing::TenantPriceBooks {
    fn price_event(&self, event: &mut AnalyticsEvent) {
        crate::pricing::TenantPriceBooks::price_event(self, event);
    }
}

impl<T: AutoPrice> AutoPrice for Arc<T> {
    fn price_event(&self, event: &mut AnalyticsEvent) {
        (**self).price_event(event);
    }
}

/// One event serialized for the wire, with its id (the dedupe key) beside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Encoded {
    pub id: Uuid,
    pub json: Vec<u8>,
}

/// The non-blocking delivery client. Cheap to clone (clones share one worker); the worker shuts
/// down, with the builder's `drop_timeout`, when the last clone is dropped.
///
/// ```no_run
/// use std::time::Duration;
/// use agenttally::{Client, ProviderEvent, Usage};
///
/// let client = Client::builder()
///     .endpoint("http://127.0.0.1:8080")
///     .api_key("key")
///     .build()?;
/// let usage = Usage { input_tokens: 1200, output_tokens: 300, ..Usage::default() };
/// client.track(ProviderEvent::api_call("acme", "openai", "gpt-4o").usage(usage).build()?)?;
/// client.shutdown(Duration::from_secs(5))?;
/// # Ok::<(), agenttally::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    shared: Arc<Shared>,
    worker: Mutex<Option<Worker>>,
    drop_timeout: Duration,
}

#[derive(Debug)]
struct Worker {
    ctrl: tokio::sync::mpsc::UnboundedSender<Ctrl>,
    thread: JoinHandle<()>,
}

impl Client {
    /// Start configuring a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    pub(crate) fn start(cfg: ClientBuilder) -> Result<Client, Error> {
        let drop_timeout = cfg.drop_timeout;
        let shared = Shared::new(&cfg)?;
        let shared = Arc::new(shared);
        let worker = if cfg.disabled {
            None
        } else {
            let transport: Arc<dyn Transport> = match cfg.transport.clone() {
                Some(t) => t,
                None => Arc::new(HttpTransport::with_ca_file(
                    cfg.endpoint.as_deref().unwrap_or_default(),
                    cfg.api_key.as_deref(),
                    cfg.request_timeout,
                    cfg.gzip,
                    cfg.ca_file.as_deref(),
                )?),
            };
            // One blocking thread compresses bodies (one reused compressor, one malloc arena):
            // the SDK never takes more than the worker and that thread from the host.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(1)
                .thread_name("agenttally-blocking")
                .build()
                .map_err(|e| Error::Io(format!("starting the worker runtime: {e}")))?;
            let (ctrl, rx) = tokio::sync::mpsc::unbounded_channel();
            let w = worker::WorkerState::new(shared.clone(), transport, &cfg, rx);
            let thread = std::thread::Builder::new()
                .name("agenttally-worker".into())
                .spawn(move || rt.block_on(w.run()))
                .map_err(|e| Error::Io(format!("starting the worker thread: {e}")))?;
            Some(Worker { ctrl, thread })
        };
        Ok(Client {
            inner: Arc::new(Inner {
                shared,
                worker: Mutex::new(worker),
                drop_timeout,
            }),
        })
    }

    /// Validate `event`, give it an id if it has none, price it (with a price book), and queue it.
    /// Never blocks on I/O and never panics. On a full queue the overflow policy applies:
    /// `drop_newest` returns `Err(QueueFull)`; `drop_oldest` and `spool` accept the event.
    pub fn track(&self, event: AnalyticsEvent) -> Result<(), Error> {
        self.inner.shared.track(event)
    }

    /// Wait until every event accepted before this call is delivered: acknowledged by the
    /// collector (or rejected by it as invalid). Spooled events count as delivered only once
    /// replayed, so a flush also delivers the spool's backlog, an earlier process's included.
    /// `Err(Timeout)` when `timeout` passes first (delivery goes on; nothing is dropped for it);
    /// `Err(Io)` when some of those events were dropped on the way (see `stats().dropped`).
    /// A timeout too long for the clock (`Duration::MAX`) waits as long as it takes.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = deadline_after(timeout);
        let (tx, rx) = mpsc::channel();
        {
            let guard = self
                .inner
                .worker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let Some(w) = guard.as_ref() else {
                return if self.inner.shared.disabled() {
                    Ok(())
                } else {
                    Err(Error::Closed("the client is shut down".into()))
                };
            };
            w.ctrl
                .send(Ctrl::Flush { reply: tx })
                .map_err(|_| Error::Closed("the worker has stopped".into()))?;
        }
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::Io(
                "flush: some events accepted before it were dropped on the way (see \
                 stats().dropped)"
                    .into(),
            )),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(Error::Timeout(format!(
                "flush did not finish within {timeout:?}; undelivered events stay queued or \
                 spooled and delivery goes on"
            ))),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(Error::Closed(
                "the client shut down before the flush finished; what was not delivered is \
                 spooled or counted in stats().dropped"
                    .into(),
            )),
        }
    }

    /// Deliver everything (the spool's backlog included, as `flush` does), then stop the worker.
    /// One deadline bounds everything, in-flight HTTP included: what is not delivered by then is
    /// spooled (with a spool) or counted as dropped. Later
    /// `track()` calls return `Err(Closed)`. Calling it again is a no-op.
    pub fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        self.inner.shutdown(timeout)
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.inner.shared.stats()
    }

    /// Price `event` the way `track()` would, without tracking it (the run helper and the
    /// bindings use it to sum the costs of calls). Leaves it unpriced without a price book.
    pub fn price(&self, event: &mut AnalyticsEvent) {
        self.inner.shared.auto_price(event);
    }

    /// Start an agent run (see [`Run`](crate::Run)): emits `agent.started`.
    pub fn run(
        &self,
        tenant_id: impl Into<String>,
        agent_id: impl Into<String>,
        task_type: impl Into<String>,
    ) -> crate::Run {
        crate::Run::start(
            self.clone(),
            tenant_id.into(),
            agent_id.into(),
            task_type.into(),
        )
    }
}

impl Inner {
    fn shutdown(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = deadline_after(timeout);
        self.shared.close();
        let Some(w) = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        else {
            return Ok(());
        };
        let (tx, rx) = mpsc::channel();
        if w.ctrl
            .send(Ctrl::Shutdown {
                deadline,
                reply: tx,
            })
            .is_err()
        {
            let _ = w.thread.join();
            return Ok(());
        }
        // The worker answers by the deadline; a little grace covers the reply itself.
        let wait = deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(200);
        match rx.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let _ = w.thread.join();
                Ok(())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                tracing::warn!("agenttally worker did not stop by the shutdown deadline; detached");
                Err(Error::Timeout(format!(
                    "shutdown did not finish within {timeout:?}"
                )))
            }
        }
    }
}

/// `now + timeout`, saturating: a timeout too long for an `Instant` (e.g. `Duration::MAX`) waits
/// for as long as it takes, never panics.
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    /// Later than any wait a program means, early enough for every clock's `Instant`.
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    let now = Instant::now();
    now.checked_add(timeout.min(FAR))
        .or_else(|| now.checked_add(Duration::from_secs(24 * 3600)))
        .unwrap_or(now)
}

impl Drop for Inner {
    fn drop(&mut self) {
        let _ = self.shutdown(self.drop_timeout);
    }
}
