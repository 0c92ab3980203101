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
    create_named_key(client, tenant_id, scopes, None)
        .await
        .map(|(key, _)| key)
}

/// Create and store a key with an optional name; returns the secret (shown once, never
/// stored) and what is stored. The prefix naming it is unique among the keys of its tenant (or
/// among the platform keys), so it names one key when it is revoked.
pub async fn create_named_key(
    client: &impl tokio_postgres::GenericClient,
    tenant_id: Option<&str>,
    scopes: &[Scope],
    name: Option<&str>,
) -> Result<(String, store::keys::KeyInfo)> {
    check_key_spec(tenant_id, scopes)?;
    let scopes: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    // 32 bits of prefix: a collision is rare; a few draws make it practically impossible.
    for _ in 0..4 {
        let key = generate_key()?;
        let prefix = key_prefix(&key);
        if store::keys::prefix_taken(client, tenant_id, &prefix).await? {
            continue;
        }
        let info =
            store::keys::insert(client, &hash_key(&key), &prefix, tenant_id, &scopes, name).await?;
        return Ok((key, info));
    }
    Err(Error::Server("no free key prefix after 4 draws".into()))
}

/// The part of a key shown in listings and logs: `at_` and 8 hex digits.
pub fn key_prefix(key: &str) -> String {
    key.chars().take(SHOWN_CHARS).collect()
}

/// True when `s` has the form of a key prefix.
pub fn is_key_prefix(s: &str) -> bool {
    s.len() == SHOWN_CHARS
        && s.starts_with(KEY_PREFIX)
        && s[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
