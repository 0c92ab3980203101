//! Named queries for API keys. Keys are stored as their SHA-256 only; what a key means (its
//! scopes, the principal it makes) is `auth`'s business, so this module deals in plain strings.
//! `api_keys` is a reference table, not under row-level security (a key is looked up by its hash
//! before any tenant is known): every query of a tenant's keys names the tenant.

use chrono::{DateTime, Utc};
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

/// A key as listed to its tenant's admins (never its hash).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// The first characters of the key (`at_` + 8 hex digits), which name it.
    pub prefix: String,
    pub name: Option<String>,
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    /// When it was revoked; `null` while it is live.
    pub revoked_at: Option<DateTime<Utc>>,
}

const INFO_COLUMNS: &str = "key_prefix, name, scopes, created_at, revoked_at";

fn info(r: &tokio_postgres::Row) -> KeyInfo {
    KeyInfo {
        prefix: r.get(0),
        name: r.get(1),
        scopes: r.get(2),
        created_at: r.get(3),
        revoked_at: r.get(4),
    }
}

/// Store a new key's hash with its binding, scopes and name.
pub async fn insert(
    client: &impl GenericClient,
    hash: &[u8],
    prefix: &str,
    tenant_id: Option<&str>,
    scopes: &[&str],
    name: Option<&str>,
) -> Result<KeyInfo> {
    let row = client
        .query_one(
            &format!(
                "INSERT INTO api_keys (key_hash, key_prefix, tenant_id, scopes, name)
                 VALUES ($1, $2, $3, $4, $5) RETURNING {INFO_COLUMNS}"
            ),
            &[&hash, &prefix, &tenant_id, &scopes, &name],
        )
        .await?;
    Ok(info(&row))
}

/// True when a key (live or revoked) of `tenant_id` (`None`: the platform keys) has this prefix.
pub async fn prefix_taken(
    client: &impl GenericClient,
    tenant_id: Option<&str>,
    prefix: &str,
) -> Result<bool> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM api_keys WHERE tenant_id IS NOT DISTINCT FROM $1 AND key_prefix = $2",
            &[&tenant_id, &prefix],
        )
        .await?
        .is_some())
}

/// The keys bound to `tenant_id`, newest first.
pub async fn list(client: &impl GenericClient, tenant_id: &str) -> Result<Vec<KeyInfo>> {
    let rows = client
        .query(
            &format!(
                "SELECT {INFO_COLUMNS} FROM api_keys WHERE tenant_id = $1
                 ORDER BY created_at DESC, key_prefix"
            ),
            &[&tenant_id],
        )
        .await?;
    Ok(rows.iter().map(info).collect())
}

/// Revoke the key of `tenant_id` named `prefix` (a revoked key keeps its first revocation
/// time); `None` when the tenant has no such key.
pub async fn revoke(
    client: &impl GenericClient,
    tenant_id: &str,
    prefix: &str,
) -> Result<Option<KeyInfo>> {
    let rows = client
        .query(
            &format!(
                "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                 WHERE tenant_id = $1 AND key_prefix = $2 RETURNING {INFO_COLUMNS}"
            ),
            &[&tenant_id, &prefix],
        )
        .await?;
    Ok(rows.first().map(info))
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
