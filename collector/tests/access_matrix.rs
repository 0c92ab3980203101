//! The access matrix: every row of the access table (`http::routes()`, path parameters
//! substituted) × every kind of credential, acting on tenant A (whose credentials they are) and on
//! tenant B (seeded with a marker string in agent_id, model, metadata and a key name). Refusals
//! are the expected 401/403 and never carry a byte of B's data; allowed calls answer 2xx; and
//! the audit log holds exactly one successful record per successful audited call, with its
//! principal.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use agenttally_collector::access::Access;
use agenttally_collector::http::routes;
use agenttally_collector::Scope;
use common::{event, jwt, jwt_claims, jwt_none, jwt_with, Env, JWT_SECRET};
use serde_json::json;

const A: &str = "tenant-a";
const B: &str = "tenant-b";
const MARKER: &str = "zq-marker-of-b-5e1f";

/// The parameters a route requires besides `tenant_id` (grouped by model, so a leak of B's
/// model would show).
/// An export link token of the right shape (43 base64url characters) that was never issued.
const UNKNOWN_LINK: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

const REQUIRED: &[(&str, &str)] = &[("/v1/metrics/timeseries", "metric=executions&group_by=model")];

/// A credential of the matrix: its bearer (`None`: no header), whether it is valid, the tenant
/// it is bound to (`None`: platform-wide) and its scopes.
struct Cred {
    name: &'static str,
    bearer: Option<String>,
    valid: bool,
    tenant: Option<&'static str>,
    scopes: Vec<Scope>,
    /// What the audit log names it by, and its kind.
    audit_id: String,
    kind: &'static str,
}

