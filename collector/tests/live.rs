//! `GET /v1/live` end to end: SSE and WebSocket clients of a tenant get `hello`, then updates
//! whose summed delta equals what was ingested (and `GET /v1/metrics/summary`, fresh tenant);
//! another tenant's client sees nothing of it; live tokens (expired, forged, another tenant's,
//! an API key in the URL) and missing credentials are refused; the per-tenant cap answers 429;
//! a WebSocket client that never reads is dropped while ingest and the other clients go on.

mod common;

use std::time::Duration;

use agenttally_collector::live::token::Signer;
use agenttally_collector::Scope;
use chrono::{TimeDelta, Utc};
use common::runs::tenant_events;
use common::{event, Env};
use futures_util::StreamExt;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SECRET: &str = "test-secret-0123456789abcdef0123456789";

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A Server-Sent Events client over reqwest.
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(env: &Env, query: &str, key: Option<&str>) -> reqwest::Response {
        let mut req = env
            .http
            .get(format!("{}/v1/live{query}", env.base))
            .header("accept", "text/event-stream");
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        req.send().await.expect("GET /v1/live")
    }

    async fn connect(env: &Env, query: &str, key: Option<&str>) -> Sse {
        let resp = Self::open(env, query, key).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Sse {
            resp,
            buf: String::new(),
        }
    }

    /// The next message (`event:` and `data:` checked to agree), or None within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                if frame.starts_with(':') {
                    continue; // a keep-alive comment
                }
                let event = frame.lines().find_map(|l| l.strip_prefix("event: "));
                let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
                let v: Value = serde_json::from_str(data.expect("data line")).expect("json");
                assert_eq!(Some(v["type"].as_str().expect("type")), event, "{frame}");
                return Some(v);
            }
            let chunk = tokio::time::timeout_at(deadline, self.resp.chunk())
                .await
                .ok()?;
            let chunk = chunk.expect("stream").expect("stream open");
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }
}

