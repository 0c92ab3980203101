//! The collector's internal error type (start-up, embedded PostgreSQL, storage). HTTP-facing
//! errors are `api_error::ApiError`, which maps these to status codes.

/// What went wrong outside a request: configuration, the embedded cluster, the database.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is wrong (names the flag or variable).
    #[error("config: {0}")]
    Config(String),
    /// The embedded PostgreSQL cluster could not be set up, started or stopped.
    #[error("embedded PostgreSQL: {0}")]
    Embedded(String),
    /// The database answered with an error or could not be reached.
    #[error("database: {0}")]
    Db(#[from] tokio_postgres::Error),
    /// No database connection could be had from the pool.
    #[error("database unavailable: {0}")]
    Pool(String),
    /// A stored row cannot be read back as the collector wrote it (names the row and field).
    #[error("stored data: {0}")]
    Data(String),
    /// A task of the running server failed or did not stop in time.
    #[error("server: {0}")]
    Server(String),
    /// I/O (listener, files).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl From<deadpool_postgres::PoolError> for Error {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => Error::Db(e),
            other => Error::Pool(other.to_string()),
        }
    }
}

/// Collector-wide result alias.
pub type Result<T, E = Error> = std::result::Result<T, E>;
