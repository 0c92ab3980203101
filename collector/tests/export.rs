//! GDPR export: every raw event of the tenant, streamed as NDJSON, CSV or a JSON array, each
//! `cost_usd` exactly the stored NUMERIC text; bad parameters named; signed one-time links that
//! need no bearer, work once, then answer 410 (and 410 once expired); each export recorded as a
//! `customer.export_data` event.

mod common;

use agenttally_collector::Scope;
use common::{event, Env};
use serde_json::{json, Value};

const TENANT: &str = "acme";
/// More than two pages of the export's cursor.
const EVENTS: usize = 2_300;

/// A known set: varied costs (including 18 decimal places and large amounts), personal fields,
/// metadata that needs CSV quoting; and a few events of another tenant.
fn known_events() -> Vec<Value> {
    let costs = [
        "0.0123",
        "0.000000000000000001",
        "999999999.123456789012345678",
        "0",
        "12.50",
    ];
    (0..EVENTS)
        .map(|i| {
            let mut extra = json!({
                "user_id": format!("user-{}", i % 7),
                "metadata": {"note": format!("line one\nsaid \"hi\", {i}"), "n": i},
            });
            if i % 11 == 0 {
                extra["cost_usd"] = Value::Null;
                extra["cost_status"] = json!("unpriced");
            } else {
                extra["cost_usd"] = json!(costs[i % costs.len()]);
            }
            event(TENANT, extra)
        })
        .collect()
}

async fn load(env: &Env) {
    let key = env.key(Some(TENANT), &[Scope::Ingest]).await;
    for chunk in known_events().chunks(500) {
        let (status, body) = env.post(&key, chunk).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["accepted"], chunk.len(), "{body}");
    }
    let other = env.key(Some("globex"), &[Scope::Ingest]).await;
    let (status, _) = env.post(&other, &[event("globex", json!({}))]).await;
    assert_eq!(status, 200);
}

/// `(id, cost_usd text)` of the tenant's stored events, in export order.
async fn stored(env: &Env) -> Vec<(String, Option<String>)> {
    env.db
        .query(
            "SELECT id::text, cost_usd::text FROM events WHERE tenant_id = $1 ORDER BY ts, id",
            &[&TENANT],
        )
        .await
        .expect("stored")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// A minimal RFC 4180 reader (quoted cells with commas, quotes and line breaks; CRLF rows).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut cell = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                cell.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => cell.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut cell)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut cell));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => cell.push(c),
        }
    }
    assert!(
        cell.is_empty() && row.is_empty(),
        "the CSV ends with a row end"
    );
    rows
}

/// The exported `(id, cost_usd)` pairs of a body, whatever its format.
fn exported(format: &str, body: &str) -> Vec<(String, Option<String>)> {
    let pair = |v: &Value| {
        assert_eq!(v["tenant_id"], TENANT, "{v}");
        assert!(v["received_at"].is_string(), "{v}");
        (
            v["id"].as_str().expect("id").to_string(),
            v["cost_usd"].as_str().map(str::to_string),
        )
    };
    match format {
        "ndjson" => {
            assert!(body.ends_with('\n'));
            body.lines()
                .map(|l| pair(&serde_json::from_str(l).expect("ndjson line")))
                .collect()
        }
        "json" => {
            let v: Value = serde_json::from_str(body).expect("one JSON array");
            v.as_array().expect("array").iter().map(pair).collect()
        }
        "csv" => {
            let rows = parse_csv(body);
            let header = &rows[0];
            assert_eq!(
                header.len(),
                agenttally_collector::export::CSV_COLUMNS.len()
            );
            let col = |name: &str| header.iter().position(|h| h == name).expect(name);
            let (id, cost, tenant, meta) = (
                col("id"),
                col("cost_usd"),
                col("tenant_id"),
                col("metadata"),
            );
            rows[1..]
                .iter()
                .map(|r| {
                    assert_eq!(r.len(), header.len(), "{r:?}");
                    assert_eq!(r[tenant], TENANT);
                    let m: Value = serde_json::from_str(&r[meta]).expect("metadata JSON");
                    assert!(m.is_object());
                    let c = (!r[cost].is_empty()).then(|| r[cost].clone());
                    (r[id].clone(), c)
                })
                .collect()
        }
        other => unreachable!("{other}"),
    }
}

