//! Isolation in the database, table by table: every table with a `tenant_id` column is under
//! row-level security, ENABLEd and FORCEd (but `api_keys`, the reference table keys are looked
//! up in before any tenant is known; partitions are reached only through their parent, and the
//! app role has no privilege on them); and as `agenttally_app` with tenant A set (the collector's
//! `TenantTx`), no row of tenant B is readable, and no INSERT, UPDATE or DELETE reaches one.

mod common;

use agenttally_collector::{store, Scope};
use common::{event, Env};
use serde_json::json;

const A: &str = "acme";
const B: &str = "globex";
/// Not tenant data (docs/scaling.md): no row-level security.
const REFERENCE_TABLES: [&str; 1] = ["api_keys"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statement_as_tenant_a_reaches_tenant_b() {
    let mut env = Env::start().await;
    let url = env.pg.database_url();

    // Rows of both tenants in every tenant table.
    let ingest = env.key(None, &[Scope::Ingest]).await;
    let mut events = Vec::new();
    for t in [A, B] {
        events.push(event(t, json!({})));
        events.push(event(
            t,
            json!({"event_type": "agent.completed", "agent_id": "x",
            "provider": null, "model": null, "usage": null}),
        ));
    }
    let (s, body) = env.post(&ingest, &events).await;
    assert_eq!(s, 200, "{body}");
    let prices = r#"{"gpt-4o": {"input_cost_per_token": 2e-06, "output_cost_per_token": 8e-06}}"#;
    for t in [A, B] {
        agenttally_collector::set_tier(&url, t, "pro", None)
            .await
            .expect("tier");
        agenttally_collector::set_tenant_prices(&url, t, prices, chrono::Utc::now())
            .await
            .expect("prices");
        let reader = env.key(Some(t), &[Scope::Read]).await;
        let (s, _, text) = env
            .call("GET", "/v1/metrics/summary", Some(&reader), None)
            .await;
        assert_eq!(s, 200, "{text}");
        let exporter = env.key(Some(t), &[Scope::Export]).await;
        let (s, _, text) = env.call("POST", "/v1/exports", Some(&exporter), None).await;
        assert_eq!(s, 201, "{text}");
    }
    // The daily rollups moved into month tables (as a month later): rows of both there too.
    let later = chrono::Utc::now().date_naive() + chrono::TimeDelta::days(40);
    let done = store::compact::run_once(&mut env.db, later)
        .await
        .expect("compact");
    assert!(done.moved > 0, "{done:?}");
    env.db
        .batch_execute(
            "INSERT INTO tier_limit_marks (tenant_id, period, metric, level) VALUES
               ('acme', '2026-12', 'events', 'warning'), ('globex', '2026-12', 'events', 'warning');
             INSERT INTO purged_days (tenant_id, day, rows) VALUES
               ('acme', '2026-11-01', 1), ('globex', '2026-11-01', 1)",
        )
        .await
        .expect("marks");

    // Every table of the schema with a tenant_id column.
    let tables = env
        .db
        .query(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, c.relispartition,
                    has_table_privilege('agenttally_app', c.oid, 'SELECT, INSERT, UPDATE, DELETE')
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id'
                                 AND NOT a.attisdropped
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
             ORDER BY 1",
            &[],
        )
        .await
        .expect("tables");
    let mut tenant_tables = Vec::new();
    for r in &tables {
        let (name, rls, force, partition, app_privileges): (String, bool, bool, bool, bool) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        if partition {
            assert!(
                !app_privileges,
                "{name}: the app role must reach a partition only through its parent"
            );
        } else if REFERENCE_TABLES.contains(&name.as_str()) {
            assert!(
                !app_privileges,
                "{name}: a reference table the app role must not reach"
            );
        } else {
            assert!(
                rls && force,
                "{name}: row-level security must be ENABLEd and FORCEd"
            );
            tenant_tables.push(name);
        }
    }
    println!("tenant tables: {tenant_tables:?}");
    for t in [
        "events",
        "event_ids",
        "rollup_hourly",
        "rollup_daily",
        "rollup_agent_hourly",
        "rollup_agent_daily",
        "rollup_savings_hourly",
        "rollup_savings_daily",
        "rollup_tenant_hourly",
        "tenant_tiers",
        "tier_limit_marks",
        "tenant_prices",
        "audit_log",
    ] {
        assert!(
            tenant_tables.iter().any(|n| n == t),
            "{t} missing from {tenant_tables:?}"
        );
    }

    for daily in store::compact::DAILY_TABLES {
        assert!(
            tenant_tables
                .iter()
                .any(|n| n.starts_with(daily) && n.len() == daily.len() + 8),
            "a month table of {daily} missing from {tenant_tables:?}"
        );
    }

    let pool = store::connect_pool(&url, 1).expect("pool");
    let mut client = pool.get().await.expect("connection");
    for table in &tenant_tables {
        let b_rows = env
            .count(&format!(
                "SELECT count(*) FROM {table} WHERE tenant_id = '{B}'"
            ))
            .await;
        assert!(
            b_rows > 0,
            "{table}: seed rows of {B} so the checks below mean something"
        );
        // Read: nothing of B, filtered or not.
        let tx = store::tenant_tx(&mut client, A).await.expect("tx");
        let seen: i64 = tx
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE tenant_id <> '{A}'"),
                &[],
            )
            .await
            .expect("select")
            .get(0);
        assert_eq!(seen, 0, "{table}: B's rows readable as A");
        tx.commit().await.expect("commit");
        // Update and delete: no row of B touched (an error is as good).
        for stmt in [
            format!("UPDATE {table} SET tenant_id = tenant_id WHERE tenant_id = '{B}'"),
            format!("DELETE FROM {table} WHERE tenant_id = '{B}'"),
        ] {
            let tx = store::tenant_tx(&mut client, A).await.expect("tx");
            match tx.execute(&stmt, &[]).await {
                Ok(n) => assert_eq!(n, 0, "{stmt}"),
                Err(e) => println!("{stmt}: {e}"),
            }
            drop(tx);
        }
        // Insert: a copy of one of B's rows, as A, is refused by the policy.
        let row: serde_json::Value = env
            .db
            .query_one(
                &format!("SELECT to_jsonb(t) FROM {table} t WHERE tenant_id = '{B}' LIMIT 1"),
                &[],
            )
            .await
            .expect("a row of B")
            .get(0);
        let tx = store::tenant_tx(&mut client, A).await.expect("tx");
        let err = tx
            .execute(
                &format!(
                    "INSERT INTO {table} OVERRIDING SYSTEM VALUE
                     SELECT * FROM jsonb_populate_record(NULL::{table}, $1)"
                ),
                &[&row],
            )
            .await
            .expect_err(&format!("{table}: a row of {B} inserted as {A}"));
        let code = err.code().map(|c| c.code().to_string());
        assert_eq!(code.as_deref(), Some("42501"), "{table}: {err}");
        drop(tx);
    }
    // Nothing of B changed.
    for table in &tenant_tables {
        let n = env
            .count(&format!(
                "SELECT count(*) FROM {table} WHERE tenant_id = '{B}'"
            ))
            .await;
        assert!(n > 0, "{table}");
    }
    env.shutdown().await;
}
