//! The tier-limit watcher: after commits (the writer's post-commit feed), it looks at the
//! period's usage of each tenant that stored events and records `billing.tier_limit_warning`
//! when a limit reaches 80% and `billing.tier_limit_exceeded` when it goes over 100% — once per
//! tenant, limit and period, even with several collectors on one database:
//!
//! - the event's id is derived from (tenant, period, metric, level), so two collectors that both
//!   see the crossing write the same id and the writer's dedupe stores it once;
//! - a mark in `tier_limit_marks` (written after the event) keeps a restarted collector from
//!   writing it again after the event's dedupe id has left raw retention.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use agenttally::{AnalyticsEvent, EventBuilder, EventType};
use chrono::{DateTime, Utc};
use deadpool_postgres::Pool;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::tiers::{Tiers, METRICS};
use super::{recorded_tier, usage_by_month};
use crate::error::Result;
use crate::query::period::{month, month_name};
use crate::store::committed::CommitFeed;
use crate::store::tenant_tx;
use crate::store::writer::{Outcome, WriterHandle};

/// The thresholds, in percent of a limit, and the event each records.
const LEVELS: [(&str, u32, EventType); 2] = [
    ("warning", 80, EventType::BillingTierLimitWarning),
    ("exceeded", 100, EventType::BillingTierLimitExceeded),
];

