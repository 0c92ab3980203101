//! Compaction of the daily rollups of closed days, so that a tenant's range is read from a few
//! runs of adjacent pages instead of rows scattered over the table.
//!
//! Why: the writer inserts a day's rollup rows as the day's events arrive and updates them in
//! place with every commit that touches their key; an updated row moves to whatever page has
//! room. A tenant's 89 days of daily usage rows (~3,000 rows) ended up on 216–455 pages spread
//! over the table, and when the OS no longer caches them each is a random read (≈ 0.1–0.2 ms
//! on the disks measured): a cold 89-day summary took 20–35 ms. The same rows written in tenant
//! order sit on ~125 adjacent pages, read in a few requests: 7–13 ms cold.
//!
//! How: each daily rollup table (`rollup_daily`, `rollup_agent_daily`, `rollup_savings_daily`)
//! keeps the rows the writer updates. The rows of days before yesterday (UTC) are moved out of
//! it into a table per month, `<table>_YYYY_MM`: an inheritance child of the daily table,
//! created by the first move into it, with the daily table's columns, row-level security and an
//! index on (tenant_id, bucket). A query of the daily table reads its month tables too, so every
//! read is unchanged; the writer updates only the daily table itself (`ONLY`). A move deletes
//! the rows from the daily table and inserts them into the month table in one statement, sorted
//! by tenant and day, so nothing is counted twice or lost, whatever commits meanwhile. An event
//! arriving after its day was moved (late) adds to a new row in the daily table with the same
//! key as the moved one; every reader sums rows by key (and `verify` adds them up before it
//! compares), and the next compaction moves it too. Each move appends a sorted run to the month
//! table; the table is rewritten whole in tenant order (a new table filled in order, then
//! swapped in with the old one dropped, in one transaction: readers see one or the other) when
//! the rows appended since its last rewrite reach a quarter of the rows in order while the
//! month is open, and 1% once it is over. `rollup_months` records per month table how many rows
//! are in order and how many were appended since.
//!
//! The collector runs it once a day (`lib.rs`, upkeep) unless `compact_rollups` is off; the
//! transactions of two collectors' rounds take turns (an advisory lock). The writer never
//! waits for it: a move first finds the rows to move without locking (a scan of the daily table)
//! and then deletes exactly those rows by their physical address, so only a late event for a
//! row being moved waits, for that short transaction; a rewrite touches only the month table.

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use std::collections::BTreeMap;
use tokio_postgres::{Client, Transaction};

use crate::error::Result;

/// The daily rollup tables that are compacted (every daily table of `rollups::TABLES`).
pub const DAILY_TABLES: [&str; 3] = ["rollup_daily", "rollup_agent_daily", "rollup_savings_daily"];

/// A month table is rewritten in tenant order when the rows appended since its last rewrite
/// reach this share of the rows in order: 1 / 100 once its month is over (or at once when it
/// was never rewritten), 1 / 4 while it is open — so an open month is a few sorted runs, not one
/// per day, for about five days' rows rewritten per day.
const CLOSED_REWRITE_FRACTION: i64 = 100;
const OPEN_REWRITE_FRACTION: i64 = 4;

/// Held by each transaction of a round: two collectors' rounds take turns, step by step.
const LOCK_SQL: &str = "SELECT pg_advisory_xact_lock(hashtext('agenttally_compact'))";

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compacted {
    /// Rows moved out of the daily tables into month tables.
    pub moved: u64,
    /// Month tables rewritten in tenant order.
    pub rewritten: Vec<String>,
}

