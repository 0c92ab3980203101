//! Client configuration: every default lives here as a constant, and `ClientBuilder::build`
//! validates every setting once, naming the setting and the rule it broke.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::Error;

use super::transport::Transport;
use super::AutoPrice;

/// The defaults of every setting, in one place (bindings read them from here, never restate them).
pub mod defaults {
    use std::time::Duration;

    use super::{OverflowPolicy, SpoolFsync};

    /// Events per batch that trigger a send without waiting for the interval.
    pub const FLUSH_AT: usize = 100;
    /// Longest an accepted event waits in the queue before it is sent.
    pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
    /// Most events held in memory (queued and in flight).
    pub const MAX_QUEUE_EVENTS: usize = 10_000;
    /// Most serialized bytes held in memory (queued and in flight).
    pub const MAX_QUEUE_BYTES: usize = 16 * 1024 * 1024;
    /// What `track()` does when the queue is full.
    pub const OVERFLOW: OverflowPolicy = OverflowPolicy::DropNewest;
    /// One HTTP attempt, connect to last byte.
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
    /// Longest a batch is retried before it is spooled (or dropped without a spool).
    pub const MAX_RETRY_TIME: Duration = Duration::from_secs(60);
    /// First retry delay (before full jitter).
    pub const RETRY_MIN_DELAY: Duration = Duration::from_millis(100);
    /// Cap of the exponential retry delay (before full jitter).
    pub const RETRY_MAX_DELAY: Duration = Duration::from_secs(10);
    /// Most requests in flight at once; the client adapts below it, as
    /// [`ClientBuilder::max_in_flight`](super::ClientBuilder::max_in_flight) describes.
    pub const MAX_IN_FLIGHT: usize = 16;
    /// Requests in flight at once when the client starts (or `max_in_flight`, if lower).
    pub const INITIAL_IN_FLIGHT: usize = 4;
    /// Compress request bodies.
    pub const GZIP: bool = true;
    /// Spool fsync policy.
    pub const SPOOL_FSYNC: SpoolFsync = SpoolFsync::EveryN(1_000);
    /// Most bytes the spool keeps on disk; the oldest segments are dropped beyond it.
    pub const SPOOL_MAX_BYTES: u64 = 256 * 1024 * 1024;
    /// A spool segment is sealed (and becomes replayable) at this size.
    pub const SPOOL_SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
    /// Deadline of the shutdown `Drop` performs.
    pub const DROP_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
    /// Budget of the bounded flush the language bindings run when their process exits without
    /// shutting the client down (Python's `atexit`, Node's `beforeExit`).
    pub const EXIT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Upper bound of every duration setting: longer is a unit mistake (milliseconds given as
    /// seconds), and the worker adds these to `Instant`s, which must not overflow.
    pub const MAX_DURATION_SETTING: Duration = Duration::from_secs(24 * 3600);
    /// Upper bound of a spool segment: one is read into memory whole when it is replayed.
    pub const MAX_SPOOL_SEGMENT_BYTES: u64 = 1 << 30;
}

/// What `track()` does with an event when the in-memory queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Refuse the new event: `track()` returns `Err(QueueFull)` and `dropped.queue_full` counts it.
    #[default]
    DropNewest,
    /// Evict the oldest queued event (`dropped.evicted` counts it) and accept the new one.
    DropOldest,
    /// Accept the event and write it to the spool on disk (needs `spool_dir`).
    Spool,
}

/// When the spool calls `fsync` (`File::sync_data`).
///
/// Every append reaches the operating system before `track()`/the worker moves on, so a process
/// crash loses nothing; the policy only decides what a power failure may lose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolFsync {
    /// After every append (one append is one batch or one overflowed event).
    Always,
    /// After at least `n` records since the last sync.
    EveryN(u32),
    /// Never; the OS writes back when it likes.
    Never,
}

