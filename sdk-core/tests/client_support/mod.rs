//! A test collector: a real HTTP server (axum on 127.0.0.1) that plays the collector's faults,
//! dedupes by event id and counts duplicates, so tests can check exactly-once-by-id delivery.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agenttally::{AnalyticsEvent, ProviderEvent, Usage};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use uuid::Uuid;

/// What the next request gets instead of a normal answer.
#[derive(Debug, Clone)]
pub enum Fault {
    Status(u16),
    RetryAfter(u16, u64),
    /// Sleep, then answer normally.
    Slow(Duration),
    /// Store the events, then answer 503 (the ack is lost: the client must re-send).
    LoseAck,
}

#[derive(Debug, Default)]
pub struct Seen {
    /// Times each id was stored or seen as a duplicate.
    pub stored: HashMap<Uuid, u32>,
    pub duplicates: u64,
    /// Ids of every request, with its arrival time.
    pub requests: Vec<(Instant, Vec<Uuid>)>,
    /// Ids the server acknowledged (200 stored/duplicate) in a response that was sent.
    pub acked: HashSet<Uuid>,
    /// Requests that carried an id already acknowledged.
    pub resent_after_ack: u64,
    pub auth: Vec<Option<String>>,
    pub gzip: u64,
}

#[derive(Debug, Default)]
pub struct Ctl {
    pub seen: Mutex<Seen>,
    pub faults: Mutex<VecDeque<Fault>>,
    /// Answer 413 to batches with more events than this.
    pub max_events: Mutex<Option<usize>>,
    /// Per-event rejections: id → (error JSON, retryable). A retryable rejection is answered
    /// once (the re-send is stored); a permanent one every time.
    pub reject: Mutex<HashMap<Uuid, (Value, bool)>>,
    /// Every request waits this long before it is answered.
    pub delay: Mutex<Option<Duration>>,
    /// Requests being handled now, and the most at once so far.
    pub active: AtomicUsize,
    pub max_active: AtomicUsize,
}

/// Counts a request as active while it is handled.
struct Active<'a>(&'a Ctl);

