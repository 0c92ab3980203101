//! Embedded schema migrations: `.sql` files compiled into the binary and applied in order at
//! start, each in its own transaction, recorded in `schema_migrations`.

use tokio_postgres::Client;

use crate::error::Result;

/// `(version, name, sql)`, in order. Append only; never edit an applied migration.
pub const MIGRATIONS: &[(i32, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (
        2,
        "rollup_itemized",
        include_str!("migrations/0002_rollup_itemized.sql"),
    ),
    (3, "savings", include_str!("migrations/0003_savings.sql")),
    (4, "billing", include_str!("migrations/0004_billing.sql")),
    (
        5,
        "tenant_prices",
        include_str!("migrations/0005_tenant_prices.sql"),
    ),
    (6, "access", include_str!("migrations/0006_access.sql")),
    (
        7,
        "export_erasure",
        include_str!("migrations/0007_export_erasure.sql"),
    ),
    (
        8,
        "rollup_agent",
        include_str!("migrations/0008_rollup_agent.sql"),
    ),
    (9, "hist_lz4", include_str!("migrations/0009_hist_lz4.sql")),
    (
        10,
        "rollup_tenant_hourly",
        include_str!("migrations/0010_rollup_tenant_hourly.sql"),
    ),
    (
        11,
        "retention_floor",
        include_str!("migrations/0011_retention_floor.sql"),
    ),
    (
        12,
        "rls_initplan",
        include_str!("migrations/0012_rls_initplan.sql"),
    ),
    (
        13,
        "rollup_months",
        include_str!("migrations/0013_rollup_months.sql"),
    ),
];

/// Apply every migration not yet recorded. Safe to run from several collectors at once: an
/// advisory lock serialises them.
pub async fn apply(client: &mut Client) -> Result<Vec<i32>> {
    client
        .batch_execute(
            "SELECT pg_advisory_lock(hashtext('agenttally_migrations'));
             CREATE TABLE IF NOT EXISTS schema_migrations (
                 version    int PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await?;
    let result = apply_locked(client).await;
    client
        .batch_execute("SELECT pg_advisory_unlock(hashtext('agenttally_migrations'))")
        .await?;
    result
}

async fn apply_locked(client: &mut Client) -> Result<Vec<i32>> {
    let done: Vec<i32> = client
        .query("SELECT version FROM schema_migrations", &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut applied = Vec::new();
    for (version, name, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await?;
        tx.commit().await?;
        tracing::info!("applied migration {version:04}_{name}");
        applied.push(*version);
    }
    Ok(applied)
}
