//! JWT credentials for dashboards: HS256 with a shared secret, or RS256 / EdDSA with a public
//! key (the algorithm is the key's). A token is accepted only with the configured algorithm
//! (never `none`), an `exp` (30 s leeway), the configured `iss` / `aud`, and the claims
//! `tenant_id`, `role` (admin | developer | viewer) and `sub`. Every refusal is a 401 saying why.

use std::collections::HashSet;
use std::path::Path;

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use super::principal::{CredentialKind, Principal, Role, Scope};
use crate::api_error::ApiError;

/// Clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 30;
/// The shortest HS256 secret accepted: HMAC-SHA256 keys shorter than the hash are guessable.
pub const MIN_SECRET_BYTES: usize = 32;

/// How tokens are verified; built once at start (`JwtSettings::verifier`).
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    alg: Algorithm,
    validation: Validation,
    /// `--jwt-ingest`: tokens may also ingest.
    ingest: bool,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("alg", &self.alg)
            .field("ingest", &self.ingest)
            .finish_non_exhaustive()
    }
}

/// Where the verification key comes from, and the checks beyond the signature.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct JwtSettings {
    /// `--jwt-hs256-secret`.
    pub hs256_secret: Option<String>,
    /// `--jwt-public-key`: a PEM file holding an RSA (RS256) or Ed25519 (EdDSA) public key.
    pub public_key: Option<std::path::PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// `--jwt-ingest`: accept tokens on ingest routes too.
    pub ingest: bool,
}

impl std::fmt::Debug for JwtSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSettings")
            .field("hs256_secret", &self.hs256_secret.as_ref().map(|_| "***"))
            .field("public_key", &self.public_key)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ingest", &self.ingest)
            .finish()
    }
}

impl JwtSettings {
    /// True when tokens are accepted at all.
    pub fn enabled(&self) -> bool {
        self.hs256_secret.is_some() || self.public_key.is_some()
    }

    /// The verifier, `None` when JWTs are not configured; `Err` names the setting and the rule.
    pub fn verifier(&self) -> Result<Option<JwtVerifier>, String> {
        let (key, alg) = match (&self.hs256_secret, &self.public_key) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err("--jwt-hs256-secret and --jwt-public-key: give one, not both".into())
            }
            (Some(secret), None) => {
                if secret.len() < MIN_SECRET_BYTES {
                    return Err(format!(
                        "--jwt-hs256-secret: must be at least {MIN_SECRET_BYTES} bytes, got {}",
                        secret.len()
                    ));
                }
                (
                    DecodingKey::from_secret(secret.as_bytes()),
                    Algorithm::HS256,
                )
            }
            (None, Some(path)) => public_key(path)?,
        };
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        Ok(Some(JwtVerifier {
            key,
            alg,
            validation,
            ingest: self.ingest,
        }))
    }
}

/// An RSA or Ed25519 public key from a PEM file, with the algorithm it verifies.
fn public_key(path: &Path) -> Result<(DecodingKey, Algorithm), String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("--jwt-public-key: cannot read `{}`: {e}", path.display()))?;
    if let Ok(k) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((k, Algorithm::RS256));
    }
    if let Ok(k) = DecodingKey::from_ed_pem(&pem) {
        return Ok((k, Algorithm::EdDSA));
    }
    Err(format!(
        "--jwt-public-key: `{}` must hold an RSA or Ed25519 public key in PEM",
        path.display()
    ))
}

/// True when `token` has the shape of a JWS compact serialization: three base64url parts (the
/// last may be empty, as in an unsigned `alg: none` token, which is then refused by name).
pub fn looks_like_jwt(token: &str) -> bool {
    let parts: Vec<&str> = token.split('.').collect();
    let b64url = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    parts.len() == 3
        && !parts[0].is_empty()
        && !parts[1].is_empty()
        && parts.iter().all(|p| b64url(p))
}

#[derive(Debug, Deserialize)]
struct Claims {
    tenant_id: Option<String>,
    role: Option<String>,
    sub: Option<String>,
}

fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::unauthorized(code, message)
}

