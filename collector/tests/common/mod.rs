//! Shared test scaffolding: a real ephemeral PostgreSQL (the embedded code), an in-process
//! collector on a free port, keys, and event builders.
#![allow(dead_code)]

pub mod runs;

use std::io::Write;
use std::time::Duration;

use agenttally_collector::{EmbeddedPostgres, Scope, Server, ServerConfig};
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

pub struct Env {
    pub pg: EmbeddedPostgres,
    pub server: Option<Server>,
    pub base: String,
    pub http: reqwest::Client,
    pub db: tokio_postgres::Client,
}

impl Env {
    /// GET `path` (e.g. `/healthz`) on the collector.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET")
    }

    pub async fn start() -> Env {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut ServerConfig)) -> Env {
        let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start_ephemeral)
            .await
            .expect("join")
            .expect("ephemeral PostgreSQL");
        let mut cfg = ServerConfig::new(pg.database_url());
        cfg.listen = "127.0.0.1:0".parse().expect("addr");
        cfg.commit_interval = Duration::from_millis(20);
        tweak(&mut cfg);
        let server = Server::start(cfg).await.expect("server start");
        let base = server.url();
        let (db, conn) = tokio_postgres::connect(&pg.database_url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        Env {
            pg,
            server: Some(server),
            base,
            http: reqwest::Client::new(),
            db,
        }
    }

    /// Any request: `method` on `path` (with its query string), a bearer credential, a JSON
    /// body. Returns the status, the `Retry-After` header and the body as text.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> (u16, Option<String>, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = bearer {
            req = req.header("authorization", format!("Bearer {b}"));
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(serde_json::to_vec(body).expect("json"));
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().expect("ascii").to_string());
        (status, retry_after, resp.text().await.expect("body"))
    }

    pub async fn key(&self, tenant: Option<&str>, scopes: &[Scope]) -> String {
        agenttally_collector::create_key(&self.pg.database_url(), tenant, scopes)
            .await
            .expect("create key")
    }

    /// POST a JSON body (already serialised) with optional extra headers.
    pub async fn post_raw(
        &self,
        key: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .post(format!("{}/v1/batch", self.base))
            .body(body)
            .header("content-type", "application/json");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        for (h, v) in headers {
            req = req.header(*h, *v);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v, headers)
    }

    pub async fn post(&self, key: &str, events: &[Value]) -> (u16, Value) {
        let (s, v, _) = self.post_raw(Some(key), batch(events), &[]).await;
        (s, v)
    }

    pub async fn count(&self, sql: &str) -> i64 {
        self.db.query_one(sql, &[]).await.expect(sql).get(0)
    }

    pub async fn shutdown(&mut self) {
        if let Some(s) = self.server.take() {
            s.shutdown(Duration::from_secs(30)).await.expect("shutdown");
        }
    }
}

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A valid `provider.api_call` of `tenant`, with `extra` fields merged over it.
pub fn event(tenant: &str, extra: Value) -> Value {
    let mut e = json!({
        "id": Uuid::now_v7().to_string(),
        "tenant_id": tenant,
        "event_type": "provider.api_call",
        "timestamp": now(),
        "correlation_id": "run-1",
        "provider": "openai",
        "model": "gpt-4o",
        "task_type": "code",
        "cost_usd": "0.0123",
        "cost_status": "reported",
        "usage": {"input_tokens": 100, "output_tokens": 20, "requests": 1},
        "duration_ms": 250,
        "success": true,
    });
    if let (Some(o), Some(x)) = (e.as_object_mut(), extra.as_object()) {
        for (k, v) in x {
            if v.is_null() {
                o.remove(k);
            } else {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    e
}

pub fn batch(events: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({"batch": events, "sent_at": now()})).expect("json")
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("gzip");
    e.finish().expect("gzip")
}

/// Run futures concurrently (in one task) and collect their outputs in order.
pub async fn join_all<F: std::future::Future>(futs: Vec<F>) -> Vec<F::Output> {
    let handles: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut outs: Vec<Option<F::Output>> = handles.iter().map(|_| None).collect();
    let mut handles: Vec<Option<_>> = handles.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (h, o) in handles.iter_mut().zip(outs.iter_mut()) {
            if let Some(f) = h {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *o = Some(v);
                        *h = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outs.into_iter().flatten().collect()
}

/// The HS256 secret the tests configure.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";

/// An HS256 JWT signed with `secret` with these claims.
pub fn jwt_with(secret: &str, claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

/// A JWT of `tenant` with `role` for user `sub`, valid for ten minutes, signed with
/// `JWT_SECRET`.
pub fn jwt(tenant: &str, role: &str, sub: &str) -> String {
    jwt_with(JWT_SECRET, &jwt_claims(tenant, role, sub, 600))
}

/// The claims of a token expiring `expires_in` seconds from now (negative: expired).
pub fn jwt_claims(tenant: &str, role: &str, sub: &str, expires_in: i64) -> Value {
    json!({"tenant_id": tenant, "role": role, "sub": sub,
           "exp": Utc::now().timestamp() + expires_in})
}

/// An unsigned token (`alg: none`) with these claims.
pub fn jwt_none(claims: &Value) -> String {
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    )
}
