//! `agenttally-collector`: command-line entry point. `serve` runs the collector (with an embedded
//! PostgreSQL unless a database URL is given); `keys create` makes an API key; `report` prints
//! what is stored; `verify` recomputes the rollups from the raw rows and reports (or repairs)
//! every difference.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use agenttally_collector::config::{self, ServerConfig, TlsFiles};
use agenttally_collector::store::verify;
use agenttally_collector::{EmbeddedOptions, EmbeddedPostgres, Error, Scope, Server};
use clap::{Args, Parser, Subcommand};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

#[derive(Debug, Parser)]
#[command(
    name = "agenttally-collector",
    version,
    about = "AgentTally collector: ingest into PostgreSQL"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the collector until SIGINT/SIGTERM.
    Serve(Box<ServeArgs>),
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Apply the embedded migrations and exit.
    Migrate(DbArgs),
    /// Print what is stored per tenant: runs, cost by provider, routing savings.
    Report(ReportArgs),
    /// Set a tenant's negotiated prices (effective-dated, layered over the collector's book for
    /// that tenant only).
    Prices {
        #[command(subcommand)]
        command: PricesCommand,
    },
    /// Set a tenant's billing tier (an admin's setting; a later subscription event replaces it).
    Tiers {
        #[command(subcommand)]
        command: TiersCommand,
    },
    /// Recompute the rollups of whole UTC days from the raw rows and print every difference
    /// (exit code 1 while any remains); `--repair` corrects them.
    Verify(VerifyArgs),
    /// Set the database's retention floor to these settings: a collector configured to keep
    /// less than the floor refuses to start, so shortening retention takes this deliberate step
    /// (lengthening does not). Collectors started with the settings then delete what they no
    /// longer keep.
    Retention(RetentionCommandArgs),
    /// Print the connection URL of the running embedded cluster (for `psql` and backups). It
    /// holds the cluster's password: only the data directory's owner can read it.
    DatabaseUrl(DbArgs),
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Tenants to report on (repeatable). Default: every tenant with stored data.
    #[arg(long = "tenant")]
    tenants: Vec<String>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// The tenant to check. Default: every tenant with rollups or raw rows in the window.
    #[arg(long)]
    tenant: Option<String>,
    /// The first day of the window, through today (UTC): a number of days back (`7d`: from
    /// 00:00 UTC seven days ago) or a date (`2026-11-01`).
    #[arg(long, default_value = "7d", value_parser = parse_since)]
    since: verify::Since,
    /// Correct every differing rollup row (safe while the collector ingests).
    #[arg(long)]
    repair: bool,
    /// The collector's retention: daily rollups are checked only for days whose raw rows are
    /// all still kept, hourly rollups only within the hourly retention.
    #[command(flatten)]
    retention: RetentionArgs,
    #[command(flatten)]
    db: DbArgs,
}

/// How long data is kept: the same variables and defaults for `serve`, `verify` and
/// `retention`.
#[derive(Debug, Args)]
struct RetentionArgs {
    /// Days raw events are kept (1 to 3650).
    #[arg(long, env = "AGENTTALLY_RAW_RETENTION_DAYS", default_value_t = config::DEFAULT_RAW_RETENTION_DAYS,
          value_parser = bounded::<u32>(config::RETENTION_DAYS))]
    raw_retention_days: u32,
    /// Days hourly rollups are kept (1 to 3650; daily rollups are kept).
    #[arg(long, env = "AGENTTALLY_HOURLY_RETENTION_DAYS", default_value_t = config::DEFAULT_HOURLY_RETENTION_DAYS,
          value_parser = bounded::<u32>(config::RETENTION_DAYS))]
    hourly_retention_days: u32,
}

impl RetentionArgs {
    fn floor(&self) -> agenttally_collector::store::retention::Floor {
        agenttally_collector::store::retention::Floor {
            raw_days: self.raw_retention_days,
            hourly_days: self.hourly_retention_days,
        }
    }
}

#[derive(Debug, Args)]
struct RetentionCommandArgs {
    #[command(flatten)]
    retention: RetentionArgs,
    #[command(flatten)]
    db: DbArgs,
}

fn parse_since(s: &str) -> Result<verify::Since, String> {
    s.parse()
}

