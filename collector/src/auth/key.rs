//! The API key format: random `at_…` secrets with 256 bits of entropy, stored as their SHA-256
//! only, scoped and bound to one tenant or platform-wide; and their creation.

use sha2::{Digest, Sha256};

use super::principal::Scope;
use crate::error::{Error, Result};
use crate::store;

/// The prefix every key starts with, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "at_";

/// Characters of a key stored in clear (`at_` + 8 hex digits) to name it in logs and listings.
const SHOWN_CHARS: usize = KEY_PREFIX.len() + 8;

/// Make a new random key (256 bits of entropy).
pub fn generate_key() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::Server(format!("no randomness for a new key: {e}")))?;
    let mut s = String::from(KEY_PREFIX);
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    Ok(s)
}

/// SHA-256 of a key. A plain hash suffices: keys are 256-bit random, not guessable passwords.
pub fn hash_key(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Check a key's binding and scopes before anything is stored.
pub fn check_key_spec(tenant_id: Option<&str>, scopes: &[Scope]) -> Result<()> {
    if let Some(t) = tenant_id {
        if !agenttally::event::is_valid_tenant_id(t) {
            return Err(Error::Config(format!(
                "--tenant: must be 1-128 characters of A-Z a-z 0-9 . _ : -, got `{t}`"
            )));
        }
    }
    if scopes.is_empty() {
        return Err(Error::Config(
            "--scope: at least one scope is required".into(),
        ));
    }
    Ok(())
}

/// Create and store a key; returns the secret (shown once, never stored).
pub async fn create_key(
    client: &impl tokio_postgres::GenericClient,
    tenant_id: Option<&str>,
    scopes: &[Scope],
) -> Result<String> {
    check_key_spec(tenant_id, scopes)?;
    let key = generate_key()?;
    let prefix: String = key.chars().take(SHOWN_CHARS).collect();
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    store::keys::insert(client, &hash_key(&key), &prefix, tenant_id, &scopes).await?;
    Ok(key)
}
