//! The schema is ready to be distributed by `tenant_id` (Citus): read from the catalog of a
//! migrated database, every primary key and unique constraint or index of tenant data (tables
//! under row-level security, and their partitions) starts with `tenant_id`, a NOT NULL column,
//! and every other table is one of the known reference tables. A new table must be classified
//! here (and in docs/scaling.md) before this test passes.

use std::collections::BTreeSet;

use agenttally_collector::store::rollups;
use agenttally_collector::EmbeddedPostgres;

/// Tables that are not tenant data: replicated to every node under Citus.
const REFERENCE_TABLES: [&str; 4] = [
    "api_keys",
    "retention_floor",
    "rollup_months",
    "schema_migrations",
];

/// Every unique index (primary keys and unique constraints are backed by one) and every
/// primary/unique/exclusion constraint of tenant data, with its first column.
const KEYS_SQL: &str = "SELECT t.relname, i.relname, \
       (SELECT a.attname FROM pg_attribute a \
         WHERE a.attrelid = t.oid AND a.attnum = x.indkey[0]), \
       pg_get_indexdef(x.indexrelid) \
     FROM pg_index x \
     JOIN pg_class t ON t.oid = x.indrelid \
     JOIN pg_class i ON i.oid = x.indexrelid \
     JOIN pg_namespace n ON n.oid = t.relnamespace \
     JOIN pg_class r ON r.oid = coalesce(pg_partition_root(t.oid), t.oid) \
     WHERE n.nspname = 'public' AND r.relrowsecurity \
       AND (x.indisunique OR x.indisprimary OR x.indisexclusion) \
     UNION ALL \
     SELECT t.relname, k.conname, \
       (SELECT a.attname FROM pg_attribute a \
         WHERE a.attrelid = t.oid AND a.attnum = k.conkey[1]), \
       pg_get_constraintdef(k.oid) \
     FROM pg_constraint k \
     JOIN pg_class t ON t.oid = k.conrelid \
     JOIN pg_namespace n ON n.oid = t.relnamespace \
     JOIN pg_class r ON r.oid = coalesce(pg_partition_root(t.oid), t.oid) \
     WHERE n.nspname = 'public' AND r.relrowsecurity AND k.contype IN ('p', 'u', 'x') \
     ORDER BY 1, 2";