#[derive(Debug, Args)]
struct DbArgs {
    /// PostgreSQL URL. Without it, an embedded cluster in --data-dir is used.
    #[arg(long, env = "AGENTTALLY_DATABASE_URL")]
    database_url: Option<String>,
    /// Data directory of the embedded PostgreSQL cluster.
    #[arg(long, env = "AGENTTALLY_DATA_DIR", default_value = config::DEFAULT_DATA_DIR)]
    data_dir: PathBuf,
    /// Turn fsync off in the embedded cluster (tests and demos only: a crash can lose data).
    #[arg(long, env = "AGENTTALLY_NO_FSYNC")]
    no_fsync: bool,
    /// A PostgreSQL server setting for the embedded cluster, NAME=VALUE; repeat the flag, or
    /// separate them with ';' in the variable (e.g. shared_buffers=1GB;
    /// shared_preload_libraries=pg_stat_statements). Its connection and authentication
    /// settings are fixed.
    #[arg(
        long = "embedded-pg-setting",
        env = "AGENTTALLY_EMBEDDED_PG_SETTINGS",
        value_name = "NAME=VALUE",
        value_delimiter = ';',
        value_parser = agenttally_collector::embedded_pg::parse_setting
    )]
    embedded_pg_settings: Vec<(String, String)>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0 picks a free one; the bound address is printed).
    #[arg(long, env = "AGENTTALLY_LISTEN", default_value = config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    #[command(flatten)]
    db: DbArgs,
    #[command(flatten)]
    retention: RetentionArgs,
    /// How long a commit group lingers for more requests once none are waiting, in milliseconds
    /// (0 to 10000; 0: commit as soon as the channel is dry).
    #[arg(long, env = "AGENTTALLY_COMMIT_INTERVAL_MS", default_value_t = config::DEFAULT_COMMIT_INTERVAL.as_millis() as u64,
          value_parser = bounded::<u64>(config::COMMIT_INTERVAL_MS))]
    commit_interval_ms: u64,
    /// Writer tasks committing groups concurrently, one database connection each (1 to 32).
    #[arg(long, env = "AGENTTALLY_WRITERS", default_value_t = config::DEFAULT_WRITERS,
          value_parser = bounded::<usize>(config::WRITERS))]
    writers: usize,
    /// A LiteLLM-format price file (`model_prices_and_context_window.json`) layered over the
    /// built-in price book; events sent without a cost are priced with both at ingest.
    #[arg(long, env = "AGENTTALLY_PRICE_FILE")]
    price_file: Option<PathBuf>,
    /// Baselines savings are measured against, comma-separated: `most_expensive` (per call, the
    /// dearest model of the book pricing the same usage) and/or model names, e.g.
    /// `most_expensive,openai_codex`. Every spend event is priced on each at ingest; the first is
    /// the default of `GET /v1/metrics/savings`.
    #[arg(
        long,
        env = "AGENTTALLY_SAVINGS_BASELINES",
        value_delimiter = ',',
        default_value = "most_expensive"
    )]
    savings_baseline: Vec<String>,
    /// A monthly budget in USD (a decimal, e.g. `2500`): `GET /v1/metrics/recommendations`
    /// alerts when a tenant's month-to-date spend, projected to the month's end, passes it.
    #[arg(long, env = "AGENTTALLY_MONTHLY_BUDGET_USD", value_parser = budget_usd)]
    monthly_budget_usd: Option<rust_decimal::Decimal>,
    /// The plans' tiers as JSON (name, monthly price, limits, overage rates; see
    /// docs/billing.md). Default: the built-in free / pro / enterprise set.
    #[arg(long, env = "AGENTTALLY_TIERS_FILE")]
    tiers_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (server certificate first, then
    /// intermediates); needs --tls-key. TLS 1.3 and 1.2 only.
    #[arg(long, env = "AGENTTALLY_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1); needs --tls-cert.
    #[arg(long, env = "AGENTTALLY_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Exports (`GET /v1/export`, export links) streamed at once, each holding a database
    /// connection for its duration (1 to 64); more are answered 503 with Retry-After.
    #[arg(long, env = "AGENTTALLY_MAX_CONCURRENT_EXPORTS", default_value_t = config::DEFAULT_MAX_CONCURRENT_EXPORTS,
          value_parser = bounded::<usize>(config::MAX_CONCURRENT_EXPORTS))]
    max_concurrent_exports: usize,
    /// Seconds a one-time export link (`POST /v1/exports`) stays valid (60 to 604800).
    #[arg(long, env = "AGENTTALLY_EXPORT_LINK_TTL", default_value_t = config::DEFAULT_EXPORT_LINK_TTL.as_secs(),
          value_parser = bounded::<u64>(config::EXPORT_LINK_TTL_SECS))]
    export_link_ttl: u64,
    /// Days an erased raw event is kept, its personal fields already cleared, before upkeep
    /// deletes it (0 to 3650; 0: at the next upkeep round).
    #[arg(long, env = "AGENTTALLY_ERASURE_GRACE_DAYS", default_value_t = config::DEFAULT_ERASURE_GRACE_DAYS,
          value_parser = bounded::<u32>(config::ERASURE_GRACE_DAYS))]
    erasure_grace_days: u32,
    /// Seconds after start before the first accuracy check (`verify`, read-only) of the days
    /// still in raw retention (0 to 86400).
    #[arg(long, env = "AGENTTALLY_VERIFY_DELAY", default_value_t = config::DEFAULT_VERIFY_DELAY.as_secs(),
          value_parser = bounded::<u64>(config::VERIFY_DELAY_SECS))]
    verify_delay: u64,
    /// Seconds between accuracy checks (1 to 604800; default a day).
    #[arg(long, env = "AGENTTALLY_VERIFY_INTERVAL", default_value_t = config::DEFAULT_VERIFY_INTERVAL.as_secs(),
          value_parser = bounded::<u64>(config::VERIFY_INTERVAL_SECS))]
    verify_interval: u64,
    /// Once a day, move the daily rollups of days before yesterday into month tables written in
    /// tenant order, so long ranges are read from disk in a few requests: `true` or `false`
    /// (`false` for a database to be distributed with Citus).
    #[arg(long, env = "AGENTTALLY_COMPACT_ROLLUPS", default_value_t = true,
          action = clap::ArgAction::Set)]
    compact_rollups: bool,
    /// Seconds between reloads of tenants' negotiated prices (`prices set`): a change reaches
    /// every collector within this (1 to 3600).
    #[arg(long, env = "AGENTTALLY_PRICE_REFRESH", default_value_t = config::DEFAULT_PRICE_REFRESH.as_secs(),
          value_parser = bounded::<u64>(config::PRICE_REFRESH_SECS))]
    price_refresh: u64,
    /// Live connections (`GET /v1/live`) one tenant may hold open on this collector (1 to
    /// 1000000); more are answered 429.
    #[arg(long, env = "AGENTTALLY_LIVE_MAX_CONNECTIONS_PER_TENANT",
          default_value_t = config::DEFAULT_LIVE_MAX_CONNECTIONS_PER_TENANT,
          value_parser = bounded::<usize>(config::LIVE_MAX_CONNECTIONS))]
    live_max_connections_per_tenant: usize,
    /// Live connections this collector holds open for all tenants together (1 to 1000000).
    #[arg(long, env = "AGENTTALLY_LIVE_MAX_CONNECTIONS",
          default_value_t = config::DEFAULT_LIVE_MAX_CONNECTIONS,
          value_parser = bounded::<usize>(config::LIVE_MAX_CONNECTIONS))]
    live_max_connections: usize,
    /// The key live tokens are signed with (at least 32 bytes), the same on every replica behind
    /// one load balancer. Unset: a random key per process, and a token opens streams only on the
    /// collector that issued it.
    #[arg(long, env = "AGENTTALLY_LIVE_TOKEN_SECRET", hide_env_values = true,
          value_parser = live_token_secret)]
    live_token_secret: Option<String>,
    #[command(flatten)]
    access: AccessArgs,
}

