//! The credential-agnostic caller (`Principal`) and what it may do (`Scope`).

use std::fmt;
use std::str::FromStr;

use crate::api_error::ApiError;

/// What a credential may do.
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

/// The authenticated caller of a request, whatever the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The one tenant the credential is bound to; `None`: platform-wide (any tenant).
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
    /// Names the credential in logs and audit records without revealing it (an API key's
    /// prefix, e.g. `at_1a2b3c4d`).
    pub credential_id: String,
}

impl Principal {
    /// True when this caller may act for `tenant`.
    pub fn allows_tenant(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    /// 403 unless the credential has `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            return Ok(());
        }
        let has: Vec<&str> = self.scopes.iter().map(|s| s.as_str()).collect();
        Err(ApiError::forbidden(
            "insufficient_scope",
            format!(
                "this API key lacks the `{scope}` scope (it has: {})",
                has.join(", ")
            ),
        ))
    }
}
