//! GDPR erasure (Art. 17) in the database: the personal fields of a tenant's (or one user's) raw
//! events cleared at once, the rows themselves deleted by upkeep after a grace period
//! (`purge_due`, from `retention::run_once`), or everything of a tenant deleted now
//! (`purge_tenant`). Rollups keep their totals: they hold no personal field.
//!
//! What is personal (docs/security.md): `user_id` (names a person), `metadata` (free-form: may
//! hold anything) and `correlation_id` (chosen by the application, often derived from a session
//! or request). An erased event keeps of its metadata only a numeric `calls`, a count the rollups
//! are computed from (an itemized run), so the accuracy check still recomputes erased days
//! exactly. Types, providers, models, task types, agent and workflow ids, costs, usage and
//! durations describe the software, not a person, and are kept until the rows go.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use tokio_postgres::Client;

use super::tenant_tx;
use crate::error::Result;

/// The fields an erasure clears, in the order documented.
pub const ERASED_FIELDS: &[&str] = &["user_id", "metadata", "correlation_id"];

/// What an erased event's `correlation_id` becomes (the column is required).
pub const ERASED_CORRELATION_ID: &str = "erased";

/// The tenant tables `purge_tenant` empties of the tenant, in the order it does (dependent rows
/// first). Every table with a `tenant_id` column is here or in `KEPT_ON_PURGE` (a test checks the
/// schema against both).
pub const PURGED_TABLES: &[&str] = &[
    "audit_log",
    "export_links",
    "event_ids",
    "events",
    "rollup_hourly",
    "rollup_daily",
    "rollup_agent_hourly",
    "rollup_agent_daily",
    "rollup_savings_hourly",
    "rollup_savings_daily",
    "rollup_tenant_hourly",
    "tier_limit_marks",
    "tenant_tiers",
    "tenant_prices",
    "purged_days",
];

/// Tables with a `tenant_id` that a purge keeps on purpose: none. (The audit log is purged
/// too; the access layer then writes the one record of the purge itself, after it ran, so that
/// the erasure stays provable.)
pub const KEPT_ON_PURGE: &[&str] = &[];

/// The tenant's API keys (not under row-level security: looked up before any tenant is known)
/// are deleted by a purge too.
pub const KEYS_TABLE: &str = "api_keys";

/// Rows deleted per statement by `purge_due`, so one round never holds a huge transaction.
const PURGE_BATCH: i64 = 10_000;

/// Spent or expired export links are deleted this many days after their expiry (a link of
/// before answers 404 rather than 410).
const LINK_KEEP_DAYS: i32 = 30;

/// Whose events an erasure covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    Tenant,
    User(&'a str),
}

impl Subject<'_> {
    fn user(&self) -> Option<&str> {
        match self {
            Subject::Tenant => None,
            Subject::User(u) => Some(u),
        }
    }
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Erased {
    /// Events whose personal fields were cleared now (erased ones are not counted twice).
    pub events: u64,
    pub erased_at: DateTime<Utc>,
    /// When upkeep deletes the erased rows (the next round after it).
    pub purge_after: DateTime<Utc>,
}

/// Rows erased per transaction: a large tenant's erasure commits as it goes, so a request that
/// runs out of time has still erased what it reached, and a retry goes on from there.
const ERASE_BATCH: i64 = 50_000;

/// Clear the personal fields of `subject`'s raw events of `tenant` stored so far and schedule
/// their rows' deletion `grace_days` from now. Events stored later are not affected. Runs in
/// batches of `ERASE_BATCH` rows, one transaction each; erasing again is harmless (erased rows
/// are skipped and keep their first deadline).
pub async fn erase(
    client: &mut Object,
    tenant: &str,
    subject: Subject<'_>,
    grace_days: u32,
) -> Result<Erased> {
    let grace = i32::try_from(grace_days).unwrap_or(i32::MAX);
    let (erased_at, purge_after): (DateTime<Utc>, DateTime<Utc>) = {
        let row = client
            .query_one("SELECT now(), now() + make_interval(days => $1)", &[&grace])
            .await?;
        (row.get(0), row.get(1))
    };
    let mut total: u64 = 0;
    loop {
        let tx = tenant_tx(client, tenant).await?;
        let n = tx
            .execute(
                "UPDATE events e SET
                     user_id = NULL,
                     correlation_id = $3,
                     metadata = CASE WHEN jsonb_typeof(e.metadata -> 'calls') = 'number'
                                     THEN jsonb_build_object('calls', e.metadata -> 'calls')
                                     ELSE '{}'::jsonb END,
                     erased_at = $4,
                     purge_after = $5
                 FROM (SELECT id, ts FROM events
                       WHERE tenant_id = $1 AND erased_at IS NULL
                         AND ($2::text IS NULL OR user_id = $2)
                       LIMIT $6) due
                 WHERE e.tenant_id = $1 AND e.id = due.id AND e.ts = due.ts",
                &[
                    &tenant,
                    &subject.user(),
                    &ERASED_CORRELATION_ID,
                    &erased_at,
                    &purge_after,
                    &ERASE_BATCH,
                ],
            )
            .await?;
        tx.commit().await?;
        total += n;
        if n < u64::try_from(ERASE_BATCH).unwrap_or(u64::MAX) {
            break;
        }
    }
    Ok(Erased {
        events: total,
        erased_at,
        purge_after,
    })
}