/// Credentials besides API keys, rate limits and dashboard views (docs/security.md).
#[derive(Debug, Args)]
struct AccessArgs {
    /// Accept JWTs signed with HS256 and this secret (at least 32 bytes).
    #[arg(long, env = "AGENTTALLY_JWT_HS256_SECRET", hide_env_values = true)]
    jwt_hs256_secret: Option<String>,
    /// Accept JWTs signed with the private half of this PEM public key: RSA (RS256) or Ed25519
    /// (EdDSA).
    #[arg(long, env = "AGENTTALLY_JWT_PUBLIC_KEY")]
    jwt_public_key: Option<PathBuf>,
    /// Require this `iss` claim in every JWT.
    #[arg(long, env = "AGENTTALLY_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Require this `aud` claim in every JWT.
    #[arg(long, env = "AGENTTALLY_JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// Accept JWTs on the ingest route too (they never ingest otherwise).
    #[arg(long, env = "AGENTTALLY_JWT_INGEST")]
    jwt_ingest: bool,
    /// Read, audit and key-admin requests per credential and per tenant per minute (0: off).
    #[arg(long, env = "AGENTTALLY_RATE_QUERY_PER_MINUTE", default_value_t = config::DEFAULT_RATE_QUERY_PER_MINUTE,
          value_parser = bounded::<u32>(config::RATE))]
    rate_query_per_minute: u32,
    /// Export requests per credential and per tenant per hour (0: off).
    #[arg(long, env = "AGENTTALLY_RATE_EXPORT_PER_HOUR", default_value_t = config::DEFAULT_RATE_EXPORT_PER_HOUR,
          value_parser = bounded::<u32>(config::RATE))]
    rate_export_per_hour: u32,
    /// Ingest requests per credential and per tenant per second (0: off, the default).
    #[arg(long, env = "AGENTTALLY_RATE_INGEST_PER_SECOND", default_value_t = config::DEFAULT_RATE_INGEST_PER_SECOND,
          value_parser = bounded::<u32>(config::RATE))]
    rate_ingest_per_second: u32,
    /// Record a `customer.dashboard_view` event when a JWT user reads (at most one per tenant
    /// and user per 30 minutes): `true` or `false`.
    #[arg(long, env = "AGENTTALLY_RECORD_DASHBOARD_VIEWS", default_value_t = true,
          action = clap::ArgAction::Set)]
    record_dashboard_views: bool,
}

