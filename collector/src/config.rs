//! The collector's settings, their defaults and their bounds, in one place. The CLI (`main.rs`)
//! maps flags and environment variables onto `ServerConfig`, refusing a value out of bounds at
//! parse time; tests build it directly, and `Server::start` refuses it out of bounds
//! (`ServerConfig::validate`). The bounds keep every duration and date computed from a setting
//! far from the limits of chrono and tokio, where arithmetic panics.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::TimeDelta;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_LISTEN_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);
pub const DEFAULT_DATA_DIR: &str = "./agenttally-data";
/// Raw events are kept this many days (whole day partitions are dropped after it).
pub const DEFAULT_RAW_RETENTION_DAYS: u32 = 30;
/// Hourly rollups are kept this many days; daily rollups are kept.
pub const DEFAULT_HOURLY_RETENTION_DAYS: u32 = 90;
/// Events stamped further in the future than this are rejected (sender clock skew).
pub const DEFAULT_MAX_FUTURE_HOURS: i64 = 24;
/// How long a commit group lingers for more requests once none are waiting. Zero: commit as soon
/// as the channel is dry; requests arriving during a commit form the next group.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::ZERO;
pub const DEFAULT_MAX_COMMIT_EVENTS: usize = 5_000;
/// Requests waiting for the writer; beyond it handlers wait `ENQUEUE_TIMEOUT`, then answer 503.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1_024;
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_POOL_SIZE: usize = 8;
/// Writer tasks committing groups concurrently, one connection each: while one waits for its
/// commit (fsync) or a rollup row lock, another inserts, so PostgreSQL can use a second core.
pub const DEFAULT_WRITERS: usize = 2;
/// Days of partitions created ahead of need around today: today-8 .. today+2.
pub const PARTITIONS_BEHIND_DAYS: i64 = 8;
pub const PARTITIONS_AHEAD_DAYS: i64 = 2;
/// Longest a request may take, body and commit included. Longer than the ingest handler's own
/// limits (`BODY_TIMEOUT` 30 s to receive, then `ENQUEUE_TIMEOUT` + `ACK_TIMEOUT`), which answer
/// with more precise errors first; this one catches anything else that hangs.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(75);
/// Requests served at once; more wait for a place (within `REQUEST_TIMEOUT`).
pub const MAX_CONCURRENT_REQUESTS: usize = 1_024;
/// Log filter used when neither `AGENTTALLY_LOG` nor `RUST_LOG` is set.
pub const DEFAULT_LOG: &str = "info";
/// How often tenants' negotiated prices are reloaded (a change made by `prices set` reaches
/// every collector within this).
pub const DEFAULT_PRICE_REFRESH: Duration = Duration::from_secs(10);
/// How often retention and partition upkeep run.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3_600);
/// The daily accuracy check (`store::verify`) first runs this long after start, so a start
/// stays cheap, then every `DEFAULT_VERIFY_INTERVAL`.
pub const DEFAULT_VERIFY_DELAY: Duration = Duration::from_secs(600);
pub const DEFAULT_VERIFY_INTERVAL: Duration = Duration::from_secs(86_400);

/// Query-class requests (reads, audit, key admin) per credential and per tenant per minute.
pub const DEFAULT_RATE_QUERY_PER_MINUTE: u32 = 100;
/// Export-class requests per credential and per tenant per hour.
pub const DEFAULT_RATE_EXPORT_PER_HOUR: u32 = 5;
/// Ingest requests per credential and per tenant per second; 0: no limit.
pub const DEFAULT_RATE_INGEST_PER_SECOND: u32 = 0;
/// Exports streamed at once (each holds a database connection for its duration); more are
/// answered 503 with Retry-After.
pub const DEFAULT_MAX_CONCURRENT_EXPORTS: usize = 2;
/// How long a one-time export link stays valid.
pub const DEFAULT_EXPORT_LINK_TTL: Duration = Duration::from_secs(3_600);
/// Days an erased raw event is kept (its personal fields already cleared) before it is deleted.
pub const DEFAULT_ERASURE_GRACE_DAYS: u32 = 90;
/// Live connections (`GET /v1/live`) one tenant may hold open on one collector; more are 429.
pub const DEFAULT_LIVE_MAX_CONNECTIONS_PER_TENANT: usize = 50;
/// Live connections one collector holds open for all tenants together; more are 429.
pub const DEFAULT_LIVE_MAX_CONNECTIONS: usize = 5_000;
/// The shortest `live_token_secret`, in bytes.
pub const LIVE_TOKEN_SECRET_MIN_BYTES: usize = 32;