impl JwtVerifier {
    /// The principal of a token, or a 401 naming what is wrong.
    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let alg = header_alg(token)?;
        let want = format!("{:?}", self.alg);
        if alg != want {
            return Err(refused(
                "invalid_token",
                format!("the token's alg is `{alg}`; this collector accepts only `{want}`"),
            ));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| token_error(e.kind()))?;
        let claims = data.claims;
        let tenant = claims.tenant_id.ok_or_else(|| missing_claim("tenant_id"))?;
        if !agenttally::event::is_valid_tenant_id(&tenant) {
            return Err(refused(
                "invalid_token",
                format!(
                    "the token's `tenant_id` claim must be 1-128 characters of A-Z a-z 0-9 . _ : -, \
                     got `{tenant}`"
                ),
            ));
        }
        let role: Role = claims
            .role
            .ok_or_else(|| missing_claim("role"))?
            .parse()
            .map_err(|e| refused("invalid_token", format!("the token's `role` claim: {e}")))?;
        let sub = claims.sub.ok_or_else(|| missing_claim("sub"))?;
        if sub.is_empty() || sub.len() > 256 || sub.chars().any(char::is_control) {
            return Err(refused(
                "invalid_token",
                "the token's `sub` claim must be 1-256 characters without control characters",
            ));
        }
        let mut scopes: HashSet<Scope> = role.scopes().iter().copied().collect();
        if self.ingest {
            scopes.insert(Scope::Ingest);
        }
        let mut scopes: Vec<Scope> = scopes.into_iter().collect();
        scopes.sort();
        Ok(Principal {
            tenant: Some(tenant),
            scopes,
            credential_id: format!("jwt:{sub}"),
            kind: CredentialKind::Jwt,
            sub: Some(sub),
        })
    }
}

fn missing_claim(name: &str) -> ApiError {
    refused(
        "invalid_token",
        format!("the token lacks the required `{name}` claim"),
    )
}

/// The `alg` of the token's JOSE header, read before anything else so that a refused algorithm
/// (`none` included) is named.
fn header_alg(token: &str) -> Result<String, ApiError> {
    let malformed = || {
        refused(
            "invalid_token",
            "the token's header is not valid base64url JSON",
        )
    };
    let head = token.split('.').next().unwrap_or_default();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .map_err(|_| malformed())?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    header
        .get("alg")
        .and_then(|a| a.as_str())
        .map(str::to_string)
        .ok_or_else(|| refused("invalid_token", "the token's header has no `alg`"))
}

