//! `NativeClient` and `NativeRun`: sdk-core's client behind napi classes. The JavaScript layer
//! (`index.js`) gives them the documented API (option objects, `run(...)`, `AgentTallyError`,
//! the exit hook); arguments arrive here positionally, with no property lookups through N-API.
//! `track` is not a method: it is the function `tracker()` returns (see `track.rs`).
//!
//! Nothing here holds the event loop: the worker is sdk-core's own thread. `flush` and `shutdown`
//! wait on a thread of their own and settle a Promise, so the main thread never waits; the
//! pending Promise (only) keeps the loop alive until it settles, as any awaited I/O does.

use std::time::Duration;

use agenttally::client::{OverflowPolicy, Stats as CoreStats};
use agenttally::ServiceTier;
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;
use rust_decimal::Decimal;

use crate::convert::{self, Kind};
use crate::errors;
use crate::pricing::PriceBook;
use crate::track;

/// The delivery client. Every setting left `undefined` keeps sdk-core's default.
#[derive(Debug)]
#[napi]
pub struct NativeClient {
    /// `None` only while being dropped (see `Drop`).
    inner: Option<agenttally::Client>,
}

impl NativeClient {
    fn client(&self, env: &Env) -> Result<&agenttally::Client> {
        self.inner
            .as_ref()
            .ok_or_else(|| errors::to_js(env, closed("the client is shut down")))
    }
}

fn closed(what: &str) -> agenttally::Error {
    agenttally::Error::Closed(what.into())
}

/// A client collected by the garbage collector (or torn down with a worker) without
/// `shutdown()`: sdk-core's drop delivers what is queued within its drop timeout, which must
/// not happen on the JavaScript thread, so the last handle is dropped on a thread of its own.
impl Drop for NativeClient {
    fn drop(&mut self) {
        if let Some(c) = self.inner.take() {
            drop_off_thread(c);
        }
    }
}

/// Drop a handle of the client on a thread of its own: the last one delivers what is queued.
pub(crate) fn drop_off_thread(c: agenttally::Client) {
    let spawned = std::thread::Builder::new()
        .name("agenttally-drop".into())
        .spawn(move || drop(c));
    // Without a thread the handle has been dropped in place (bounded by the drop timeout).
    drop(spawned);
}

/// The error `Promise` settles with, converted on the JavaScript thread.
type Outcome = std::result::Result<(), agenttally::Error>;

/// Run `work` on a thread of its own and return a Promise of its outcome.
fn settle_on_thread<'env>(
    env: &'env Env,
    name: &str,
    work: impl FnOnce() -> Outcome + Send + 'static,
) -> Result<Object<'env>> {
    let (deferred, promise) = env.create_deferred::<(), _>()?;
    let spawned = std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let outcome = work();
            deferred.resolve(move |env: Env| outcome.map_err(|e| errors::to_js(&env, e)));
        });
    match spawned {
        Ok(_) => Ok(promise),
        Err(e) => Err(errors::to_js(
            env,
            agenttally::Error::Io(format!("starting the {name} thread: {e}")),
        )),
    }
}

fn wait_timeout(env: &Env, v: &Unknown<'_>) -> Result<Duration> {
    Ok(convert::opt_millis(env, v, "timeout", true)?.unwrap_or(Duration::MAX))
}