fn live_token_secret(s: &str) -> Result<String, String> {
    config::check_live_token_secret(s).map(|()| s.to_string())
}

/// A budget: a non-negative decimal amount of USD.
fn budget_usd(s: &str) -> Result<rust_decimal::Decimal, String> {
    let d: rust_decimal::Decimal = s
        .trim()
        .parse()
        .map_err(|_| format!("must be a decimal amount of USD like 2500 or 99.50, got `{s}`"))?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(format!("must not be negative, got `{s}`"));
    }
    Ok(d)
}

#[derive(Debug, Subcommand)]
enum PricesCommand {
    /// Store the models of a LiteLLM-format file as the tenant's prices from a date on.
    Set(SetPricesArgs),
}

#[derive(Debug, Args)]
struct SetPricesArgs {
    #[arg(long)]
    tenant: String,
    /// LiteLLM-format JSON (`{"gpt-4o": {"input_cost_per_token": 2e-06, ...}}`).
    #[arg(long)]
    file: PathBuf,
    /// In effect from this UTC date (`2026-12-01`) or instant (RFC 3339); default now.
    #[arg(long, value_parser = effective_from)]
    from: Option<chrono::DateTime<chrono::Utc>>,
    #[command(flatten)]
    db: DbArgs,
}

/// A date (`2026-12-01`, midnight UTC) or an RFC 3339 instant.
fn effective_from(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|_| format!("must be a date like 2026-12-01 or an RFC 3339 time, got `{s}`"))
}

#[derive(Debug, Subcommand)]
enum TiersCommand {
    /// Put a tenant on a tier from now on.
    Set(SetTierArgs),
}

#[derive(Debug, Args)]
struct SetTierArgs {
    #[arg(long)]
    tenant: String,
    /// A tier of --tiers-file (or of the default set).
    #[arg(long)]
    tier: String,
    /// The tiers file `serve` uses, to check the name against.
    #[arg(long, env = "AGENTTALLY_TIERS_FILE")]
    tiers_file: Option<PathBuf>,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print it (once: only its hash is stored).
    Create(CreateKeyArgs),
}

#[derive(Debug, Args)]
struct CreateKeyArgs {
    /// Bind the key to this tenant.
    #[arg(
        long,
        conflicts_with = "platform",
        required_unless_present = "platform"
    )]
    tenant: Option<String>,
    /// Make a platform-wide key (any tenant).
    #[arg(long)]
    platform: bool,
    /// What the key may do: ingest, read, export, admin (repeat for several).
    #[arg(long = "scope", required = true, value_parser = parse_scope)]
    scopes: Vec<Scope>,
    /// A name shown in key listings (`GET /v1/keys`), e.g. who or what uses the key.
    #[arg(long)]
    name: Option<String>,
    #[command(flatten)]
    db: DbArgs,
}

fn parse_scope(s: &str) -> Result<Scope, String> {
    s.parse()
}