/// A connection whose writes make no progress this long (the peer stopped reading) is closed
/// (`crate::listener`). Live streams drop a stalled client sooner (`live::SEND_TIMEOUT`).
pub const DEFAULT_WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Inclusive bounds of a numeric setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u64,
    pub max: u64,
}

impl Bounds {
    /// `Err` naming the rule when `value` is out of bounds (the caller prefixes the setting).
    pub fn check(&self, value: u64) -> Result<(), String> {
        if (self.min..=self.max).contains(&value) {
            Ok(())
        } else {
            Err(self.rule(&value.to_string()))
        }
    }

    /// Parse a flag or environment value as an integer within bounds.
    pub fn parse(&self, text: &str) -> Result<u64, String> {
        let t = text.trim();
        match t.parse::<u64>() {
            Ok(v) => self.check(v).map(|()| v),
            Err(_) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => Err(self.rule(t)),
            Err(_) => Err(format!(
                "must be a whole number between {} and {}, got `{text}`",
                self.min, self.max
            )),
        }
    }

    fn rule(&self, got: &str) -> String {
        format!("must be between {} and {}, got {got}", self.min, self.max)
    }
}

/// Ten years: retention past that is a mistake, and it keeps `now - days` inside chrono's range.
pub const RETENTION_DAYS: Bounds = Bounds { min: 1, max: 3_650 };
/// A group lingering longer would keep its requests near `ACK_TIMEOUT`.
pub const COMMIT_INTERVAL_MS: Bounds = Bounds {
    min: 0,
    max: 10_000,
};
/// One connection each; PostgreSQL allows 100 connections by default.
pub const WRITERS: Bounds = Bounds { min: 1, max: 32 };
pub const POOL_SIZE: Bounds = Bounds { min: 1, max: 1_000 };
pub const MAX_COMMIT_EVENTS: Bounds = Bounds {
    min: 1,
    max: 1_000_000,
};
/// Requests (each up to 512 KiB) held waiting for the writer.
pub const QUEUE_CAPACITY: Bounds = Bounds {
    min: 1,
    max: 1_000_000,
};
/// Hours an event may be stamped ahead of the collector's clock (`ServerConfig::max_future`).
pub const MAX_FUTURE_HOURS: Bounds = Bounds {
    min: 0,
    max: 24 * 7,
};
/// Seconds before the first accuracy check: at most a day.
pub const VERIFY_DELAY_SECS: Bounds = Bounds {
    min: 0,
    max: 86_400,
};
/// Exports at once: at least one, and few (each holds a pooled connection).
pub const MAX_CONCURRENT_EXPORTS: Bounds = Bounds { min: 1, max: 64 };
/// Seconds an export link is valid: a minute to a week.
pub const EXPORT_LINK_TTL_SECS: Bounds = Bounds {
    min: 60,
    max: 7 * 86_400,
};
/// Days between an erasure and the deletion of the erased raw rows (0: at the next upkeep).
pub const ERASURE_GRACE_DAYS: Bounds = Bounds { min: 0, max: 3_650 };
/// Seconds a write may stall before its connection is closed.
pub const WRITE_STALL_SECS: Bounds = Bounds { min: 1, max: 600 };
/// Live connections per tenant, and for the whole collector.
pub const LIVE_MAX_CONNECTIONS: Bounds = Bounds {
    min: 1,
    max: 1_000_000,
};
/// Seconds between accuracy checks: at least one, at most a week.
pub const VERIFY_INTERVAL_SECS: Bounds = Bounds {
    min: 1,
    max: 7 * 86_400,
};
/// Seconds between reloads of tenants' negotiated prices (the flag): a second to an hour.
pub const PRICE_REFRESH_SECS: Bounds = Bounds { min: 1, max: 3_600 };
/// The same in milliseconds (the setting; tests reload faster than a second).
pub const PRICE_REFRESH_MS: Bounds = Bounds {
    min: 10,
    max: 3_600_000,
};

