//! GDPR erasure: personal fields gone at once, rollup totals unchanged, raw rows deleted by
//! upkeep once the grace period has passed (the clock driven in the database), the accuracy
//! check clean throughout; a user's erasure touches that user only; `mode=purge` leaves no row
//! of the tenant in any tenant table.

mod common;

use std::collections::BTreeSet;

use agenttally_collector::store::erasure::{KEPT_ON_PURGE, KEYS_TABLE, PURGED_TABLES};
use agenttally_collector::store::{self, verify};
use agenttally_collector::Scope;
use chrono::{DateTime, TimeDelta, Utc};
use common::runs::tenant_events;
use common::Env;
use serde_json::{json, Value};

/// acme's and globex's runs, every event with a user and personal metadata.
async fn load(env: &Env) {
    let now = Utc::now();
    for (tenant, seed) in [("acme", 7), ("globex", 8)] {
        let key = env.key(Some(tenant), &[Scope::Ingest]).await;
        let mut events = tenant_events(tenant, seed, 60, now);
        for (i, e) in events.iter_mut().enumerate() {
            e["user_id"] = json!(format!("user-{}", i % 3));
            let meta = e["metadata"].as_object().cloned().unwrap_or_default();
            let mut meta = Value::Object(meta);
            meta["email"] = json!(format!("person{i}@example.com"));
            e["metadata"] = meta;
        }
        for chunk in events.chunks(200) {
            let (status, body) = env.post(&key, chunk).await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(body["rejected"], json!([]), "{body}");
        }
    }
}