/// A value parser for an integer flag within `bounds`: clap reports a refusal with the flag (or
/// its environment variable's value) and exits 2, e.g. `invalid value '4294967295' for
/// '--raw-retention-days <RAW_RETENTION_DAYS>': must be between 1 and 3650, got 4294967295`.
fn bounded<T: TryFrom<u64> + Clone + Send + Sync + 'static>(
    bounds: config::Bounds,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |s| {
        let v = bounds.parse(s)?;
        // The bounds fit every T they are used with; a failure here is a bounds/type mismatch.
        T::try_from(v).map_err(|_| format!("must be between {} and {}", bounds.min, bounds.max))
    }
}

fn main() -> ExitCode {
    let env = |name: &str| std::env::var(name).ok();
    let filter =
        match config::log_filter(env("AGENTTALLY_LOG").as_deref(), env("RUST_LOG").as_deref()) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false),
        )
        .with(filter)
        .init();
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The database URL, starting the embedded cluster when none is given. The returned handle stops
/// the cluster when dropped if this process started it.
fn open_db(db: &DbArgs) -> Result<(String, Option<EmbeddedPostgres>), Error> {
    let settings: Vec<(String, String)> = db
        .embedded_pg_settings
        .iter()
        .filter(|(name, _)| !name.is_empty())
        .cloned()
        .collect();
    match &db.database_url {
        Some(_) if !settings.is_empty() => Err(Error::Config(
            "embedded_pg_settings (--embedded-pg-setting, AGENTTALLY_EMBEDDED_PG_SETTINGS): \
             applies only to the embedded cluster, and --database-url names another server; \
             configure that server itself"
                .into(),
        )),
        Some(url) => Ok((url.clone(), None)),
        None => {
            let mut opts = EmbeddedOptions::new(&db.data_dir);
            opts.fsync = !db.no_fsync;
            opts.settings = settings;
            let pg = EmbeddedPostgres::start(&opts)?;
            Ok((pg.database_url(), Some(pg)))
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.command {
        Command::Serve(args) => serve(*args).await?,
        Command::Verify(args) => return verify(args).await,
        Command::Migrate(db) => {
            let (url, _pg) = tokio::task::block_in_place(|| open_db(&db))?;
            agenttally_collector::migrate(&url).await?;
        }
        Command::Report(args) => {
            let (url, _pg) = tokio::task::block_in_place(|| open_db(&args.db))?;
            agenttally_collector::migrate(&url).await?;
            print!(
                "{}",
                agenttally_collector::report::report(&url, &args.tenants).await?
            );
        }
        Command::Prices {
            command: PricesCommand::Set(args),
        } => {
            let text = std::fs::read_to_string(&args.file).map_err(|e| {
                Error::Config(format!(
                    "--file: cannot read `{}`: {e}",
                    args.file.display()
                ))
            })?;
            let (url, _pg) = tokio::task::block_in_place(|| open_db(&args.db))?;
            let from = args.from.unwrap_or_else(chrono::Utc::now);
            let n =
                agenttally_collector::set_tenant_prices(&url, &args.tenant, &text, from).await?;
            println!(
                "tenant {}: {n} model price(s) in effect from {}",
                args.tenant,
                from.to_rfc3339()
            );
        }
        Command::Tiers {
            command: TiersCommand::Set(args),
        } => {
            let (url, _pg) = tokio::task::block_in_place(|| open_db(&args.db))?;
            agenttally_collector::set_tier(
                &url,
                &args.tenant,
                &args.tier,
                args.tiers_file.as_deref(),
            )
            .await?;
            println!("tenant {} is on tier {}", args.tenant, args.tier);
        }
        Command::Retention(args) => {
            let (url, _pg) = tokio::task::block_in_place(|| open_db(&args.db))?;
            let to = args.retention.floor();
            let before = agenttally_collector::set_retention_floor(&url, to).await?;
            let was =
                |f: Option<u32>| f.map_or("none recorded".to_string(), |d| format!("{d} days"));
            println!(
                "retention floor: raw events {} days (was {}), hourly rollups {} days (was {}); \
                 collectors started with these settings delete what is older",
                to.raw_days,
                was(before.map(|f| f.raw_days)),
                to.hourly_days,
                was(before.map(|f| f.hourly_days)),
            );
        }
        Command::DatabaseUrl(db) => {
            let (url, _pg) = tokio::task::block_in_place(|| open_db(&db))?;
            println!("{url}");
        }
        Command::Keys {
            command: KeysCommand::Create(args),
        } => {
            let (url, _pg) = tokio::task::block_in_place(|| open_db(&args.db))?;
            let tenant = if args.platform {
                None
            } else {
                args.tenant.as_deref()
            };
            let key = agenttally_collector::create_named_key(
                &url,
                tenant,
                &args.scopes,
                args.name.as_deref(),
            )
            .await?;
            println!("{key}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `verify`: exit code 0 when no difference remains (none found, or all repaired); 1 when one
/// does, when a tenant-day could not be checked, or on an error.
async fn verify(args: VerifyArgs) -> Result<ExitCode, Error> {
    let (url, _pg) = tokio::task::block_in_place(|| open_db(&args.db))?;
    agenttally_collector::migrate(&url).await?;
    let pool = agenttally_collector::store::connect_pool(&url, 1)?;
    let mut opts = verify::Options {
        tenant: args.tenant,
        since: args.since,
        raw_retention_days: args.retention.raw_retention_days,
        hourly_retention_days: args.retention.hourly_retention_days,
        repair: args.repair,
    };
    let mut report = verify::run(&pool, &opts).await?;
    print!("{report}");
    if args.repair && !report.is_clean() {
        // Check again: the exit code says what is left.
        opts.repair = false;
        report = verify::run(&pool, &opts).await?;
        print!("after repair: {report}");
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn serve(args: ServeArgs) -> Result<(), Error> {
    // clap makes the flags come in pairs.
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles { cert, key }),
        _ => None,
    };
    if let Some(files) = &tls {
        // Unusable files are refused before the embedded cluster is started.
        agenttally_collector::tls::server_config(files)?;
    }
    let a = args.access;
    let jwt = agenttally_collector::auth::JwtSettings {
        hs256_secret: a.jwt_hs256_secret,
        public_key: a.jwt_public_key,
        issuer: a.jwt_issuer,
        audience: a.jwt_audience,
        ingest: a.jwt_ingest,
    };
    // Before a database is opened: a bad key file is a mistake to report at once.
    jwt.verifier().map_err(Error::Config)?;
    let (url, pg) = tokio::task::block_in_place(|| open_db(&args.db))?;
    let mut cfg = ServerConfig::new(url);
    cfg.listen = args.listen;
    cfg.raw_retention_days = args.retention.raw_retention_days;
    cfg.hourly_retention_days = args.retention.hourly_retention_days;
    cfg.commit_interval = Duration::from_millis(args.commit_interval_ms);
    cfg.writers = args.writers;
    cfg.price_file = args.price_file;
    cfg.savings_baselines = args.savings_baseline;
    cfg.monthly_budget_usd = args.monthly_budget_usd;
    cfg.tiers_file = args.tiers_file;
    cfg.tls = tls;
    let https = cfg.tls.is_some();
    cfg.jwt = jwt;
    cfg.rate_query_per_minute = a.rate_query_per_minute;
    cfg.rate_export_per_hour = a.rate_export_per_hour;
    cfg.rate_ingest_per_second = a.rate_ingest_per_second;
    cfg.record_dashboard_views = a.record_dashboard_views;
    cfg.max_concurrent_exports = args.max_concurrent_exports;
    cfg.export_link_ttl = Duration::from_secs(args.export_link_ttl);
    cfg.erasure_grace_days = args.erasure_grace_days;
    cfg.verify_delay = Duration::from_secs(args.verify_delay);
    cfg.verify_interval = Duration::from_secs(args.verify_interval);
    cfg.compact_rollups = args.compact_rollups;
    cfg.price_refresh = Duration::from_secs(args.price_refresh);
    cfg.live_max_connections_per_tenant = args.live_max_connections_per_tenant;
    cfg.live_max_connections = args.live_max_connections;
    cfg.live_token_secret = args.live_token_secret;
    let server = Server::start(cfg).await?;
    // Tests and scripts read the bound address from this line (plain HTTP: the address alone,
    // as it always was; HTTPS: the URL, so nobody takes it for plain HTTP).
    if https {
        println!("listening on {}", server.url());
    } else {
        println!("listening on {}", server.addr());
    }
    let _ = std::io::stdout().flush();
    shutdown_signal().await;
    tracing::info!("shutting down: draining the writer");
    let result = server.shutdown(Duration::from_secs(60)).await;
    if let Some(pg) = pg {
        tokio::task::block_in_place(|| pg.shutdown())?;
    }
    result
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