fn prefix(key: &str) -> String {
    key.chars().take(11).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_times_every_credential() {
    let mut env = Env::start_with(|c| {
        c.jwt.hs256_secret = Some(JWT_SECRET.into());
        // Hundreds of calls per tenant: the limits have their own test.
        c.rate_query_per_minute = 0;
        c.rate_export_per_hour = 0;
    })
    .await;
    let platform = env.key(None, &Scope::ALL).await;

    // Data of both tenants; B's carries the marker everywhere a string can go.
    let mut events = vec![
        event(A, json!({})),
        event(A, json!({"agent_id": "a-agent"})),
    ];
    events.push(event(
        B,
        json!({"agent_id": MARKER, "model": MARKER, "metadata": {"note": MARKER}}),
    ));
    events.push(event(
        B,
        json!({"event_type": "agent.completed", "agent_id": MARKER, "provider": null,
               "model": null, "usage": null, "cost_usd": null, "cost_status": null,
               "metadata": {"note": MARKER}}),
    ));
    let (status, body) = env.post(&platform, &events).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["accepted"], 4, "{body}");
    // A key of B named with the marker, and one key per tenant to revoke.
    let named = json!({"scopes": ["read"], "name": MARKER});
    let (s, _, text) = env
        .call(
            "POST",
            &format!("/v1/keys?tenant_id={B}"),
            Some(&platform),
            Some(&named),
        )
        .await;
    assert_eq!(s, 201, "{text}");
    let victim_a = prefix(&env.key(Some(A), &[Scope::Read]).await);
    let victim_b = prefix(&env.key(Some(B), &[Scope::Read]).await);

    let mut creds = Vec::new();
    for scope in Scope::ALL {
        let key = env.key(Some(A), &[scope]).await;
        creds.push(Cred {
            name: match scope {
                Scope::Ingest => "A key ingest",
                Scope::Read => "A key read",
                Scope::Export => "A key export",
                Scope::Admin => "A key admin",
            },
            audit_id: prefix(&key),
            bearer: Some(key),
            valid: true,
            tenant: Some(A),
            scopes: vec![scope],
            kind: "key",
        });
    }
    creds.push(Cred {
        name: "platform key",
        audit_id: prefix(&platform),
        bearer: Some(platform.clone()),
        valid: true,
        tenant: None,
        scopes: Scope::ALL.to_vec(),
        kind: "key",
    });
    for (role, scopes) in [
        ("viewer", vec![Scope::Read]),
        ("developer", vec![Scope::Read, Scope::Export]),
        ("admin", vec![Scope::Read, Scope::Export, Scope::Admin]),
    ] {
        let sub = format!("{role}-user");
        creds.push(Cred {
            name: match role {
                "viewer" => "A JWT viewer",
                "developer" => "A JWT developer",
                _ => "A JWT admin",
            },
            bearer: Some(jwt(A, role, &sub)),
            valid: true,
            tenant: Some(A),
            scopes,
            audit_id: format!("jwt:{sub}"),
            kind: "jwt",
        });
    }
    let invalid = |name: &'static str, bearer: Option<String>| Cred {
        name,
        bearer,
        valid: false,
        tenant: Some(A),
        scopes: vec![],
        audit_id: String::new(),
        kind: "",
    };
    creds.push(invalid(
        "expired JWT",
        Some(jwt_with(JWT_SECRET, &jwt_claims(A, "admin", "late", -120))),
    ));
    creds.push(invalid(
        "JWT with a wrong signature",
        Some(jwt_with(
            "another-secret-another-secret-another-00",
            &jwt_claims(A, "admin", "forger", 600),
        )),
    ));
    creds.push(invalid(
        "JWT with alg none",
        Some(jwt_none(&jwt_claims(A, "admin", "nobody", 600))),
    ));
    creds.push(invalid("no credential", None));

    let audited_before = audit_counts(&env).await;
    let mut audited_expected: BTreeMap<(String, String, String), i64> = BTreeMap::new();
    let mut calls = 0;
    for route in routes() {
        for target in [A, B] {
            let mut path = route
                .path
                .replace("{tenant_id}", target)
                .replace("{user_id}", "user-1")
                // A well-formed token no link has: the token is the credential there.
                .replace("{token}", UNKNOWN_LINK)
                .replace("{file}", agenttally_collector::dashboard::ASSETS[0].name)
                .replace("{prefix}", if target == A { &victim_a } else { &victim_b });
            assert!(
                !path.contains('{'),
                "{}: substitute its parameters",
                route.path
            );
            // The tenant is named by the path where the route has `{tenant_id}`, else by the
            // query.
            if matches!(route.policy.access, Access::Tenant(_) | Access::Stream(_))
                && !route.path.contains("{tenant_id}")
            {
                path.push_str(&format!("?tenant_id={target}"));
                if let Some((_, q)) = REQUIRED.iter().find(|(p, _)| *p == route.path) {
                    path.push('&');
                    path.push_str(q);
                }
            }
            let body = match (route.method.as_str(), route.path) {
                ("POST", "/v1/batch") => Some(json!({
                    "batch": [event(target, json!({}))],
                    "sent_at": common::now(),
                })),
                ("POST", "/v1/keys") => Some(json!({"scopes": ["read"]})),
                ("POST", _) => Some(json!({})),
                _ => None,
            };
            for c in &creds {
                let expected = if route.path.contains("{token}") {
                    // A bearer grants nothing on a link route; an unknown link is a 404.
                    Some(404)
                } else {
                    match (route.policy.access, expect(route.policy.access, c, target)) {
                        // Let in, the stream route asks which stream: none was (406), so the
                        // call ends; the streams have their own tests (live.rs).
                        (Access::Stream(_), None) => Some(406),
                        (_, e) => e,
                    }
                };
                let (status, _, text) = env
                    .call(
                        route.method.as_str(),
                        &path,
                        c.bearer.as_deref(),
                        body.as_ref(),
                    )
                    .await;
                calls += 1;
                let what = format!("{} {path} as {} on {target}", route.method, c.name);
                match expected {
                    Some(code) => assert_eq!(status, code, "{what}: {text}"),
                    None => assert!((200..300).contains(&status), "{what}: {status} {text}"),
                }
                let may_see_b = target == B && expected.is_none();
                assert!(
                    may_see_b || !text.contains(MARKER),
                    "{what}: B's data leaked: {text}"
                );
                if route.policy.audited && expected.is_none() {
                    *audited_expected
                        .entry((target.to_string(), c.audit_id.clone(), c.kind.to_string()))
                        .or_default() += 1;
                }
            }
        }
    }
    println!("{calls} calls");
    // One successful record per successful audited call, naming its principal.
    let after = audit_counts(&env).await;
    let mut got = BTreeMap::new();
    for (k, n) in after {
        let n = n - audited_before.get(&k).copied().unwrap_or(0);
        if n != 0 {
            got.insert(k, n);
        }
    }
    assert_eq!(got, audited_expected);

    // The JWT users' reads were recorded as dashboard views, once per user.
    let mut views = 0;
    for _ in 0..50 {
        views = env
            .count(
                "SELECT count(*) FROM events WHERE tenant_id = 'tenant-a' \
                 AND event_type = 'customer.dashboard_view'",
            )
            .await;
        if views == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(views, 3, "one view per JWT user of A");
    // The matrix's own `DELETE /v1/tenants/tenant-a/data` (a success) erased A's personal
    // fields, the views' `user_id` included: the three views are there, their users gone.
    let erased = env
        .count(
            "SELECT count(*) FROM events WHERE event_type = 'customer.dashboard_view' \
             AND tenant_id = 'tenant-a' AND user_id IS NULL AND erased_at IS NOT NULL",
        )
        .await;
    assert_eq!(erased, 3);
    env.shutdown().await;
}

/// The status the access table promises (`None`: a 2xx).
fn expect(access: Access, c: &Cred, target: &str) -> Option<u16> {
    let scope = match access {
        Access::Public => return Some(200),
        Access::Tenant(s) | Access::Items(s) | Access::Stream(s) => s,
    };
    if !c.valid {
        return Some(401);
    }
    if !c.scopes.contains(&scope) {
        return Some(403);
    }
    match c.tenant {
        Some(bound) if bound != target => Some(403),
        _ => None,
    }
}

/// Successful audit records by (tenant, credential, kind).
async fn audit_counts(env: &Env) -> BTreeMap<(String, String, String), i64> {
    env.db
        .query(
            "SELECT tenant_id, credential_id, principal_kind, count(*) FROM audit_log \
             WHERE status < 300 GROUP BY 1, 2, 3",
            &[],
        )
        .await
        .expect("audit")
        .iter()
        .map(|r| ((r.get(0), r.get(1), r.get(2)), r.get(3)))
        .collect()
}