async fn ws_connect(env: &Env, query: &str, key: Option<&str>, rcvbuf: Option<u32>) -> Ws {
    let url = format!("{}/v1/live{query}", env.base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().expect("request");
    if let Some(k) = key {
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {k}").parse().expect("header"),
        );
    }
    let addr = env.server.as_ref().expect("server").addr();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    if let Some(n) = rcvbuf {
        socket.set_recv_buffer_size(n).expect("SO_RCVBUF");
    }
    let stream = socket.connect(addr).await.expect("connect");
    let (ws, resp) = tokio_tungstenite::client_async(req, stream)
        .await
        .expect("WebSocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

async fn ws_next(ws: &mut Ws, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await.ok()? {
            Some(Ok(WsMessage::Text(t))) => return Some(serde_json::from_str(&t).expect("json")),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
            other => panic!("unexpected on the WebSocket: {other:?}"),
        }
    }
}

async fn live_token(env: &Env, key: &str, query: &str) -> (u16, Value) {
    let resp = env
        .http
        .post(format!("{}/v1/live/token{query}", env.base))
        .bearer_auth(key)
        .send()
        .await
        .expect("POST /v1/live/token");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

/// Summed `delta`s of updates.
#[derive(Debug, Default)]
struct Sums {
    ints: std::collections::BTreeMap<String, i64>,
    cost: Decimal,
    commits: i64,
    recent: usize,
}

impl Sums {
    fn add(&mut self, update: &Value) {
        assert_eq!(update["type"], "update", "{update}");
        assert!(update["billing"].is_null());
        self.commits += update["commits"].as_i64().expect("commits");
        for (k, v) in update["delta"].as_object().expect("delta") {
            if k == "cost_usd" {
                self.cost += v
                    .as_str()
                    .expect("a decimal string")
                    .parse::<Decimal>()
                    .expect("decimal");
            } else {
                *self.ints.entry(k.clone()).or_default() += v.as_i64().expect("an integer");
            }
        }
        let recent = update["recent"].as_array().expect("recent");
        assert!(recent.len() <= 20);
        let ts: Vec<&str> = recent
            .iter()
            .map(|e| e["ts"].as_str().expect("ts"))
            .collect();
        let parsed: Vec<chrono::DateTime<Utc>> =
            ts.iter().map(|t| t.parse().expect("RFC 3339")).collect();
        assert!(
            parsed.windows(2).all(|w| w[0] >= w[1]),
            "newest first: {ts:?}"
        );
        for e in recent {
            assert!(e["cost_usd"].is_null() || e["cost_usd"].is_string(), "{e}");
        }
        self.recent += recent.len();
    }

    fn get(&self, k: &str) -> i64 {
        self.ints.get(k).copied().unwrap_or(0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_a_tenant_get_what_it_committed_and_no_other_tenant_does() {
    let mut env = Env::start_with(|c| c.live_token_secret = Some(SECRET.into())).await;
    let ingest = env.key(None, &[Scope::Ingest]).await;
    let acme = env.key(Some("acme"), &[Scope::Read]).await;
    let globex = env.key(Some("globex"), &[Scope::Read]).await;

    let mut sse = Sse::connect(&env, "", Some(&acme)).await;
    let (status, t) = live_token(&env, &acme, "").await;
    assert_eq!(status, 201, "{t}");
    assert_eq!(t["tenant_id"], "acme");
    let token = t["token"].as_str().expect("token").to_string();
    let mut ws = ws_connect(&env, &format!("?token={token}"), None, None).await;
    let (_, g) = live_token(&env, &globex, "").await;
    let mut other = Sse::connect(
        &env,
        &format!("?token={}", g["token"].as_str().expect("token")),
        None,
    )
    .await;

    for (name, hello) in [
        ("sse", sse.next(Duration::from_secs(10)).await),
        ("ws", ws_next(&mut ws, Duration::from_secs(10)).await),
    ] {
        let hello = hello.unwrap_or_else(|| panic!("{name}: hello"));
        assert_eq!(hello["type"], "hello", "{name}");
        assert_eq!(hello["tenant_id"], "acme", "{name}");
    }
    let hello = other.next(Duration::from_secs(10)).await.expect("hello");
    assert_eq!(
        (hello["type"].as_str(), hello["tenant_id"].as_str()),
        (Some("hello"), Some("globex"))
    );

    // Both instrumentation patterns, reported, priced and unpriced costs, in several batches.
    let events = tenant_events("acme", 7, 60, Utc::now());
    let total = events.len() as i64;
    for chunk in events.chunks(23) {
        let (status, body) = env.post(&ingest, chunk).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], chunk.len(), "{body}");
    }
    // Duplicates are not news.
    let (status, body) = env.post(&ingest, &events[..10]).await;
    assert_eq!(
        (status, body["duplicates"].as_i64()),
        (200, Some(10)),
        "{body}"
    );

    let summary: Value = env
        .http
        .get(format!("{}/v1/metrics/summary", env.base))
        .bearer_auth(&acme)
        .send()
        .await
        .expect("summary")
        .json()
        .await
        .expect("json");
    for name in ["sse", "ws"] {
        let mut sums = Sums::default();
        while sums.get("events") < total {
            let m = match name {
                "sse" => sse.next(Duration::from_secs(15)).await,
                _ => ws_next(&mut ws, Duration::from_secs(15)).await,
            };
            let m = m.unwrap_or_else(|| panic!("{name}: updates stopped at {sums:?}"));
            sums.add(&m);
        }
        assert_eq!(sums.get("events"), total, "{name}");
        assert!(sums.commits >= 1 && sums.recent >= 1, "{name}: {sums:?}");
        for f in [
            "executions",
            "successes",
            "failures",
            "api_calls",
            "unpriced_events",
        ] {
            assert_eq!(sums.get(f), summary[f].as_i64().expect(f), "{name}: {f}");
        }
        assert_eq!(
            sums.get("input_tokens"),
            summary["tokens"]["input_tokens"].as_i64().expect("in")
        );
        assert_eq!(
            sums.get("output_tokens"),
            summary["tokens"]["output_tokens"].as_i64().expect("out")
        );
        let cost: Decimal = summary["cost_usd"]
            .as_str()
            .expect("cost")
            .parse()
            .expect("decimal");
        assert_eq!(sums.cost, cost, "{name}");
        assert!(
            sums.get("executions") > 0 && sums.get("unpriced_events") > 0,
            "{sums:?}"
        );
    }
    // The other tenant's client saw nothing but its hello (and keep-alives).
    assert_eq!(other.next(Duration::from_millis(500)).await, None);

    // Shutdown closes the streams: the WebSocket with a close frame, the SSE body ends.
    env.shutdown().await;
    let closed = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("closed");
    assert!(
        matches!(closed, Some(Ok(WsMessage::Close(_))) | None | Some(Err(_))),
        "{closed:?}"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), sse.resp.chunk())
        .await
        .expect("ended");
    assert!(matches!(end, Ok(None) | Err(_)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_credentials_are_checked() {
    let mut env = Env::start_with(|c| c.live_token_secret = Some(SECRET.into())).await;
    let acme = env.key(Some("acme"), &[Scope::Read]).await;
    let ingest_only = env.key(Some("acme"), &[Scope::Ingest]).await;
    let platform = env.key(None, &[Scope::Read]).await;
    let status = |r: reqwest::Response| r.status().as_u16();
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or_default().to_string();

    // No credential at all, and a credential without the scope.
    let r = Sse::open(&env, "", None).await;
    assert_eq!(status(r), 401);
    let (s, v) = live_token(&env, &ingest_only, "").await;
    assert_eq!((s, code(&v).as_str()), (403, "insufficient_scope"), "{v}");
    assert_eq!(status(Sse::open(&env, "", Some(&ingest_only)).await), 403);
    // A platform key names the tenant.
    let (s, v) = live_token(&env, &platform, "").await;
    assert_eq!(s, 422, "{v}");
    let (s, v) = live_token(&env, &platform, "?tenant_id=globex").await;
    assert_eq!((s, v["tenant_id"].as_str()), (201, Some("globex")), "{v}");
    let mut sse = Sse::connect(&env, "?tenant_id=initech", Some(&platform)).await;
    assert_eq!(
        sse.next(Duration::from_secs(10)).await.expect("hello")["tenant_id"],
        "initech"
    );

    // Tokens: expired, forged, signed with another key, for another tenant; a key in the URL.
    let signer = Signer::new(Some(SECRET)).expect("signer");
    let (expired, _) = signer.issue("acme", "at_test", Utc::now() - TimeDelta::seconds(61));
    let (good, _) = signer.issue("acme", "at_test", Utc::now());
    let (foreign, _) = Signer::new(None)
        .expect("signer")
        .issue("acme", "at_test", Utc::now());
    let forged = format!("{}x", &good[..good.len() - 1]);
    for (token, want) in [
        (expired.as_str(), "live_token_expired"),
        (forged.as_str(), "invalid_live_token"),
        (foreign.as_str(), "invalid_live_token"),
        (acme.as_str(), "key_in_url"),
    ] {
        let r = Sse::open(&env, &format!("?token={token}"), None).await;
        assert_eq!(r.status(), 401, "{want}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(code(&v), want, "{v}");
    }
    let r = Sse::open(&env, &format!("?token={good}&tenant_id=globex"), None).await;
    assert_eq!(status(r), 403);
    // A tenant key for another tenant.
    assert_eq!(
        status(Sse::open(&env, "?tenant_id=globex", Some(&acme)).await),
        403
    );
    // Unknown parameters, and neither WebSocket nor SSE.
    assert_eq!(
        status(Sse::open(&env, "?tenant=acme", Some(&acme)).await),
        422
    );
    let r = env
        .http
        .get(format!("{}/v1/live?token={good}", env.base))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 406);
    let v: Value = r.json().await.expect("json");
    assert!(v["error"]["message"]
        .as_str()
        .expect("message")
        .contains("text/event-stream"));
    // The good token opens both kinds.
    let mut ws = ws_connect(&env, &format!("?token={good}"), None, None).await;
    assert_eq!(
        ws_next(&mut ws, Duration::from_secs(10))
            .await
            .expect("hello")["type"],
        "hello"
    );
    let mut ws = ws_connect(&env, "", Some(&acme), None).await;
    assert_eq!(
        ws_next(&mut ws, Duration::from_secs(10))
            .await
            .expect("hello")["tenant_id"],
        "acme"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_cap_is_answered_429() {
    let mut env = Env::start_with(|c| c.live_max_connections_per_tenant = 2).await;
    let acme = env.key(Some("acme"), &[Scope::Read]).await;
    let globex = env.key(Some("globex"), &[Scope::Read]).await;
    let first = Sse::connect(&env, "", Some(&acme)).await;
    let mut second = ws_connect(&env, "", Some(&acme), None).await;
    ws_next(&mut second, Duration::from_secs(10))
        .await
        .expect("hello");
    let r = Sse::open(&env, "", Some(&acme)).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let v: Value = r.json().await.expect("json");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("`acme`"),
        "{v}"
    );
    // Another tenant is not affected.
    let _g = Sse::connect(&env, "", Some(&globex)).await;
    // A closed connection gives its place back.
    drop(first);
    second.close(None).await.expect("close");
    let mut reopened = false;
    for _ in 0..50 {
        if Sse::open(&env, "", Some(&acme)).await.status() == 200 {
            reopened = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(reopened, "a place came back");
    env.shutdown().await;
}

/// A WebSocket client that never reads fills its socket buffers; the server's send then stalls
/// and the connection is dropped, while ingest goes on and a reading client keeps its updates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped_and_nothing_waits_for_it() {
    let mut env = Env::start().await;
    let ingest = env.key(None, &[Scope::Ingest]).await;
    let acme = env.key(Some("acme"), &[Scope::Read]).await;
    let mut stalled = ws_connect(&env, "", Some(&acme), Some(4096)).await;
    let mut reader = ws_connect(&env, "", Some(&acme), None).await;
    ws_next(&mut reader, Duration::from_secs(10))
        .await
        .expect("hello");

    // Long dimensions make each update's `recent` large, so the buffers fill in seconds.
    let long = |c: char| c.to_string().repeat(120);
    let dropped = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("agenttally_live_slow_clients_dropped_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let started = tokio::time::Instant::now();
    let mut batches = 0;
    let mut reader_events = 0i64;
    loop {
        let batch: Vec<Value> = (0..50)
            .map(|_| {
                event(
                    "acme",
                    json!({"model": long('m'), "task_type": long('t'), "agent_id": long('a').repeat(2)}),
                )
            })
            .collect();
        let (status, body) = env.post(&ingest, &batch).await;
        assert_eq!(status, 200, "{body}");
        batches += 1;
        while let Some(m) = ws_next(&mut reader, Duration::from_millis(1)).await {
            reader_events += m["delta"]["events"].as_i64().unwrap_or(0);
        }
        let metrics = env.get("/metrics").await.text().await.expect("metrics");
        if dropped(&metrics) >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the stalled client was not dropped after {batches} batches"
        );
    }
    // The reading client still gets everything.
    while reader_events < batches * 50 {
        let m = ws_next(&mut reader, Duration::from_secs(10))
            .await
            .expect("updates go on");
        reader_events += m["delta"]["events"].as_i64().unwrap_or(0);
    }
    assert_eq!(reader_events, batches * 50);
    // The stalled client finds its connection closed after what was buffered.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.next().await {
                Some(Ok(_)) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the server closed the stalled connection");
    assert!(end.is_none() || matches!(end, Some(Err(_))), "{end:?}");
    env.shutdown().await;
}

/// An SSE client that never reads: its stream's writes stall, and the connection is closed
/// (the write-stall guard, here 2 s) while ingest goes on; its place is given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_event_stream_is_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut env = Env::start_with(|c| c.write_stall_timeout = Duration::from_secs(2)).await;
    let ingest = env.key(None, &[Scope::Ingest]).await;
    let acme = env.key(Some("acme"), &[Scope::Read]).await;
    let addr = env.server.as_ref().expect("server").addr();
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut stalled = socket.connect(addr).await.expect("connect");
    let request = format!(
        "GET /v1/live HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\
         Authorization: Bearer {acme}\r\n\r\n"
    );
    stalled
        .write_all(request.as_bytes())
        .await
        .expect("request");
    let open = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("agenttally_live_connections "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let long = |c: char| c.to_string().repeat(120);
    let started = tokio::time::Instant::now();
    let mut seen_open = false;
    loop {
        let batch: Vec<Value> = (0..50)
            .map(|_| {
                event(
                    "acme",
                    json!({"model": long('m'), "agent_id": long('a').repeat(2)}),
                )
            })
            .collect();
        let (status, body) = env.post(&ingest, &batch).await;
        assert_eq!(status, 200, "{body}");
        let n = open(&env.get("/metrics").await.text().await.expect("metrics"));
        seen_open |= n == 1;
        if seen_open && n == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the stalled stream stayed open"
        );
    }
    // What was buffered, then the end of the connection.
    let mut sink = vec![0u8; 64 * 1024];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match stalled.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server closed the connection");
    env.shutdown().await;
}