#[napi]
impl NativeClient {
    #[napi(constructor)]
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        env: Env,
        endpoint: Unknown<'_>,
        api_key: Unknown<'_>,
        ca_file: Unknown<'_>,
        flush_at: Unknown<'_>,
        flush_interval: Unknown<'_>,
        max_queue_events: Unknown<'_>,
        max_queue_bytes: Unknown<'_>,
        overflow: Unknown<'_>,
        spool_dir: Unknown<'_>,
        gzip: Unknown<'_>,
        disabled: Unknown<'_>,
        price_book: Option<&PriceBook>,
        request_timeout: Unknown<'_>,
        max_retry_time: Unknown<'_>,
        max_in_flight: Unknown<'_>,
    ) -> Result<Self> {
        let env = &env;
        let mut b = agenttally::Client::builder();
        if let Some(v) = convert::opt_string(env, &endpoint, Kind::Config, "endpoint")? {
            b = b.endpoint(v);
        }
        if let Some(v) = convert::opt_string(env, &api_key, Kind::Config, "api_key")? {
            b = b.api_key(v);
        }
        if let Some(v) = convert::opt_string(env, &ca_file, Kind::Config, "ca_file")? {
            b = b.ca_file(v);
        }
        if let Some(v) = convert::opt_count(env, &flush_at, "flush_at")? {
            b = b.flush_at(v);
        }
        if let Some(v) = convert::opt_millis(env, &flush_interval, "flush_interval", false)? {
            b = b.flush_interval(v);
        }
        if let Some(v) = convert::opt_count(env, &max_queue_events, "max_queue_events")? {
            b = b.max_queue_events(v);
        }
        if let Some(v) = convert::opt_count(env, &max_queue_bytes, "max_queue_bytes")? {
            b = b.max_queue_bytes(v);
        }
        if let Some(v) = convert::opt_string(env, &overflow, Kind::Config, "overflow")? {
            b = b.overflow(match v.as_str() {
                "drop_newest" => OverflowPolicy::DropNewest,
                "drop_oldest" => OverflowPolicy::DropOldest,
                "spool" => OverflowPolicy::Spool,
                other => {
                    return Err(errors::config(
                        env,
                        "overflow",
                        format!("must be one of drop_newest, drop_oldest, spool; got `{other}`"),
                    ))
                }
            });
        }
        if let Some(v) = convert::opt_string(env, &spool_dir, Kind::Config, "spool_dir")? {
            b = b.spool_dir(v);
        }
        if let Some(v) = convert::opt_bool(env, &gzip, Kind::Config, "gzip")? {
            b = b.gzip(v);
        }
        if let Some(v) = convert::opt_bool(env, &disabled, Kind::Config, "disabled")? {
            b = b.disabled(v);
        }
        if let Some(book) = price_book {
            b = b.price_book(book.inner.clone());
        }
        if let Some(v) = convert::opt_millis(env, &request_timeout, "request_timeout", false)? {
            b = b.request_timeout(v);
        }
        if let Some(v) = convert::opt_millis(env, &max_retry_time, "max_retry_time", false)? {
            b = b.max_retry_time(v);
        }
        if let Some(v) = convert::opt_count(env, &max_in_flight, "max_in_flight")? {
            b = b.max_in_flight(v);
        }
        let client = b.build().map_err(|e| errors::to_js(env, e))?;
        Ok(NativeClient {
            inner: Some(client),
        })
    }

    /// The client's `track(text, usage, metadata, odd, eventId?)`: validate, price (with a price book)
    /// and queue one event packed by `index.js` into `text`, the arguments and `slots` (see
    /// `track.rs`); returns its id. Never blocks.
    #[napi(
        ts_return_type = "(text: string, usage: unknown, metadata: unknown, odd: unknown[] | undefined, eventId?: unknown) => string"
    )]
    pub fn tracker<'env>(&self, env: &'env Env, slots: Float64Array) -> Result<Unknown<'env>> {
        track::function(env, self.client(env)?.clone(), slots)
    }

    /// Resolves once every event accepted before the call is delivered; rejects with `TIMEOUT`
    /// after `timeout` milliseconds (`undefined`: as long as it takes).
    #[napi(ts_return_type = "Promise<void>")]
    pub fn flush<'env>(&self, env: &'env Env, timeout: Unknown<'_>) -> Result<Object<'env>> {
        let timeout = wait_timeout(env, &timeout)?;
        let client = self.client(env)?.clone();
        settle_on_thread(env, "agenttally-flush", move || client.flush(timeout))
    }

    /// Deliver what is queued (at most `timeout` milliseconds), then stop the worker. Later
    /// `track` calls throw `CLOSED`; a second call resolves at once.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn shutdown<'env>(&self, env: &'env Env, timeout: Unknown<'_>) -> Result<Object<'env>> {
        let timeout = wait_timeout(env, &timeout)?;
        let client = self.client(env)?.clone();
        settle_on_thread(env, "agenttally-shutdown", move || client.shutdown(timeout))
    }

    /// `shutdown` waiting on the calling thread: only for the process `exit` event, where the
    /// event loop has already stopped and nothing else can run.
    #[napi]
    pub fn shutdown_sync(&self, env: Env, timeout: Unknown<'_>) -> Result<()> {
        let timeout = wait_timeout(&env, &timeout)?;
        self.client(&env)?
            .shutdown(timeout)
            .map_err(|e| errors::to_js(&env, e))
    }

    /// A snapshot of the counters.
    #[napi]
    pub fn stats(&self, env: Env) -> Result<Stats> {
        Ok(Stats::from(self.client(&env)?.stats()))
    }

    /// The cost of one provider call as `track()` would price it (the client's price book),
    /// without tracking anything: a decimal string, or `null` when unpriced or without a book.
    #[napi(ts_return_type = "string | null")]
    pub fn price_call(
        &self,
        env: Env,
        provider: Unknown<'_>,
        model: Unknown<'_>,
        usage: Unknown<'_>,
    ) -> Result<Option<String>> {
        let env = &env;
        let provider = convert::string(env, &provider, "call.provider")?;
        let model = convert::string(env, &model, "call.model")?;
        let usage = convert::usage(env, &usage, Some(&provider), "call.usage")?;
        // Prices do not depend on the tenant; the event is only priced, never tracked.
        let mut event = agenttally::ProviderEvent::api_call("-", provider, model)
            .usage(usage)
            .build_unchecked();
        self.client(env)?.price(&mut event);
        Ok(event.cost_usd.map(|c| c.normalize().to_string()))
    }

    /// Start a run: emits `agent.started`.
    #[napi]
    pub fn start_run(
        &self,
        env: Env,
        tenant_id: Unknown<'_>,
        agent_id: Unknown<'_>,
        task_type: Unknown<'_>,
    ) -> Result<NativeRun> {
        let env = &env;
        let tenant_id = convert::string(env, &tenant_id, "run.tenant_id")?;
        let agent_id = convert::string(env, &agent_id, "run.agent_id")?;
        let task_type = convert::string(env, &task_type, "run.task_type")?;
        let run = self.client(env)?.run(tenant_id, agent_id, task_type);
        Ok(NativeRun {
            correlation_id: run.correlation_id().to_string(),
            inner: Some(run),
            final_cost: None,
        })
    }
}