/// A rate limit (0: off).
pub const RATE: Bounds = Bounds {
    min: 0,
    max: 1_000_000,
};

/// Everything `Server::start` needs. Its `Debug` shows the database URL without a password.
#[derive(Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    pub raw_retention_days: u32,
    pub hourly_retention_days: u32,
    pub max_future: TimeDelta,
    pub commit_interval: Duration,
    pub max_commit_events: usize,
    pub queue_capacity: usize,
    pub pool_size: usize,
    pub writers: usize,
    /// A LiteLLM-format price file layered over sdk-core's built-in book for pricing at ingest.
    pub price_file: Option<PathBuf>,
    /// The baselines every spend event is priced on at ingest, for savings (`most_expensive`
    /// or model names); the first is the savings endpoint's default.
    pub savings_baselines: Vec<String>,
    /// Every tenant's monthly budget in USD, for the budget alert of the recommendations.
    pub monthly_budget_usd: Option<rust_decimal::Decimal>,
    /// The plans' tiers (JSON); `None`: the documented default set.
    pub tiers_file: Option<PathBuf>,
    /// How often tenants' negotiated prices are reloaded from the database.
    pub price_refresh: Duration,
    /// When the accuracy check over the days still in raw retention first runs after start, and
    /// how often after that (read-only; its result is in `/metrics`).
    pub verify_delay: Duration,
    pub verify_interval: Duration,
    /// Move the daily rollups of days before yesterday into month tables in tenant order, once a
    /// day (`store::compact`): long ranges read from disk in a few requests. Off for a database
    /// to be distributed with Citus, which does not take inheritance children.
    pub compact_rollups: bool,
    /// Serve HTTPS with this certificate chain and key; `None`: plain HTTP.
    pub tls: Option<TlsFiles>,
    /// JWT verification (off unless a secret or a public key is given).
    pub jwt: crate::auth::JwtSettings,
    /// Rate limits per credential and per tenant, by class (0: off).
    pub rate_query_per_minute: u32,
    pub rate_export_per_hour: u32,
    pub rate_ingest_per_second: u32,
    /// Record a `customer.dashboard_view` event for a JWT user's successful read (at most one
    /// per tenant and user per 30 minutes).
    pub record_dashboard_views: bool,
    /// Exports streamed at once; each holds a database connection (added to the pool's size).
    pub max_concurrent_exports: usize,
    /// How long a one-time export link (`POST /v1/exports`) stays valid.
    pub export_link_ttl: Duration,
    /// Days an erased raw event is kept, its personal fields cleared, before upkeep deletes it.
    pub erasure_grace_days: u32,
    /// Live connections (`GET /v1/live`) one tenant may hold open on this collector.
    pub live_max_connections_per_tenant: usize,
    /// Live connections this collector holds open for all tenants together.
    pub live_max_connections: usize,
    /// The key live tokens are signed with (HMAC-SHA256), shared by the replicas behind one
    /// load balancer; `None`: a random key per process (tokens then open streams only on the
    /// collector that issued them).
    pub live_token_secret: Option<String>,
    /// A connection whose writes make no progress this long is closed.
    pub write_stall_timeout: Duration,
}

