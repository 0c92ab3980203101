//! `Client`, `Run` and `Stats`: sdk-core's client behind a Python class. The GIL is released
//! around every wait (flush, shutdown); `track` never waits, so it keeps the GIL.
//!
//! Fork safety: `after_fork_in_child` (registered with `os.register_at_fork` by the Python layer)
//! bumps a fork generation. A client that sees a newer generation abandons its inherited core
//! client without touching it (its worker thread does not exist in the child, its locks may be
//! held, and its queued events are the parent's to send) and builds a fresh one from the same
//! configuration on first use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use agenttally::client::{ClientBuilder, OverflowPolicy, Stats as CoreStats};
use agenttally::{EventBuilder, EventType, ServiceTier};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rust_decimal::Decimal;

use crate::convert;
use crate::errors;
use crate::pricing::PriceBook;

/// Incremented in every forked child (see the module docs).
static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

/// Called by `os.register_at_fork(after_in_child=...)`.
#[pyfunction]
pub fn after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::SeqCst);
}

#[derive(Debug)]
struct State {
    generation: u64,
    client: Option<agenttally::Client>,
    /// `shutdown()` was called: a forked child must not start a fresh worker either.
    shut_down: bool,
}

/// The delivery client. Arguments left out keep sdk-core's defaults.
#[pyclass(
    module = "agenttally._native",
    name = "Client",
    subclass,
    weakref,
    frozen
)]
#[derive(Debug)]
pub struct Client {
    builder: ClientBuilder,
    exit_timeout: Duration,
    state: Mutex<State>,
}

impl Client {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The core client of this process, rebuilt after a fork.
    pub(crate) fn current(&self) -> PyResult<agenttally::Client> {
        let generation = FORK_GENERATION.load(Ordering::Relaxed);
        let mut st = self.lock();
        if st.generation != generation {
            abandon_inherited(&mut st);
            st.generation = generation;
            if !st.shut_down {
                st.client = Some(self.builder.clone().build().map_err(errors::to_py)?);
            }
        }
        match &st.client {
            Some(c) => Ok(c.clone()),
            None => Err(errors::to_py(agenttally::Error::Closed(
                "the client is shut down".into(),
            ))),
        }
    }
}

