//! PostgreSQL storage: the connection pool, the embedded migrations, the group-commit writer,
//! rollups, retention and the small named queries for API keys.

pub mod histogram;
pub mod keys;
pub mod migrations;
pub mod retention;
pub mod rollups;
pub mod writer;

use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use crate::error::{Error, Result};

/// A pool of connections to `database_url`. Broken connections (e.g. after a PostgreSQL restart)
/// are discarded on recycle and replaced on the next `get`, so the collector reconnects by itself.
/// A count for a BIGINT column (validation caps counts far below the limit).
pub(crate) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Sets the tenant row-level security checks against, for the rest of the transaction.
pub(crate) const SET_TENANT_SQL: &str = "SELECT set_config('agenttally.tenant_id', $1, true)";

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

/// True when a database error means "the database is unavailable" (connection lost, server
/// shutting down, out of resources) rather than "this data is bad": the caller answers 503.
pub fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        None => true,
        Some(c) => {
            let class = &c.code()[..2];
            matches!(class, "08" | "53" | "57" | "58")
        }
    }
}

/// True for errors worth retrying as they are (serialization failure, deadlock).
pub fn is_transient(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| c.code().starts_with("40"))
}