impl fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerConfig")
            .field("listen", &self.listen)
            .field("database_url", &redact_password(&self.database_url))
            .field("raw_retention_days", &self.raw_retention_days)
            .field("hourly_retention_days", &self.hourly_retention_days)
            .field("max_future", &self.max_future)
            .field("commit_interval", &self.commit_interval)
            .field("max_commit_events", &self.max_commit_events)
            .field("queue_capacity", &self.queue_capacity)
            .field("pool_size", &self.pool_size)
            .field("writers", &self.writers)
            .field("price_file", &self.price_file)
            .field("savings_baselines", &self.savings_baselines)
            .field("monthly_budget_usd", &self.monthly_budget_usd)
            .field("tiers_file", &self.tiers_file)
            .field("price_refresh", &self.price_refresh)
            .field("verify_delay", &self.verify_delay)
            .field("verify_interval", &self.verify_interval)
            .field("compact_rollups", &self.compact_rollups)
            .field("tls", &self.tls)
            .field("jwt", &self.jwt)
            .field("rate_query_per_minute", &self.rate_query_per_minute)
            .field("rate_export_per_hour", &self.rate_export_per_hour)
            .field("rate_ingest_per_second", &self.rate_ingest_per_second)
            .field("record_dashboard_views", &self.record_dashboard_views)
            .field("max_concurrent_exports", &self.max_concurrent_exports)
            .field("export_link_ttl", &self.export_link_ttl)
            .field("erasure_grace_days", &self.erasure_grace_days)
            .field(
                "live_max_connections_per_tenant",
                &self.live_max_connections_per_tenant,
            )
            .field("live_max_connections", &self.live_max_connections)
            .field("write_stall_timeout", &self.write_stall_timeout)
            .field(
                "live_token_secret",
                &self.live_token_secret.as_ref().map(|_| "***"),
            )
            .finish()
    }
}

/// A PostgreSQL connection string with any password replaced by `***`: the userinfo of a URL
/// (`postgresql://user:secret@host/db`), a `password=` query parameter, or a `password=` pair
/// of the key-value form (`host=x password=secret`, quoted or not).
pub fn redact_password(conn: &str) -> String {
    const MASK: &str = "***";
    let mut out = conn.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest = scheme_end + 3;
        let authority_end = out[rest..].find(['/', '?']).map_or(out.len(), |i| rest + i);
        if let Some(at) = out[rest..authority_end].rfind('@') {
            if let Some(colon) = out[rest..rest + at].find(':') {
                out.replace_range(rest + colon + 1..rest + at, MASK);
            }
        }
    }
    // `password=` as a query parameter or a key-value pair: mask up to the next separator
    // (the closing quote of a quoted value).
    let mut from = 0;
    while let Some(i) = out[from..].to_ascii_lowercase().find("password=") {
        let start = from + i + "password=".len();
        let quoted = out[start..].starts_with('\'');
        let value_start = if quoted { start + 1 } else { start };
        let end = if quoted {
            out[value_start..]
                .find('\'')
                .map_or(out.len(), |j| value_start + j)
        } else {
            out[value_start..]
                .find(['&', ' ', '\t'])
                .map_or(out.len(), |j| value_start + j)
        };
        out.replace_range(value_start..end, MASK);
        from = value_start + MASK.len();
    }
    out
}

impl ServerConfig {
    /// Defaults for everything but the database.
    pub fn new(database_url: impl Into<String>) -> Self {
        ServerConfig {
            listen: SocketAddr::from(DEFAULT_LISTEN_ADDR),
            database_url: database_url.into(),
            raw_retention_days: DEFAULT_RAW_RETENTION_DAYS,
            hourly_retention_days: DEFAULT_HOURLY_RETENTION_DAYS,
            max_future: TimeDelta::hours(DEFAULT_MAX_FUTURE_HOURS),
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            max_commit_events: DEFAULT_MAX_COMMIT_EVENTS,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            pool_size: DEFAULT_POOL_SIZE,
            writers: DEFAULT_WRITERS,
            price_file: None,
            savings_baselines: vec![crate::pricing::MOST_EXPENSIVE.to_string()],
            monthly_budget_usd: None,
            tiers_file: None,
            price_refresh: DEFAULT_PRICE_REFRESH,
            verify_delay: DEFAULT_VERIFY_DELAY,
            verify_interval: DEFAULT_VERIFY_INTERVAL,
            compact_rollups: true,
            tls: None,
            jwt: crate::auth::JwtSettings::default(),
            rate_query_per_minute: DEFAULT_RATE_QUERY_PER_MINUTE,
            rate_export_per_hour: DEFAULT_RATE_EXPORT_PER_HOUR,
            rate_ingest_per_second: DEFAULT_RATE_INGEST_PER_SECOND,
            record_dashboard_views: true,
            max_concurrent_exports: DEFAULT_MAX_CONCURRENT_EXPORTS,
            export_link_ttl: DEFAULT_EXPORT_LINK_TTL,
            erasure_grace_days: DEFAULT_ERASURE_GRACE_DAYS,
            live_max_connections_per_tenant: DEFAULT_LIVE_MAX_CONNECTIONS_PER_TENANT,
            live_max_connections: DEFAULT_LIVE_MAX_CONNECTIONS,
            live_token_secret: None,
            write_stall_timeout: DEFAULT_WRITE_STALL_TIMEOUT,
        }
    }