async fn export_events(env: &Env) -> i64 {
    env.count(
        "SELECT count(*) FROM events
         WHERE tenant_id = 'acme' AND event_type = 'customer.export_data'",
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_format_matches_the_database_exactly() {
    let mut env = Env::start_with(no_export_limit).await;
    load(&env).await;
    let key = env.key(Some(TENANT), &[Scope::Export]).await;
    let prefix = &key[..11];
    for (n, (format, content_type)) in [
        ("ndjson", "application/x-ndjson"),
        ("csv", "text/csv; charset=utf-8"),
        ("json", "application/json"),
    ]
    .into_iter()
    .enumerate()
    {
        let before = stored(&env).await;
        let resp = env
            .http
            .get(format!("{}/v1/export?format={format}", env.base))
            .bearer_auth(&key)
            .send()
            .await
            .expect("export");
        assert_eq!(resp.status(), 200, "{format}");
        let h = resp.headers();
        assert_eq!(h["content-type"], content_type);
        let disposition = h["content-disposition"].to_str().expect("ascii");
        assert!(
            disposition.starts_with("attachment; filename=\"agenttally-acme-")
                && disposition.ends_with(&format!(".{format}\"")),
            "{disposition}"
        );
        let body = resp.text().await.expect("body");
        let got = exported(format, &body);
        // The file is the snapshot taken before the export recorded itself.
        assert_eq!(
            got, before,
            "{format}: ids and cost_usd texts in (ts, id) order"
        );
        assert_eq!(
            got.len() as i64,
            EVENTS as i64 + n as i64,
            "{format}: the known set plus the earlier exports' records"
        );
        // Each export is recorded, by the credential that asked.
        assert_eq!(export_events(&env).await, n as i64 + 1);
        let (count, costs) = {
            let r = env
                .db
                .query_one(
                    "SELECT count(*), string_agg(cost_usd::text, ',' ORDER BY ts, id)
                     FROM events WHERE tenant_id = 'acme' AND event_type <> 'customer.export_data'",
                    &[],
                )
                .await
                .expect("db");
            (r.get::<_, i64>(0), r.get::<_, String>(1))
        };
        let exported_costs: Vec<String> = got.iter().filter_map(|(_, c)| c.clone()).collect();
        assert_eq!(count, EVENTS as i64);
        assert_eq!(exported_costs.join(","), costs, "{format}");
    }
    let recorded = env
        .db
        .query(
            "SELECT user_id, metadata->>'format', metadata->>'via' FROM events
             WHERE tenant_id = 'acme' AND event_type = 'customer.export_data' ORDER BY ts",
            &[],
        )
        .await
        .expect("records");
    let formats: Vec<String> = recorded.iter().map(|r| r.get(1)).collect();
    assert_eq!(formats, ["ndjson", "csv", "json"]);
    for r in &recorded {
        assert_eq!(r.get::<_, String>(0), prefix);
        assert_eq!(r.get::<_, String>(2), "api");
    }
    // A range: [from, to) of the stored timestamps.
    let row = env
        .db
        .query_one(
            "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    (SELECT count(*) FROM events e WHERE e.tenant_id = 'acme' AND e.ts >= x.ts
                       AND e.event_type <> 'customer.export_data')
             FROM (SELECT ts FROM events WHERE tenant_id = 'acme' ORDER BY ts OFFSET 1000 LIMIT 1) x",
            &[],
        )
        .await
        .expect("mid");
    let (from, after): (String, i64) = (row.get(0), row.get(1));
    let resp = env
        .http
        .get(format!("{}/v1/export", env.base))
        .query(&[("from", from.as_str()), ("to", "2999-01-01T00:00:00Z")])
        .bearer_auth(&key)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 200);
    let lines: Vec<Value> = resp
        .text()
        .await
        .expect("body")
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .filter(|v: &Value| v["event_type"] != "customer.export_data")
        .collect();
    assert_eq!(lines.len() as i64, after);
    assert!(lines
        .iter()
        .all(|v| v["timestamp"].as_str() >= Some(from.as_str())));
    env.shutdown().await;
}

