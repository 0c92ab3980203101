//! Live tokens: short-lived, URL-safe credentials for `GET /v1/live?token=`, which browsers
//! need because `EventSource` and `WebSocket` cannot send an `Authorization` header. A token is
//! `lt1.<payload>.<mac>` (base64url): the payload names the tenant, the credential it was issued
//! to and its expiry; the mac is HMAC-SHA256 over `lt1.<payload>` with the collector's live-token
//! secret. It carries no secret and opens streams of its tenant only, for `TOKEN_TTL`.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::api_error::ApiError;

/// How long a token opens streams (a stream opened in time stays open).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);

/// The version prefix of every live token.
const PREFIX: &str = "lt1.";

type HmacSha256 = Hmac<Sha256>;

/// What a valid token grants: streams of `tenant`, on behalf of `credential_id`, until
/// `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(rename = "t")]
    pub tenant: String,
    #[serde(rename = "c")]
    pub credential_id: String,
    /// Unix seconds.
    #[serde(rename = "e")]
    pub expires: i64,
}

impl Grant {
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.expires, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Signs and checks live tokens with one key.
#[derive(Clone)]
pub struct Signer {
    /// Keyed once; cloned per token.
    mac: HmacSha256,
    /// False: a random key made at start (tokens work on this process only).
    shared: bool,
}

// By hand: the key never appears in logs.
impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with `secret` (shared by the replicas), or a random per-process key.
    pub fn new(secret: Option<&str>) -> Result<Signer, String> {
        let mut random = [0u8; 32];
        let (key, shared) = match secret {
            Some(s) => (s.as_bytes(), true),
            None => {
                getrandom::fill(&mut random)
                    .map_err(|e| format!("no randomness for a key: {e}"))?;
                (&random[..], false)
            }
        };
        let mac = <HmacSha256 as KeyInit>::new_from_slice(key)
            .map_err(|e| format!("live token key: {e}"))?;
        Ok(Signer { mac, shared })
    }

    /// Whether the key is shared by the replicas (else tokens work on this process only).
    pub fn shared(&self) -> bool {
        self.shared
    }

    fn mac(&self) -> HmacSha256 {
        self.mac.clone()
    }

    /// A token for `tenant` and `credential_id`, valid from `now` for `TOKEN_TTL`.
    pub fn issue(&self, tenant: &str, credential_id: &str, now: DateTime<Utc>) -> (String, Grant) {
        let ttl = TimeDelta::from_std(TOKEN_TTL).unwrap_or(TimeDelta::seconds(60));
        let grant = Grant {
            tenant: tenant.to_string(),
            credential_id: credential_id.to_string(),
            expires: (now + ttl).timestamp(),
        };
        // A struct of strings and an integer always serializes.
        let payload = serde_json::to_vec(&grant).unwrap_or_default();
        let signed = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(payload));
        let mut mac = self.mac();
        mac.update(signed.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        (format!("{signed}.{tag}"), grant)
    }

    /// The grant of `token` if this key signed it and it has not expired at `now`: 401 otherwise,
    /// saying which.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Grant, ApiError> {
        let invalid = || {
            ApiError::unauthorized(
                "invalid_live_token",
                "token: not a live token issued by this service (get one from POST \
                 /v1/live/token)",
            )
        };
        if token.starts_with(crate::auth::KEY_PREFIX) {
            return Err(ApiError::unauthorized(
                "key_in_url",
                "token: an API key is never accepted in the URL; send it as `Authorization: \
                 Bearer <key>`, or exchange it for a live token at POST /v1/live/token",
            ));
        }
        let body = token.strip_prefix(PREFIX).ok_or_else(invalid)?;
        let (payload, tag) = body.split_once('.').ok_or_else(invalid)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| invalid())?;
        let mut mac = self.mac();
        mac.update(&token.as_bytes()[..PREFIX.len() + payload.len()]);
        // Constant-time comparison.
        mac.verify_slice(&tag).map_err(|_| invalid())?;
        let grant: Grant = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or_else(invalid)?;
        if now.timestamp() >= grant.expires {
            return Err(ApiError::unauthorized(
                "live_token_expired",
                format!(
                    "token: expired at {} (live tokens last {} s; get a new one from POST \
                     /v1/live/token)",
                    grant.expires_at().to_rfc3339(),
                    TOKEN_TTL.as_secs()
                ),
            ));
        }
        Ok(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).expect("time")
    }

    #[test]
    fn a_token_opens_its_tenant_until_it_expires() {
        let s = Signer::new(Some("0123456789abcdef0123456789abcdef")).expect("signer");
        let (token, grant) = s.issue("acme", "at_1a2b3c4d", t0());
        assert!(token.starts_with("lt1."), "{token}");
        assert_eq!(grant.expires_at(), t0() + TimeDelta::seconds(60));
        let got = s
            .verify(&token, t0() + TimeDelta::seconds(59))
            .expect("valid");
        assert_eq!(got, grant);
        let e = s
            .verify(&token, t0() + TimeDelta::seconds(60))
            .expect_err("expired");
        assert_eq!((e.status.as_u16(), e.code), (401, "live_token_expired"));
    }

    #[test]
    fn forged_or_foreign_tokens_are_refused() {
        let s = Signer::new(Some("0123456789abcdef0123456789abcdef")).expect("signer");
        let other = Signer::new(None).expect("signer");
        let (token, _) = other.issue("acme", "at_1a2b3c4d", t0());
        let e = s.verify(&token, t0()).expect_err("another key");
        assert_eq!((e.status.as_u16(), e.code), (401, "invalid_live_token"));
        // The payload changed to another tenant, the mac kept.
        let (token, _) = s.issue("acme", "at_1a2b3c4d", t0());
        let (_, tag) = token.rsplit_once('.').expect("tag");
        let payload = URL_SAFE_NO_PAD.encode(br#"{"t":"globex","c":"at_1a2b3c4d","e":1900000000}"#);
        let forged = format!("lt1.{payload}.{tag}");
        assert_eq!(
            s.verify(&forged, t0()).expect_err("forged").code,
            "invalid_live_token"
        );
        for junk in ["", "lt1.", "lt1..", "lt1.x.y", "nonsense", "lt1.!!.??"] {
            assert_eq!(
                s.verify(junk, t0()).expect_err(junk).code,
                "invalid_live_token"
            );
        }
        let e = s.verify("at_0123456789abcdef", t0()).expect_err("a key");
        assert_eq!(e.code, "key_in_url");
    }

    #[test]
    fn the_key_never_shows() {
        let s = Signer::new(Some("0123456789abcdef0123456789abcdef")).expect("signer");
        assert!(!format!("{s:?}").contains("0123"));
    }
}
