//! How a batch body reaches the collector: [`HttpTransport`] (reqwest, gzip, bearer auth) in
//! production and [`MemoryTransport`] in tests, behind one small [`Transport`] trait.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::{AnalyticsEvent, Batch};

/// Path of the collector's ingest route under the endpoint.
pub(crate) const BATCH_PATH: &str = "/v1/batch";

/// A boxed future, as [`Transport::send`] returns it.
pub type SendFuture = Pin<Box<dyn Future<Output = Result<Response, TransportError>> + Send>>;

/// Delivers one batch body. Implement it to send somewhere other than HTTP; the worker owns
/// retries, splitting and the response's meaning, so an implementation only moves bytes.
pub trait Transport: Send + Sync + 'static {
    /// Send `body`, the uncompressed JSON of a `{"batch": [...], "sent_at": ...}` envelope.
    /// Called on the worker's runtime (tokio, current thread).
    fn send(&self, body: Arc<Vec<u8>>) -> SendFuture;
}

/// What the collector answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `Retry-After`, when present and parseable (seconds or an HTTP date).
    pub retry_after: Option<Duration>,
    /// Response body (the 200 body lists per-event rejections).
    pub body: Vec<u8>,
}

/// A send that got no HTTP response. Always retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The request timed out.
    #[error("request timed out")]
    Timeout,
    /// Connecting failed (refused, reset, DNS).
    #[error("connect: {0}")]
    Connect(String),
    /// Anything else (body write failed, connection dropped mid-response).
    #[error("{0}")]
    Other(String),
}

/// Sends batches to `{endpoint}/v1/batch` with reqwest.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    http: reqwest::Client,
    url: Arc<str>,
    auth: Option<Arc<str>>,
    gzip: Option<Arc<Gzip>>,
}

impl HttpTransport {
    /// A transport for `endpoint` (base URL); `api_key` is sent as a bearer token.
    pub fn new(
        endpoint: &str,
        api_key: Option<&str>,
        request_timeout: Duration,
        gzip: bool,
    ) -> Result<Self, crate::Error> {
        Self::with_ca_file(endpoint, api_key, request_timeout, gzip, None)
    }

    /// [`new`](Self::new), verifying an `https://` endpoint against the CA certificates of the
    /// PEM file `ca_file` instead of the built-in roots (see `ClientBuilder::ca_file`).
    pub fn with_ca_file(
        endpoint: &str,
        api_key: Option<&str>,
        request_timeout: Duration,
        gzip: bool,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, crate::Error> {
        let mut builder = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(request_timeout)
            .user_agent(concat!("agenttally-rust/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = ca_file {
            builder = trust_only(builder, path)?;
        }
        let http = builder.build().map_err(|e| match ca_file {
            // The CA certificates are the only input the build checks: a certificate that
            // parsed as PEM but is no valid X.509 fails here.
            Some(path) => crate::Error::config(
                "ca_file",
                format!("`{}`: {}", path.display(), error_chain(&e)),
            ),
            None => crate::Error::config("endpoint", format!("HTTP client: {}", error_chain(&e))),
        })?;
        Ok(HttpTransport {
            http,
            url: format!("{}{}", endpoint.trim_end_matches('/'), BATCH_PATH).into(),
            auth: api_key.map(|k| format!("Bearer {k}").into()),
            gzip: gzip.then(|| Arc::new(Gzip::new())),
        })
    }
}

/// `builder` trusting exactly the CA certificates of the PEM file at `path`.
#[cfg(feature = "tls")]
fn trust_only(
    builder: reqwest::ClientBuilder,
    path: &std::path::Path,
) -> Result<reqwest::ClientBuilder, crate::Error> {
    let fail =
        |rule: String| crate::Error::config("ca_file", format!("`{}` {rule}", path.display()));
    let pem = std::fs::read(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
        fail(format!(
            "is not a PEM certificate file: {}",
            error_chain(&e)
        ))
    })?;
    if certs.is_empty() {
        return Err(fail(
            "holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)".to_string(),
        ));
    }
    Ok(certs
        .into_iter()
        .fold(builder.tls_built_in_root_certs(false), |b, cert| {
            b.add_root_certificate(cert)
        }))
}

/// Without the `tls` feature there is no https, so no CA to trust (`build()` refuses the setting
/// before this is reached).
#[cfg(not(feature = "tls"))]
fn trust_only(
    _builder: reqwest::ClientBuilder,
    _path: &std::path::Path,
) -> Result<reqwest::ClientBuilder, crate::Error> {
    Err(crate::Error::config(
        "ca_file",
        "needs the `tls` feature of agenttally",
    ))
}

/// `e` and its sources, `: `-separated (reqwest's own message is often just "builder error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// One gzip compressor, reused for every request body. A fresh compressor per body allocates and
/// frees ~400 KB each time, which glibc's adaptive mmap threshold turns into megabytes of
/// retained heap; reusing one keeps that memory fixed. Bodies are compressed one at a time on the
/// worker's single blocking thread, so the lock is never contended.
#[derive(Debug)]
pub(crate) struct Gzip(Mutex<flate2::Compress>);

impl Gzip {
    pub(crate) fn new() -> Self {
        Gzip(Mutex::new(flate2::Compress::new_gzip(
            flate2::Compression::fast(),
            15,
        )))
    }

