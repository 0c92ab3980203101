//! The AgentTally collector: HTTP ingest into PostgreSQL (group commit, dedupe, rollups, RLS),
//! with an embedded PostgreSQL default. The binary in `main.rs` is a thin CLI over this library.

pub mod access;
pub mod api_error;
pub mod auth;
pub mod billing;
pub mod config;
pub mod dashboard;
pub mod embedded_pg;
pub mod erasure;
pub mod error;
pub mod export;
pub mod http;
pub mod ingest;
pub mod listener;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod pricing;
pub mod query;
pub mod read_api;
pub mod report;
pub mod state;
pub mod store;
pub mod tls;

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

/// Lower (or raise) the database's retention floor to `to` (migrating first): collectors
/// configured with these settings may then start and delete what they no longer keep. Returns
/// the floor it replaces (`None` on a database no collector has started on).
pub async fn set_retention_floor(
    database_url: &str,
    to: store::retention::Floor,
) -> Result<Option<store::retention::Floor>> {
    let pool = store::connect_pool(database_url, 1)?;
    let mut client = pool.get().await?;
    store::migrations::apply(&mut client).await?;
    store::retention::set_floor(&client, to).await
}

/// Create an API key (migrating first, so it works on a fresh database). Returns the secret.
pub async fn create_key(
    database_url: &str,
    tenant_id: Option<&str>,
    scopes: &[Scope],
) -> Result<String> {
    create_named_key(database_url, tenant_id, scopes, None).await
}

/// `create_key` with a name shown in key listings (`GET /v1/keys`).
pub async fn create_named_key(
    database_url: &str,
    tenant_id: Option<&str>,
    scopes: &[Scope],
    name: Option<&str>,
) -> Result<String> {
    auth::check_key_spec(tenant_id, scopes)?;
    if let Some(n) = name.filter(|n| !access::keys::valid_name(n)) {
        return Err(Error::Config(format!(
            "name: {}, got {n:?}",
            access::keys::NAME_RULE
        )));
    }
    migrate(database_url).await?;
    let pool = store::connect_pool(database_url, 1)?;
    let client = pool.get().await?;
    auth::create_named_key(&**client, tenant_id, scopes, name)
        .await
        .map(|(key, _)| key)
}

/// Put `tenant` on billing tier `tier` from now on (an admin's setting), after checking the name
/// against the tiers of `tiers_file` (the default set when `None`).
pub async fn set_tier(
    database_url: &str,
    tenant: &str,
    tier: &str,
    tiers_file: Option<&std::path::Path>,
) -> Result<()> {
    let tiers = billing::tiers::Tiers::load(tiers_file)?;
    if tiers.get(tier).is_none() {
        let names: Vec<&str> = tiers.tiers.iter().map(|t| t.name.as_str()).collect();
        return Err(Error::Config(format!(
            "tier: `{tier}` is not one of {}",
            names.join(", ")
        )));
    }
    if !agenttally::event::is_valid_tenant_id(tenant) {
        return Err(Error::Config(format!(
            "--tenant: must be 1-128 characters of A-Z a-z 0-9 . _ : -, got `{tenant}`"
        )));
    }
    migrate(database_url).await?;
    let pool = store::connect_pool(database_url, 1)?;
    let mut client = pool.get().await?;
    let tx = store::tenant_tx(&mut client, tenant).await?;
    store::tiers::record_tier(tx.pg(), tenant, tier, "admin", chrono::Utc::now()).await?;
    tx.commit().await?;
    Ok(())
}

/// A running collector: HTTP listener, writer and upkeep tasks.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    https: bool,
    stop: oneshot::Sender<()>,
    http: JoinHandle<std::io::Result<()>>,
    writer: JoinHandle<()>,
    upkeep: JoinHandle<()>,
    price_reload: JoinHandle<()>,
    commits: store::committed::CommitFeed,
    /// The tier-limit watcher, and its stop signal (it holds a writer handle: stopped first).
    watcher: JoinHandle<()>,
    stop_watcher: tokio::sync::watch::Sender<bool>,
    /// Live connections and the fan-out feeding them (closed first on shutdown).
    live: Arc<live::LiveHub>,
    fanout: JoinHandle<()>,
}

