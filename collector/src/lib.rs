//! The AgentTally collector: HTTP ingest into PostgreSQL (group commit, dedupe, rollups, RLS),
//! with an embedded PostgreSQL default. The binary in `main.rs` is a thin CLI over this library.

pub mod api_error;
pub mod auth;
pub mod config;
pub mod embedded_pg;
pub mod error;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod pricing;
pub mod query;
pub mod read_api;
pub mod report;
pub mod state;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use auth::Scope;
pub use config::ServerConfig;
pub use embedded_pg::{EmbeddedOptions, EmbeddedPostgres};
pub use error::{Error, Result};

/// Connect to `database_url` and apply the embedded migrations.
pub async fn migrate(database_url: &str) -> Result<()> {
    let pool = store::connect_pool(database_url, 1)?;
    let mut client = pool.get().await?;
    store::migrations::apply(&mut client).await?;
    Ok(())
}

/// Create an API key (migrating first, so it works on a fresh database). Returns the secret.
pub async fn create_key(
    database_url: &str,
    tenant_id: Option<&str>,
    scopes: &[Scope],
) -> Result<String> {
    auth::check_key_spec(tenant_id, scopes)?;
    migrate(database_url).await?;
    let pool = store::connect_pool(database_url, 1)?;
    let client = pool.get().await?;
    auth::create_key(&**client, tenant_id, scopes).await
}

/// A running collector: HTTP listener, writer and upkeep tasks.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    http: JoinHandle<std::io::Result<()>>,
    writer: JoinHandle<()>,
    upkeep: JoinHandle<()>,
    commits: store::committed::CommitFeed,
}

impl Server {
    /// Check the settings (`ServerConfig::validate`), migrate, start the writer and upkeep, and
    /// listen on `config.listen` (port 0 picks one).
    pub async fn start(config: ServerConfig) -> Result<Server> {
        config.validate().map_err(Error::Config)?;
        let prices = Arc::new(pricing::load_book(config.price_file.as_deref())?);
        let savings = Arc::new(pricing::SavingsPricer::new(
            prices.clone(),
            &config.savings_baselines,
        )?);
        // Each writer holds a connection while it commits, key lookups hold at most their
        // slots; leave room besides for the API's queries.
        let pool_size = config
            .pool_size
            .max(config.writers + auth::UNKNOWN_KEY_LOOKUPS + auth::KNOWN_KEY_LOOKUPS + 2);
        let pool = store::connect_pool(&config.database_url, pool_size)?;
        {
            let mut client = pool.get().await?;
            store::migrations::apply(&mut client).await?;
            store::retention::run_once(
                &client,
                config.raw_retention_days,
                config.hourly_retention_days,
            )
            .await?;
        }
        let metrics = Arc::new(metrics::Metrics::default());
        let commits = store::committed::feed();
        let (writer, writer_task) = store::writer::spawn(
            pool.clone(),
            store::writer::WriterConfig::from_server(&config, savings.clone()),
            metrics.clone(),
            commits.clone(),
        );
        let upkeep = tokio::spawn(upkeep(
            pool.clone(),
            config.raw_retention_days,
            config.hourly_retention_days,
        ));
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(state::AppState {
            auth: auth::AuthState::new(pool.clone()),
            pool,
            writer,
            metrics,
            prices,
            savings,
            config,
        });
        let app = http::router(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Server {
            addr,
            stop,
            http,
            writer: writer_task,
            upkeep,
            commits,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What each commit stores from now on, per tenant, delivered after the commit.
    pub fn subscribe_commits(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<store::committed::Committed>> {
        self.commits.subscribe()
    }

    /// Graceful stop: stop accepting, finish in-flight requests, drain the writer (every
    /// accepted event is committed and acknowledged), stop upkeep.
    pub async fn shutdown(self, timeout: Duration) -> Result<()> {
        let _ = self.stop.send(());
        let drain = async {
            // The router (and with it the last writer handle) is dropped when serve returns,
            // which lets the writer finish its queue and stop.
            let served = self.http.await;
            let _ = self.writer.await;
            served
        };
        let result = tokio::time::timeout(timeout, drain).await;
        self.upkeep.abort();
        match result {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(Error::Io(e)),
            Ok(Err(e)) => Err(Error::Server(format!("task failed: {e}"))),
            Err(_) => Err(Error::Server(format!(
                "shutdown did not finish within {timeout:?}"
            ))),
        }
    }
}

async fn upkeep(pool: deadpool_postgres::Pool, raw_days: u32, hourly_days: u32) {
    let mut tick = tokio::time::interval(config::MAINTENANCE_INTERVAL);
    tick.tick().await; // the first round ran in `start`
    loop {
        tick.tick().await;
        let round = async {
            let client = pool.get().await?;
            store::retention::run_once(&client, raw_days, hourly_days).await
        };
        if let Err(e) = round.await {
            tracing::warn!("upkeep (partitions, retention) failed, will retry: {e}");
        }
    }
}
