//! The crate's one error type. Every message names the field (or setting) and the rule it broke,
//! e.g. `event.duration_ms: must be >= 0, got -5`, so a caller can fix input without reading code.

use std::fmt;

/// What went wrong, coarse enough to match on (bindings map it to their own error classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An event, batch, usage or price entry broke a rule of the wire format.
    Invalid,
    /// A batch exceeds a size limit (bytes or event count): split it and send again.
    TooLarge,
    /// Input could not be decoded (malformed JSON, wrong type).
    Decode,
    /// A configuration value is out of range.
    Config,
    /// Price-book import or pricing failed.
    Pricing,
    /// The queue is full and the overflow policy dropped the event.
    QueueFull,
    /// The client is shut down or disabled.
    Closed,
    /// Delivery or spool I/O failed.
    Io,
    /// A deadline passed before the work finished.
    Timeout,
}

/// The error of every fallible `agenttally` API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A field broke a rule. `field` is a dotted path (`usage.output_tokens`, `batch[3].id`).
    #[error("{}: {rule}", display_field(.field))]
    Invalid { field: String, rule: String },
    /// A batch exceeds a size limit of the wire format (a collector answers 413).
    #[error("{}: {rule}", display_field(.field))]
    TooLarge { field: String, rule: String },
    /// The input was not decodable at `field` (empty when the problem is the whole document).
    #[error("{}: {message}", display_field(.field))]
    Decode { field: String, message: String },
    /// A configuration setting is out of range.
    #[error("config.{setting}: {rule}")]
    Config { setting: String, rule: String },
    /// Pricing or price-book import failed.
    #[error("pricing: {0}")]
    Pricing(String),
    /// The queue was full; the event was dropped by the overflow policy.
    #[error("queue full: {0}")]
    QueueFull(String),
    /// The client is shut down or disabled.
    #[error("client closed: {0}")]
    Closed(String),
    /// I/O failed (spool, transport).
    #[error("io: {0}")]
    Io(String),
    /// A deadline passed.
    #[error("timeout: {0}")]
    Timeout(String),
}

fn display_field(field: &str) -> impl fmt::Display + '_ {
    struct F<'a>(&'a str);
    impl fmt::Display for F<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            if self.0.is_empty() {
                f.write_str("event")
            } else if is_rooted(self.0, "batch") || is_rooted(self.0, "event") {
                f.write_str(self.0)
            } else {
                write!(f, "event.{}", self.0)
            }
        }
    }
    F(field)
}

/// `root`, `root.x` or `root[i]...`: a path that already names its root.
fn is_rooted(field: &str, root: &str) -> bool {
    field
        .strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
}

impl Error {
    /// A rule violation on `field`.
    pub fn invalid(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// A size limit broken by `field` (a batch).
    pub fn too_large(field: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::TooLarge {
            field: field.into(),
            rule: rule.into(),
        }
    }

    /// A configuration setting out of range.
    pub fn config(setting: impl Into<String>, rule: impl Into<String>) -> Self {
        Error::Config {
            setting: setting.into(),
            rule: rule.into(),
        }
    }

    /// The coarse kind, stable across releases.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Invalid { .. } => ErrorKind::Invalid,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::Decode { .. } => ErrorKind::Decode,
            Error::Config { .. } => ErrorKind::Config,
            Error::Pricing(_) => ErrorKind::Pricing,
            Error::QueueFull(_) => ErrorKind::QueueFull,
            Error::Closed(_) => ErrorKind::Closed,
            Error::Io(_) => ErrorKind::Io,
            Error::Timeout(_) => ErrorKind::Timeout,
        }
    }

    /// The field (or setting) the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. }
            | Error::TooLarge { field, .. }
            | Error::Decode { field, .. } => Some(field),
            Error::Config { setting, .. } => Some(setting),
            _ => None,
        }
    }

    /// Prefix the field path, e.g. `id` → `batch[3].id`.
    pub(crate) fn within(self, prefix: &str) -> Self {
        let join = |f: String| {
            if f.is_empty() {
                prefix.to_string()
            } else {
                format!("{prefix}.{f}")
            }
        };
        match self {
            Error::Invalid { field, rule } => Error::Invalid {
                field: join(field),
                rule,
            },
            Error::Decode { field, message } => Error::Decode {
                field: join(field),
                message,
            },
            other => other,
        }
    }
}

/// Crate-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