/// Forget the core client inherited from the parent process. Dropping it would ask a worker
/// that does not exist in this process to shut down (waiting for its deadline) and could block
/// on a lock some parent thread held at the fork; leaking it costs only the parent's queue copy.
fn abandon_inherited(st: &mut State) {
    if let Some(inherited) = st.client.take() {
        std::mem::forget(inherited);
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (*, endpoint=None, api_key=None, ca_file=None, flush_at=None, flush_interval=None,
        max_queue_events=None, max_queue_bytes=None, overflow=None, spool_dir=None, gzip=None,
        disabled=None, price_book=None, request_timeout=None, max_retry_time=None,
        max_in_flight=None, exit_timeout=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        endpoint: Option<String>,
        api_key: Option<String>,
        ca_file: Option<std::path::PathBuf>,
        flush_at: Option<usize>,
        flush_interval: Option<&Bound<'_, PyAny>>,
        max_queue_events: Option<usize>,
        max_queue_bytes: Option<usize>,
        overflow: Option<&str>,
        spool_dir: Option<std::path::PathBuf>,
        gzip: Option<bool>,
        disabled: Option<bool>,
        price_book: Option<PyRef<'_, PriceBook>>,
        request_timeout: Option<&Bound<'_, PyAny>>,
        max_retry_time: Option<&Bound<'_, PyAny>>,
        max_in_flight: Option<usize>,
        exit_timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let mut b = agenttally::Client::builder();
        if let Some(v) = endpoint {
            b = b.endpoint(v);
        }
        if let Some(v) = api_key {
            b = b.api_key(v);
        }
        if let Some(v) = ca_file {
            b = b.ca_file(v);
        }
        if let Some(v) = flush_at {
            b = b.flush_at(v);
        }
        if let Some(v) = flush_interval {
            b = b.flush_interval(convert::duration(v, "flush_interval", false)?);
        }
        if let Some(v) = max_queue_events {
            b = b.max_queue_events(v);
        }
        if let Some(v) = max_queue_bytes {
            b = b.max_queue_bytes(v);
        }
        if let Some(v) = overflow {
            b = b.overflow(match v {
                "drop_newest" => OverflowPolicy::DropNewest,
                "drop_oldest" => OverflowPolicy::DropOldest,
                "spool" => OverflowPolicy::Spool,
                other => {
                    return Err(errors::config(
                        "overflow",
                        format!("must be one of drop_newest, drop_oldest, spool; got `{other}`"),
                    ))
                }
            });
        }
        if let Some(v) = spool_dir {
            b = b.spool_dir(v);
        }
        if let Some(v) = gzip {
            b = b.gzip(v);
        }
        if let Some(v) = disabled {
            b = b.disabled(v);
        }
        if let Some(book) = price_book {
            b = b.price_book(book.inner.clone());
        }
        if let Some(v) = request_timeout {
            b = b.request_timeout(convert::duration(v, "request_timeout", false)?);
        }
        if let Some(v) = max_retry_time {
            b = b.max_retry_time(convert::duration(v, "max_retry_time", false)?);
        }
        if let Some(v) = max_in_flight {
            b = b.max_in_flight(v);
        }
        let exit_timeout = match exit_timeout {
            Some(v) => convert::duration(v, "exit_timeout", false)?,
            None => agenttally::client::defaults::EXIT_TIMEOUT,
        };
        let client = b.clone().build().map_err(errors::to_py)?;
        Ok(Client {
            builder: b,
            exit_timeout,
            state: Mutex::new(State {
                generation: FORK_GENERATION.load(Ordering::Relaxed),
                client: Some(client),
                shut_down: false,
            }),
        })
    }

    /// Validate, price (with a price book) and queue one event; returns its id. Never blocks.
    #[pyo3(signature = (event_type, *, tenant_id, correlation_id=None, user_id=None,
        agent_id=None, workflow_id=None, duration_ms=None, queue_ms=None, cost_usd=None,
        provider=None, model=None, task_type=None, usage=None, success=true, error_code=None,
        metadata=None, timestamp=None, service_tier=None, event_id=None))]
    #[allow(clippy::too_many_arguments)]
    fn track(
        &self,
        event_type: &str,
        tenant_id: String,
        correlation_id: Option<String>,
        user_id: Option<String>,
        agent_id: Option<String>,
        workflow_id: Option<String>,
        duration_ms: Option<i64>,
        queue_ms: Option<i64>,
        cost_usd: Option<&Bound<'_, PyAny>>,
        provider: Option<String>,
        model: Option<String>,
        task_type: Option<String>,
        usage: Option<&Bound<'_, PyAny>>,
        success: bool,
        error_code: Option<String>,
        metadata: Option<&Bound<'_, PyDict>>,
        timestamp: Option<&Bound<'_, PyAny>>,
        service_tier: Option<&str>,
        event_id: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<String> {
        let event_type: EventType = event_type
            .parse()
            .map_err(|e| errors::invalid("event.event_type", rule_of(e)))?;
        let mut b = EventBuilder::new(event_type, tenant_id).success(success);
        if let Some(v) = correlation_id {
            b = b.correlation_id(v);
        }
        if let Some(v) = user_id {
            b = b.user_id(v);
        }
        if let Some(v) = agent_id {
            b = b.agent_id(v);
        }
        if let Some(v) = workflow_id {
            b = b.workflow_id(v);
        }
        if let Some(v) = cost_usd {
            b = b.cost_usd(convert::decimal(v, "event.cost_usd")?);
        }
        if let Some(v) = usage {
            b = b.usage(convert::usage(v, provider.as_deref())?);
        }
        if let Some(v) = provider {
            b = b.provider(v);
        }
        if let Some(v) = model {
            b = b.model(v);
        }
        if let Some(v) = task_type {
            b = b.task_type(v);
        }
        if let Some(v) = error_code {
            b = b.error_code(v);
        }
        if let Some(v) = timestamp {
            b = b.timestamp(convert::timestamp(v, "event.timestamp")?);
        }
        if let Some(v) = service_tier {
            b = b.service_tier(tier(v)?);
        }
        if let Some(v) = event_id {
            b = b.id(convert::event_id(v)?);
        }
        let mut event = b.build_unchecked();
        // Set as given (negative included) so that sdk-core's validation names the field.
        event.duration_ms = duration_ms;
        event.queue_ms = queue_ms;
        if let Some(m) = metadata {
            event.metadata = convert::object(m, "event.metadata")?;
        }
        let id = event.id;
        self.current()?.track(event).map_err(errors::to_py)?;
        Ok(id.to_string())
    }

    /// Wait until every event accepted before the call is delivered, at most `timeout`
    /// (seconds or timedelta; `None` waits as long as it takes). Releases the GIL while waiting.
    #[pyo3(signature = (timeout=None))]
    fn flush(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let timeout = wait_timeout(timeout)?;
        let client = self.current()?;
        py.detach(|| client.flush(timeout)).map_err(errors::to_py)
    }

    /// Deliver what is queued (at most `timeout`), then stop the worker. Later `track` calls
    /// raise `ClosedError`. Releases the GIL while waiting.
    #[pyo3(signature = (timeout=None))]
    fn shutdown(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let timeout = wait_timeout(timeout)?;
        let client = self.current();
        self.lock().shut_down = true;
        match client {
            Ok(c) => py.detach(|| c.shutdown(timeout)).map_err(errors::to_py),
            // Already shut down: a second call is a no-op, as in sdk-core.
            Err(_) => Ok(()),
        }
    }

    /// The interpreter-exit flush: shut down within `exit_timeout` (0: drop what is queued at
    /// once). In a forked child that never used the client there is nothing to do.
    fn _exit_shutdown(&self, py: Python<'_>) -> PyResult<()> {
        let client = {
            let mut st = self.lock();
            if st.generation != FORK_GENERATION.load(Ordering::Relaxed) {
                abandon_inherited(&mut st);
                return Ok(());
            }
            st.shut_down = true;
            st.client.clone()
        };
        let timeout = self.exit_timeout;
        match client {
            Some(c) => py.detach(|| c.shutdown(timeout)).map_err(errors::to_py),
            None => Ok(()),
        }
    }

    /// The exit budget (seconds).
    #[getter]
    fn exit_timeout(&self) -> f64 {
        self.exit_timeout.as_secs_f64()
    }

    /// A snapshot of the counters.
    fn stats(&self) -> PyResult<Stats> {
        Ok(Stats::from(self.current()?.stats()))
    }

    /// The cost `track` would put on a `provider.api_call` of `model` with `usage` (priced by
    /// this client's price book; `None` without a book or for a model it does not know).
    #[pyo3(signature = (*, tenant_id, provider, model, usage=None, service_tier=None))]
    fn price_call(
        &self,
        tenant_id: String,
        provider: String,
        model: String,
        usage: Option<&Bound<'_, PyAny>>,
        service_tier: Option<&str>,
    ) -> PyResult<Option<Decimal>> {
        let usage = match usage {
            Some(u) if !u.is_none() => convert::usage(u, Some(&provider))?,
            _ => agenttally::Usage::default(),
        };
        let mut b = agenttally::ProviderEvent::api_call(tenant_id, provider, model).usage(usage);
        if let Some(v) = service_tier {
            b = b.service_tier(tier(v)?);
        }
        let mut event = b.build_unchecked();
        self.current()?.price(&mut event);
        Ok(event.cost_usd)
    }

    /// Start a run (emits `agent.started`); the Python layer wraps it in a context manager.
    #[pyo3(signature = (*, tenant_id, agent_id, task_type))]
    fn _start_run(&self, tenant_id: String, agent_id: String, task_type: String) -> PyResult<Run> {
        let run = self.current()?.run(tenant_id, agent_id, task_type);
        Ok(Run {
            correlation_id: run.correlation_id().to_string(),
            inner: Mutex::new(Some(run)),
            final_cost: Mutex::new(None),
        })
    }
}

