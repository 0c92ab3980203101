//! Named queries for API keys. Keys are stored as their SHA-256 only; what a key means (its
//! scopes, the principal it makes) is `auth`'s business, so this module deals in plain strings.

use tokio_postgres::GenericClient;

use crate::error::Result;

/// A live key as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// `None`: platform-wide.
    pub tenant_id: Option<String>,
    pub scopes: Vec<String>,
    /// The first characters of the key, kept in clear to name it.
    pub prefix: String,
}

/// Store a new key's hash with its binding and scopes.
pub async fn insert(
    client: &impl GenericClient,
    hash: &[u8],
    prefix: &str,
    tenant_id: Option<&str>,
    scopes: &[&str],
) -> Result<()> {
    client
        .execute(
            "INSERT INTO api_keys (key_hash, key_prefix, tenant_id, scopes) VALUES ($1, $2, $3, $4)",
            &[&hash, &prefix, &tenant_id, &scopes],
        )
        .await?;
    Ok(())
}

/// The live (not revoked) key with this hash.
pub async fn find(client: &impl GenericClient, hash: &[u8]) -> Result<Option<StoredKey>> {
    let row = client
        .query_opt(
            "SELECT tenant_id, scopes, key_prefix FROM api_keys
             WHERE key_hash = $1 AND revoked_at IS NULL",
            &[&hash],
        )
        .await?;
    Ok(row.map(|r| StoredKey {
        tenant_id: r.get(0),
        scopes: r.get(1),
        prefix: r.get(2),
    }))
}
