//! API keys: random `at_…` secrets, stored as SHA-256, scoped (`ingest`, `read`, `export`,
//! `admin`) and bound to one tenant or platform-wide; and the request extractor that checks them.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::http::{ApiError, AppState};
use crate::store;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Ingest,
    Read,
    Export,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Ingest, Scope::Read, Scope::Export, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Export => "export",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                format!("unknown scope `{s}`, expected one of: ingest, read, export, admin")
            })
    }
}

/// A stored key's binding and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// `None`: platform-wide.
    pub tenant_id: Option<String>,
    pub scopes: Vec<Scope>,
}

impl KeyRecord {
    /// True when this key may act for `tenant`.
    pub fn allows_tenant(&self, tenant: &str) -> bool {
        self.tenant_id.as_deref().is_none_or(|t| t == tenant)
    }
}

/// The prefix every key starts with, so leaked keys are easy to recognise and scan for.
pub const KEY_PREFIX: &str = "at_";

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
    let prefix: String = key.chars().take(KEY_PREFIX.len() + 8).collect();
    store::keys::insert(client, &hash_key(&key), &prefix, tenant_id, scopes).await?;
    Ok(key)
}

/// Verified keys, kept briefly so ingest does not query the database per request.
/// A revoked key stops working within `TTL`.
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<[u8; 32], (KeyRecord, Instant)>>,
}

impl KeyCache {
    const TTL: Duration = Duration::from_secs(60);
    const MAX: usize = 10_000;

    fn get(&self, hash: &[u8; 32]) -> Option<KeyRecord> {
        let map = self.entries.lock().ok()?;
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(r, _)| r.clone())
    }

    fn put(&self, hash: [u8; 32], rec: KeyRecord) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= Self::MAX {
                map.clear();
            }
            map.insert(hash, (rec, Instant::now()));
        }
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub key: KeyRecord,
}

impl Principal {
    /// 403 unless the key has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.key.scopes.contains(&scope) {
            return Ok(());
        }
        let has: Vec<&str> = self.key.scopes.iter().map(|s| s.as_str()).collect();
        Err(ApiError::forbidden(
            "insufficient_scope",
            format!(
                "this API key lacks the `{scope}` scope (it has: {})",
                has.join(", ")
            ),
        ))
    }
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "missing_credentials",
                    "missing `Authorization: Bearer <api key>` header",
                )
            })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                let (scheme, rest) = h.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized(
                    "invalid_credentials",
                    "the Authorization header must be `Bearer <api key>`",
                )
            })?;
        let hash = hash_key(token);
        if let Some(key) = state.keys.get(&hash) {
            return Ok(Principal { key });
        }
        let client = state
            .pool
            .get()
            .await
            .map_err(|e| ApiError::unavailable(&e))?;
        let found = store::keys::find(&**client, &hash)
            .await
            .map_err(|e| ApiError::from_store(&e))?;
        match found {
            Some(key) => {
                state.keys.put(hash, key.clone());
                Ok(Principal { key })
            }
            None => Err(ApiError::unauthorized(
                "invalid_credentials",
                "the API key is not valid (unknown or revoked)",
            )),
        }
    }
}