/// Configuration of a [`Client`](super::Client). Start from [`Client::builder()`](super::Client::builder).
#[derive(Clone)]
#[must_use = "a ClientBuilder does nothing until build() is called"]
pub struct ClientBuilder {
    pub(crate) endpoint: Option<String>,
    pub(crate) api_key: Option<String>,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) flush_at: usize,
    pub(crate) flush_interval: Duration,
    pub(crate) max_queue_events: usize,
    pub(crate) max_queue_bytes: usize,
    pub(crate) overflow: OverflowPolicy,
    pub(crate) spool_dir: Option<PathBuf>,
    pub(crate) spool_fsync: SpoolFsync,
    pub(crate) spool_max_bytes: u64,
    pub(crate) spool_segment_bytes: u64,
    pub(crate) request_timeout: Duration,
    pub(crate) max_retry_time: Duration,
    pub(crate) retry_min_delay: Duration,
    pub(crate) retry_max_delay: Duration,
    pub(crate) max_in_flight: usize,
    pub(crate) gzip: bool,
    pub(crate) disabled: bool,
    pub(crate) price_book: Option<Arc<dyn AutoPrice>>,
    pub(crate) transport: Option<Arc<dyn Transport>>,
    pub(crate) drop_timeout: Duration,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoint", &self.endpoint)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("flush_at", &self.flush_at)
            .field("flush_interval", &self.flush_interval)
            .field("max_queue_events", &self.max_queue_events)
            .field("max_queue_bytes", &self.max_queue_bytes)
            .field("overflow", &self.overflow)
            .field("spool_dir", &self.spool_dir)
            .field("spool_fsync", &self.spool_fsync)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("max_retry_time", &self.max_retry_time)
            .field("max_in_flight", &self.max_in_flight)
            .field("gzip", &self.gzip)
            .field("disabled", &self.disabled)
            .field("price_book", &self.price_book.is_some())
            .field("transport", &self.transport.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ClientBuilder {
    fn default() -> Self {
        use defaults as d;
        ClientBuilder {
            endpoint: None,
            api_key: None,
            ca_file: None,
            flush_at: d::FLUSH_AT,
            flush_interval: d::FLUSH_INTERVAL,
            max_queue_events: d::MAX_QUEUE_EVENTS,
            max_queue_bytes: d::MAX_QUEUE_BYTES,
            overflow: d::OVERFLOW,
            spool_dir: None,
            spool_fsync: d::SPOOL_FSYNC,
            spool_max_bytes: d::SPOOL_MAX_BYTES,
            spool_segment_bytes: d::SPOOL_SEGMENT_BYTES,
            request_timeout: d::REQUEST_TIMEOUT,
            max_retry_time: d::MAX_RETRY_TIME,
            retry_min_delay: d::RETRY_MIN_DELAY,
            retry_max_delay: d::RETRY_MAX_DELAY,
            max_in_flight: d::MAX_IN_FLIGHT,
            gzip: d::GZIP,
            disabled: false,
            price_book: None,
            transport: None,
            drop_timeout: d::DROP_SHUTDOWN_TIMEOUT,
        }
    }
}

impl ClientBuilder {
    /// Base URL of the collector, e.g. `https://collector.example.com`; batches go to
    /// `{endpoint}/v1/batch`. Required unless a custom [`transport`](Self::transport) is set.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }
    /// API key sent as `Authorization: Bearer <key>`.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }
    /// Trust the CA certificates of this PEM file (one or more `-----BEGIN CERTIFICATE-----`
    /// blocks) instead of the built-in roots when verifying an `https://` collector, e.g. a
    /// private CA or a self-signed collector certificate. Without it, the server is verified
    /// against the Mozilla root set compiled into the SDK (`webpki-roots`). Needs the `tls`
    /// feature; a file that cannot be read or holds no valid certificate fails `build()`.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }
    /// Send as soon as this many events are queued (also the most events per request, capped by
    /// the wire format's 1,000).
    pub fn flush_at(mut self, n: usize) -> Self {
        self.flush_at = n;
        self
    }
    /// Send whatever is queued at least this often.
    pub fn flush_interval(mut self, d: Duration) -> Self {
        self.flush_interval = d;
        self
    }
    /// Most events waiting in the queue (in-flight ones are not counted; at most 2^23).
    pub fn max_queue_events(mut self, n: usize) -> Self {
        self.max_queue_events = n;
        self
    }
    /// Most memory held by events waiting or in flight: a queued event counts its queue slot
    /// and the heap it owns (strings, metadata; allocator overhead included), an event in flight
    /// its serialized JSON. At most 2^39.
    pub fn max_queue_bytes(mut self, n: usize) -> Self {
        self.max_queue_bytes = n;
        self
    }
    /// What `track()` does when the queue is full.
    pub fn overflow(mut self, p: OverflowPolicy) -> Self {
        self.overflow = p;
        self
    }
    /// Directory of the on-disk spool. With a spool, batches that cannot be delivered (retry
    /// budget spent, shutdown deadline) are written to disk and replayed later, also by the next
    /// process that opens the same directory.
    pub fn spool_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.spool_dir = Some(path.into());
        self
    }
    /// When the spool fsyncs.
    pub fn spool_fsync(mut self, p: SpoolFsync) -> Self {
        self.spool_fsync = p;
        self
    }
    /// Most bytes the spool keeps; beyond it the oldest segment is deleted and its events are
    /// counted in `dropped.spool_full`.
    pub fn spool_max_bytes(mut self, n: u64) -> Self {
        self.spool_max_bytes = n;
        self
    }
    /// Size at which a spool segment is sealed and becomes replayable.
    pub fn spool_segment_bytes(mut self, n: u64) -> Self {
        self.spool_segment_bytes = n;
        self
    }
    /// Timeout of one HTTP attempt.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }
    /// Retry budget of one batch, from its first attempt.
    pub fn max_retry_time(mut self, d: Duration) -> Self {
        self.max_retry_time = d;
        self
    }
    /// Bounds of the capped exponential backoff (full jitter is applied on top).
    pub fn retry_delays(mut self, min: Duration, max: Duration) -> Self {
        self.retry_min_delay = min;
        self.retry_max_delay = max;
        self
    }
    /// Most requests in flight at once (1..=64). The client starts at
    /// [`defaults::INITIAL_IN_FLIGHT`] (or this, if lower), adds one for each request answered
    /// while every slot was busy, up to this, and halves when the collector asks it to slow down
    /// (408, 429, 5xx, a timeout or connection error, a per-event retryable rejection).
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }
    /// Gzip request bodies (`Content-Encoding: gzip`).
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }
    /// A disabled client validates events and then discards them; it starts no thread.
    pub fn disabled(mut self, off: bool) -> Self {
        self.disabled = off;
        self
    }
    /// Price events that carry `usage` but no cost, at `track()`: a
    /// [`PriceBook`](crate::pricing::PriceBook) (e.g. `PriceBook::builtin()`), a
    /// [`TenantPriceBooks`](crate::pricing::TenantPriceBooks), an `Arc` of either, or any
    /// custom [`AutoPrice`].
    pub fn price_book(mut self, book: impl AutoPrice) -> Self {
        self.price_book = Some(Arc::new(book));
        self
    }
    /// Deliver through this transport instead of HTTP (e.g. [`MemoryTransport`](super::MemoryTransport)).
    pub fn transport(mut self, t: impl Transport) -> Self {
        self.transport = Some(Arc::new(t));
        self
    }
    /// Deadline of the shutdown that dropping the client performs.
    pub fn drop_timeout(mut self, d: Duration) -> Self {
        self.drop_timeout = d;
        self
    }

    /// Validate the configuration and start the client (its worker thread, unless disabled).
    pub fn build(self) -> Result<super::Client, Error> {
        self.validate()?;
        super::Client::start(self)
    }

    fn validate(&self) -> Result<(), Error> {
        let max_events = crate::BatchLimits::V1.max_events;
        if self.transport.is_none() && !self.disabled {
            match &self.endpoint {
                None => {
                    return Err(Error::config(
                        "endpoint",
                        "is required (e.g. http://127.0.0.1:8080)",
                    ))
                }
                Some(e) if !(e.starts_with("http://") || e.starts_with("https://")) => {
                    return Err(Error::config(
                        "endpoint",
                        format!("must start with http:// or https://, got `{e}`"),
                    ))
                }
                Some(e) if e.starts_with("https://") && !cfg!(feature = "tls") => {
                    return Err(Error::config(
                        "endpoint",
                        "https needs the `tls` feature of agenttally",
                    ))
                }
                _ => {}
            }
        }
        if self.ca_file.is_some() && !cfg!(feature = "tls") {
            return Err(Error::config(
                "ca_file",
                "needs the `tls` feature of agenttally",
            ));
        }
        if let Some(k) = &self.api_key {
            if k.is_empty() || k.chars().any(|c| c.is_control() || c == ' ') {
                return Err(Error::config(
                    "api_key",
                    "must be non-empty and contain no spaces or control characters",
                ));
            }
        }
        if self.flush_at == 0 || self.flush_at > max_events {
            return Err(Error::config(
                "flush_at",
                format!("must be 1..={max_events}, got {}", self.flush_at),
            ));
        }
        check_duration(
            "flush_interval",
            self.flush_interval,
            Duration::from_millis(1),
        )?;
        if !(1..=1 << 23).contains(&self.max_queue_events) {
            return Err(Error::config(
                "max_queue_events",
                format!("must be 1..=8388608, got {}", self.max_queue_events),
            ));
        }
        if self.max_queue_bytes > 1 << 39 {
            return Err(Error::config(
                "max_queue_bytes",
                format!("must be at most 2^39, got {}", self.max_queue_bytes),
            ));
        }
        if self.max_queue_bytes < crate::event::MAX_EVENT_BYTES {
            return Err(Error::config(
                "max_queue_bytes",
                format!(
                    "must be >= {} (one largest event), got {}",
                    crate::event::MAX_EVENT_BYTES,
                    self.max_queue_bytes
                ),
            ));
        }
        if self.overflow == OverflowPolicy::Spool && self.spool_dir.is_none() {
            return Err(Error::config(
                "overflow",
                "`spool` needs spool_dir to be set",
            ));
        }
        if let SpoolFsync::EveryN(0) = self.spool_fsync {
            return Err(Error::config("spool_fsync", "every_n must be >= 1"));
        }
        if !(64 * 1024..=defaults::MAX_SPOOL_SEGMENT_BYTES).contains(&self.spool_segment_bytes) {
            return Err(Error::config(
                "spool_segment_bytes",
                format!(
                    "must be 65536..={}, got {}",
                    defaults::MAX_SPOOL_SEGMENT_BYTES,
                    self.spool_segment_bytes
                ),
            ));
        }
        if self.spool_max_bytes < self.spool_segment_bytes * 2 {
            return Err(Error::config(
                "spool_max_bytes",
                format!(
                    "must be at least two segments ({} bytes), got {}",
                    self.spool_segment_bytes * 2,
                    self.spool_max_bytes
                ),
            ));
        }
        check_duration(
            "request_timeout",
            self.request_timeout,
            Duration::from_millis(1),
        )?;
        check_duration("max_retry_time", self.max_retry_time, Duration::ZERO)?;
        check_duration("drop_timeout", self.drop_timeout, Duration::ZERO)?;
        check_duration("retry_delays", self.retry_max_delay, Duration::ZERO)?;
        if self.retry_min_delay.is_zero() || self.retry_max_delay < self.retry_min_delay {
            return Err(Error::config(
                "retry_delays",
                "min must be > 0 and max must be >= min",
            ));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 64 {
            return Err(Error::config("max_in_flight", "must be 1..=64"));
        }
        Ok(())
    }
}

/// `value` must lie in `min..=MAX_DURATION_SETTING` (one day).
fn check_duration(setting: &str, value: Duration, min: Duration) -> Result<(), Error> {
    let max = defaults::MAX_DURATION_SETTING;
    if value < min || value > max {
        return Err(Error::config(
            setting,
            format!("must be {min:?}..={max:?} (1 day), got {value:?}"),
        ));
    }
    Ok(())
}