    /// `Err` naming the first setting out of its bounds and the rule.
    pub fn validate(&self) -> Result<(), String> {
        // (usize is at most 64 bits wherever this builds; saturate rather than assume.)
        let n = |v: usize| u64::try_from(v).unwrap_or(u64::MAX);
        let checks = [
            (
                "raw_retention_days",
                RETENTION_DAYS,
                u64::from(self.raw_retention_days),
            ),
            (
                "hourly_retention_days",
                RETENTION_DAYS,
                u64::from(self.hourly_retention_days),
            ),
            (
                "commit_interval (ms)",
                COMMIT_INTERVAL_MS,
                u64::try_from(self.commit_interval.as_millis()).unwrap_or(u64::MAX),
            ),
            ("writers", WRITERS, n(self.writers)),
            ("pool_size", POOL_SIZE, n(self.pool_size)),
            (
                "max_commit_events",
                MAX_COMMIT_EVENTS,
                n(self.max_commit_events),
            ),
            ("queue_capacity", QUEUE_CAPACITY, n(self.queue_capacity)),
            (
                "price_refresh (ms)",
                PRICE_REFRESH_MS,
                u64::try_from(self.price_refresh.as_millis()).unwrap_or(u64::MAX),
            ),
            (
                "verify_delay (s)",
                VERIFY_DELAY_SECS,
                self.verify_delay.as_secs(),
            ),
            (
                "verify_interval (s)",
                VERIFY_INTERVAL_SECS,
                self.verify_interval.as_secs(),
            ),
            (
                "rate_query_per_minute",
                RATE,
                u64::from(self.rate_query_per_minute),
            ),
            (
                "rate_export_per_hour",
                RATE,
                u64::from(self.rate_export_per_hour),
            ),
            (
                "rate_ingest_per_second",
                RATE,
                u64::from(self.rate_ingest_per_second),
            ),
            (
                "max_concurrent_exports",
                MAX_CONCURRENT_EXPORTS,
                n(self.max_concurrent_exports),
            ),
            (
                "export_link_ttl (s)",
                EXPORT_LINK_TTL_SECS,
                self.export_link_ttl.as_secs(),
            ),
            (
                "erasure_grace_days",
                ERASURE_GRACE_DAYS,
                u64::from(self.erasure_grace_days),
            ),
            (
                "live_max_connections_per_tenant",
                LIVE_MAX_CONNECTIONS,
                n(self.live_max_connections_per_tenant),
            ),
            (
                "live_max_connections",
                LIVE_MAX_CONNECTIONS,
                n(self.live_max_connections),
            ),
            (
                "write_stall_timeout (s)",
                WRITE_STALL_SECS,
                self.write_stall_timeout.as_secs(),
            ),
        ];
        for (name, bounds, value) in checks {
            bounds
                .check(value)
                .map_err(|rule| format!("config.{name}: {rule}"))?;
        }
        if let Some(secret) = &self.live_token_secret {
            check_live_token_secret(secret)
                .map_err(|rule| format!("config.live_token_secret: {rule}"))?;
        }
        let most = TimeDelta::hours(MAX_FUTURE_HOURS.max as i64);
        if self.max_future < TimeDelta::zero() || self.max_future > most {
            return Err(format!(
                "config.max_future: must be between 0 and {} hours, got {} s",
                MAX_FUTURE_HOURS.max,
                self.max_future.num_seconds()
            ));
        }
        self.jwt
            .verifier()
            .map_err(|e| format!("config.jwt: {e}"))?;
        Ok(())
    }
}

