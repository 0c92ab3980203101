//! Operator listings across tenants (run as the collector's own user, not under a tenant).

use tokio_postgres::GenericClient;

use crate::error::Result;

/// The tenants with rolled-up data, in order. Reads across tenants: an operator's listing, run
/// as the collector's own user, not under a tenant.
pub async fn tenants_with_data(client: &impl GenericClient) -> Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT DISTINCT tenant_id FROM rollup_daily ORDER BY tenant_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
