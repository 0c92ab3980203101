//! What handlers share: `AppState`, held in an `Arc` by the router. Handlers that need only a
//! part take a sub-state (`auth::AuthState`, ...) through axum's `FromRef`, so a module reads only
//! what it uses and does not depend on this one.

use std::fmt;
use std::sync::Arc;

use axum::extract::FromRef;
use deadpool_postgres::Pool;

use crate::access::rate::RateLimits;
use crate::access::views::DashboardViews;
use crate::auth::AuthState;
use crate::config::ServerConfig;
use crate::metrics::Metrics;
use crate::pricing::{Prices, SavingsPricer};
use crate::store::writer::WriterHandle;

/// Everything a handler needs.
pub struct AppState {
    pub pool: Pool,
    pub writer: WriterHandle,
    pub auth: AuthState,
    pub metrics: Arc<Metrics>,
    /// The books events without a cost are priced with at ingest, per tenant
    /// (`crate::pricing`).
    pub prices: Arc<Prices>,
    /// The savings baselines spend events are priced on at ingest, with that book.
    pub savings: Arc<SavingsPricer>,
    /// The plans billing usage is measured against.
    pub tiers: Arc<crate::billing::tiers::Tiers>,
    /// Rate limits per credential and per tenant (`crate::access::rate`).
    pub rates: Arc<RateLimits>,
    /// The dashboard views recorded lately (`crate::access::views`).
    pub views: Arc<DashboardViews>,
    /// The cap on exports streamed at once.
    pub exports: crate::export::gate::ExportGate,
    /// Open live connections (`GET /v1/live`) and the live-token key.
    pub live: Arc<crate::live::LiveHub>,
    pub config: ServerConfig,
}

/// The router's state.
pub type SharedState = Arc<AppState>;

impl FromRef<SharedState> for AuthState {
    fn from_ref(st: &SharedState) -> Self {
        st.auth.clone()
    }
}

// By hand: the pool's own Debug is long and the config's must stay redacted (it is).
impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = self.pool.status();
        f.debug_struct("AppState")
            .field("config", &self.config)
            .field("pool_size", &status.max_size)
            .field("auth", &self.auth)
            .field("prices", &self.prices.books().base().version())
            .finish_non_exhaustive()
    }
}

/// A state whose pool never connects until used (the writer only on its first group): for unit
/// tests of what needs no database (Debug, JWTs, scopes, tenants, rate limits).
#[cfg(test)]
impl AppState {
    pub(crate) fn unconnected(config: ServerConfig) -> AppState {
        use crate::store;
        let pool = store::connect_pool(&config.database_url, 1).expect("pool");
        let metrics = Arc::new(Metrics::default());
        let prices = Arc::new(Prices::new(agenttally::pricing::PriceBook::builtin()));
        let savings = Arc::new(
            SavingsPricer::new(prices.clone(), &config.savings_baselines).expect("pricer"),
        );
        let feed = store::committed::feed();
        let (writer, _task) = store::writer::spawn(
            pool.clone(),
            store::writer::WriterConfig::from_server(&config, savings.clone()),
            metrics.clone(),
            feed.clone(),
        );
        AppState {
            auth: AuthState::new(pool.clone(), config.jwt.verifier().expect("jwt")),
            pool,
            writer,
            metrics,
            prices,
            savings,
            tiers: Arc::default(),
            rates: Arc::new(RateLimits::new(&config)),
            views: Arc::new(DashboardViews::new(false)),
            exports: crate::export::gate::ExportGate::new(1),
            live: crate::live::LiveHub::new(feed, &config).expect("hub"),
            config,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn debug_never_shows_the_database_password() {
        let url = "postgresql://agent:s3cret-pw@127.0.0.1:1/tally";
        let st = AppState::unconnected(ServerConfig::new(url));
        let shown = format!("{st:?} {st:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("127.0.0.1"), "{shown}");
    }
}
