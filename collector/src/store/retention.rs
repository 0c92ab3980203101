//! Upkeep: day partitions created ahead (today-8 .. today+2), expired raw partitions dropped with
//! their dedupe ids, expired hourly rollups (usage, agent, savings and hour totals) deleted,
//! erased raw events past their grace period deleted (`erasure::purge_due`). Runs at start and
//! every hour; what is due is recorded in the database, so a restart loses nothing.

use chrono::{TimeDelta, Utc};
use tokio_postgres::Client;

use crate::config::{PARTITIONS_AHEAD_DAYS, PARTITIONS_BEHIND_DAYS};
use crate::error::Result;

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