/// The certificate chain and private key the collector serves HTTPS with (PEM files; loaded by
/// `tls::server_config`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate first, then any intermediates (`--tls-cert`).
    pub cert: PathBuf,
    /// The private key of the first certificate: PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`--tls-key`).
    pub key: PathBuf,
}

/// Longest a client may take to complete its TLS handshake once connected; a silent client is
/// disconnected after it instead of holding a task.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshakes in progress at once; while this many are, new connections wait in the
/// kernel's accept queue.
pub const MAX_TLS_HANDSHAKES: usize = 1_024;

/// `Err` naming the rule unless `secret` is long enough to sign live tokens with.
pub fn check_live_token_secret(secret: &str) -> Result<(), String> {
    if secret.len() < LIVE_TOKEN_SECRET_MIN_BYTES {
        return Err(format!(
            "must be at least {LIVE_TOKEN_SECRET_MIN_BYTES} bytes (e.g. `openssl rand -hex 32`), \
             got {}",
            secret.len()
        ));
    }
    Ok(())
}

/// The log filter from `AGENTTALLY_LOG`, else `RUST_LOG`, else `DEFAULT_LOG`: a level (`debug`)
/// or per-target directives (`info,agenttally_collector=debug,tower_http=debug`). `Err` names
/// the variable and the rule.
pub fn log_filter(
    agenttally_log: Option<&str>,
    rust_log: Option<&str>,
) -> Result<tracing_subscriber::filter::Targets, String> {
    let (name, spec) = match (agenttally_log, rust_log) {
        (Some(v), _) if !v.trim().is_empty() => ("AGENTTALLY_LOG", v),
        (_, Some(v)) if !v.trim().is_empty() => ("RUST_LOG", v),
        _ => ("default", DEFAULT_LOG),
    };
    spec.trim().parse().map_err(|e| {
        format!(
            "{name}: must be a level (error, warn, info, debug, trace, off) or directives \
             like `info,agenttally_collector=debug`, got `{spec}` ({e})"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_parse_and_name_the_rule() {
        assert_eq!(RETENTION_DAYS.parse("30"), Ok(30));
        assert_eq!(RETENTION_DAYS.parse(" 3650 "), Ok(3_650));
        assert_eq!(
            RETENTION_DAYS.parse("4294967295"),
            Err("must be between 1 and 3650, got 4294967295".to_string())
        );
        assert_eq!(
            RETENTION_DAYS.parse("0"),
            Err("must be between 1 and 3650, got 0".to_string())
        );
        assert_eq!(
            COMMIT_INTERVAL_MS.parse("99999999999999999999999999"),
            Err("must be between 0 and 10000, got 99999999999999999999999999".to_string())
        );
        assert_eq!(
            WRITERS.parse("-1"),
            Err("must be a whole number between 1 and 32, got `-1`".to_string())
        );
        assert!(WRITERS.parse("").is_err());
        assert!(WRITERS.parse("2.5").is_err());
    }

    #[test]
    fn debug_never_shows_the_database_password() {
        let urls = [
            "postgresql://agent:s3cret-pw@db.example:5432/tally",
            "postgres://agent:s3cret-pw@db.example/tally?sslmode=disable",
            "postgresql://agent@db.example/tally?password=s3cret-pw&sslmode=disable",
            "host=db.example user=agent password=s3cret-pw dbname=tally",
            "host=db.example user=agent password='s3cret-pw with spaces' dbname=tally",
            "host=db.example PASSWORD=s3cret-pw",
        ];
        for url in urls {
            let shown = format!("{:?}", ServerConfig::new(url));
            assert!(!shown.contains("s3cret"), "{shown}");
            assert!(shown.contains("***"), "{shown}");
            assert!(shown.contains("db.example"), "{shown}");
        }
        assert_eq!(
            redact_password("postgresql://agent:pw@host/db"),
            "postgresql://agent:***@host/db"
        );
        assert_eq!(
            redact_password("postgresql://agent@host/db"),
            "postgresql://agent@host/db"
        );
    }

    #[test]
    fn the_log_filter_comes_from_the_environment() {
        use tracing::Level;
        let f = log_filter(None, None).expect("default");
        assert!(f.would_enable("agenttally_collector", &Level::INFO));
        assert!(!f.would_enable("agenttally_collector", &Level::DEBUG));
        let f = log_filter(Some("debug"), Some("error")).expect("AGENTTALLY_LOG first");
        assert!(f.would_enable("x", &Level::DEBUG));
        let f = log_filter(Some(" "), Some("warn,tower_http=debug")).expect("RUST_LOG");
        assert!(!f.would_enable("agenttally_collector", &Level::INFO));
        assert!(f.would_enable("tower_http::trace", &Level::DEBUG));
        let e = log_filter(Some("info,agenttally_collector=loud"), None).expect_err("no level");
        assert!(e.starts_with("AGENTTALLY_LOG: must be a level"), "{e}");
    }

    #[test]
    fn defaults_are_within_bounds() {
        assert_eq!(ServerConfig::new("postgresql://x").validate(), Ok(()));
    }

    #[test]
    fn huge_settings_are_refused_by_name() {
        type Tweak = fn(&mut ServerConfig);
        let cases: [(Tweak, &str); 16] = [
            (|c| c.raw_retention_days = u32::MAX, "config.raw_retention_days: must be between 1 and 3650, got 4294967295"),
            (|c| c.hourly_retention_days = 0, "config.hourly_retention_days: must be between 1 and 3650, got 0"),
            (|c| c.commit_interval = Duration::MAX, "config.commit_interval (ms): must be between 0 and 10000, got 18446744073709551615"),
            (|c| c.writers = usize::MAX, "config.writers: must be between 1 and 32, got 18446744073709551615"),
            (|c| c.writers = 0, "config.writers: must be between 1 and 32, got 0"),
            (|c| c.pool_size = usize::MAX, "config.pool_size: must be between 1 and 1000, got 18446744073709551615"),
            (|c| c.max_commit_events = 0, "config.max_commit_events: must be between 1 and 1000000, got 0"),
            (|c| c.queue_capacity = usize::MAX, "config.queue_capacity: must be between 1 and 1000000, got 18446744073709551615"),
            (|c| c.max_future = TimeDelta::MAX, "config.max_future: must be between 0 and 168 hours, got 9223372036854775 s"),
            (|c| c.max_future = TimeDelta::hours(-1), "config.max_future: must be between 0 and 168 hours, got -3600 s"),
            (|c| c.verify_delay = Duration::MAX, "config.verify_delay (s): must be between 0 and 86400, got 18446744073709551615"),
            (|c| c.verify_interval = Duration::ZERO, "config.verify_interval (s): must be between 1 and 604800, got 0"),
            (|c| c.price_refresh = Duration::ZERO, "config.price_refresh (ms): must be between 10 and 3600000, got 0"),
            (|c| c.max_concurrent_exports = 0, "config.max_concurrent_exports: must be between 1 and 64, got 0"),
            (|c| c.export_link_ttl = Duration::MAX, "config.export_link_ttl (s): must be between 60 and 604800, got 18446744073709551615"),
            (|c| c.erasure_grace_days = u32::MAX, "config.erasure_grace_days: must be between 0 and 3650, got 4294967295"),
        ];
        for (tweak, want) in cases {
            let mut c = ServerConfig::new("postgresql://x");
            tweak(&mut c);
            assert_eq!(c.validate(), Err(want.to_string()));
        }
        let mut c = ServerConfig::new("postgresql://x");
        c.max_future = TimeDelta::hours(168) + TimeDelta::seconds(1);
        assert!(c.validate().is_err());
    }
}
