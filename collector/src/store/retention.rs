//! Upkeep: day partitions created ahead (today-8 .. today+2), expired raw partitions dropped with
//! their dedupe ids, expired hourly rollups (usage, agent, savings and hour totals) deleted,
//! erased raw events past their grace period deleted (`erasure::purge_due`). Runs at start and
//! every hour; what is due is recorded in the database, so a restart loses nothing.
//!
//! The retention floor (`retention_floor`, migration 0011) guards the deletions: the first
//! collector to start on a database records its retention there (or the age of the data the
//! database already holds, when longer), and a collector configured to keep less than the floor
//! refuses to start (`check_floor`) until `set_floor` (the `retention` command) lowers it — a
//! mistyped setting cannot delete what the database was set to keep.

use chrono::{TimeDelta, Utc};
use tokio_postgres::Client;

use crate::config::{PARTITIONS_AHEAD_DAYS, PARTITIONS_BEHIND_DAYS};
use crate::error::{Error, Result};

/// The retention recorded in `retention_floor`: the shortest an operator has agreed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Floor {
    pub raw_days: u32,
    pub hourly_days: u32,
}

fn days(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// The recorded floor, `None` on a database no collector has started on yet.
pub async fn floor(client: &Client) -> Result<Option<Floor>> {
    let row = client
        .query_opt("SELECT raw_days, hourly_days FROM retention_floor", &[])
        .await?;
    Ok(row.map(|r| Floor {
        raw_days: u32::try_from(r.get::<_, i32>(0)).unwrap_or(1),
        hourly_days: u32::try_from(r.get::<_, i32>(1)).unwrap_or(1),
    }))
}

/// At start, before any deletion: on a database without a floor, record `want` (the first
/// collector's settings; of two starting at once, the first insert wins and the other is
/// checked against it) — or, for data already held (a database from before the floor
/// existed), the age of its oldest raw day partition holding rows and of its oldest hourly
/// rollup row where those are longer, so that the first start after an upgrade cannot delete
/// either; then refuse (`Error::Config`, naming the setting, the floor and the command that
/// lowers it) when `want` keeps less than the floor. Longer settings pass and are not
/// recorded: they delete less.
pub async fn check_floor(client: &Client, want: Floor) -> Result<()> {
    if floor(client).await?.is_none() {
        let held = held(client).await?;
        let first = Floor {
            raw_days: want.raw_days.max(held.raw_days),
            hourly_days: want.hourly_days.max(held.hourly_days),
        };
        client
            .execute(
                "INSERT INTO retention_floor (raw_days, hourly_days, set_by) \
                 VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[
                    &days(first.raw_days),
                    &days(first.hourly_days),
                    &if first == want {
                        "first start"
                    } else {
                        "first start, data held"
                    },
                ],
            )
            .await?;
    }
    let Some(floor) = floor(client).await? else {
        return Err(Error::Data(
            "retention_floor: no row after recording one".into(),
        ));
    };
    let short = [
        ("raw", "raw events", want.raw_days, floor.raw_days),
        (
            "hourly",
            "hourly rollups",
            want.hourly_days,
            floor.hourly_days,
        ),
    ]
    .into_iter()
    .find(|(_, _, w, f)| w < f);
    match short {
        None => Ok(()),
        Some((name, what, w, f)) => Err(Error::Config(format!(
            "{name}_retention_days (--{name}-retention-days, AGENTTALLY_{}_RETENTION_DAYS): \
             {w} days is shorter than the {f} days this database keeps {what} for \
             (its retention floor); starting would delete {what} it was set to keep. To shorten \
             retention, run `agenttally-collector retention --raw-retention-days {} \
             --hourly-retention-days {}` against this database first; otherwise fix the setting",
            name.to_uppercase(),
            want.raw_days,
            want.hourly_days
        ))),
    }
}

/// How long the data a database holds goes back, in the units retention deletes by: whole UTC
/// days from the oldest raw day partition holding a row to today (what `raw_days` must be for
/// `run_once` to keep it), and days, rounded up, from the oldest hourly rollup bucket to now.
/// 1 for what holds nothing. Reads each hourly rollup table whole, so it runs only while no
/// floor is recorded.
async fn held(client: &Client) -> Result<Floor> {
    let partitions = client
        .query(
            "SELECT c.relname, \
                    (now() AT TIME ZONE 'UTC')::date - to_date(substr(c.relname, 8), 'YYYYMMDD') \
             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = 'events'::regclass AND c.relname ~ '^events_[0-9]{8}$' \
             ORDER BY c.relname",
            &[],
        )
        .await?;
    let mut raw_days = 1;
    for p in &partitions {
        let (name, age): (&str, i32) = (p.get(0), p.get(1));
        // `name` matched ^events_[0-9]{8}$ above: safe to write into the statement.
        let holds: bool = client
            .query_one(&format!("SELECT EXISTS (SELECT 1 FROM {name})"), &[])
            .await?
            .get(0);
        if holds {
            raw_days = u32::try_from(age).unwrap_or(0).max(1);
            break;
        }
    }
    let mut hourly_days = 1;
    for table in super::rollups::hourly_tables() {
        let age: Option<i32> = client
            .query_one(
                &format!(
                    "SELECT ceil(extract(epoch FROM now() - min(bucket)) / 86400)::int4 \
                     FROM {table}"
                ),
                &[],
            )
            .await?
            .get(0);
        hourly_days = hourly_days.max(age.and_then(|a| u32::try_from(a).ok()).unwrap_or(0));
    }
    Ok(Floor {
        raw_days,
        hourly_days,
    })
}

/// Record `to` as the floor (the `retention` command); returns the floor it replaces.
pub async fn set_floor(client: &Client, to: Floor) -> Result<Option<Floor>> {
    let before = floor(client).await?;
    client
        .execute(
            "INSERT INTO retention_floor (raw_days, hourly_days, set_by) \
             VALUES ($1, $2, 'retention command') \
             ON CONFLICT (singleton) DO UPDATE SET raw_days = EXCLUDED.raw_days, \
               hourly_days = EXCLUDED.hourly_days, set_at = now(), set_by = EXCLUDED.set_by",
            &[&days(to.raw_days), &days(to.hourly_days)],
        )
        .await?;
    Ok(before)
}

/// One round of upkeep; returns how many raw partitions were dropped.
pub async fn run_once(client: &Client, raw_days: u32, hourly_days: u32) -> Result<i32> {
    let today = Utc::now().date_naive();
    let raw = i64::from(raw_days);
    for d in -PARTITIONS_BEHIND_DAYS.min(raw)..=PARTITIONS_AHEAD_DAYS {
        let day = today + TimeDelta::days(d);
        client
            .execute("SELECT agenttally_ensure_partition($1)", &[&day])
            .await?;
    }
    let raw_days = i32::try_from(raw_days).unwrap_or(i32::MAX);
    let dropped: i32 = client
        .query_one(
            "SELECT agenttally_drop_expired_partitions($1)",
            &[&raw_days],
        )
        .await?
        .get(0);
    let hourly_days = i32::try_from(hourly_days).unwrap_or(i32::MAX);
    for table in super::rollups::hourly_tables() {
        client
            .execute(
                &format!("DELETE FROM {table} WHERE bucket < now() - make_interval(days => $1)"),
                &[&hourly_days],
            )
            .await?;
    }
    if dropped > 0 {
        tracing::info!("retention: dropped {dropped} raw day partition(s)");
    }
    super::erasure::purge_due(client).await?;
    Ok(dropped)
}