/// Delete one user's raw events of `tenant` now (with their dedupe ids), recording the days
/// touched (`purged_days`) so the accuracy check skips them. Returns the events deleted.
pub async fn purge_user(client: &mut Object, tenant: &str, user: &str) -> Result<u64> {
    let tx = tenant_tx(client, tenant).await?;
    let n: i64 = tx
        .query_one(
            "WITH gone AS (
                 DELETE FROM events WHERE tenant_id = $1 AND user_id = $2 RETURNING id, ts),
             ids AS (
                 DELETE FROM event_ids i USING gone g WHERE i.tenant_id = $1 AND i.id = g.id),
             days AS (
                 INSERT INTO purged_days (tenant_id, day, rows)
                 SELECT $1, (ts AT TIME ZONE 'UTC')::date, count(*) FROM gone GROUP BY 2
                 ON CONFLICT (tenant_id, day) DO UPDATE
                     SET rows = purged_days.rows + excluded.rows, purged_at = now())
             SELECT count(*) FROM gone",
            &[&tenant, &user],
        )
        .await?
        .get(0);
    tx.commit().await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Delete every row of `tenant` in every tenant table (`PURGED_TABLES`) and its API keys, in
/// one transaction. Returns the rows deleted per table.
pub async fn purge_tenant(client: &mut Object, tenant: &str) -> Result<BTreeMap<String, u64>> {
    let tx = super::TenantTx::begin(client).await?;
    let mut deleted = BTreeMap::new();
    // Before the switch to the row-level-security role: `api_keys` is the collector's own
    // table, not the app role's (the same transaction, so the purge is all or nothing).
    let keys = tx
        .execute(
            &format!("DELETE FROM {KEYS_TABLE} WHERE tenant_id = $1"),
            &[&tenant],
        )
        .await?;
    deleted.insert(KEYS_TABLE.to_string(), keys);
    tx.switch_tenant(tenant).await?;
    for table in PURGED_TABLES {
        let n = tx
            .execute(
                &format!("DELETE FROM {table} WHERE tenant_id = $1"),
                &[&tenant],
            )
            .await?;
        deleted.insert((*table).to_string(), n);
    }
    tx.commit().await?;
    Ok(deleted)
}

/// Upkeep: delete the erased raw rows whose grace has passed (every tenant, as the collector's
/// own user), with their dedupe ids, recording the tenant-days touched; and export links
/// expired long ago. Returns the raw rows deleted.
pub async fn purge_due(client: &Client) -> Result<u64> {
    let mut total: u64 = 0;
    loop {
        let n: i64 = client
            .query_one(
                "WITH doomed AS (
                     SELECT tenant_id, id, ts FROM events
                     WHERE purge_after <= now() LIMIT $1),
                 gone AS (
                     DELETE FROM events e USING doomed d
                     WHERE e.tenant_id = d.tenant_id AND e.id = d.id AND e.ts = d.ts
                     RETURNING e.tenant_id, e.id, e.ts),
                 ids AS (
                     DELETE FROM event_ids i USING gone g
                     WHERE i.tenant_id = g.tenant_id AND i.id = g.id),
                 days AS (
                     INSERT INTO purged_days (tenant_id, day, rows)
                     SELECT tenant_id, (ts AT TIME ZONE 'UTC')::date, count(*) FROM gone
                     GROUP BY 1, 2
                     ON CONFLICT (tenant_id, day) DO UPDATE
                         SET rows = purged_days.rows + excluded.rows, purged_at = now())
                 SELECT count(*) FROM gone",
                &[&PURGE_BATCH],
            )
            .await?
            .get(0);
        total += u64::try_from(n).unwrap_or(0);
        if n < PURGE_BATCH {
            break;
        }
    }
    client
        .execute(
            "DELETE FROM export_links WHERE expires_at < now() - make_interval(days => $1)",
            &[&LINK_KEEP_DAYS],
        )
        .await?;
    if total > 0 {
        tracing::info!("erasure: deleted {total} erased raw events past their grace period");
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_purge_empties_every_rollup_table() {
        for (table, _) in crate::store::rollups::TABLES {
            assert!(PURGED_TABLES.contains(&table), "{table} is not purged");
        }
    }
}