/// Every rollup row of every tenant, as text, in key order.
async fn rollups(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for (t, _) in store::rollups::TABLES {
        let rows = env
            .db
            .query(
                &format!("SELECT '{t} ' || to_jsonb(r)::text FROM {t} r ORDER BY 1"),
                &[],
            )
            .await
            .expect("rollups");
        out.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    assert!(out.len() > 50);
    out
}

/// Every raw row as text, in (tenant, ts, id) order, filtered by `filter`.
async fn raw(env: &Env, filter: &str) -> Vec<String> {
    env.db
        .query(
            &format!(
                "SELECT to_jsonb(e)::text FROM events e WHERE {filter} ORDER BY tenant_id, ts, id"
            ),
            &[],
        )
        .await
        .expect("raw")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn verify_clean(env: &Env) -> verify::Report {
    let pool = store::connect_pool(&env.pg.database_url(), 2).expect("pool");
    let report = verify::run(
        &pool,
        &verify::Options {
            tenant: None,
            since: verify::Since::DaysAgo(7),
            raw_retention_days: 30,
            hourly_retention_days: 90,
            repair: false,
        },
    )
    .await
    .expect("verify");
    assert!(report.is_clean(), "{report}");
    report
}

async fn delete(env: &Env, key: &str, path: &str) -> (u16, Value) {
    let resp = env
        .http
        .delete(format!("{}{path}", env.base))
        .bearer_auth(key)
        .send()
        .await
        .expect("delete");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("json"))
}

fn at(v: &Value) -> DateTime<Utc> {
    v.as_str().expect("time").parse().expect("RFC 3339")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_clears_personal_fields_now_and_rows_after_the_grace() {
    let mut env = Env::start_with(|c| c.erasure_grace_days = 30).await;
    load(&env).await;
    let admin = env.key(Some("acme"), &[Scope::Admin]).await;
    let before = rollups(&env).await;
    let globex = raw(&env, "tenant_id = 'globex'").await;
    let acme = env
        .count("SELECT count(*) FROM events WHERE tenant_id = 'acme'")
        .await;
    verify_clean(&env).await;

    let (status, body) = delete(&env, &admin, "/v1/tenants/acme/data").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["mode"], "erase");
    assert_eq!(body["events_erased"], acme);
    assert_eq!(
        body["fields_erased"],
        json!(["user_id", "metadata", "correlation_id"])
    );
    let grace = at(&body["purge_after"]) - at(&body["erased_at"]);
    assert_eq!(grace, TimeDelta::days(30));
    // Personal fields are gone at once; only the rollups' `calls` count is left of metadata.
    let left = env
        .count(
            "SELECT count(*) FROM events WHERE tenant_id = 'acme' AND (user_id IS NOT NULL
                 OR correlation_id <> 'erased' OR metadata - 'calls' <> '{}'::jsonb
                 OR erased_at IS NULL OR purge_after IS NULL)",
        )
        .await;
    assert_eq!(left, 0);
    assert!(
        env.count("SELECT count(*) FROM events WHERE tenant_id = 'acme' AND metadata ? 'calls'")
            .await
            > 0
    );
    // Nothing else changed: the other tenant, the rollups; the check still recomputes them.
    assert_eq!(raw(&env, "tenant_id = 'globex'").await, globex);
    assert_eq!(rollups(&env).await, before);
    verify_clean(&env).await;
    // Again: nothing more to erase.
    let (status, body) = delete(&env, &admin, "/v1/tenants/acme/data").await;
    assert_eq!((status, body["events_erased"].as_i64()), (202, Some(0)));

    // Upkeep before the grace has passed deletes nothing...
    store::retention::run_once(&env.db, 30, 90)
        .await
        .expect("upkeep");
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE tenant_id = 'acme'")
            .await,
        acme
    );
    // ... and after it, every erased row with its dedupe id. (The clock is driven by moving
    // the recorded deadline, which is what upkeep reads.)
    env.db
        .execute(
            "UPDATE events SET purge_after = now() - interval '1 second'
             WHERE purge_after IS NOT NULL",
            &[],
        )
        .await
        .expect("drive the clock");
    store::retention::run_once(&env.db, 30, 90)
        .await
        .expect("upkeep");
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE tenant_id = 'acme'")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM event_ids WHERE tenant_id = 'acme'")
            .await,
        0
    );
    assert_eq!(
        env.count(
            "SELECT coalesce(sum(rows), 0)::bigint FROM purged_days WHERE tenant_id = 'acme'"
        )
        .await,
        acme
    );
    assert_eq!(raw(&env, "tenant_id = 'globex'").await, globex);
    // The rollups keep their totals, and the check skips the purged days rather than report
    // them (it would see rollups without raw rows).
    assert_eq!(rollups(&env).await, before);
    let report = verify_clean(&env).await;
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.starts_with("acme ") && n.contains("deleted by an erasure")),
        "{report}"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_erasure_touches_that_user_only() {
    let mut env = Env::start().await;
    load(&env).await;
    let admin = env.key(None, &[Scope::Admin]).await;
    let before = rollups(&env).await;
    let others = raw(
        &env,
        "NOT (tenant_id = 'acme' AND user_id IN ('user-1', 'user-2'))",
    )
    .await;
    let user_1 = env
        .count("SELECT count(*) FROM events WHERE tenant_id = 'acme' AND user_id = 'user-1'")
        .await;
    let user_2 = env
        .count("SELECT count(*) FROM events WHERE tenant_id = 'acme' AND user_id = 'user-2'")
        .await;

    let (status, body) = delete(&env, &admin, "/v1/tenants/acme/users/user-1").await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["user_id"], "user-1");
    assert_eq!(body["events_erased"], user_1);
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE erased_at IS NOT NULL AND user_id IS NULL")
            .await,
        user_1
    );
    // Purged now: user-2's raw rows go, the rollups stay.
    let (status, body) = delete(&env, &admin, "/v1/tenants/acme/users/user-2?mode=purge").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deleted"]["events"], user_2);
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE user_id = 'user-2' AND tenant_id = 'acme'")
            .await,
        0
    );
    // Everything else is as it was: user-0 of acme, user-2 of globex, all of globex.
    assert_eq!(
        raw(&env, "NOT (tenant_id = 'acme' AND (user_id IN ('user-1', 'user-2') OR erased_at IS NOT NULL))")
            .await,
        others
    );
    assert_eq!(rollups(&env).await, before);
    verify_clean(&env).await;

    // Who may, and what is refused by name.
    let acme_admin = env.key(Some("acme"), &[Scope::Admin]).await;
    let acme_export = env.key(Some("acme"), &[Scope::Export, Scope::Read]).await;
    let cases = [
        (
            &acme_admin,
            "/v1/tenants/globex/data",
            403,
            "tenant_forbidden",
        ),
        (
            &acme_export,
            "/v1/tenants/acme/data",
            403,
            "insufficient_scope",
        ),
        (
            &admin,
            "/v1/tenants/acme/data?mode=later",
            422,
            "invalid_parameter",
        ),
        (
            &admin,
            "/v1/tenants/acme/data?moed=purge",
            422,
            "invalid_parameter",
        ),
        (
            &admin,
            "/v1/tenants/no%20tenant/data",
            422,
            "invalid_tenant_id",
        ),
        (&admin, "/v1/tenants/acme/users/%FF", 422, "invalid_path"),
    ];
    for (key, path, want, code) in cases {
        let (status, body) = delete(&env, key, path).await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (want, Some(code)),
            "{path}: {body}"
        );
    }
    let (status, body) = delete(&env, &admin, "/v1/tenants/acme/data?mode=later").await;
    assert_eq!(status, 422);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("mode:")),
        "{body}"
    );
    assert_eq!(rollups(&env).await, before);
    env.shutdown().await;
}