/// The id of the event recording `level` of `metric` for `tenant` in `period`: the same in
/// every collector, so the writer's dedupe keeps one.
pub fn event_id(tenant: &str, period: &str, metric: &str, level: &str) -> Uuid {
    let digest = Sha256::digest(format!(
        "agenttally/tier-limit/{tenant}/{period}/{metric}/{level}"
    ));
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Whether `used` has reached `level` of `limit`: 80% reached, or over 100%.
fn crossed(used: Decimal, limit: Decimal, percent: u32) -> bool {
    let threshold = limit * Decimal::from(percent) / Decimal::ONE_HUNDRED;
    if percent >= 100 {
        used > threshold
    } else {
        used >= threshold
    }
}

/// Start the watcher; it stops when `stop` turns true (before the writer is drained).
pub fn spawn(
    pool: Pool,
    writer: WriterHandle,
    tiers: Arc<Tiers>,
    feed: &CommitFeed,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let mut rx = feed.subscribe();
    tokio::spawn(async move {
        // Thresholds known to be recorded (this process wrote or read the mark).
        let mut recorded: HashSet<(String, String, &'static str, &'static str)> = HashSet::new();
        loop {
            let first = tokio::select! {
                _ = stop.changed() => break,
                m = rx.recv() => m,
            };
            let mut tenants = BTreeSet::new();
            let mut take =
                |m: std::result::Result<Arc<crate::store::committed::Committed>, _>| match m {
                    Ok(c) => {
                        tenants.insert(c.tenant.clone());
                        true
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!("tier-limit watcher fell behind by {n} commits");
                        true
                    }
                    Err(broadcast::error::RecvError::Closed) => false,
                };
            if !take(first) {
                break;
            }
            // Everything already waiting: one look per tenant however many commits.
            while let Ok(m) = rx.try_recv() {
                take(Ok(m));
            }
            for tenant in tenants {
                if *stop.borrow() {
                    return;
                }
                if let Err(e) =
                    check(&pool, &writer, &tiers, &tenant, Utc::now(), &mut recorded).await
                {
                    tracing::warn!("tier-limit check of `{tenant}` failed: {e}");
                }
            }
        }
    })
}

/// Record every threshold `tenant` has crossed this period and that is not recorded yet.
pub async fn check(
    pool: &Pool,
    writer: &WriterHandle,
    tiers: &Tiers,
    tenant: &str,
    now: DateTime<Utc>,
    recorded: &mut HashSet<(String, String, &'static str, &'static str)>,
) -> Result<()> {
    let (start, end) = month(now);
    let period = month_name(&start);
    let mut client = pool.get().await?;
    let tx = tenant_tx(&mut client, tenant).await?;
    let recorded_name = recorded_tier(&tx, tenant).await?.map(|(name, _, _)| name);
    // No plan, no limits.
    let Some(tier) = tiers.resolve(recorded_name.as_deref()) else {
        return Ok(());
    };
    let used = usage_by_month(tx.pg(), tenant, start, end)
        .await?
        .remove(&period)
        .unwrap_or_default();
    let mut due = Vec::new();
    for metric in METRICS {
        let Some(limit) = tier.limit(metric) else {
            continue;
        };
        for (level, percent, event_type) in LEVELS {
            let key = (tenant.to_string(), period.clone(), metric, level);
            if recorded.contains(&key) || !crossed(used.get(metric), limit, percent) {
                continue;
            }
            let marked = tx
                .query_opt(
                    "SELECT 1 FROM tier_limit_marks
                     WHERE tenant_id = $1 AND period = $2 AND metric = $3 AND level = $4",
                    &[&tenant, &period, &metric, &level],
                )
                .await?
                .is_some();
            if marked {
                recorded.insert(key);
                continue;
            }
            due.push((key, event_type, limit, used.get(metric)));
        }
    }
    tx.commit().await?;
    for ((t, p, metric, level), event_type, limit, value) in due {
        let event = limit_event(
            tenant, &tier.name, &p, metric, level, event_type, value, limit, now,
        );
        match writer.write(vec![event]).await {
            Ok(outcomes) if matches!(outcomes.first(), Some(Outcome::Failed(_))) => {
                tracing::warn!("tier-limit event of `{tenant}` refused: {outcomes:?}");
                continue;
            }
            Ok(_) => {}
            // Not stored: the next commit of this tenant tries again.
            Err(e) => {
                tracing::warn!("tier-limit event of `{tenant}` not stored: {e}");
                continue;
            }
        }
        let tx = tenant_tx(&mut client, tenant).await?;
        tx.execute(
            "INSERT INTO tier_limit_marks (tenant_id, period, metric, level)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&tenant, &p, &metric, &level],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            "recorded tier limit {level} of `{tenant}`: {metric} {value} of {limit} ({p})"
        );
        recorded.insert((t, p, metric, level));
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn limit_event(
    tenant: &str,
    tier: &str,
    period: &str,
    metric: &str,
    level: &str,
    event_type: EventType,
    used: Decimal,
    limit: Decimal,
    now: DateTime<Utc>,
) -> AnalyticsEvent {
    // Counts as JSON integers, money as a decimal string.
    let amount = |d: Decimal| -> serde_json::Value {
        if metric == "cost_usd" {
            d.normalize().to_string().into()
        } else {
            use rust_decimal::prelude::ToPrimitive;
            d.trunc()
                .to_i64()
                .map_or_else(|| d.to_string().into(), serde_json::Value::from)
        }
    };
    EventBuilder::new(event_type, tenant)
        .id(event_id(tenant, period, metric, level))
        .timestamp(now)
        .correlation_id(format!("tier-limit/{period}/{metric}"))
        .meta("metric", metric)
        .meta("used", amount(used))
        .meta("limit", amount(limit))
        .meta("tier", tier)
        .meta("period", period)
        .success(level != "exceeded")
        .build_unchecked()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = event_id("acme", "2026-12", "executions", "warning");
        assert_eq!(a, event_id("acme", "2026-12", "executions", "warning"));
        assert_ne!(a, event_id("acme", "2026-12", "executions", "exceeded"));
        assert_ne!(a, event_id("acme", "2027-01", "executions", "warning"));
        assert_eq!(a.get_version_num(), 8);
    }

    #[test]
    fn thresholds() {
        let l = Decimal::from(100);
        assert!(!crossed(Decimal::from(79), l, 80));
        assert!(crossed(Decimal::from(80), l, 80));
        assert!(!crossed(Decimal::from(100), l, 100));
        assert!(crossed(Decimal::from(101), l, 100));
    }
}