async fn error_of(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("JSON error");
    (
        status,
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
        v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_and_credentials_are_named() {
    let mut env = Env::start_with(no_export_limit).await;
    let key = env.key(Some(TENANT), &[Scope::Export]).await;
    let read_only = env.key(Some(TENANT), &[Scope::Read]).await;
    let cases = [
        ("format=xml", "format:"),
        ("from=yesterday", "from:"),
        ("to=2026-13-01T00:00:00Z", "to:"),
        (
            "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
            "to: must be after from",
        ),
        ("form=2026-01-01T00:00:00Z", "form: unknown parameter"),
        ("tenant_id=globex", "tenant_id:"),
    ];
    for (q, named) in cases {
        for path in ["/v1/export", "/v1/exports"] {
            let url = format!("{}{path}?{q}", env.base);
            let req = if path == "/v1/export" {
                env.http.get(url)
            } else {
                env.http.post(url)
            };
            let (status, _, message) =
                error_of(req.bearer_auth(&key).send().await.expect("send")).await;
            let want = if q.starts_with("tenant_id") { 403 } else { 422 };
            assert_eq!(status, want, "{path}?{q}: {message}");
            assert!(message.starts_with(named), "{path}?{q}: {message}");
        }
    }
    let (status, code, _) = error_of(env.get("/v1/export").await).await;
    assert_eq!((status, code.as_str()), (401, "missing_credentials"));
    let resp = env
        .http
        .get(format!("{}/v1/export", env.base))
        .bearer_auth(&read_only)
        .send()
        .await
        .expect("send");
    let (status, code, message) = error_of(resp).await;
    assert_eq!(
        (status, code.as_str()),
        (403, "insufficient_scope"),
        "{message}"
    );
    // Link bodies: unknown fields and parameters given twice are named.
    for (q, body, named) in [
        ("", r#"{"fromat": "csv"}"#, "body: unknown field `fromat`"),
        ("?format=csv", r#"{"format": "json"}"#, "format: given both"),
        ("", r#"{"format": "xml"}"#, "format: must be one of"),
        ("", "[1", "body:"),
    ] {
        let resp = env
            .http
            .post(format!("{}/v1/exports{q}", env.base))
            .bearer_auth(&key)
            .body(body)
            .send()
            .await
            .expect("send");
        let (status, _, message) = error_of(resp).await;
        assert_eq!(status, 422, "{body}: {message}");
        assert!(message.starts_with(named), "{body}: {message}");
    }
    // No database row for any of it.
    assert_eq!(env.count("SELECT count(*) FROM export_links").await, 0);
    assert_eq!(env.count("SELECT count(*) FROM events").await, 0);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_works_once_without_a_bearer_then_410() {
    let mut env = Env::start_with(no_export_limit).await;
    load(&env).await;
    let key = env.key(Some(TENANT), &[Scope::Export]).await;
    let resp = env
        .http
        .post(format!("{}/v1/exports?format=csv", env.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), 201);
    let made: Value = resp.json().await.expect("json");
    let url = made["url"].as_str().expect("url").to_string();
    assert!(
        url.starts_with("/v1/exports/") && url.len() == "/v1/exports/".len() + 43,
        "{url}"
    );
    assert_eq!(made["format"], "csv");
    assert!(made["expires_at"].is_string());
    // Only the token's hash is stored.
    let token = url.trim_start_matches("/v1/exports/");
    let stored_hash: Vec<u8> = env
        .db
        .query_one("SELECT token_hash FROM export_links", &[])
        .await
        .expect("link")
        .get(0);
    assert_eq!(
        stored_hash,
        agenttally_collector::export::links::hash(token)
    );
    let before = stored(&env).await;
    let resp = env.get(&url).await; // no Authorization header
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    let got = exported("csv", &resp.text().await.expect("body"));
    assert_eq!(got, before);
    let (status, code, message) = error_of(env.get(&url).await).await;
    assert_eq!((status, code.as_str()), (410, "link_used"), "{message}");
    let via: Vec<String> = env
        .db
        .query(
            "SELECT metadata->>'via' FROM events WHERE event_type = 'customer.export_data'
             ORDER BY ts",
            &[],
        )
        .await
        .expect("records")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(via, ["link"]);
    // The download is audited under the credential that made the link (the token, itself a
    // credential, is not recorded). A refused download (404, 410) names no principal: it is
    // logged, not audited, as a 401 is.
    let audited: Vec<(String, String, String, i32)> = env
        .db
        .query(
            "SELECT credential_id, principal_kind, params::text, status FROM audit_log
             WHERE route = '/v1/exports/{token}' ORDER BY id",
            &[],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].0, key[..11]);
    assert_eq!(audited[0].1, "link");
    assert!(!audited[0].2.contains(token), "{audited:?}");
    assert_eq!(audited[0].3, 200);
    // Two downloads of one link at once: one gets the file, the other a 410.
    let resp = env
        .http
        .post(format!("{}/v1/exports", env.base))
        .bearer_auth(&key)
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), 201);
    let made: Value = resp.json().await.expect("json");
    let url = made["url"].as_str().expect("url").to_string();
    let both = common::join_all(vec![env.get(&url), env.get(&url)]).await;
    let mut statuses: Vec<u16> = both.iter().map(|r| r.status().as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 410]);
    for r in both {
        let _ = r.bytes().await;
    }
    // A link given its parameters in a JSON body; expired before use: 410.
    let resp = env
        .http
        .post(format!("{}/v1/exports", env.base))
        .bearer_auth(&key)
        .json(&json!({"format": "json", "from": "2026-01-01T00:00:00Z"}))
        .send()
        .await
        .expect("create");
    assert_eq!(resp.status(), 201);
    let made: Value = resp.json().await.expect("json");
    assert_eq!(made["format"], "json");
    assert_eq!(made["from"], "2026-01-01T00:00:00Z");
    let url = made["url"].as_str().expect("url").to_string();
    env.db
        .execute(
            "UPDATE export_links SET expires_at = now() - interval '1 second' WHERE used_at IS NULL",
            &[],
        )
        .await
        .expect("drive the clock");
    let (status, code, message) = error_of(env.get(&url).await).await;
    assert_eq!((status, code.as_str()), (410, "link_expired"), "{message}");
    // Unknown (well formed or not): 404.
    let (token, _) = agenttally_collector::export::links::new_token().expect("token");
    for path in [
        format!("/v1/exports/{token}"),
        "/v1/exports/nope".to_string(),
        "/v1/exports/%FF".to_string(),
    ] {
        let (status, _, _) = error_of(env.get(&path).await).await;
        assert_eq!(status, 404, "{path}");
    }
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_beyond_the_cap_are_503_and_a_client_gone_frees_its_slot() {
    let mut env = Env::start_with(|c| {
        no_export_limit(c);
        c.max_concurrent_exports = 1;
    })
    .await;
    let key = env.key(Some(TENANT), &[Scope::Export]).await;
    // Far more than socket buffers and the channel hold (loaded straight into the table: the
    // rollups do not matter here).
    env.db
        .execute(
            "INSERT INTO events (tenant_id, id, ts, event_type, correlation_id, provider, model,
                 cost_usd, cost_status, success, metadata)
             SELECT 'acme', gen_random_uuid(), now() - make_interval(secs => i / 1000.0),
                    'provider.api_call', 'run-' || i, 'openai', 'gpt-4o', i * 0.000001,
                    'reported', true, jsonb_build_object('pad', repeat('x', 400))
             FROM generate_series(1, 60000) i",
            &[],
        )
        .await
        .expect("load");
    let export = || {
        env.http
            .get(format!("{}/v1/export", env.base))
            .bearer_auth(&key)
            .send()
    };
    let mut first = export().await.expect("first");
    assert_eq!(first.status(), 200);
    let chunk = first.chunk().await.expect("read").expect("a first chunk");
    assert!(!chunk.is_empty());
    // The first is still streaming (its reader is slow): no slot for a second.
    let second = export().await.expect("second");
    assert_eq!(second.status(), 503);
    assert_eq!(second.headers()["retry-after"], "5");
    let (_, code, _) = error_of(second).await;
    assert_eq!(code, "exports_busy");
    // The slow reader goes away: its export stops and frees the slot.
    drop(first);
    let mut freed = false;
    for _ in 0..100 {
        let resp = export().await.expect("third");
        if resp.status() == 200 {
            let body = resp.bytes().await.expect("whole body");
            assert_eq!(
                body.iter().filter(|b| **b == b'\n').count(),
                60_001,
                "every row, and the first export's record"
            );
            freed = true;
            break;
        }
        assert_eq!(resp.status(), 503);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(freed, "the slot of a client gone is freed");
    env.shutdown().await;
}

/// Exports are limited to 5 per hour by default; these tests make more (the limit has its own
/// test in rate_limits.rs).
fn no_export_limit(c: &mut agenttally_collector::ServerConfig) {
    c.rate_export_per_hour = 0;
}
