//! The key admin routes: a key created through the API works at once, is listed (never its
//! hash), and once revoked is refused within 5 s; a tenant admin only ever makes keys of its own
//! tenant; bad bodies are named. And the audit log route over those calls; and JWTs verified
//! with an Ed25519 public key (`--jwt-public-key`).

mod common;

use std::time::{Duration, Instant};

use agenttally_collector::Scope;
use common::{Env, JWT_SECRET};
use serde_json::{json, Value};

const A: &str = "acme";
const B: &str = "globex";

fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not JSON: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_revoke_and_the_audit_log() {
    let mut env = Env::start_with(|c| c.jwt.hs256_secret = Some(JWT_SECRET.into())).await;
    let admin = env.key(Some(A), &[Scope::Admin]).await;
    let b_key = env.key(Some(B), &[Scope::Read]).await;
    let platform_keys = "SELECT count(*) FROM api_keys WHERE tenant_id IS NULL";
    let platform_before = env.count(platform_keys).await;

    // Create: the secret once, bound to the caller's tenant; it works at once.
    let body = json!({"scopes": ["read", "export"], "name": "dashboard"});
    let (s, _, text) = env
        .call("POST", "/v1/keys", Some(&admin), Some(&body))
        .await;
    assert_eq!(s, 201, "{text}");
    let created = parse(&text);
    let key = created["key"].as_str().expect("key").to_string();
    let prefix = created["prefix"].as_str().expect("prefix").to_string();
    assert!(key.starts_with(&prefix) && key.len() == 67, "{created}");
    assert_eq!(created["tenant_id"], A);
    assert_eq!(created["scopes"], json!(["read", "export"]));
    assert_eq!(created["name"], "dashboard");
    assert!(created["revoked_at"].is_null());
    let (s, _, text) = env
        .call("GET", "/v1/metrics/summary", Some(&key), None)
        .await;
    assert_eq!(s, 200, "{text}");

    // List: the tenant's keys only, never a hash.
    let (s, _, text) = env.call("GET", "/v1/keys", Some(&admin), None).await;
    assert_eq!(s, 200, "{text}");
    let listed = parse(&text);
    let keys = listed["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2, "{listed}");
    assert_eq!(keys[0]["prefix"], prefix.as_str());
    assert!(!text.contains("hash") && !text.contains(&key), "{text}");
    assert!(
        !text.contains(&b_key[..11]),
        "another tenant's key listed: {text}"
    );

    // Revoke: refused within 5 s (at once on this collector); a second revoke is harmless.
    let (s, _, text) = env
        .call("DELETE", &format!("/v1/keys/{prefix}"), Some(&admin), None)
        .await;
    assert_eq!(s, 200, "{text}");
    assert!(!parse(&text)["revoked_at"].is_null(), "{text}");
    let t0 = Instant::now();
    loop {
        let (s, _, _) = env
            .call("GET", "/v1/metrics/summary", Some(&key), None)
            .await;
        if s == 401 {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, _, _) = env
        .call("DELETE", &format!("/v1/keys/{prefix}"), Some(&admin), None)
        .await;
    assert_eq!(s, 200);
    // Unknown in this tenant: another tenant's key, and one that does not exist.
    for p in [&b_key[..11], "at_00000000"] {
        let (s, _, text) = env
            .call("DELETE", &format!("/v1/keys/{p}"), Some(&admin), None)
            .await;
        assert_eq!(s, 404, "{text}");
    }
    let (s, _, text) = env
        .call("GET", "/v1/metrics/summary", Some(&b_key), None)
        .await;
    assert_eq!(s, 200, "B's key still works: {text}");
    let (s, _, text) = env
        .call("DELETE", "/v1/keys/not-a-prefix", Some(&admin), None)
        .await;
    assert_eq!(s, 422, "{text}");
    assert!(text.contains("prefix:"), "{text}");

    // A tenant admin never makes a platform key, nor a key of another tenant.
    let with_tenant = json!({"scopes": ["read"], "tenant_id": null});
    let (s, _, text) = env
        .call("POST", "/v1/keys", Some(&admin), Some(&with_tenant))
        .await;
    assert_eq!(s, 422, "{text}");
    assert!(text.contains("tenant_id:"), "{text}");
    let (s, _, text) = env
        .call(
            "POST",
            &format!("/v1/keys?tenant_id={B}"),
            Some(&admin),
            Some(&body),
        )
        .await;
    assert_eq!(s, 403, "{text}");
    let jwt_admin = common::jwt(A, "admin", "alice");
    let (s, _, text) = env
        .call("POST", "/v1/keys", Some(&jwt_admin), Some(&body))
        .await;
    assert_eq!(s, 201, "{text}");
    assert_eq!(parse(&text)["tenant_id"], A);
    assert_eq!(env.count(platform_keys).await, platform_before);
    // A platform admin makes keys of the tenant it names.
    let platform = env.key(None, &[Scope::Admin]).await;
    let (s, _, text) = env
        .call(
            "POST",
            &format!("/v1/keys?tenant_id={B}"),
            Some(&platform),
            Some(&body),
        )
        .await;
    assert_eq!(s, 201, "{text}");
    assert_eq!(parse(&text)["tenant_id"], B);
    let (s, _, text) = env
        .call("POST", "/v1/keys", Some(&platform), Some(&body))
        .await;
    assert_eq!(s, 422, "{text}");

    // Bad bodies, named.
    for (body, status, words) in [
        (json!({}), 422, "scopes: at least one"),
        (json!({"scopes": []}), 422, "scopes: at least one"),
        (
            json!({"scopes": ["write"]}),
            422,
            "scopes[0]: unknown scope `write`",
        ),
        (
            json!({"scopes": ["read", 3]}),
            422,
            "scopes[1]: must be a string",
        ),
        (json!({"scopes": ["read"], "name": ""}), 422, "name:"),
        (
            json!({"scopes": ["read"], "owner": "x"}),
            422,
            "owner: unknown field",
        ),
        (json!(["read"]), 400, "body: must be a JSON object"),
    ] {
        let (s, _, text) = env
            .call("POST", "/v1/keys", Some(&admin), Some(&body))
            .await;
        assert_eq!(s, status, "{body}: {text}");
        assert!(text.contains(words), "{body}: {text}");
    }
    // Scope admin is needed.
    let reader = env.key(Some(A), &[Scope::Read]).await;
    let (s, _, text) = env.call("GET", "/v1/keys", Some(&reader), None).await;
    assert_eq!(s, 403, "{text}");
    assert!(
        text.contains("insufficient_scope") && text.contains("`admin`"),
        "{text}"
    );

    // The audit log: newest first, with the principal, the route template and the parameters.
    let (s, _, text) = env
        .call("GET", "/v1/audit?limit=3", Some(&admin), None)
        .await;
    assert_eq!(s, 200, "{text}");
    let page = parse(&text);
    let entries = page["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 3, "{page}");
    let ids: Vec<i64> = entries
        .iter()
        .map(|e| e["id"].as_i64().expect("id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    assert_eq!(entries[0]["route"], "/v1/keys");
    assert_eq!(entries[0]["status"], 403);
    assert_eq!(entries[0]["credential_id"], &reader[..11]);
    let before = page["next_before"].as_i64().expect("a next page");
    let (s, _, text) = env
        .call(
            "GET",
            &format!("/v1/audit?limit=1000&before={before}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{text}");
    let rest = parse(&text);
    let rest = rest["entries"].as_array().expect("entries");
    assert!(rest.iter().all(|e| e["id"].as_i64() < Some(before)));
    let revoke = rest
        .iter()
        .find(|e| e["route"] == "/v1/keys/{prefix}" && e["status"] == 200)
        .expect("the revocation is audited");
    assert_eq!(revoke["method"], "DELETE");
    assert_eq!(revoke["params"]["path"]["prefix"], prefix.as_str());
    assert_eq!(revoke["principal_kind"], "key");
    let by_jwt = rest
        .iter()
        .find(|e| e["principal_kind"] == "jwt")
        .expect("the JWT's call is audited");
    assert_eq!(by_jwt["credential_id"], "jwt:alice");
    assert_eq!(by_jwt["sub"], "alice");
    // The calls refused before a tenant was known (the revoked key's 401s) are not logged.
    assert!(rest.iter().all(|e| e["status"] != 401), "{text}");
    assert!(
        rest.iter().all(|e| e["credential_id"] != b_key[..11]),
        "B's call in A's log: {text}"
    );
    for (q, words) in [
        ("limit=0", "limit: must be 1 to 1000"),
        ("limit=1001", "limit: must be 1 to 1000"),
        ("before=x", "before:"),
        ("from=yesterday", "from:"),
        ("cursor=1", "cursor: unknown parameter"),
    ] {
        let (s, _, text) = env
            .call("GET", &format!("/v1/audit?{q}"), Some(&admin), None)
            .await;
        assert_eq!(s, 422, "{q}: {text}");
        assert!(text.contains(words), "{q}: {text}");
    }
    env.shutdown().await;
}

const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKiiKrmWnQyujIXcM0I5WIOgeFUe4h4l16z8E0GRRzbP
-----END PRIVATE KEY-----
";
const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAP7mQRblJ8A1z1DG19glC7zc0jviXGq+IilZHbLS7kZ0=
-----END PUBLIC KEY-----
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_verified_with_a_public_key_and_checked_issuer_and_audience() {
    let dir = std::env::temp_dir().join(format!("agenttally-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pem = dir.join("ed25519.pub.pem");
    std::fs::write(&pem, ED25519_PUBLIC).expect("pem");
    let mut env = Env::start_with(|c| {
        c.jwt.public_key = Some(pem.clone());
        c.jwt.issuer = Some("https://idp.example".into());
        c.jwt.audience = Some("agenttally".into());
    })
    .await;
    let sign = |alg: jsonwebtoken::Algorithm, claims: &Value| {
        let key = match alg {
            jsonwebtoken::Algorithm::EdDSA => {
                jsonwebtoken::EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()).expect("key")
            }
            _ => jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        };
        jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, &key).expect("sign")
    };
    let mut claims = common::jwt_claims(A, "viewer", "vera", 600);
    claims["iss"] = json!("https://idp.example");
    claims["aud"] = json!("agenttally");
    let token = sign(jsonwebtoken::Algorithm::EdDSA, &claims);
    let (s, _, text) = env
        .call("GET", "/v1/metrics/summary", Some(&token), None)
        .await;
    assert_eq!(s, 200, "{text}");
    // A viewer reads, and nothing else; never ingests.
    let (s, _, text) = env.call("GET", "/v1/keys", Some(&token), None).await;
    assert_eq!(s, 403, "{text}");
    let batch = json!({"batch": [common::event(A, json!({}))], "sent_at": common::now()});
    let (s, _, text) = env
        .call("POST", "/v1/batch", Some(&token), Some(&batch))
        .await;
    assert_eq!(s, 403, "{text}");
    assert!(text.contains("`ingest`"), "{text}");
    // HS256 with a secret is not what this collector is configured for.
    let (s, _, text) = env
        .call(
            "GET",
            "/v1/metrics/summary",
            Some(&sign(jsonwebtoken::Algorithm::HS256, &claims)),
            None,
        )
        .await;
    assert_eq!(s, 401, "{text}");
    assert!(
        text.contains("`HS256`") && text.contains("`EdDSA`"),
        "{text}"
    );
    // Issuer and audience.
    for (k, v, words) in [
        ("iss", "https://evil.example", "`iss`"),
        ("aud", "other", "`aud`"),
    ] {
        let mut c = claims.clone();
        c[k] = json!(v);
        let (s, _, text) = env
            .call(
                "GET",
                "/v1/metrics/summary",
                Some(&sign(jsonwebtoken::Algorithm::EdDSA, &c)),
                None,
            )
            .await;
        assert_eq!(s, 401, "{text}");
        assert!(text.contains(words), "{text}");
    }
    // Expired, and a missing claim.
    let mut c = claims.clone();
    c["exp"] = json!(chrono::Utc::now().timestamp() - 120);
    let (s, _, text) = env
        .call(
            "GET",
            "/v1/metrics/summary",
            Some(&sign(jsonwebtoken::Algorithm::EdDSA, &c)),
            None,
        )
        .await;
    assert_eq!(s, 401, "{text}");
    assert!(text.contains("token_expired"), "{text}");
    let mut c = claims.clone();
    c.as_object_mut().expect("object").remove("tenant_id");
    let (s, _, text) = env
        .call(
            "GET",
            "/v1/metrics/summary",
            Some(&sign(jsonwebtoken::Algorithm::EdDSA, &c)),
            None,
        )
        .await;
    assert_eq!(s, 401, "{text}");
    assert!(text.contains("`tenant_id`"), "{text}");
    // API keys still work beside JWTs.
    let key = env.key(Some(A), &[Scope::Read]).await;
    let (s, _, _) = env
        .call("GET", "/v1/metrics/summary", Some(&key), None)
        .await;
    assert_eq!(s, 200);
    env.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwts_ingest_only_when_allowed() {
    let mut env = Env::start_with(|c| {
        c.jwt.hs256_secret = Some(JWT_SECRET.into());
        c.jwt.ingest = true;
    })
    .await;
    let token = common::jwt(A, "viewer", "agent-host");
    let batch = json!({"batch": [common::event(A, json!({}))], "sent_at": common::now()});
    let (s, _, text) = env
        .call("POST", "/v1/batch", Some(&token), Some(&batch))
        .await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(parse(&text)["accepted"], 1);
    let batch = json!({"batch": [common::event(B, json!({}))], "sent_at": common::now()});
    let (s, _, text) = env
        .call("POST", "/v1/batch", Some(&token), Some(&batch))
        .await;
    assert_eq!(s, 403, "{text}");
    env.shutdown().await;
}

/// No unaudited access: when the audit record cannot be written, a success is answered 503
/// instead, a refusal keeps its status, and the failure is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_cannot_be_audited_is_not_served() {
    let mut env = Env::start().await;
    let reader = env.key(Some(A), &[Scope::Read]).await;
    env.db
        .batch_execute(
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS
               $$ BEGIN RAISE EXCEPTION 'audit log unavailable'; END $$;
             CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log
               FOR EACH ROW EXECUTE FUNCTION refuse_audit();",
        )
        .await
        .expect("trigger");
    let (s, retry_after, text) = env
        .call("GET", "/v1/metrics/summary", Some(&reader), None)
        .await;
    assert_eq!(s, 503, "{text}");
    assert!(retry_after.is_some());
    assert!(
        text.contains("audit log") && !text.contains("executions"),
        "{text}"
    );
    let (s, _, _) = env
        .call(
            "GET",
            &format!("/v1/metrics/summary?tenant_id={B}"),
            Some(&reader),
            None,
        )
        .await;
    assert_eq!(s, 403);
    let m = env.get("/metrics").await.text().await.expect("metrics");
    assert!(m.contains("agenttally_audit_write_failures_total 2"), "{m}");
    env.db
        .batch_execute("DROP TRIGGER refuse_audit ON audit_log")
        .await
        .expect("drop");
    let (s, _, text) = env
        .call("GET", "/v1/metrics/summary", Some(&reader), None)
        .await;
    assert_eq!(s, 200, "{text}");
    assert_eq!(
        env.count("SELECT count(*) FROM audit_log WHERE status = 200")
            .await,
        1
    );
    env.shutdown().await;
}