pub(crate) fn rule_of(e: agenttally::Error) -> String {
    match e {
        agenttally::Error::Invalid { rule, .. } => rule,
        other => other.to_string(),
    }
}

pub(crate) fn tier(env: &Env, v: &str, field: &str) -> Result<ServiceTier> {
    v.parse()
        .map_err(|e| errors::invalid(env, field, rule_of(e)))
}

/// One agent run (see `Client.run` in the JavaScript layer).
#[derive(Debug)]
#[napi]
pub struct NativeRun {
    inner: Option<agenttally::Run>,
    correlation_id: String,
    /// The run's cost when it finished (the core run is consumed by its outcome).
    final_cost: Option<Decimal>,
}

impl NativeRun {
    fn take(&mut self) -> Option<agenttally::Run> {
        let run = self.inner.take();
        if let Some(r) = &run {
            self.final_cost = r.cost();
        }
        run
    }
}

#[napi]
impl NativeRun {
    /// Record a provider call: `usage` is an object of canonical buckets or a provider SDK's
    /// usage object, converted by sdk-core's adapters.
    #[napi]
    pub fn record_call(
        &self,
        env: Env,
        provider: Unknown<'_>,
        model: Unknown<'_>,
        usage: Unknown<'_>,
    ) -> Result<()> {
        let env = &env;
        let provider = convert::string(env, &provider, "call.provider")?;
        let model = convert::string(env, &model, "call.model")?;
        let usage = convert::usage(env, &usage, Some(&provider), "call.usage")?;
        match &self.inner {
            Some(r) => r
                .record_call((provider, model, usage))
                .map_err(|e| errors::to_js(env, e)),
            None => Err(errors::to_js(env, closed("the run is finished"))),
        }
    }