    pub(crate) fn compress(&self, body: &[u8]) -> Vec<u8> {
        let mut c = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        c.reset();
        let mut out = Vec::with_capacity(body.len() / 4 + 64);
        loop {
            let start = usize::try_from(c.total_in())
                .unwrap_or(usize::MAX)
                .min(body.len());
            match c.compress_vec(&body[start..], &mut out, flate2::FlushCompress::Finish) {
                Ok(flate2::Status::StreamEnd) => return out,
                Ok(_) => out.reserve(out.capacity().max(4096)),
                // Cannot happen for a compressor in a valid state; send uncompressed rather than fail.
                Err(_) => return Vec::new(),
            }
        }
    }
}

impl Transport for HttpTransport {
    fn send(&self, body: Arc<Vec<u8>>) -> SendFuture {
        let this = self.clone();
        Box::pin(async move {
            let mut req = this
                .http
                .post(&*this.url)
                .header("content-type", "application/json");
            if let Some(a) = &this.auth {
                req = req.header("authorization", &**a);
            }
            let payload = match &this.gzip {
                Some(gz) => {
                    // Compression is CPU work: keep it off the worker's event loop.
                    let gz = gz.clone();
                    let packed = tokio::task::spawn_blocking(move || (gz.compress(&body), body))
                        .await
                        .map_err(|e| TransportError::Other(e.to_string()))?;
                    match packed {
                        (z, _) if !z.is_empty() => {
                            req = req.header("content-encoding", "gzip");
                            z
                        }
                        (_, body) => Arc::unwrap_or_clone(body),
                    }
                }
                None => Arc::unwrap_or_clone(body),
            };
            let resp = req.body(payload).send().await.map_err(map_err)?;
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            let body = resp.bytes().await.map_err(map_err)?.to_vec();
            Ok(Response {
                status,
                retry_after,
                body,
            })
        })
    }
}

fn map_err(e: reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() {
        TransportError::Connect(e.to_string())
    } else {
        TransportError::Other(e.to_string())
    }
}

/// `Retry-After: <seconds>` or `Retry-After: <HTTP-date>`.
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let d = t.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(
        d.to_std()
            .unwrap_or_default()
            .min(Duration::from_secs(3600)),
    )
}

/// An in-memory collector for tests, yours included: it records every batch it accepts and can
/// be told to fail. Clone it before handing it to the builder to keep a handle for assertions.
///
/// ```
/// use agenttally::client::MemoryTransport;
/// use agenttally::{Client, CustomerEvent};
/// use std::time::Duration;
///
/// let sink = MemoryTransport::new();
/// let client = Client::builder().transport(sink.clone()).build().unwrap();
/// client.track(CustomerEvent::login("acme", "u1").build_unchecked()).unwrap();
/// client.flush(Duration::from_secs(5)).unwrap();
/// assert_eq!(sink.events().len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryTransport {
    inner: Arc<Mutex<MemState>>,
}

#[derive(Debug, Default)]
struct MemState {
    batches: Vec<Batch>,
    attempts: usize,
    script: VecDeque<u16>,
    always: Option<u16>,
}

impl MemoryTransport {
    /// An empty transport that accepts everything.
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, MemState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answer the next `n` requests with `status` (e.g. 503, 429, 400) before accepting again.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.state().script.extend(std::iter::repeat_n(status, n));
    }

    /// Answer every request with `status` until called with `None`.
    pub fn fail_always(&self, status: Option<u16>) {
        self.state().always = status;
    }

    /// Batches accepted so far, in arrival order.
    pub fn batches(&self) -> Vec<Batch> {
        self.state().batches.clone()
    }

    /// Events of every accepted batch, in arrival order.
    pub fn events(&self) -> Vec<AnalyticsEvent> {
        self.state()
            .batches
            .iter()
            .flat_map(|b| b.batch.iter().cloned())
            .collect()
    }

    /// Requests received, failed ones included.
    pub fn attempts(&self) -> usize {
        self.state().attempts
    }

    /// Forget everything recorded.
    pub fn clear(&self) {
        let mut s = self.state();
        s.batches.clear();
        s.attempts = 0;
    }
}

impl Transport for MemoryTransport {
    fn send(&self, body: Arc<Vec<u8>>) -> SendFuture {
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut s = inner.lock().unwrap_or_else(PoisonError::into_inner);
            s.attempts += 1;
            let status = s.script.pop_front().or(s.always);
            if let Some(status) = status {
                return Ok(Response {
                    status,
                    retry_after: None,
                    body: Vec::new(),
                });
            }
            match serde_json::from_slice::<Batch>(&body) {
                Ok(b) => {
                    let n = b.batch.len();
                    s.batches.push(b);
                    Ok(Response {
                        status: 200,
                        retry_after: None,
                        body: format!(r#"{{"accepted":{n},"duplicates":0,"rejected":[]}}"#)
                            .into_bytes(),
                    })
                }
                Err(e) => Ok(Response {
                    status: 400,
                    retry_after: None,
                    body: serde_json::json!({ "error": e.to_string() })
                        .to_string()
                        .into_bytes(),
                }),
            }
        })
    }
}
