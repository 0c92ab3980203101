//! Named queries for API keys. Keys are stored as their SHA-256 only.

use tokio_postgres::GenericClient;

use crate::auth::{KeyRecord, Scope};
use crate::error::Result;

/// Store a new key's hash with its binding and scopes.
pub async fn insert(
    client: &impl GenericClient,
    hash: &[u8],
    prefix: &str,
    tenant_id: Option<&str>,
    scopes: &[Scope],
) -> Result<()> {
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    client
        .execute(
            "INSERT INTO api_keys (key_hash, key_prefix, tenant_id, scopes) VALUES ($1, $2, $3, $4)",
            &[&hash, &prefix, &tenant_id, &scopes],
        )
        .await?;
    Ok(())
}

/// The live (not revoked) key with this hash.
pub async fn find(client: &impl GenericClient, hash: &[u8]) -> Result<Option<KeyRecord>> {
    let row = client
        .query_opt(
            "SELECT tenant_id, scopes FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            &[&hash],
        )
        .await?;
    Ok(row.map(|r| {
        let scopes: Vec<String> = r.get(1);
        KeyRecord {
            tenant_id: r.get(0),
            scopes: scopes.iter().filter_map(|s| s.parse().ok()).collect(),
        }
    }))
}
