//! Signed one-time export links. A link's token is 32 bytes from the operating system's CSPRNG
//! (`getrandom`), given out once as base64url; only its SHA-256 is stored (`export_links`), so
//! the table alone cannot be turned back into working links. Downloading claims the link
//! atomically (used once), and only before it expires.
//!
//! The claim happens before the tenant is known. `export_links` stays an ordinary tenant table
//! under row-level security (read and purged like every other); the claim goes through one narrow
//! `SECURITY DEFINER` function, `agenttally_claim_export_link(hash)`, run as `agenttally_app`
//! with no tenant set: it can only mark used and return the one link whose token hash the caller
//! already holds, and nothing else of any tenant is visible in that transaction. (A lookup table
//! outside row-level security, like `api_keys`, would have put tenant data where a query could
//! list it across tenants.)

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use deadpool_postgres::Object;
use sha2::{Digest, Sha256};

use super::Format;
use crate::error::{Error, Result};
use crate::store::TenantTx;

/// Random bytes in a token.
pub const TOKEN_BYTES: usize = 32;
/// Characters of a token: 32 bytes in unpadded base64url.
pub const TOKEN_CHARS: usize = 43;

/// A new token: its text (given to the caller) and its hash (stored).
pub fn new_token() -> Result<(String, [u8; 32])> {
    let mut raw = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut raw)
        .map_err(|e| Error::Server(format!("no randomness for an export link: {e}")))?;
    let text = URL_SAFE_NO_PAD.encode(raw);
    let hash = hash(&text);
    Ok((text, hash))
}

/// The stored form of a token's text.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// True when `token` has the shape of one we give out (anything else is unknown, without a
/// database round trip).
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What a link exports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub tenant: String,
    pub format: Format,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub created_by: String,
    pub expires_at: DateTime<Utc>,
}

/// Store a link of `link.tenant` (in its tenant transaction).
pub async fn insert(client: &mut Object, hash: &[u8; 32], link: &Link) -> Result<()> {
    let tx = TenantTx::begin(client).await?;
    tx.switch_tenant(&link.tenant).await?;
    tx.execute(
        "INSERT INTO export_links
             (tenant_id, token_hash, format, range_from, range_to, created_by, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &link.tenant,
            &hash.as_slice(),
            &link.format.as_str(),
            &link.from,
            &link.to,
            &link.created_by,
            &link.expires_at,
        ],
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The outcome of a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Now marked used: export it.
    Claimed(Link),
    /// Used before.
    Used,
    /// Past its expiry, unused.
    Expired(DateTime<Utc>),
    /// No such link (never made, or purged).
    Unknown,
}

/// Claim the link whose token hashes to `hash`, once (see the module docs).
pub async fn claim(client: &mut Object, hash: &[u8; 32]) -> Result<Claim> {
    let tx = TenantTx::begin(client).await?;
    tx.without_tenant().await?;
    let row = tx
        .query_opt(
            "SELECT outcome, tenant_id, format, range_from, range_to, created_by, expires_at
             FROM agenttally_claim_export_link($1)",
            &[&hash.as_slice()],
        )
        .await?;
    tx.commit().await?;
    let Some(row) = row else {
        return Ok(Claim::Unknown);
    };
    let outcome: String = row.try_get(0)?;
    let expires_at: DateTime<Utc> = row.try_get(6)?;
    match outcome.as_str() {
        "claimed" => {
            let format: String = row.try_get(2)?;
            let format = Format::ALL
                .into_iter()
                .find(|f| f.as_str() == format)
                .ok_or_else(|| Error::Data(format!("export link with format `{format}`")))?;
            Ok(Claim::Claimed(Link {
                tenant: row.try_get(1)?,
                format,
                from: row.try_get(3)?,
                to: row.try_get(4)?,
                created_by: row.try_get(5)?,
                expires_at,
            }))
        }
        "used" => Ok(Claim::Used),
        _ => Ok(Claim::Expired(expires_at)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_base64url_characters_and_distinct() {
        let (a, ha) = new_token().expect("token");
        let (b, hb) = new_token().expect("token");
        assert_eq!(a.len(), TOKEN_CHARS);
        assert!(well_formed(&a) && well_formed(&b));
        assert_ne!(a, b);
        assert_ne!(ha, hb);
        assert_eq!(hash(&a), ha);
        assert!(!well_formed("short"));
        assert!(!well_formed(&format!("{}=", &a[..42])));
        assert!(!well_formed(&"a".repeat(44)));
    }
}