fn token_error(kind: &ErrorKind) -> ApiError {
    match kind {
        ErrorKind::ExpiredSignature => refused("token_expired", "the token has expired (`exp`)"),
        ErrorKind::InvalidSignature => refused(
            "invalid_token",
            "the token's signature does not verify with the configured key",
        ),
        ErrorKind::MissingRequiredClaim(c) => missing_claim(c),
        ErrorKind::InvalidIssuer => refused(
            "invalid_token",
            "the token's `iss` claim is not the configured issuer",
        ),
        ErrorKind::InvalidAudience => refused(
            "invalid_token",
            "the token's `aud` claim is not the configured audience",
        ),
        ErrorKind::ImmatureSignature => {
            refused("invalid_token", "the token is not valid yet (`nbf`)")
        }
        ErrorKind::InvalidAlgorithm => refused(
            "invalid_token",
            "the token's algorithm does not match the configured key",
        ),
        ErrorKind::Json(e) => refused(
            "invalid_token",
            format!("the token's claims could not be read ({e})"),
        ),
        _ => refused("invalid_token", "the token is malformed"),
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier(issuer: Option<&str>, audience: Option<&str>) -> JwtVerifier {
        JwtSettings {
            hs256_secret: Some(SECRET.into()),
            issuer: issuer.map(str::to_string),
            audience: audience.map(str::to_string),
            ..JwtSettings::default()
        }
        .verifier()
        .expect("settings")
        .expect("configured")
    }

    fn token(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign")
    }

    fn exp(offset: i64) -> i64 {
        chrono::Utc::now().timestamp() + offset
    }

    #[test]
    fn a_valid_token_makes_a_tenant_bound_principal_with_its_role_scopes() {
        let v = verifier(None, None);
        let p = v
            .verify(&token(
                json!({"tenant_id": "acme", "role": "developer", "sub": "u1", "exp": exp(60)}),
            ))
            .expect("valid");
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert_eq!(p.scopes, vec![Scope::Read, Scope::Export]);
        assert_eq!(p.credential_id, "jwt:u1");
        assert_eq!(p.kind, CredentialKind::Jwt);
    }

    #[test]
    fn refusals_say_why() {
        let v = verifier(Some("https://idp"), Some("agenttally"));
        let ok = json!({"tenant_id": "acme", "role": "viewer", "sub": "u1", "exp": exp(60),
                        "iss": "https://idp", "aud": "agenttally"});
        assert!(v.verify(&token(ok.clone())).is_ok());
        let with = |k: &str, val: serde_json::Value| {
            let mut c = ok.clone();
            c[k] = val;
            c
        };
        let without = |k: &str| {
            let mut c = ok.clone();
            c.as_object_mut().expect("object").remove(k);
            c
        };
        let cases = [
            (
                token(with("exp", json!(exp(-120)))),
                "token_expired",
                "expired",
            ),
            (token(with("exp", json!(exp(-10)))), "", ""), // within the leeway
            (token(without("exp")), "invalid_token", "`exp`"),
            (token(without("tenant_id")), "invalid_token", "`tenant_id`"),
            (token(without("role")), "invalid_token", "`role`"),
            (token(without("sub")), "invalid_token", "`sub`"),
            (
                token(with("role", json!("owner"))),
                "invalid_token",
                "unknown role `owner`",
            ),
            (
                token(with("tenant_id", json!("a b"))),
                "invalid_token",
                "`tenant_id`",
            ),
            (
                token(with("iss", json!("https://evil"))),
                "invalid_token",
                "`iss`",
            ),
            (token(with("aud", json!("other"))), "invalid_token", "`aud`"),
        ];
        for (t, code, words) in cases {
            match v.verify(&t) {
                Ok(_) => assert_eq!(code, "", "{words} accepted"),
                Err(e) => {
                    assert_eq!(e.status.as_u16(), 401);
                    assert_eq!(e.code, code, "{}", e.message);
                    assert!(e.message.contains(words), "{words}: {}", e.message);
                }
            }
        }
        // A wrong signature.
        let forged = encode(
            &Header::new(Algorithm::HS256),
            &ok,
            &EncodingKey::from_secret(b"another-secret-another-secret-xx"),
        )
        .expect("sign");
        let e = v.verify(&forged).expect_err("forged");
        assert!(e.message.contains("signature"), "{}", e.message);
        // alg: none, and an algorithm other than the configured one.
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT"})),
            b64(&ok)
        );
        assert!(looks_like_jwt(&none));
        let e = v.verify(&none).expect_err("none");
        assert!(
            e.message.contains("`none`") && e.message.contains("`HS256`"),
            "{}",
            e.message
        );
        let hs512 = encode(
            &Header::new(Algorithm::HS512),
            &ok,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .expect("sign");
        let e = v.verify(&hs512).expect_err("HS512");
        assert!(e.message.contains("`HS512`"), "{}", e.message);
    }

    #[test]
    fn settings_are_checked() {
        let short = JwtSettings {
            hs256_secret: Some("short".into()),
            ..JwtSettings::default()
        };
        assert!(short
            .verifier()
            .expect_err("short")
            .starts_with("--jwt-hs256-secret:"));
        let both = JwtSettings {
            hs256_secret: Some(SECRET.into()),
            public_key: Some("/nonexistent.pem".into()),
            ..JwtSettings::default()
        };
        assert!(both.verifier().is_err());
        let missing = JwtSettings {
            public_key: Some("/nonexistent.pem".into()),
            ..JwtSettings::default()
        };
        assert!(missing
            .verifier()
            .expect_err("missing")
            .starts_with("--jwt-public-key:"));
        assert!(format!("{both:?}").contains("***") && !format!("{both:?}").contains(SECRET));
        assert!(!looks_like_jwt("at_0123abcd"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
        assert!(!looks_like_jwt("a.b!.c"));
    }
}
