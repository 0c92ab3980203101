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

/// A dashboard user's role (a JWT's `role` claim), and the scopes it grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Viewer,
    Developer,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Developer, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Developer => "developer",
            Role::Admin => "admin",
        }
    }

    /// viewer {read}; developer {read, export}; admin {read, export, admin}. Never `ingest`
    /// (a collector started with `--jwt-ingest` adds it to every role).
    pub fn scopes(self) -> &'static [Scope] {
        match self {
            Role::Viewer => &[Scope::Read],
            Role::Developer => &[Scope::Read, Scope::Export],
            Role::Admin => &[Scope::Read, Scope::Export, Scope::Admin],
        }
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("unknown role `{s}`, expected one of: admin, developer, viewer"))
    }
}

/// The kind of credential a principal was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// An API key (`at_…`).
    Key,
    /// A signed JWT.
    Jwt,
    /// A one-time export link (its creator's credential is named).
    Link,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Key => "key",
            CredentialKind::Jwt => "jwt",
            CredentialKind::Link => "link",
        }
    }
}

/// The authenticated caller of a request, whatever the credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The one tenant the credential is bound to; `None`: platform-wide (any tenant).
    pub tenant: Option<String>,
    pub scopes: Vec<Scope>,
    /// Names the credential in logs and audit records without revealing it (an API key's
    /// prefix, e.g. `at_1a2b3c4d`; `jwt:<sub>` for a JWT).
    pub credential_id: String,
    pub kind: CredentialKind,
    /// A JWT's subject (the dashboard user); `None` for an API key.
    pub sub: Option<String>,
}

impl Principal {
    /// True when this caller may act for `tenant`.
    pub fn allows_tenant(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|t| t == tenant)
    }

    /// How messages name the credential: "API key" or "JWT".
    pub fn describe(&self) -> &'static str {
        match self.kind {
            CredentialKind::Key => "API key",
            CredentialKind::Jwt => "JWT",
            CredentialKind::Link => "export link",
        }
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
                "insufficient scope: this {} lacks the `{scope}` scope (it has: {})",
                self.describe(),
                if has.is_empty() {
                    "none".to_string()
                } else {
                    has.join(", ")
                }
            ),
        ))
    }
}