/// An ephemeral cluster with every migration applied, and a superuser connection to it (the
/// cluster stops when the first value is dropped).
async fn migrated() -> (EmbeddedPostgres, tokio_postgres::Client) {
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start_ephemeral)
        .await
        .expect("join")
        .expect("ephemeral PostgreSQL");
    let url = pg.database_url();
    agenttally_collector::migrate(&url).await.expect("migrate");
    let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    (pg, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_keys_start_with_tenant_id() {
    let (pg, db) = migrated().await;
    // A day partition, so partitions' own indexes are checked too.
    db.execute("SELECT agenttally_ensure_partition(current_date)", &[])
        .await
        .expect("partition");

    // Every table of the public schema with the root of its partition tree and whether that
    // root is under row-level security (tenant data).
    let rows = db
        .query(
            "SELECT c.relname, r.relname, r.relrowsecurity, \
               (SELECT a.attnotnull FROM pg_attribute a \
                 WHERE a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped) \
             FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             JOIN pg_class r ON r.oid = coalesce(pg_partition_root(c.oid), c.oid) \
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') \
             ORDER BY 1",
            &[],
        )
        .await
        .expect("tables");
    let mut tenant_tables = BTreeSet::new();
    let mut reference_tables = BTreeSet::new();
    for r in &rows {
        let (table, root, rls): (String, String, bool) = (r.get(0), r.get(1), r.get(2));
        let tenant_id_not_null: Option<bool> = r.get(3);
        if rls {
            assert_eq!(
                tenant_id_not_null,
                Some(true),
                "{table}: tenant data needs a NOT NULL tenant_id"
            );
            if table == root {
                tenant_tables.insert(table);
            }
        } else {
            assert_eq!(table, root, "{table}: a partition of a table without RLS");
            reference_tables.insert(table);
        }
    }
    println!("tenant tables (distributed by tenant_id): {tenant_tables:?}");
    println!("reference tables (replicated): {reference_tables:?}");
    assert_eq!(
        reference_tables,
        REFERENCE_TABLES.iter().map(|t| t.to_string()).collect(),
        "every table without row-level security is a known reference table"
    );
    assert!(
        ["events", "event_ids"]
            .iter()
            .all(|t| tenant_tables.contains(*t)),
        "{tenant_tables:?}"
    );
    // The rollup tables are exactly the ones the code knows (retention, verify, purge).
    assert_eq!(
        tenant_tables
            .iter()
            .filter(|t| t.starts_with("rollup_"))
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        rollups::TABLES.iter().map(|(t, _)| *t).collect(),
        "rollup tables of the schema vs store::rollups::TABLES"
    );

    // Each tenant table's isolation policy compares tenant_id with the tenant setting read once
    // per statement (a sub-select, migration 0012), for reads and writes alike.
    for t in &tenant_tables {
        let row = db
            .query_one(
                "SELECT pg_get_expr(polqual, polrelid), pg_get_expr(polwithcheck, polrelid) \
                 FROM pg_policy WHERE polrelid = $1::text::regclass AND polname = 'tenant_isolation'",
                &[t],
            )
            .await
            .unwrap_or_else(|e| panic!("{t}: no tenant_isolation policy: {e}"));
        let want = "(tenant_id = ( SELECT current_setting('agenttally.tenant_id'::text, true) AS current_setting))";
        for (what, expr) in [
            ("USING", row.get::<_, String>(0)),
            ("WITH CHECK", row.get(1)),
        ] {
            assert_eq!(expr, want, "{t}: tenant_isolation {what}");
        }
    }

    // Each key's first column is tenant_id.
    let keys = db.query(KEYS_SQL, &[]).await.expect("keys");
    let mut checked = BTreeSet::new();
    for k in &keys {
        let (table, key, first, def): (String, String, Option<String>, String) =
            (k.get(0), k.get(1), k.get(2), k.get(3));
        assert_eq!(
            first.as_deref(),
            Some("tenant_id"),
            "{table}.{key} ({def}) must start with tenant_id"
        );
        println!("{table}: {key} {def}");
        checked.insert(table);
    }
    // Every tenant table, partitions included, has a key, and each was checked.
    for t in &tenant_tables {
        assert!(checked.contains(t), "{t}: no primary key checked");
    }
    assert!(
        checked.iter().any(|t| t.starts_with("events_")),
        "a partition's keys were checked: {checked:?}"
    );

    // The check sees a violation: a tenant table whose unique key starts elsewhere.
    db.batch_execute(
        "BEGIN; \
         CREATE TABLE bad_keys (tenant_id text NOT NULL, name text UNIQUE); \
         ALTER TABLE bad_keys ENABLE ROW LEVEL SECURITY;",
    )
    .await
    .expect("bad table");
    let flagged: Vec<String> = db
        .query(KEYS_SQL, &[])
        .await
        .expect("keys")
        .iter()
        .filter(|k| k.get::<_, Option<String>>(2).as_deref() != Some("tenant_id"))
        .map(|k| k.get(1))
        .collect();
    assert_eq!(
        flagged,
        ["bad_keys_name_key", "bad_keys_name_key"],
        "{flagged:?}"
    );
    db.batch_execute("ROLLBACK").await.expect("rollback");
    drop(db);
    drop(pg);
}

/// The agent rollups (migration 0008) restate the usage rollups' measure columns: every measure
/// of `rollup_hourly` must be in `rollup_agent_hourly` with the same type (only the key columns
/// differ), and each daily table must match its hourly one exactly. A measure added to one
/// family and not the other fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_rollups_have_the_usage_rollups_measures() {
    let (_pg, db) = migrated().await;
    let columns = |table: &'static str| {
        let db = &db;
        async move {
            db.query(
                "SELECT attname::text, format_type(atttypid, atttypmod), attnotnull \
                 FROM pg_attribute WHERE attrelid = $1::text::regclass AND attnum > 0 \
                   AND NOT attisdropped ORDER BY attnum",
                &[&table],
            )
            .await
            .expect("columns")
            .iter()
            .map(|r| {
                (
                    r.get::<_, String>(0),
                    r.get::<_, String>(1),
                    r.get::<_, bool>(2),
                )
            })
            .collect::<BTreeSet<_>>()
        }
    };
    let without = |cols: BTreeSet<(String, String, bool)>, keys: &[&str]| {
        cols.into_iter()
            .filter(|(name, _, _)| !keys.contains(&name.as_str()))
            .collect::<BTreeSet<_>>()
    };
    let usage = columns("rollup_hourly").await;
    let agent = columns("rollup_agent_hourly").await;
    assert!(usage.len() > 10, "{usage:?}");
    assert_eq!(
        without(usage.clone(), &["provider", "model", "task_type"]),
        without(agent.clone(), &["agent_id"]),
        "rollup_hourly and rollup_agent_hourly differ beyond their keys"
    );
    assert_eq!(columns("rollup_daily").await, usage);
    assert_eq!(columns("rollup_agent_daily").await, agent);
}

/// The rollups' latency histograms (jsonb over 2 KB in busy rows, rewritten by every commit that
/// touches the row) are compressed with lz4 where the server has it (migration 0009), not pglz.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollup_histograms_use_lz4_where_the_server_has_it() {
    let (_pg, db) = migrated().await;
    let has_lz4: bool = db
        .query_one(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings \
             WHERE name = 'default_toast_compression'",
            &[],
        )
        .await
        .expect("settings")
        .get(0);
    let rows = db
        .query(
            "SELECT c.relname::text, a.attname::text, a.attcompression::text \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             WHERE c.relname IN ('rollup_hourly', 'rollup_daily', 'rollup_agent_hourly', \
                                 'rollup_agent_daily') \
               AND a.attname IN ('duration_hist', 'queue_hist') \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .expect("columns");
    assert_eq!(
        rows.len(),
        8,
        "two histograms in each of four rollup tables"
    );
    // "char" '\0' (the server default) reads back as an empty text.
    let want = if has_lz4 { "l" } else { "" };
    for r in &rows {
        let (table, column, method): (String, String, String) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(method, want, "{table}.{column} compression");
    }
    // The server this runs on (Debian's PostgreSQL 15) is built with lz4.
    assert!(
        has_lz4,
        "this server has no lz4; the check above only saw the fallback"
    );
}