/// The first instant of `day` (UTC).
fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// The month holding `day`, and the first day of the next.
fn month_of(day: NaiveDate) -> (NaiveDate, NaiveDate) {
    let first = day.with_day(1).unwrap_or(day);
    let next = if first.month() == 12 {
        NaiveDate::from_ymd_opt(first.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(first.year(), first.month() + 1, 1)
    };
    (first, next.unwrap_or(first))
}

/// The month table of `table` for the month starting `first`: `rollup_daily_2026_11`.
pub fn month_table(table: &str, first: NaiveDate) -> String {
    format!("{table}_{:04}_{:02}", first.year(), first.month())
}

/// One round: move the rows of days before `today − 1` out of every daily table into their
/// month tables, and rewrite the closed months that need it. Run as the collector's own user
/// (every tenant); safe beside ingest, queries and other collectors.
pub async fn run_once(client: &mut Client, today: NaiveDate) -> Result<Compacted> {
    let mut done = Compacted::default();
    let before = today - TimeDelta::days(1);
    for table in DAILY_TABLES {
        compact_table(client, table, before, &mut done).await?;
    }
    Ok(done)
}

async fn compact_table(
    client: &mut Client,
    table: &'static str,
    before: NaiveDate,
    done: &mut Compacted,
) -> Result<()> {
    let columns: String = client
        .query_one(
            "SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) FROM pg_attribute \
             WHERE attrelid = $1::text::regclass AND attnum > 0 AND NOT attisdropped",
            &[&table],
        )
        .await?
        .get(0);
    // The rows to move, found without taking locks; each month's are then moved by address.
    let mut months: BTreeMap<NaiveDate, Vec<String>> = BTreeMap::new();
    for r in client
        .query(
            &format!(
                "SELECT ctid::text, (bucket AT TIME ZONE 'UTC')::date FROM ONLY {table} \
                 WHERE bucket < $1"
            ),
            &[&day_start(before)],
        )
        .await?
    {
        let (ctid, day): (String, NaiveDate) = (r.get(0), r.get(1));
        months.entry(month_of(day).0).or_default().push(ctid);
    }
    for (first, ctids) in months {
        let (_, next) = month_of(first);
        let child = month_table(table, first);
        let moved = move_rows(client, table, &child, &columns, first, next, before, &ctids).await?;
        done.moved += moved;
    }
    // Month tables due a rewrite in order (also those a failed round left).
    let due = client
        .query(
            "SELECT child, month FROM rollup_months \
             WHERE parent = $1 AND appended_rows > 0 \
               AND appended_rows * CASE WHEN month + interval '1 month' <= $2::date \
                                   THEN $3::bigint ELSE $4::bigint END >= sorted_rows \
             ORDER BY month",
            &[
                &table,
                &before,
                &CLOSED_REWRITE_FRACTION,
                &OPEN_REWRITE_FRACTION,
            ],
        )
        .await?;
    for r in due {
        let (child, first): (String, NaiveDate) = (r.get(0), r.get(1));
        rewrite(client, table, &child, &columns, first).await?;
        done.rewritten.push(child);
    }
    Ok(())
}

/// Create the month table `child` of `table` (empty) with its check, index and row-level
/// security, named `name` (`child` itself, or a new table to swap in).
async fn create_month_table(
    tx: &Transaction<'_>,
    table: &str,
    name: &str,
    first: NaiveDate,
    next: NaiveDate,
) -> Result<()> {
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {name} (CHECK (bucket >= '{first}T00:00:00Z' AND bucket < \
             '{next}T00:00:00Z')) INHERITS ({table}); \
             SELECT agenttally_tenant_table('{name}')"
    ))
    .await?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn move_rows(
    client: &mut Client,
    table: &str,
    child: &str,
    columns: &str,
    first: NaiveDate,
    next: NaiveDate,
    before: NaiveDate,
    ctids: &[String],
) -> Result<u64> {
    let tx = client.transaction().await?;
    tx.query_one(LOCK_SQL, &[]).await?;
    let had: Option<i64> = tx
        .query_opt(
            "SELECT sorted_rows + appended_rows FROM rollup_months WHERE child = $1",
            &[&child],
        )
        .await?
        .map(|r| r.get(0));
    if had.is_none() {
        create_month_table(&tx, table, child, first, next).await?;
        tx.batch_execute(&format!(
            "CREATE INDEX IF NOT EXISTS {child}_tenant_bucket ON {child} (tenant_id, bucket)"
        ))
        .await?;
    }
    // Guarded by the bucket range: an address reused since the scan by another row of the
    // daily table is not moved unless that row belongs here too.
    let moved = tx
        .execute(
            &format!(
                "WITH moved AS (DELETE FROM ONLY {table} \
                   WHERE ctid = ANY($1::text[]::tid[]) AND bucket >= $2 AND bucket < $3 \
                   RETURNING {columns}) \
                 INSERT INTO {child} ({columns}) \
                 SELECT {columns} FROM moved ORDER BY tenant_id, bucket"
            ),
            &[&ctids, &day_start(first), &day_start(next.min(before))],
        )
        .await?;
    let n = i64::try_from(moved).unwrap_or(i64::MAX);
    // Rows moved into an empty month table in one statement are in order already.
    let (sorted, appended) = match had {
        None | Some(0) => (n, 0),
        Some(_) => (0, n),
    };
    tx.execute(
        "INSERT INTO rollup_months (child, parent, month, sorted_rows, appended_rows) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (child) DO UPDATE SET \
           sorted_rows = rollup_months.sorted_rows + EXCLUDED.sorted_rows, \
           appended_rows = rollup_months.appended_rows + EXCLUDED.appended_rows",
        &[&child, &table, &first, &sorted, &appended],
    )
    .await?;
    tx.commit().await?;
    Ok(moved)
}

/// Rewrite month table `child` whole, in tenant order.
async fn rewrite(
    client: &mut Client,
    table: &str,
    child: &str,
    columns: &str,
    first: NaiveDate,
) -> Result<()> {
    let (_, next) = month_of(first);
    let fresh = format!("{child}_new");
    let tx = client.transaction().await?;
    tx.query_one(LOCK_SQL, &[]).await?;
    // Readers go on; anything that would change the month table waits for the swap.
    tx.batch_execute(&format!("LOCK TABLE {child} IN EXCLUSIVE MODE"))
        .await?;
    create_month_table(&tx, table, &fresh, first, next).await?;
    let rows = tx
        .execute(
            &format!(
                "INSERT INTO {fresh} ({columns}) \
                 SELECT {columns} FROM ONLY {child} ORDER BY tenant_id, bucket"
            ),
            &[],
        )
        .await?;
    tx.batch_execute(&format!(
        "DROP TABLE {child}; \
         ALTER TABLE {fresh} RENAME TO {child}; \
         CREATE INDEX {child}_tenant_bucket ON {child} (tenant_id, bucket); \
         ANALYZE {child}"
    ))
    .await?;
    let rows = i64::try_from(rows).unwrap_or(i64::MAX);
    tx.execute(
        "UPDATE rollup_months SET sorted_rows = $2, appended_rows = 0, rewritten_at = now() \
         WHERE child = $1",
        &[&child, &rows],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_and_their_tables() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        assert_eq!(month_of(d(2026, 11, 30)), (d(2026, 11, 1), d(2026, 12, 1)));
        assert_eq!(month_of(d(2026, 12, 1)), (d(2026, 12, 1), d(2027, 1, 1)));
        assert_eq!(month_of(d(2024, 2, 29)), (d(2024, 2, 1), d(2024, 3, 1)));
        assert_eq!(
            month_table("rollup_savings_daily", d(2026, 9, 1)),
            "rollup_savings_daily_2026_09"
        );
    }
}
