//! Who is calling and for which tenant. `key` is the API key format (random `at_…` secrets,
//! stored as SHA-256) and its creation; `cache` keeps verified keys briefly and bounds the
//! database work unknown keys can cause; `extract` turns a request into a `Principal` (any
//! credential: an API key, or a JWT when `jwt` is configured) and a `Tenant` (the tenant the request acts on).
//! Handlers see only `Principal` and `Tenant`, never a credential.

mod cache;
mod extract;
mod jwt;
mod key;
mod principal;

pub use cache::{AuthState, KeyCache, KNOWN_KEY_LOOKUPS, UNKNOWN_KEY_LOOKUPS};
pub use extract::Tenant;
pub use jwt::{looks_like_jwt, JwtSettings, JwtVerifier, LEEWAY_SECS, MIN_SECRET_BYTES};
pub use key::{
    check_key_spec, create_key, create_named_key, generate_key, hash_key, is_key_prefix,
    key_prefix, KEY_PREFIX,
};
pub use principal::{CredentialKind, Principal, Role, Scope};
