//! Named queries for the audit log (`audit_log`, a tenant table: run them in a `TenantTx`).

use chrono::{DateTime, Utc};
use tokio_postgres::GenericClient;

use crate::error::Result;

/// One audit record to write.
#[derive(Debug, Clone)]
pub struct NewEntry<'a> {
    pub tenant_id: &'a str,
    pub credential_id: &'a str,
    pub principal_kind: &'a str,
    pub sub: Option<&'a str>,
    pub method: &'a str,
    pub route: &'a str,
    pub params: &'a serde_json::Value,
    pub status: i32,
}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Entry {
    /// Increasing within a tenant; the `before` cursor of the next page.
    pub id: i64,
    pub at: DateTime<Utc>,
    /// The API key's prefix, or `jwt:<sub>`.
    pub credential_id: String,
    /// `key` or `jwt`.
    pub principal_kind: String,
    /// A JWT's subject.
    pub sub: Option<String>,
    pub method: String,
    /// The route template, e.g. `/v1/keys/{prefix}`.
    pub route: String,
    /// `{"query": {...}, "path": {...}}`.
    #[schema(value_type = Object)]
    pub params: serde_json::Value,
    /// The HTTP status answered.
    pub status: i32,
}

pub async fn insert(client: &impl GenericClient, e: &NewEntry<'_>) -> Result<()> {
    client
        .execute(
            "INSERT INTO audit_log (tenant_id, credential_id, principal_kind, sub, method, route,
                                    params, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &e.tenant_id,
                &e.credential_id,
                &e.principal_kind,
                &e.sub,
                &e.method,
                &e.route,
                e.params,
                &e.status,
            ],
        )
        .await?;
    Ok(())
}

/// The tenant's records at `[from, to)` with an id below `before`, newest first, at most `limit`.
pub async fn list(
    client: &impl GenericClient,
    tenant_id: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<Entry>> {
    let rows = client
        .query(
            "SELECT id, at, credential_id, principal_kind, sub, method, route, params, status
             FROM audit_log
             WHERE tenant_id = $1 AND at >= $2 AND at < $3 AND ($4::bigint IS NULL OR id < $4)
             ORDER BY id DESC
             LIMIT $5",
            &[&tenant_id, &from, &to, &before, &limit],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| Entry {
            id: r.get(0),
            at: r.get(1),
            credential_id: r.get(2),
            principal_kind: r.get(3),
            sub: r.get(4),
            method: r.get(5),
            route: r.get(6),
            params: r.get(7),
            status: r.get(8),
        })
        .collect())
}
