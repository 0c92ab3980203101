//! A tenant's billing tier as recorded (`tenant_tiers`): written by the writer, in the
//! transaction of the `billing.subscription_*` event that sets it, and by an admin.

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

/// Record `tier` for `tenant` as of `at` unless a later setting is recorded (the latest wins).
pub async fn record_tier(
    tx: &impl GenericClient,
    tenant: &str,
    tier: &str,
    source: &str,
    at: DateTime<Utc>,
) -> std::result::Result<u64, tokio_postgres::Error> {
    tx.execute(
        "INSERT INTO tenant_tiers AS t (tenant_id, tier, source, effective_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (tenant_id) DO UPDATE
           SET tier = EXCLUDED.tier, source = EXCLUDED.source,
               effective_at = EXCLUDED.effective_at
           WHERE EXCLUDED.effective_at >= t.effective_at",
        &[&tenant, &tier, &source, &at],
    )
    .await
}
