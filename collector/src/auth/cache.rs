//! Verified keys, kept briefly so ingest does not query the database per request, and the
//! bounds on the database work credentials cause. A flood of unknown keys must not take the
//! connections the writers commit with: unknown hashes are remembered for a short while
//! (`NEGATIVE_TTL`), and lookups run under two small semaphores — one for keys never seen valid,
//! one for refreshing keys that were — so unknown keys cannot delay a known key's refresh either.
//! A revoked key stops working within `POSITIVE_TTL`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use tokio::sync::Semaphore;

use super::jwt::{looks_like_jwt, JwtVerifier};
use super::key::hash_key;
use super::principal::{CredentialKind, Principal};
use crate::api_error::ApiError;
use crate::store;

/// Database connections key lookups may hold at once, of keys not known valid.
pub const UNKNOWN_KEY_LOOKUPS: usize = 2;
/// ... and of keys known valid whose cache entry expired.
pub const KNOWN_KEY_LOOKUPS: usize = 1;
/// How long a request waits for a lookup slot before it is answered 503 (retry later).
const LOOKUP_WAIT: Duration = Duration::from_secs(3);

/// What authentication needs: the key cache, a way to the database and the JWT verifier (when
/// tokens are configured). Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuthState {
    pool: Pool,
    keys: Arc<KeyCache>,
    jwt: Option<Arc<JwtVerifier>>,
}

impl AuthState {
    pub fn new(pool: Pool, jwt: Option<JwtVerifier>) -> Self {
        AuthState {
            pool,
            keys: Arc::new(KeyCache::default()),
            jwt: jwt.map(Arc::new),
        }
    }

    /// The principal of a bearer credential: a JWT when it has the JWT shape and tokens are
    /// configured, otherwise an API key.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<Principal, ApiError> {
        match &self.jwt {
            Some(jwt) if looks_like_jwt(token) => jwt.verify(token),
            _ => self.authenticate(token).await,
        }
    }

    /// Forget the verified keys named `prefix`, so a revocation takes effect at once on this
    /// collector (others see it within `KeyCache::POSITIVE_TTL`).
    pub fn forget_key(&self, prefix: &str) {
        if let Ok(mut map) = self.keys.valid.lock() {
            map.retain(|_, (p, _)| p.credential_id != prefix);
        }
    }

    /// The principal of an API key: 401 when the key is unknown or revoked, 503 when its lookup
    /// cannot get a slot or the database in time.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, ApiError> {
        let hash = hash_key(token);
        let known = match self.keys.get(&hash) {
            Cached::Valid(p) => return Ok(p),
            Cached::Unknown => return Err(invalid_key()),
            Cached::Expired => true,
            Cached::Absent => false,
        };
        let lane = if known {
            &self.keys.known_lookups
        } else {
            &self.keys.unknown_lookups
        };
        let _permit = match tokio::time::timeout(LOOKUP_WAIT, lane.acquire()).await {
            Ok(Ok(p)) => p,
            // (The semaphores are never closed.)
            Ok(Err(_)) | Err(_) => {
                return Err(ApiError::unavailable(
                    &"too many API key checks are waiting",
                ))
            }
        };
        // Another request may have looked the same key up while this one waited.
        match self.keys.get(&hash) {
            Cached::Valid(p) => return Ok(p),
            Cached::Unknown => return Err(invalid_key()),
            Cached::Expired | Cached::Absent => {}
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
                    kind: CredentialKind::Key,
                    sub: None,
                };
                self.keys.put_valid(hash, p.clone());
                Ok(p)
            }
            None => {
                self.keys.put_unknown(hash);
                Err(invalid_key())
            }
        }
    }
}

fn invalid_key() -> ApiError {
    ApiError::unauthorized(
        "invalid_credentials",
        "the API key is not valid (unknown or revoked)",
    )
}

/// What the cache knows of a key hash.
#[derive(Debug)]
enum Cached {
    Valid(Principal),
    /// Looked up and not found (or revoked) a moment ago.
    Unknown,
    /// Valid when last looked up, longer than `POSITIVE_TTL` ago: look again.
    Expired,
    Absent,
}

/// Verified and unknown keys by hash, and the lookup slots.
#[derive(Debug)]
pub struct KeyCache {
    valid: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
    unknown: Mutex<HashMap<[u8; 32], Instant>>,
    unknown_lookups: Semaphore,
    known_lookups: Semaphore,
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache {
            valid: Mutex::default(),
            unknown: Mutex::default(),
            unknown_lookups: Semaphore::new(UNKNOWN_KEY_LOOKUPS),
            known_lookups: Semaphore::new(KNOWN_KEY_LOOKUPS),
        }
    }
}

impl KeyCache {
    /// A revoked key is refused at most this long after revocation.
    pub const POSITIVE_TTL: Duration = Duration::from_secs(4);
    /// A key created right after a failed attempt with it works at most this long after.
    pub const NEGATIVE_TTL: Duration = Duration::from_secs(2);
    /// Entries of each kind; past it the map starts over (a flood of random keys fills the
    /// negative one, which then only forgets keys that were never valid).
    const MAX: usize = 10_000;

    fn get(&self, hash: &[u8; 32]) -> Cached {
        if let Ok(map) = self.valid.lock() {
            if let Some((p, at)) = map.get(hash) {
                return if at.elapsed() < Self::POSITIVE_TTL {
                    Cached::Valid(p.clone())
                } else {
                    Cached::Expired
                };
            }
        }
        if let Ok(map) = self.unknown.lock() {
            if map
                .get(hash)
                .is_some_and(|at| at.elapsed() < Self::NEGATIVE_TTL)
            {
                return Cached::Unknown;
            }
        }
        Cached::Absent
    }

    fn put_valid(&self, hash: [u8; 32], p: Principal) {
        if let Ok(mut map) = self.valid.lock() {
            if map.len() >= Self::MAX {
                map.retain(|_, (_, at)| at.elapsed() < Self::POSITIVE_TTL);
            }
            if map.len() >= Self::MAX {
                map.clear();
            }
            map.insert(hash, (p, Instant::now()));
        }
    }

    fn put_unknown(&self, hash: [u8; 32]) {
        // A key found revoked is no longer "known": its next lookup waits with the unknown.
        if let Ok(mut map) = self.valid.lock() {
            map.remove(&hash);
        }
        if let Ok(mut map) = self.unknown.lock() {
            if map.len() >= Self::MAX {
                map.clear();
            }
            map.insert(hash, Instant::now());
        }
    }
}