/// Every table of the schema with a `tenant_id` column (partitions as their parent).
async fn tenant_tables(env: &Env) -> BTreeSet<String> {
    env.db
        .query(
            "SELECT c.relname::text FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE a.attname = 'tenant_id' AND NOT a.attisdropped
               AND c.relkind IN ('r', 'p') AND NOT c.relispartition
               AND n.nspname = current_schema()",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_leaves_no_row_of_the_tenant_in_any_tenant_table() {
    let mut env = Env::start().await;
    load(&env).await;
    let url = env.pg.database_url();
    // Something of acme in every table: a tier, prices, a tier-limit mark, an export link, a
    // purged day (one user's purge), keys.
    agenttally_collector::set_tier(&url, "acme", "pro", None)
        .await
        .expect("tier");
    agenttally_collector::set_tenant_prices(
        &url,
        "acme",
        r#"{"gpt-4o": {"litellm_provider": "openai", "mode": "chat",
            "input_cost_per_token": 1e-06, "output_cost_per_token": 4e-06}}"#,
        Utc::now(),
    )
    .await
    .expect("prices");
    env.db
        .execute(
            "INSERT INTO tier_limit_marks (tenant_id, period, metric, level)
             VALUES ('acme', '2026-12', 'events', 'warning'), ('globex', '2026-12', 'events', 'warning')",
            &[],
        )
        .await
        .expect("mark");
    let admin = env.key(None, &[Scope::Admin]).await;
    let export = env.key(Some("acme"), &[Scope::Export]).await;
    let resp = env
        .http
        .post(format!("{}/v1/exports", env.base))
        .bearer_auth(&export)
        .send()
        .await
        .expect("link");
    assert_eq!(resp.status(), 201);
    let (status, _) = delete(&env, &admin, "/v1/tenants/acme/users/user-0?mode=purge").await;
    assert_eq!(status, 200);

    let tables = tenant_tables(&env).await;
    let known: BTreeSet<String> = PURGED_TABLES
        .iter()
        .chain(KEPT_ON_PURGE)
        .chain([&KEYS_TABLE])
        .map(|t| t.to_string())
        .collect();
    assert_eq!(
        tables, known,
        "every table with a tenant_id is purged or kept on purpose (store/erasure.rs)"
    );
    let count =
        |t: &str, tenant: &str| format!("SELECT count(*) FROM {t} WHERE tenant_id = '{tenant}'");
    for t in &tables {
        if KEPT_ON_PURGE.contains(&t.as_str()) {
            continue;
        }
        assert!(
            env.count(&count(t, "acme")).await > 0,
            "{t}: nothing of acme to purge"
        );
    }
    let globex_before: Vec<i64> = {
        let mut v = Vec::new();
        for t in &tables {
            v.push(env.count(&count(t, "globex")).await);
        }
        v
    };

    let (status, body) = delete(&env, &admin, "/v1/tenants/acme/data?mode=purge").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], "purge");
    for t in &tables {
        if KEPT_ON_PURGE.contains(&t.as_str()) {
            continue;
        }
        // The audit log keeps exactly one record of acme: the purge's own, written after it.
        let left = if t == "audit_log" { 1 } else { 0 };
        assert_eq!(
            env.count(&count(t, "acme")).await,
            left,
            "{t}: a row of acme is left"
        );
        assert!(
            body["deleted"][t].as_u64().is_some_and(|n| n > 0),
            "{t}: {body}"
        );
    }
    assert_eq!(
        env.count(
            "SELECT count(*) FROM audit_log WHERE tenant_id = 'acme' AND method = 'DELETE' \
             AND route = '/v1/tenants/{tenant_id}/data' AND status = 200"
        )
        .await,
        1,
        "the purge's own audit record"
    );
    let mut globex_after = Vec::new();
    for t in &tables {
        globex_after.push(env.count(&count(t, "globex")).await);
    }
    assert_eq!(globex_after, globex_before, "globex is untouched");
    // acme's keys are gone with it (within the key cache's few seconds).
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    let resp = env
        .http
        .get(format!("{}/v1/export", env.base))
        .bearer_auth(&export)
        .send()
        .await
        .expect("export");
    assert_eq!(resp.status(), 401);
    verify_clean(&env).await;
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_erasure_runs_in_batches_and_erases_everything() {
    let mut env = Env::start().await;
    // More than two batches (loaded straight into the table: the rollups do not matter here).
    env.db
        .execute(
            "INSERT INTO events (tenant_id, id, ts, event_type, correlation_id, user_id,
                 success, metadata)
             SELECT 'acme', gen_random_uuid(), now() - make_interval(secs => i / 100.0),
                    'customer.login', 'session-' || i, 'user-' || (i % 2), true,
                    jsonb_build_object('email', 'p' || i || '@example.com')
             FROM generate_series(1, 120000) i",
            &[],
        )
        .await
        .expect("load");
    let admin = env.key(Some("acme"), &[Scope::Admin]).await;
    let (status, body) = delete(&env, &admin, "/v1/tenants/acme/users/user-1").await;
    assert_eq!(
        (status, body["events_erased"].as_i64()),
        (202, Some(60_000)),
        "{body}"
    );
    let (status, body) = delete(&env, &admin, "/v1/tenants/acme/data").await;
    assert_eq!(
        (status, body["events_erased"].as_i64()),
        (202, Some(60_000)),
        "{body}"
    );
    assert_eq!(
        env.count(
            "SELECT count(*) FROM events WHERE user_id IS NOT NULL OR metadata <> '{}'::jsonb
                 OR correlation_id <> 'erased' OR erased_at IS NULL"
        )
        .await,
        0
    );
    env.shutdown().await;
}
