//! PostgreSQL storage: the connection pool, the embedded migrations, the tenant transaction
//! (`tenant_tx`, the only way to run tenant data statements), the group-commit writer, rollups,
//! retention, the compaction of closed days' daily rollups (`compact`), the accuracy checks
//! (`verify`) and the small named queries for API keys.

pub mod audit;
pub mod committed;
pub mod compact;
pub mod erasure;
pub mod histogram;
pub mod keys;
pub mod migrations;
pub mod retention;
pub mod rollups;
pub mod savings;
pub mod tenant;
pub mod tiers;
pub mod verify;
pub mod writer;

pub use tenant::{tenant_read_tx, tenant_tx, TenantTx};

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::error::{Error, Result};

/// A count for a BIGINT column (validation caps counts far below the limit).
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// JSON text the collector wrote itself (valid by construction), bound as `json` or `jsonb` as
/// is: no `serde_json::Value` built to be serialized again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct JsonText<'a>(pub &'a str);

impl tokio_postgres::types::ToSql for JsonText<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>>
    {
        // jsonb's binary form is a version byte (1) and the text.
        if *ty == tokio_postgres::types::Type::JSONB {
            out.extend_from_slice(&[1]);
        }
        out.extend_from_slice(self.0.as_bytes());
        Ok(tokio_postgres::types::IsNull::No)
    }

    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSON || *ty == tokio_postgres::types::Type::JSONB
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A pool of connections to `database_url`. Broken connections (e.g. after a PostgreSQL restart)
/// are discarded on recycle and replaced on the next `get`, so the collector reconnects by itself.
pub fn connect_pool(database_url: &str, max_size: usize) -> Result<Pool> {
    let mut cfg = tokio_postgres::Config::from_str(database_url)
        .map_err(|e| Error::Config(format!("--database-url: {e}")))?;
    cfg.connect_timeout(Duration::from_secs(3));
    cfg.application_name("agenttally-collector");
    let mgr = Manager::from_config(
        cfg,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(3)))
        .recycle_timeout(Some(Duration::from_secs(2)))
        .build()
        .map_err(|e| Error::Config(format!("connection pool: {e}")))
}

/// What a database error says about the work that met it, and so how the writer answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The database cannot be reached or cannot serve (connection lost, shutting down, out of
    /// resources; SQLSTATE classes 08, 53, 57, 58, or no SQLSTATE at all): 503, retry later.
    Unavailable,
    /// Worth retrying as it is (class 40: serialization failure, deadlock). If it persists past
    /// the writer's retries the requests involved are answered 503, never rejected.
    Transient,
    /// The row itself was refused (class 22 data exception, 23 integrity constraint, 54 program
    /// limit such as a row too big): the one kind of failure that may end as a per-event
    /// rejection, once the event is isolated in a transaction of its own.
    EventData,
    /// Anything else (permissions, undefined objects, internal errors, ...): a fault of the
    /// database or of the collector, not of the events, so 503 rather than a rejection.
    Other,
}

/// Classify a SQLSTATE (`None`: the error carried none, e.g. a lost connection).
pub fn classify_sqlstate(code: Option<&str>) -> ErrorClass {
    let Some(code) = code else {
        return ErrorClass::Unavailable;
    };
    match code.get(..2) {
        Some("08" | "53" | "57" | "58") => ErrorClass::Unavailable,
        Some("40") => ErrorClass::Transient,
        Some("22" | "23" | "54") => ErrorClass::EventData,
        _ => ErrorClass::Other,
    }
}

/// Classify a database error by its SQLSTATE.
pub fn classify(e: &tokio_postgres::Error) -> ErrorClass {
    classify_sqlstate(e.code().map(|c| c.code()))
}

/// True when a database error means "the database is unavailable" rather than "this data is
/// bad": the caller answers 503.
pub fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    classify(e) == ErrorClass::Unavailable
}

#[cfg(test)]
mod tests {
    use super::{classify_sqlstate, ErrorClass::*};

    #[test]
    fn sqlstates_are_classified_by_class() {
        let cases = [
            (None, Unavailable),
            (Some("08006"), Unavailable), // connection failure
            (Some("53300"), Unavailable), // too many connections
            (Some("57P01"), Unavailable), // admin shutdown
            (Some("57014"), Unavailable), // query canceled (statement timeout)
            (Some("58030"), Unavailable), // io error
            (Some("40001"), Transient),   // serialization failure
            (Some("40P01"), Transient),   // deadlock
            (Some("22023"), EventData),   // invalid parameter value
            (Some("22003"), EventData),   // numeric value out of range
            (Some("23514"), EventData),   // check violation (also: no partition for the row)
            (Some("23505"), EventData),   // unique violation outside the id claim
            (Some("54000"), EventData),   // program limit exceeded (row too big)
            (Some("42501"), Other),       // insufficient privilege
            (Some("42P01"), Other),       // undefined table
            (Some("XX000"), Other),       // internal error
            (Some("P0001"), Other),       // a PL/pgSQL RAISE without an error code
            (Some("25P02"), Other),       // in failed transaction
            (Some("55P03"), Other),       // lock not available
            (Some(""), Other),
            (Some("4"), Other),
        ];
        for (code, want) in cases {
            assert_eq!(classify_sqlstate(code), want, "{code:?}");
        }
    }
}