fn rule_of(e: agenttally::Error) -> String {
    match e {
        agenttally::Error::Invalid { rule, .. } => rule,
        other => other.to_string(),
    }
}

fn tier(v: &str) -> PyResult<ServiceTier> {
    v.parse()
        .map_err(|e| errors::invalid("event.service_tier", rule_of(e)))
}

fn wait_timeout(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Duration> {
    match timeout {
        Some(t) if !t.is_none() => convert::duration(t, "timeout", true),
        _ => Ok(Duration::MAX),
    }
}

/// One agent run (see `Client.run`).
#[pyclass(module = "agenttally._native", name = "Run", frozen)]
#[derive(Debug)]
pub struct Run {
    inner: Mutex<Option<agenttally::Run>>,
    correlation_id: String,
    /// The run's cost when it finished (the core run is consumed by its outcome).
    final_cost: Mutex<Option<Decimal>>,
}

impl Run {
    fn with<T>(&self, f: impl FnOnce(&agenttally::Run) -> T) -> PyResult<T> {
        let g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match g.as_ref() {
            Some(r) => Ok(f(r)),
            None => Err(errors::to_py(agenttally::Error::Closed(
                "the run is finished".into(),
            ))),
        }
    }

    fn take(&self) -> Option<agenttally::Run> {
        let run = self
            .inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(r) = &run {
            *self
                .final_cost
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = r.cost();
        }
        run
    }
}

#[pymethods]
impl Run {
    /// Record a provider call: `usage` is a dict of canonical buckets or a provider SDK's
    /// usage object (OpenAI, Anthropic, Gemini), converted by sdk-core's adapters.
    #[pyo3(signature = (*, provider, model, usage=None))]
    fn record_call(
        &self,
        provider: String,
        model: String,
        usage: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let usage = match usage {
            Some(u) if !u.is_none() => convert::usage(u, Some(&provider))?,
            _ => agenttally::Usage::default(),
        };
        self.with(|r| r.record_call((provider, model, usage)))?
            .map_err(errors::to_py)
    }

    /// Emit `agent.completed`. Finishing twice is a no-op.
    fn complete(&self) -> PyResult<()> {
        match self.take() {
            Some(r) => r.complete().map_err(errors::to_py),
            None => Ok(()),
        }
    }

    /// Emit `agent.failed` with `error_code`.
    fn fail(&self, error_code: String) -> PyResult<()> {
        match self.take() {
            Some(r) => r.fail(error_code).map_err(errors::to_py),
            None => Ok(()),
        }
    }

    /// Emit `agent.timeout`.
    fn timeout(&self) -> PyResult<()> {
        match self.take() {
            Some(r) => r.timeout().map_err(errors::to_py),
            None => Ok(()),
        }
    }

    /// The correlation id every event of the run carries.
    #[getter]
    fn correlation_id(&self) -> String {
        self.correlation_id.clone()
    }

    /// Summed cost of the calls recorded so far (`None` when none had a cost).
    #[getter]
    fn cost(&self) -> Option<Decimal> {
        let live = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match live.as_ref() {
            Some(r) => r.cost(),
            None => *self
                .final_cost
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Whether an outcome has been emitted.
    #[getter]
    fn finished(&self) -> bool {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_none()
    }
}

/// Events dropped, by reason.
#[pyclass(module = "agenttally._native", name = "Dropped", frozen, get_all)]
#[derive(Debug, Clone)]
pub struct Dropped {
    queue_full: u64,
    evicted: u64,
    undeliverable: u64,
    shutdown: u64,
    spool_full: u64,
    spool_io: u64,
}

#[pymethods]
impl Dropped {
    /// All drops, `queue_full` included.
    fn total(&self) -> u64 {
        self.queue_full
            + self.evicted
            + self.undeliverable
            + self.shutdown
            + self.spool_full
            + self.spool_io
    }

    fn __repr__(&self) -> String {
        format!(
            "Dropped(queue_full={}, evicted={}, undeliverable={}, shutdown={}, spool_full={}, spool_io={})",
            self.queue_full, self.evicted, self.undeliverable, self.shutdown, self.spool_full, self.spool_io
        )
    }
}

/// A snapshot of the client's counters (see sdk-core's `Stats`).
#[pyclass(module = "agenttally._native", name = "Stats", frozen, get_all)]
#[derive(Debug)]
pub struct Stats {
    accepted: u64,
    sent: u64,
    duplicates: u64,
    retried: u64,
    requests: u64,
    rejected: u64,
    dropped: Dropped,
    queue_depth: u64,
    queue_bytes: u64,
    spooled: u64,
    replayed: u64,
    spool_pending: u64,
    spool_bytes: u64,
    spool_corrupt: u64,
    oldest_queued_age: Duration,
    requests_in_flight: u64,
    in_flight_limit: u64,
}

impl From<CoreStats> for Stats {
    fn from(s: CoreStats) -> Self {
        Stats {
            accepted: s.accepted,
            sent: s.sent,
            duplicates: s.duplicates,
            retried: s.retried,
            requests: s.requests,
            rejected: s.rejected,
            dropped: Dropped {
                queue_full: s.dropped.queue_full,
                evicted: s.dropped.evicted,
                undeliverable: s.dropped.undeliverable,
                shutdown: s.dropped.shutdown,
                spool_full: s.dropped.spool_full,
                spool_io: s.dropped.spool_io,
            },
            queue_depth: s.queue_depth,
            queue_bytes: s.queue_bytes,
            spooled: s.spooled,
            replayed: s.replayed,
            spool_pending: s.spool_pending,
            spool_bytes: s.spool_bytes,
            spool_corrupt: s.spool_corrupt,
            oldest_queued_age: s.oldest_queued_age,
            requests_in_flight: s.requests_in_flight,
            in_flight_limit: s.in_flight_limit,
        }
    }
}

#[pymethods]
impl Stats {
    /// Events acknowledged by the collector (`sent + duplicates`).
    fn delivered(&self) -> u64 {
        self.sent + self.duplicates
    }

    fn __repr__(&self) -> String {
        format!(
            "Stats(accepted={}, sent={}, duplicates={}, rejected={}, requests={}, retried={}, queue_depth={}, requests_in_flight={}, in_flight_limit={}, dropped={})",
            self.accepted, self.sent, self.duplicates, self.rejected, self.requests, self.retried,
            self.queue_depth, self.requests_in_flight, self.in_flight_limit, self.dropped.__repr__()
        )
    }
}