    /// Emit `agent.completed`. Finishing twice is a no-op.
    #[napi]
    pub fn complete(&mut self, env: Env) -> Result<()> {
        match self.take() {
            Some(r) => r.complete().map_err(|e| errors::to_js(&env, e)),
            None => Ok(()),
        }
    }

    /// Emit `agent.failed` with `errorCode`.
    #[napi]
    pub fn fail(&mut self, env: Env, error_code: Unknown<'_>) -> Result<()> {
        let code = convert::string(&env, &error_code, "run.error_code")?;
        match self.take() {
            Some(r) => r.fail(code).map_err(|e| errors::to_js(&env, e)),
            None => Ok(()),
        }
    }

    /// Emit `agent.timeout`.
    #[napi]
    pub fn timeout(&mut self, env: Env) -> Result<()> {
        match self.take() {
            Some(r) => r.timeout().map_err(|e| errors::to_js(&env, e)),
            None => Ok(()),
        }
    }

    /// The correlation id every event of the run carries.
    #[napi(getter)]
    pub fn correlation_id(&self) -> String {
        self.correlation_id.clone()
    }

    /// Summed cost of the calls recorded so far, a decimal string (`null` when none had a cost).
    #[napi(getter, ts_return_type = "string | null")]
    pub fn cost(&self) -> Option<String> {
        let cost = match &self.inner {
            Some(r) => r.cost(),
            None => self.final_cost,
        };
        cost.map(|d| d.to_string())
    }

    /// Whether an outcome has been emitted.
    #[napi(getter)]
    pub fn finished(&self) -> bool {
        self.inner.is_none()
    }
}

/// Events dropped, by reason.
#[derive(Debug)]
#[napi(object)]
pub struct Dropped {
    pub queue_full: f64,
    pub evicted: f64,
    pub undeliverable: f64,
    pub shutdown: f64,
    pub spool_full: f64,
    pub spool_io: f64,
    /// All drops, `queueFull` included.
    pub total: f64,
}

/// A snapshot of the client's counters (see sdk-core's `Stats`). Counts are exact below 2^53.
#[derive(Debug)]
#[napi(object)]
pub struct Stats {
    pub accepted: f64,
    pub sent: f64,
    pub duplicates: f64,
    /// Events acknowledged by the collector (`sent + duplicates`).
    pub delivered: f64,
    pub retried: f64,
    pub requests: f64,
    pub rejected: f64,
    pub dropped: Dropped,
    pub queue_depth: f64,
    pub queue_bytes: f64,
    pub spooled: f64,
    pub replayed: f64,
    pub spool_pending: f64,
    pub spool_bytes: f64,
    pub spool_corrupt: f64,
    pub oldest_queued_age_ms: f64,
    /// Delivery requests running now.
    pub requests_in_flight: f64,
    /// How many requests the client lets run at once now (adapts up to `maxInFlight`).
    pub in_flight_limit: f64,
}

impl From<CoreStats> for Stats {
    fn from(s: CoreStats) -> Self {
        let n = |v: u64| v as f64;
        Stats {
            accepted: n(s.accepted),
            sent: n(s.sent),
            duplicates: n(s.duplicates),
            delivered: n(s.sent + s.duplicates),
            retried: n(s.retried),
            requests: n(s.requests),
            rejected: n(s.rejected),
            dropped: Dropped {
                queue_full: n(s.dropped.queue_full),
                evicted: n(s.dropped.evicted),
                undeliverable: n(s.dropped.undeliverable),
                shutdown: n(s.dropped.shutdown),
                spool_full: n(s.dropped.spool_full),
                spool_io: n(s.dropped.spool_io),
                total: n(s.dropped.total()),
            },
            queue_depth: n(s.queue_depth),
            queue_bytes: n(s.queue_bytes),
            spooled: n(s.spooled),
            replayed: n(s.replayed),
            spool_pending: n(s.spool_pending),
            spool_bytes: n(s.spool_bytes),
            spool_corrupt: n(s.spool_corrupt),
            oldest_queued_age_ms: s.oldest_queued_age.as_secs_f64() * 1000.0,
            requests_in_flight: n(s.requests_in_flight),
            in_flight_limit: n(s.in_flight_limit),
        }
    }
}