impl<'a> Active<'a> {
    fn enter(ctl: &'a Ctl) -> Self {
        let now = ctl.active.fetch_add(1, Ordering::SeqCst) + 1;
        ctl.max_active.fetch_max(now, Ordering::SeqCst);
        Active(ctl)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ctl {
    pub fn unique(&self) -> usize {
        self.seen.lock().unwrap().stored.len()
    }
    pub fn duplicates(&self) -> u64 {
        self.seen.lock().unwrap().duplicates
    }
    pub fn requests(&self) -> Vec<(Instant, Vec<Uuid>)> {
        self.seen.lock().unwrap().requests.clone()
    }
    pub fn fault(&self, f: Fault) {
        self.faults.lock().unwrap().push_back(f);
    }
    /// The most requests handled at once so far.
    pub fn most_at_once(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }
    /// Count afresh from now.
    pub fn reset_most_at_once(&self) {
        self.max_active.store(0, Ordering::SeqCst);
    }
    /// Ids stored at least once.
    pub fn ids(&self) -> HashSet<Uuid> {
        self.seen.lock().unwrap().stored.keys().copied().collect()
    }
}

pub struct TestCollector {
    pub addr: SocketAddr,
    pub ctl: Arc<Ctl>,
    rt: tokio::runtime::Runtime,
}

impl TestCollector {
    pub fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        Self::on(l)
    }

    /// Serve on `listener` (e.g. a port a test kept refusing until now).
    pub fn on(listener: TcpListener) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let ctl = Arc::new(Ctl::default());
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new()
            .route("/v1/batch", post(batch))
            .with_state(ctl.clone());
        rt.spawn(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
        TestCollector { addr, ctl, rt }
    }

    /// A collector that waits `delay` before answering each request.
    pub fn slow(delay: Duration) -> Self {
        let srv = Self::start();
        *srv.ctl.delay.lock().unwrap() = Some(delay);
        srv
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn batch(State(ctl): State<Arc<Ctl>>, headers: HeaderMap, body: Bytes) -> Response {
    let _active = Active::enter(&ctl);
    let delay = *ctl.delay.lock().unwrap();
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let gz = headers.get("content-encoding").is_some_and(|v| v == "gzip");
    let raw = if gz {
        let mut out = Vec::new();
        if flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut out)
            .is_err()
        {
            return (StatusCode::BAD_REQUEST, "bad gzip").into_response();
        }
        out
    } else {
        body.to_vec()
    };
    let Ok(v) = serde_json::from_slice::<Value>(&raw) else {
        return (StatusCode::BAD_REQUEST, "bad json").into_response();
    };
    let events = v["batch"].as_array().cloned().unwrap_or_default();
    let ids: Vec<Uuid> = events
        .iter()
        .map(|e| {
            e["id"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_default()
        })
        .collect();
    {
        let mut s = ctl.seen.lock().unwrap();
        if ids.iter().any(|id| s.acked.contains(id)) {
            s.resent_after_ack += 1;
        }
        s.requests.push((Instant::now(), ids.clone()));
        s.auth.push(
            headers
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_string()),
        );
        s.gzip += u64::from(gz);
    }
    let fault = ctl.faults.lock().unwrap().pop_front();
    let mut lose_ack = false;
    match fault {
        Some(Fault::Status(s)) => return StatusCode::from_u16(s).unwrap().into_response(),
        Some(Fault::RetryAfter(s, secs)) => {
            return (
                StatusCode::from_u16(s).unwrap(),
                [("retry-after", secs.to_string())],
            )
                .into_response()
        }
        Some(Fault::Slow(d)) => tokio::time::sleep(d).await,
        Some(Fault::LoseAck) => lose_ack = true,
        None => {}
    }
    if let Some(max) = *ctl.max_events.lock().unwrap() {
        if ids.len() > max {
            return StatusCode::PAYLOAD_TOO_LARGE.into_response();
        }
    }
    let mut rejected = Vec::new();
    let (mut accepted, mut dups) = (0u64, 0u64);
    let mut acked = Vec::new();
    {
        let mut reject = ctl.reject.lock().unwrap();
        let mut s = ctl.seen.lock().unwrap();
        for (index, id) in ids.iter().enumerate() {
            if let Some((err, retryable)) = reject.get(id).cloned() {
                if retryable {
                    reject.remove(id);
                }
                rejected
                    .push(json!({"index": index, "id": id, "error": err, "retryable": retryable}));
                continue;
            }
            let n = s.stored.entry(*id).or_insert(0);
            *n += 1;
            if *n > 1 {
                dups += 1;
                s.duplicates += 1;
            } else {
                accepted += 1;
            }
            acked.push(*id);
        }
        if !lose_ack {
            s.acked.extend(acked);
        }
    }
    if lose_ack {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    axum::Json(json!({"accepted": accepted, "duplicates": dups, "rejected": rejected}))
        .into_response()
}

/// A listener that accepts connections and never answers.
pub fn hanging_server() -> (SocketAddr, std::thread::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = std::thread::spawn(move || {
        let mut held = Vec::new();
        l.set_nonblocking(true).unwrap();
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            match l.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (addr, h)
}

/// A port nothing listens on (connection refused), and the listener to bind it later.
pub fn refused_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub fn event(i: u64) -> AnalyticsEvent {
    ProviderEvent::api_call("acme", "openai", "gpt-4o")
        .usage(Usage {
            input_tokens: 1000 + i,
            output_tokens: 200,
            ..Usage::default()
        })
        .agent_id("agent-1")
        .task_type("code_review")
        .duration_ms(1200)
        .build()
        .unwrap()
}

/// Poll `f` until it is true or `limit` passes.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}