impl Server {
    /// Check the settings (`ServerConfig::validate`, the TLS files), migrate, start the writer
    /// and upkeep, and listen on `config.listen` (port 0 picks one), over HTTPS with
    /// `config.tls`.
    pub async fn start(config: ServerConfig) -> Result<Server> {
        config.validate().map_err(Error::Config)?;
        let tls_config = config.tls.as_ref().map(tls::server_config).transpose()?;
        let jwt = config.jwt.verifier().map_err(Error::Config)?;
        let prices = Arc::new(pricing::Prices::new(pricing::load_book(
            config.price_file.as_deref(),
        )?));
        let tiers = Arc::new(billing::tiers::Tiers::load(config.tiers_file.as_deref())?);
        let savings = Arc::new(pricing::SavingsPricer::new(
            prices.clone(),
            &config.savings_baselines,
        )?);
        // Each writer holds a connection while it commits, key lookups hold at most their
        // slots, each export one for its duration; leave room besides for the API's queries.
        let pool_size = config.pool_size.max(
            config.writers
                + auth::UNKNOWN_KEY_LOOKUPS
                + auth::KNOWN_KEY_LOOKUPS
                + config.max_concurrent_exports
                + 2,
        );
        let pool = store::connect_pool(&config.database_url, pool_size)?;
        {
            let mut client = pool.get().await?;
            store::migrations::apply(&mut client).await?;
            let tenants = prices.reload(&**client).await?;
            tracing::info!("negotiated prices loaded for {tenants} tenant(s)");
            store::retention::check_floor(
                &client,
                store::retention::Floor {
                    raw_days: config.raw_retention_days,
                    hourly_days: config.hourly_retention_days,
                },
            )
            .await?;
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
        let price_reload = tokio::spawn(reload_prices(
            pool.clone(),
            prices.clone(),
            config.price_refresh,
        ));
        let (stop_watcher, watcher_stop) = tokio::sync::watch::channel(false);
        let watcher = billing::watch::spawn(
            pool.clone(),
            writer.clone(),
            tiers.clone(),
            &commits,
            watcher_stop,
        );
        let live = live::LiveHub::new(commits.clone(), &config).map_err(Error::Config)?;
        let fanout = live.spawn_fanout();
        let upkeep = tokio::spawn(upkeep(pool.clone(), config.clone(), metrics.clone()));
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let stall_limit = config.write_stall_timeout;
        let state = Arc::new(state::AppState {
            auth: auth::AuthState::new(pool.clone(), jwt),
            pool,
            writer,
            metrics,
            prices,
            savings,
            tiers,
            rates: Arc::new(access::rate::RateLimits::new(&config)),
            views: Arc::new(access::views::DashboardViews::new(
                config.record_dashboard_views,
            )),
            exports: export::gate::ExportGate::new(config.max_concurrent_exports),
            live: live.clone(),
            config,
        });
        let app = http::router(state);
        let (stop, stopped) = oneshot::channel::<()>();
        let stopped = async move {
            let _ = stopped.await;
        };
        let https = tls_config.is_some();
        let http = match tls_config {
            None => tokio::spawn(async move {
                axum::serve(listener::GuardedListener::new(listener, stall_limit), app)
                    .with_graceful_shutdown(stopped)
                    .await
            }),
            Some(config) => tokio::spawn(async move {
                axum::serve(tls::TlsListener::new(listener, config, stall_limit), app)
                    .with_graceful_shutdown(stopped)
                    .await
            }),
        };
        Ok(Server {
            addr,
            https,
            stop,
            http,
            writer: writer_task,
            upkeep,
            price_reload,
            commits,
            watcher,
            stop_watcher,
            live,
            fanout,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL clients use: `http://ADDR`, or `https://ADDR` when serving TLS.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// What each commit stores from now on, per tenant, delivered after the commit.
    pub fn subscribe_commits(
        &self,
    ) -> tokio::sync::broadcast::Receiver<Arc<store::committed::Committed>> {
        self.commits.subscribe()
    }

    /// Graceful stop: close live streams, stop accepting, finish in-flight requests, drain the
    /// writer (every accepted event is committed and acknowledged), stop upkeep.
    pub async fn shutdown(self, timeout: Duration) -> Result<()> {
        // Streams would keep the server's graceful shutdown waiting: closed first.
        self.live.close();
        let _ = self.stop.send(());
        // The watcher holds a writer handle: stop it first, so the writer can drain.
        let _ = self.stop_watcher.send(true);
        let watcher = self.watcher;
        let drain = async {
            let _ = watcher.await;
            // The router (and with it the last writer handle) is dropped when serve returns,
            // which lets the writer finish its queue and stop.
            let served = self.http.await;
            let _ = self.writer.await;
            served
        };
        let result = tokio::time::timeout(timeout, drain).await;
        let _ = self.fanout.await;
        self.upkeep.abort();
        self.price_reload.abort();
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

/// Reload tenants' negotiated prices every `every` (a failed round keeps the books as they are).
async fn reload_prices(
    pool: deadpool_postgres::Pool,
    prices: Arc<pricing::Prices>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await; // loaded in `start`
    loop {
        tick.tick().await;
        let round = async {
            let client = pool.get().await?;
            prices.reload(&**client).await
        };
        if let Err(e) = round.await {
            tracing::warn!("reloading negotiated prices failed, keeping the current ones: {e}");
        }
    }
}

/// Store `tenant`'s negotiated prices (a LiteLLM-format file's models) in effect from `from`;
/// returns the models stored. Running collectors pick them up within their price refresh.
pub async fn set_tenant_prices(
    database_url: &str,
    tenant: &str,
    text: &str,
    from: chrono::DateTime<chrono::Utc>,
) -> Result<usize> {
    if !agenttally::event::is_valid_tenant_id(tenant) {
        return Err(Error::Config(format!(
            "--tenant: must be 1-128 characters of A-Z a-z 0-9 . _ : -, got `{tenant}`"
        )));
    }
    migrate(database_url).await?;
    let pool = store::connect_pool(database_url, 1)?;
    let mut client = pool.get().await?;
    let tx = store::tenant_tx(&mut client, tenant).await?;
    let n = pricing::set_tenant_prices(tx.pg(), tenant, text, from).await?;
    tx.commit().await?;
    Ok(n)
}

/// Partitions and retention every `MAINTENANCE_INTERVAL`, and after them, once a day, the
/// compaction of closed days' daily rollups (unless `compact_rollups` is off); the accuracy
/// check over the days still in raw retention `verify_delay` after start, then every
/// `verify_interval`.
async fn upkeep(pool: deadpool_postgres::Pool, cfg: ServerConfig, metrics: Arc<metrics::Metrics>) {
    let (raw_days, hourly_days) = (cfg.raw_retention_days, cfg.hourly_retention_days);
    let mut tick = tokio::time::interval(config::MAINTENANCE_INTERVAL);
    tick.tick().await; // the first round ran in `start`
    let verify = tokio::time::sleep(cfg.verify_delay);
    tokio::pin!(verify);
    let mut compacted_on = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let round = async {
                    let client = pool.get().await?;
                    store::retention::run_once(&client, raw_days, hourly_days).await
                };
                if let Err(e) = round.await {
                    tracing::warn!("upkeep (partitions, retention) failed, will retry: {e}");
                }
                let today = chrono::Utc::now().date_naive();
                if cfg.compact_rollups && compacted_on != Some(today) {
                    let round = async {
                        let mut client = pool.get().await?;
                        store::compact::run_once(&mut client, today).await
                    };
                    match round.await {
                        Ok(done) => {
                            if done.moved > 0 || !done.rewritten.is_empty() {
                                tracing::info!(
                                    "compaction: {} daily rollup rows moved into month tables, \
                                     rewritten in tenant order: {:?}",
                                    done.moved,
                                    done.rewritten
                                );
                            }
                            compacted_on = Some(today);
                        }
                        Err(e) => tracing::warn!("compaction of daily rollups failed, will retry: {e}"),
                    }
                }
            }
            _ = &mut verify => {
                store::verify::daily_check(&pool, raw_days, hourly_days, &metrics).await;
                verify
                    .as_mut()
                    .reset(tokio::time::Instant::now() + cfg.verify_interval);
            }
        }
    }
}
