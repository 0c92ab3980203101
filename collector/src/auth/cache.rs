//! Verified keys, kept briefly so ingest does not query the database per request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;

use super::key::hash_key;
use super::principal::Principal;
use crate::api_error::ApiError;
use crate::store;

/// What authentication needs: the key cache and a way to the database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuthState {
    pool: Pool,
    keys: Arc<KeyCache>,
}

impl AuthState {
    pub fn new(pool: Pool) -> Self {
        AuthState {
            pool,
            keys: Arc::new(KeyCache::default()),
        }
    }

    /// The principal of an API key: 401 when the key is unknown or revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let hash = hash_key(token);
        if let Some(p) = self.keys.get(&hash) {
            return Ok(p);
        }
        let client = self
            .pool
            .get()
            .await
            .map_err(|e| ApiError::unavailable(&e))?;
        let found = store::keys::find(&**client, &hash)
            .await
            .map_err(|e| ApiError::from_store(&e))?;
        match found {
            Some(key) => {
                let p = Principal {
                    tenant: key.tenant_id,
                    // A scope this build does not know grants nothing.
                    scopes: key.scopes.iter().filter_map(|s| s.parse().ok()).collect(),
                    credential_id: key.prefix,
                };
                self.keys.put(hash, p.clone());
                Ok(p)
            }
            None => Err(ApiError::unauthorized(
                "invalid_credentials",
                "the API key is not valid (unknown or revoked)",
            )),
        }
    }
}

/// Verified keys by hash. A revoked key stops working within `TTL`.
#[derive(Debug, Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl KeyCache {
    const TTL: Duration = Duration::from_secs(60);
    const MAX: usize = 10_000;

    fn get(&self, hash: &[u8; 32]) -> Option<Principal> {
        let map = self.entries.lock().ok()?;
        map.get(hash)
            .filter(|(_, at)| at.elapsed() < Self::TTL)
            .map(|(r, _)| r.clone())
    }

    fn put(&self, hash: [u8; 32], p: Principal) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= Self::MAX {
                map.clear();
            }
            map.insert(hash, (p, Instant::now()));
        }
    }
}
