//! Hostile input: a table of malformed, oversized, unauthenticated or foreign requests. Each gets
//! its exact status and an error that names the problem; never a 500; the server keeps serving.
//! One named test per kind of answer, each on its own collector.

mod common;

use agenttally_collector::Scope;
use common::{batch, event, gzip, now, Env};
use serde_json::{json, Value};

enum Key {
    None,
    Ingest,
    ReadOnly,
    Raw(&'static str),
}

struct Case {
    name: &'static str,
    key: Key,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
    status: u16,
    /// Substring of the request error's message, or (for 200) of the first rejected event's error.
    expect: &'static str,
}

fn case(name: &'static str, body: Vec<u8>, status: u16, expect: &'static str) -> Case {
    Case {
        name,
        key: Key::Ingest,
        headers: vec![],
        body,
        status,
        expect,
    }
}

fn one(extra: Value) -> Vec<u8> {
    batch(&[event("acme", extra)])
}

fn cases() -> Vec<Case> {
    let ok = || one(json!({}));
    let big_meta: String = "x".repeat(40 * 1024);
    let mut nested = String::new();
    for _ in 0..5_000 {
        nested.push('[');
    }
    for _ in 0..5_000 {
        nested.push(']');
    }
    let mut many = Vec::new();
    for _ in 0..1_001 {
        many.push(event("acme", json!({})));
    }
    let mut out = vec![
        Case {
            key: Key::None,
            ..case("missing auth", ok(), 401, "missing `Authorization: Bearer")
        },
        Case {
            key: Key::Raw("Bearer at_nope"),
            ..case("unknown key", ok(), 401, "not valid")
        },
        Case {
            key: Key::Raw("Basic dXNlcjpwYXNz"),
            ..case("basic auth", ok(), 401, "must be `Bearer <api key or JWT>`")
        },
        Case {
            key: Key::Raw("Bearer "),
            ..case(
                "empty bearer",
                ok(),
                401,
                "must be `Bearer <api key or JWT>`",
            )
        },
        Case {
            key: Key::ReadOnly,
            ..case("wrong scope", ok(), 403, "lacks the `ingest` scope")
        },
        case(
            "wrong tenant (all foreign)",
            batch(&[event("evil", json!({})), event("evil2", json!({}))]),
            403,
            "bound to tenant `acme`",
        ),
        Case {
            headers: vec![("content-encoding", "br")],
            ..case(
                "brotli encoding",
                ok(),
                415,
                "Content-Encoding `br` is not supported",
            )
        },
        Case {
            headers: vec![("content-encoding", "deflate")],
            ..case("deflate encoding", ok(), 415, "Content-Encoding `deflate`")
        },
        Case {
            headers: vec![("content-type", "text/plain")],
            ..case(
                "text/plain",
                ok(),
                415,
                "Content-Type must be application/json",
            )
        },
        case("empty body", vec![], 400, "body: empty"),
        case("whitespace body", b"  \n ".to_vec(), 400, "body: empty"),
        case("bad JSON", br#"{"batch": ["#.to_vec(), 400, "EOF"),
        case(
            "not JSON at all",
            b"hello world".to_vec(),
            400,
            "batch: must be a JSON object",
        ),
        case(
            "JSON null",
            b"null".to_vec(),
            400,
            "batch: must be a JSON object",
        ),
        case(
            "batch not an array",
            br#"{"batch": {"a": 1}}"#.to_vec(),
            400,
            "batch: invalid type: map, expected a sequence",
        ),
        case(
            "top-level array",
            br#"[{"id": 1}]"#.to_vec(),
            400,
            "batch: must be a JSON object",
        ),
        case(
            "missing batch field",
            br#"{"sent_at": "2026-01-01T00:00:00Z"}"#.to_vec(),
            400,
            "missing field `batch`",
        ),
        case(
            "unknown envelope field",
            br#"{"batch": [], "extra": 1}"#.to_vec(),
            400,
            "unknown field `extra`",
        ),
        case(
            "trailing garbage",
            {
                let mut b = ok();
                b.extend_from_slice(b" garbage");
                b
            },
            400,
            "trailing characters",
        ),
        case(
            "invalid UTF-8",
            b"{\"batch\": [\"\xff\xfe\"]}".to_vec(),
            400,
            "invalid unicode",
        ),
        case(
            "bad sent_at",
            br#"{"batch": [], "sent_at": "yesterday"}"#.to_vec(),
            400,
            "sent_at: must be an RFC 3339 timestamp",
        ),
        case(
            "more than 1000 events",
            batch(&many),
            413,
            "must hold at most 1000 events, got 1001",
        ),
        case(
            "600 KiB body",
            {
                let mut b = br#"{"batch": [], "sent_at": ""#.to_vec();
                b.extend(std::iter::repeat_n(b'x', 600 * 1024));
                b
            },
            413,
            "must be at most 524288 bytes",
        ),
        case(
            "3 MB body (sent whole)",
            vec![b' '; 3 * 1024 * 1024],
            413,
            "must be at most 524288 bytes uncompressed, got at least",
        ),
        // Declared 10 MB, body never sent: refused on the header alone, nothing buffered.
        case(
            "10 MB body (declared)",
            b"DECLARED 10485760".to_vec(),
            413,
            "must be at most 524288 bytes uncompressed, got at least 10485760",
        ),
        Case {
            headers: vec![("content-encoding", "gzip")],
            ..case(
                "gzip bomb (50 MB of zeros)",
                gzip(&vec![b' '; 50 * 1024 * 1024]),
                413,
                "inflates to more than 524288 bytes",
            )
        },
        Case {
            headers: vec![("content-encoding", "gzip")],
            ..case("not gzip", ok(), 400, "not valid gzip")
        },
        Case {
            headers: vec![("content-encoding", "gzip")],
            ..case(
                "truncated gzip",
                {
                    let g = gzip(&ok());
                    g[..g.len() / 2].to_vec()
                },
                400,
                "not valid gzip",
            )
        },
        case(
            "deeply nested metadata",
            format!(
                r#"{{"batch": [{{"metadata": {{"deep": {nested}}}}}], "sent_at": "{}"}}"#,
                now()
            )
            .into_bytes(),
            200,
            "batch[0]",
        ),
        // Per-event problems: 200, the event rejected by itself with a field-named error.
        case(
            "event not an object",
            br#"{"batch": [1]}"#.to_vec(),
            200,
            "batch[0]: must be a JSON object",
        ),
        case(
            "wrong type duration_ms",
            one(json!({"duration_ms": "abc"})),
            200,
            "batch[0].duration_ms: invalid type: string",
        ),
        case(
            "negative duration",
            one(json!({"duration_ms": -5})),
            200,
            "batch[0].duration_ms: must be >= 0, got -5",
        ),
        case(
            "NaN cost",
            one(json!({"cost_usd": "NaN"})),
            200,
            "batch[0].cost_usd: must be a decimal number, got `NaN`",
        ),
        case(
            "negative cost",
            one(json!({"cost_usd": "-0.01"})),
            200,
            "batch[0].cost_usd: must be >= 0, got -0.01",
        ),
        case(
            "absurd cost",
            one(json!({"cost_usd": "1e400"})),
            200,
            "batch[0].cost_usd",
        ),
        case(
            "huge metadata",
            one(json!({"metadata": {"blob": big_meta}})),
            200,
            "must be at most 32768 bytes",
        ),
        case(
            "unknown event type",
            one(json!({"event_type": "agent.exploded"})),
            200,
            "batch[0].event_type: unknown variant `agent.exploded`",
        ),
        case(
            "unknown event field",
            one(json!({"colour": "red"})),
            200,
            "batch[0].colour: unknown field `colour`",
        ),
        case(
            "missing tenant_id",
            one(json!({"tenant_id": null})),
            200,
            "missing field `tenant_id`",
        ),
        case(
            "bad tenant_id chars",
            one(json!({"tenant_id": "a b"})),
            200,
            "batch[0].tenant_id: must contain only",
        ),
        case(
            "missing id",
            one(json!({"id": null})),
            200,
            "batch[0].id: must be a non-nil UUID",
        ),
        case(
            "nil id",
            one(json!({"id": "00000000-0000-0000-0000-000000000000"})),
            200,
            "batch[0].id",
        ),
        case(
            "bad timestamp",
            one(json!({"timestamp": "last tuesday"})),
            200,
            "batch[0].timestamp: must be an RFC 3339 timestamp",
        ),
        case(
            "timestamp too old",
            one(json!({"timestamp": "2020-01-01T00:00:00Z"})),
            200,
            "batch[0].timestamp: must be within the last 30 days",
        ),
        case(
            "timestamp far future",
            one(json!({"timestamp": "2999-01-01T00:00:00Z"})),
            200,
            "batch[0].timestamp: must not be more than 24 hours in the future",
        ),
        case(
            "reasoning > output",
            one(json!({"usage": {"output_tokens": 1, "reasoning_tokens": 5}})),
            200,
            "batch[0].usage.reasoning_tokens: must be <= usage.output_tokens",
        ),
        case(
            "negative tokens",
            one(json!({"usage": {"input_tokens": -1}})),
            200,
            "batch[0].usage.input_tokens: invalid value: integer `-1`",
        ),
        case(
            "NUL in correlation_id",
            one(json!({"correlation_id": "a\u{0}b"})),
            200,
            "batch[0].correlation_id: must not contain NUL",
        ),
        case(
            "unpriced with a cost",
            one(json!({"cost_status": "unpriced"})),
            200,
            "batch[0].cost_usd: must be absent when cost_status is `unpriced`",
        ),
        case(
            "missing model on api_call",
            one(json!({"model": null})),
            200,
            "batch[0].model: is required for event_type `provider.api_call`",
        ),
    ];
    let dup = event("acme", json!({}));
    out.push(case(
        "duplicate in one batch",
        batch(&[dup.clone(), dup]),
        200,
        "",
    ));
    out
}

/// Every case of the table whose expected status `group` selects, on a collector of its own: each
/// gets its status and named error, never a 500, and the server keeps serving. Returns how many
/// cases ran.
async fn run_cases(group: impl Fn(u16) -> bool) -> usize {
    let mut env = Env::start().await;
    let ingest = env.key(Some("acme"), &[Scope::Ingest]).await;
    let read = env.key(Some("acme"), &[Scope::Read]).await;
    let cases: Vec<Case> = cases().into_iter().filter(|c| group(c.status)).collect();
    let ran = cases.len();
    let mut failures = Vec::new();
    for c in cases {
        let auth = match c.key {
            Key::None => None,
            Key::Ingest => Some(format!("Bearer {ingest}")),
            Key::ReadOnly => Some(format!("Bearer {read}")),
            Key::Raw(h) => Some(h.to_string()),
        };
        let (status, text) = if let Some(n) = c.body.strip_prefix(b"DECLARED ") {
            let n: usize = String::from_utf8_lossy(n).parse().expect("len");
            declared_only(&env.base, auth.as_deref(), n).await
        } else {
            let mut req = env.http.post(format!("{}/v1/batch", env.base)).body(c.body);
            if !c.headers.iter().any(|(h, _)| *h == "content-type") {
                req = req.header("content-type", "application/json");
            }
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            for (h, v) in &c.headers {
                req = req.header(*h, *v);
            }
            let resp = req.send().await.expect(c.name);
            let status = resp.status().as_u16();
            (status, resp.text().await.expect(c.name))
        };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text.clone()));
        let said = if status == 200 {
            v["rejected"][0]["error"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            v["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let ok = status == c.status
            && said.contains(c.expect)
            && (status == 200 || v["error"]["code"].is_string());
        println!("{:>3} {:<32} {}", status, c.name, said);
        if !ok {
            failures.push(format!(
                "{}: expected {} containing `{}`, got {status} {text}",
                c.name, c.status, c.expect
            ));
        }
        if c.name == "duplicate in one batch" {
            assert_eq!(v, json!({"accepted": 1, "duplicates": 1, "rejected": []}));
        }
        // Still serving after every case.
        let h = env.get("/healthz").await;
        assert_eq!(h.status().as_u16(), 200, "after {}", c.name);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    let m = env.get("/metrics").await.text().await.expect("text");
    assert!(!m.contains("status=\"500\""), "{m}");
    env.shutdown().await;
    ran
}

#[test]
fn the_table_is_large() {
    assert!(cases().len() >= 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bad_or_foreign_credentials_get_401_or_403() {
    assert!(run_cases(|s| s == 401 || s == 403).await >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_bodies_get_413() {
    assert!(run_cases(|s| s == 413).await >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_get_a_named_4xx() {
    assert!(run_cases(|s| (400..500).contains(&s) && ![401, 403, 413].contains(&s)).await >= 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_events_are_rejected_alone_in_a_200() {
    assert!(run_cases(|s| s == 200).await >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_method_and_route_are_answered_not_500() {
    let mut env = Env::start().await;
    let r = env.get("/v1/batch").await;
    assert_eq!(r.status().as_u16(), 405);
    let r = env.get("/nope").await;
    assert_eq!(r.status().as_u16(), 404);
    env.shutdown().await;
}

/// Send only the headers of a POST declaring `len` body bytes, and read the answer: what a client
/// waiting on `Expect: 100-continue` sees. The server must answer without reading the body.
async fn declared_only(base: &str, auth: Option<&str>, len: usize) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let auth = auth
        .map(|a| format!("authorization: {a}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /v1/batch HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         {auth}content-length: {len}\r\nexpect: 100-continue\r\nconnection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (status, body)
}
