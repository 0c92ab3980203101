//! Who is calling and for which tenant. `key` is the API key format (random `at_…` secrets,
//! stored as SHA-256) and its creation; `cache` keeps verified keys briefly and bounds the
//! database work unknown keys can cause; `extract` turns a request into a `Principal` (any
//! credential: API keys today, tokens later) and a `Tenant` (the tenant the request acts on).
//! Handlers see only `Principal` and `Tenant`, never a credential.

mod cache;
mod extract;
mod key;
mod principal;

pub use cache::{AuthState, KeyCache, KNOWN_KEY_LOOKUPS, UNKNOWN_KEY_LOOKUPS};
pub use extract::Tenant;
pub use key::{check_key_spec, create_key, generate_key, hash_key, KEY_PREFIX};
pub use principal::{Principal, Scope};
