//! Accuracy checks: the rollups of a window of whole UTC days recomputed from the raw rows and
//! compared with the stored ones, row by row and column by column, and repaired when asked. Used
//! by `agenttally-collector verify` and by the collector's daily check (`lib.rs`, gauges in
//! `/metrics`).
//!
//! The recomputation runs ingest's own code on the raw rows read back — `rollups::deltas` for
//! the usage and the agent rollups (with `pricing::is_itemized` and the histogram of
//! `store/histogram.rs`), `rollups::hour_totals` of the usage deltas for the hour totals, and
//! `savings::deltas` on the baseline prices stored on each row at ingest — so verify cannot
//! disagree with ingest about what an event adds. One tenant-day at a time, under row-level
//! security (`TenantTx`), in one read-only REPEATABLE READ snapshot: the writer commits raw rows
//! and their rollup deltas in one transaction, so within one snapshot they agree however much
//! ingest goes on meanwhile.
//!
//! A repair never writes a value computed before it took its locks, since events committed in
//! between would be lost. It adds a correction — `recomputed − stored`, both of the snapshot —
//! to each differing key as it is once its rows are locked `FOR UPDATE` (the lock the writer
//! takes, in the writer's table and key order), so events committed after the snapshot stay
//! counted exactly once. A key of a daily table can have two rows — one moved into its month
//! table (`compact`) and one a late event added since — which count together: they are read as
//! their sum, and a repair replaces them with one row of the corrected total. Repairs of one tenant are serialised by a session advisory lock held from before the
//! snapshot until after the commit, so two repairs cannot add the same correction twice.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::Ordering;

use agenttally::{AnalyticsEvent, CostStatus, EventType, Usage};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use deadpool_postgres::{Object, Pool};
use rust_decimal::Decimal;
use tokio_postgres::types::{Json, ToSql};
use tokio_postgres::Row;
use uuid::Uuid;

use super::rollups::{self, Dims, Grain};
use super::{classify, savings, to_i64, ErrorClass, TenantTx};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::pricing::{BaselineCost, SavingsPricer};

/// A rollup row's key in any of the seven tables: `(bucket, event_type or baseline, provider or
/// agent_id, model, task_type, itemized or success)`; absent dimensions (and the slots the agent
/// rollups have no column for) are `""`, and the hour totals (keyed by bucket alone) leave the
/// others `""` and `false`.
pub type Key = (DateTime<Utc>, String, String, String, String, bool);

/// How a value column is compared and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Usd,
    Hist,
}

/// One rollup table: its key columns (in `Key` order; `None` for a slot it has no column for)
/// and value columns, in the order `Val`s are kept.
#[derive(Debug)]
struct Table {
    name: &'static str,
    key: [Option<&'static str>; 6],
    cols: &'static [(&'static str, Kind)],
    grain: Grain,
}

const SAVINGS_KEY: [Option<&str>; 6] = [
    Some("bucket"),
    Some("baseline"),
    Some("provider"),
    Some("model"),
    Some("task_type"),
    Some("success"),
];

const HOUR_TOTALS_KEY: [Option<&str>; 6] = [Some("bucket"), None, None, None, None, None];

const HOUR_TOTALS_COLS: &[(&str, Kind)] = &[
    ("executions", Kind::Int),
    ("failures", Kind::Int),
    ("api_calls", Kind::Int),
    ("cost_usd", Kind::Usd),
    ("unpriced_events", Kind::Int),
    ("tokens", Kind::Int),
];

const USAGE_COLS: &[(&str, Kind)] = &[
    ("events", Kind::Int),
    ("successes", Kind::Int),
    ("cost_usd", Kind::Usd),
    ("costed_events", Kind::Int),
    ("unpriced_events", Kind::Int),
    ("unpriced_tokens", Kind::Int),
    ("input_tokens", Kind::Int),
    ("cached_input_tokens", Kind::Int),
    ("cache_write_tokens", Kind::Int),
    ("cache_write_1h_tokens", Kind::Int),
    ("output_tokens", Kind::Int),
    ("reasoning_tokens", Kind::Int),
    ("requests", Kind::Int),
    ("duration_count", Kind::Int),
    ("duration_sum_ms", Kind::Int),
    ("duration_hist", Kind::Hist),
    ("queue_count", Kind::Int),
    ("queue_sum_ms", Kind::Int),
    ("queue_hist", Kind::Hist),
];

const SAVINGS_COLS: &[(&str, Kind)] = &[
    ("tasks", Kind::Int),
    ("compared", Kind::Int),
    ("actual_unpriced", Kind::Int),
    ("baseline_unpriced", Kind::Int),
    ("unpriced_tokens", Kind::Int),
    ("estimated", Kind::Int),
    ("actual_usd", Kind::Usd),
    ("baseline_usd", Kind::Usd),
];

/// `rollups::TABLES` (a test checks), each with its key and columns: in the order the writer
/// takes its locks, so a repair and a commit wait for each other rather than deadlock.
const TABLES: [Table; 7] = [
    Table {
        name: "rollup_hourly",
        key: Dims::Usage.key(),
        cols: USAGE_COLS,
        grain: Grain::Hourly,
    },
    Table {
        name: "rollup_daily",
        key: Dims::Usage.key(),
        cols: USAGE_COLS,
        grain: Grain::Daily,
    },
    Table {
        name: "rollup_agent_hourly",
        key: Dims::Agent.key(),
        cols: USAGE_COLS,
        grain: Grain::Hourly,
    },
    Table {
        name: "rollup_agent_daily",
        key: Dims::Agent.key(),
        cols: USAGE_COLS,
        grain: Grain::Daily,
    },
    Table {
        name: "rollup_savings_hourly",
        key: SAVINGS_KEY,
        cols: SAVINGS_COLS,
        grain: Grain::Hourly,
    },
    Table {
        name: "rollup_savings_daily",
        key: SAVINGS_KEY,
        cols: SAVINGS_COLS,
        grain: Grain::Daily,
    },
    Table {
        name: "rollup_tenant_hourly",
        key: HOUR_TOTALS_KEY,
        cols: HOUR_TOTALS_COLS,
        grain: Grain::Hourly,
    },
];

/// One column's value. A stored cost or histogram that cannot be read is kept as its text: it
/// differs from any recomputed value and is shown as it is.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Int(i64),
    Usd(Result<Decimal, String>),
    Hist(Result<BTreeMap<u32, i64>, String>),
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Val::Int(n) => write!(f, "{n}"),
            Val::Usd(Ok(d)) => write!(f, "{d}"),
            Val::Hist(Ok(h)) => {
                let text = serde_json::to_string(h).map_err(|_| fmt::Error)?;
                f.write_str(&text)
            }
            Val::Usd(Err(raw)) | Val::Hist(Err(raw)) => write!(f, "{raw} (unreadable)"),
        }
    }
}

type Rows = BTreeMap<Key, Vec<Val>>;

/// What differs between a stored rollup row and the one recomputed from raw rows.
#[derive(Debug, Clone, PartialEq)]
pub enum DiffKind {
    /// Raw rows exist for the key, the rollup row does not.
    Missing,
    /// A rollup row without any raw row behind it.
    Extra,
    /// Both exist; this column differs.
    Column {
        column: &'static str,
        stored: String,
        recomputed: String,
    },
}

/// One difference, by tenant, table and key.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    pub tenant: String,
    pub table: &'static str,
    pub key: Key,
    pub kind: DiffKind,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (b, k2, p, m, t, k6) = &self.key;
        if self.table == "rollup_tenant_hourly" {
            write!(
                f,
                "{} {} (bucket {}): ",
                self.tenant,
                self.table,
                b.format("%Y-%m-%dT%H:%MZ"),
            )?;
        } else if self.table.starts_with("rollup_agent") {
            write!(
                f,
                "{} {} (bucket {}, event_type {k2:?}, agent_id {p:?}, itemized {k6}): ",
                self.tenant,
                self.table,
                b.format("%Y-%m-%dT%H:%MZ"),
            )?;
        } else {
            let (n2, n6) = if self.table.starts_with("rollup_savings") {
                ("baseline", "success")
            } else {
                ("event_type", "itemized")
            };
            write!(
                f,
                "{} {} (bucket {}, {n2} {k2:?}, provider {p:?}, model {m:?}, task_type {t:?}, \
                 {n6} {k6}): ",
                self.tenant,
                self.table,
                b.format("%Y-%m-%dT%H:%MZ"),
            )?;
        }
        match &self.kind {
            DiffKind::Missing => f.write_str("missing row (raw rows exist)"),
            DiffKind::Extra => f.write_str("extra row (no raw rows)"),
            DiffKind::Column {
                column,
                stored,
                recomputed,
            } => write!(f, "{column}: stored {stored}, recomputed {recomputed}"),
        }
    }
}

/// Where the window starts: `7d` is 00:00 UTC seven days before today, `2026-11-01` that day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    DaysAgo(u32),
    Date(NaiveDate),
}

/// Ten years, as the retention settings.
const MAX_DAYS_AGO: u32 = 3_650;

impl FromStr for Since {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        if let Some(n) = t.strip_suffix('d') {
            return match n.parse::<u32>() {
                Ok(n) if n <= MAX_DAYS_AGO => Ok(Since::DaysAgo(n)),
                _ => Err(format!(
                    "since: must be a number of days from 0d to {MAX_DAYS_AGO}d or a date like \
                     2026-11-01, got `{s}`"
                )),
            };
        }
        NaiveDate::parse_from_str(t, "%Y-%m-%d")
            .map(Since::Date)
            .map_err(|_| {
                format!(
                    "since: must be a number of days like 7d or a date like 2026-11-01, got `{s}`"
                )
            })
    }
}

impl Since {
    /// The first day of the window, given today (UTC).
    fn first_day(self, today: NaiveDate) -> Result<NaiveDate> {
        let day = match self {
            Since::DaysAgo(n) => today - TimeDelta::days(i64::from(n.min(MAX_DAYS_AGO))),
            Since::Date(d) => d,
        };
        if day > today {
            return Err(Error::Config(format!(
                "since: must not be after today ({today}, UTC), got {day}"
            )));
        }
        if (today - day).num_days() > i64::from(MAX_DAYS_AGO) {
            return Err(Error::Config(format!(
                "since: must be at most {MAX_DAYS_AGO} days ago, got {day}"
            )));
        }
        Ok(day)
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct Options {
    /// One tenant; `None`: every tenant with rollups or raw rows in the window.
    pub tenant: Option<String>,
    pub since: Since,
    /// The collector's retention settings: daily rows are checked only for days whose raw rows
    /// are all still kept, hourly rows only within the hourly retention.
    pub raw_retention_days: u32,
    pub hourly_retention_days: u32,
    /// Correct every differing row (see the module docs).
    pub repair: bool,
}

/// The outcome of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// Tenants checked.
    pub tenants: usize,
    /// Days of the window whose raw rows could be read.
    pub days: usize,
    /// Rollup rows compared (stored or recomputed, all six tables).
    pub rows_checked: u64,
    /// Every difference found (before any repair).
    pub differences: Vec<Difference>,
    /// Tenant-days that could not be recomputed: a raw row cannot be read back (which ingest
    /// never writes). Like a difference, this fails the check.
    pub unreadable: Vec<String>,
    /// Rows corrected by `--repair`.
    pub repaired_rows: u64,
    /// What was not checked or not repaired, and why.
    pub notes: Vec<String>,
}

impl Report {
    /// No difference and nothing that could not be checked.
    pub fn is_clean(&self) -> bool {
        self.differences.is_empty() && self.unreadable.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "verified {} rollup rows over {} days, {} tenants: {} differences",
            self.rows_checked,
            self.days,
            self.tenants,
            self.differences.len()
        )?;
        for d in &self.differences {
            writeln!(f, "  {d}")?;
        }
        for u in &self.unreadable {
            writeln!(f, "could not check {u}")?;
        }
        if self.repaired_rows > 0 {
            writeln!(f, "repaired {} rollup rows", self.repaired_rows)?;
        }
        for n in &self.notes {
            writeln!(f, "note: {n}")?;
        }
        Ok(())
    }
}

/// Recompute and compare the rollups of `opts`' window (and repair them if asked).
pub async fn run(pool: &Pool, opts: &Options) -> Result<Report> {
    let today = Utc::now().date_naive();
    let first = opts.since.first_day(today)?;
    // The oldest day whose raw partition retention keeps today (it drops days before it).
    let raw_first = today - TimeDelta::days(i64::from(opts.raw_retention_days));
    // Hourly rows are deleted an hour at a time once older than the retention: only days
    // entirely inside it for the rest of today are compared.
    let hourly_first =
        today - TimeDelta::days(i64::from(opts.hourly_retention_days)) + TimeDelta::days(1);
    let mut report = Report::default();
    if first < raw_first {
        report.notes.push(format!(
            "rollups of {first} .. {} not checked: their raw rows are past the raw retention \
             ({} days)",
            raw_first - TimeDelta::days(1),
            opts.raw_retention_days
        ));
    }
    let first = first.max(raw_first);
    if first < hourly_first {
        report.notes.push(format!(
            "hourly rollups of {first} .. {} not checked: past the hourly retention ({} days)",
            (hourly_first - TimeDelta::days(1)).min(today),
            opts.hourly_retention_days
        ));
    }
    let mut client = pool.get().await?;
    let tenants = match &opts.tenant {
        Some(t) => vec![t.clone()],
        None => tenants_in_window(&client, day_start(first)).await?,
    };
    report.tenants = tenants.len();
    let mut days_read = BTreeSet::new();
    for tenant in &tenants {
        let mut day = first;
        while day <= today {
            let hourly = day >= hourly_first;
            let snapshot = match read_day(&mut client, tenant, day, hourly).await {
                Ok(s) => s,
                // Ingest never writes such a row; the rest of the window is still checked.
                Err(Error::Data(why)) => {
                    report.unreadable.push(format!("{tenant} {day}: {why}"));
                    day += TimeDelta::days(1);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if snapshot.purged {
                report.notes.push(format!(
                    "{tenant} {day}: not checked: raw rows of the day were deleted by an \
                     erasure (the rollups keep their totals)"
                ));
            } else if !snapshot.partition {
                let stored: usize = snapshot.stored.iter().map(BTreeMap::len).sum();
                if stored > 0 {
                    report.notes.push(format!(
                        "{tenant} {day}: {stored} rollup rows not checked: the day's raw \
                         partition is gone"
                    ));
                }
            } else {
                days_read.insert(day);
                let mut diffs = Vec::new();
                report.rows_checked += compare(tenant, &snapshot, &mut diffs);
                if opts.repair && !diffs.is_empty() {
                    let (rows, notes) = repair_day(&mut client, tenant, day, hourly).await?;
                    report.repaired_rows += rows;
                    report.notes.extend(notes);
                }
                report.differences.extend(diffs);
            }
            day += TimeDelta::days(1);
        }
    }
    report.days = days_read.len();
    Ok(report)
}

/// Differences (and unreadable tenant-days) a failed daily check lists in the log; `verify`
/// prints them all.
const LOGGED_DIFFERENCES: usize = 20;

/// The collector's daily check: every tenant, the days still in raw retention, read-only. The
/// result goes to `/metrics` (a run that fails leaves the last result there) and to the log.
pub async fn daily_check(pool: &Pool, raw_days: u32, hourly_days: u32, metrics: &Metrics) {
    let opts = Options {
        tenant: None,
        since: Since::DaysAgo(raw_days),
        raw_retention_days: raw_days,
        hourly_retention_days: hourly_days,
        repair: false,
    };
    let r = match run(pool, &opts).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("verify (rollups against raw rows) failed, will run again: {e}");
            return;
        }
    };
    let n = r.differences.len() as u64;
    metrics
        .verify_rows_checked
        .store(r.rows_checked, Ordering::Relaxed);
    metrics.verify_differences.store(n, Ordering::Relaxed);
    metrics
        .verify_last_run
        .store(Utc::now().timestamp(), Ordering::Relaxed);
    if r.is_clean() {
        tracing::info!(
            "verify: {} rollup rows over {} days, {} tenants match the raw rows",
            r.rows_checked,
            r.days,
            r.tenants
        );
        return;
    }
    let mut listed = String::new();
    for d in r.differences.iter().take(LOGGED_DIFFERENCES) {
        listed.push_str(&format!("\n  {d}"));
    }
    for u in r.unreadable.iter().take(LOGGED_DIFFERENCES) {
        listed.push_str(&format!("\n  could not check {u}"));
    }
    tracing::warn!(
        "verify: {n} differences between rollups and raw rows over {} days \
         (`agenttally-collector verify --repair` corrects them):{listed}",
        r.days
    );
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(chrono::NaiveTime::MIN).and_utc()
}

/// Tenants with rollup rows or raw rows from `from` on. Read as the collector's own user, across
/// tenants (an operator's listing, as the report's); the raw rows by a skip scan of the
/// `(tenant_id, ts)` index, one probe per tenant, rather than a scan of every row.
async fn tenants_in_window(client: &Object, from: DateTime<Utc>) -> Result<Vec<String>> {
    let rows = client
        .query(
            "WITH RECURSIVE raw(t) AS (
                 SELECT min(tenant_id) FROM events WHERE ts >= $1
                 UNION ALL
                 SELECT (SELECT min(tenant_id) FROM events WHERE tenant_id > raw.t AND ts >= $1)
                 FROM raw WHERE raw.t IS NOT NULL)
             SELECT t FROM raw WHERE t IS NOT NULL
             UNION SELECT tenant_id FROM rollup_daily WHERE bucket >= $1
             UNION SELECT tenant_id FROM rollup_hourly WHERE bucket >= $1
             UNION SELECT tenant_id FROM rollup_agent_daily WHERE bucket >= $1
             UNION SELECT tenant_id FROM rollup_agent_hourly WHERE bucket >= $1
             UNION SELECT tenant_id FROM rollup_savings_daily WHERE bucket >= $1
             UNION SELECT tenant_id FROM rollup_savings_hourly WHERE bucket >= $1
             ORDER BY 1",
            &[&from],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// The stored and recomputed rows of one tenant-day, from one snapshot. The hourly tables are
/// left empty unless `hourly`.
#[derive(Debug, Default)]
struct DaySnapshot {
    /// Whether the day's raw partition exists (else nothing can be recomputed).
    partition: bool,
    /// Whether an erasure deleted raw rows of the day (`purged_days`): the rollups keep the
    /// totals of rows that are gone, so the day cannot be recomputed.
    purged: bool,
    stored: [Rows; 7],
    recomputed: [Rows; 7],
}

/// Raw rows are read in pages of this many, so a large tenant-day never sits in memory whole.
const PAGE_ROWS: i32 = 5_000;

/// What the rollups read of a raw row (of the metadata only `calls`, which decides whether a
/// terminal event is itemized).
const RAW_SQL: &str = "SELECT id, ts, event_type, provider, model, task_type, success, cost_usd,
        cost_status, duration_ms, queue_ms, input_tokens, cached_input_tokens, cache_write_tokens,
        cache_write_1h_tokens, output_tokens, reasoning_tokens, requests,
        metadata -> 'calls' AS calls, baselines, agent_id
    FROM events WHERE tenant_id = $1 AND ts >= $2 AND ts < $3";

async fn read_day(
    client: &mut Object,
    tenant: &str,
    day: NaiveDate,
    hourly: bool,
) -> Result<DaySnapshot> {
    let (from, to) = (day_start(day), day_start(day + TimeDelta::days(1)));
    let tx = TenantTx::begin_snapshot(client).await?;
    tx.switch_tenant(tenant).await?;
    let raw = tx.prepare_cached(RAW_SQL).await?;
    let portal = tx.pg().bind(&raw, &[&tenant, &from, &to]).await?;
    let mut acc = Recompute::default();
    loop {
        let page = tx.pg().query_portal(&portal, PAGE_ROWS).await?;
        acc.add_page(tenant, &page)?;
        if page.len() < PAGE_ROWS as usize {
            break;
        }
    }
    // After the read: had the partition been there, this transaction would hold a lock on it
    // that keeps retention from dropping it until the commit.
    let partition: bool = tx
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("events_{}", day.format("%Y%m%d"))],
        )
        .await?
        .get(0);
    // In the same snapshot as the rows read: a purge commits its rows' deletion and this record
    // together.
    let purged: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM purged_days WHERE tenant_id = $1 AND day = $2)",
            &[&tenant, &day],
        )
        .await?
        .get(0);
    let mut out = DaySnapshot {
        partition,
        purged,
        ..DaySnapshot::default()
    };
    for (i, t) in TABLES.iter().enumerate() {
        if t.grain == Grain::Hourly && !hourly {
            continue;
        }
        let sql = format!(
            "SELECT {} FROM {} WHERE tenant_id = $1 AND bucket >= $2 AND bucket < $3",
            select_list(t),
            t.name
        );
        for row in tx.query(&sql, &[&tenant, &from, &to]).await? {
            let (key, vals) = parse_row(t, &row)?;
            add_row(t, &mut out.stored[i], key, vals);
        }
    }
    tx.commit().await?;
    let [hourly_usage, daily_usage, hourly_agent, daily_agent, hourly_savings, daily_savings, hour_totals] =
        &mut out.recomputed;
    if hourly {
        *hour_totals = acc.hour_totals();
        *hourly_usage = acc
            .usage
            .iter()
            .map(|(k, d)| (k.clone(), usage_vals(d)))
            .collect();
        *hourly_agent = acc
            .agent
            .iter()
            .map(|(k, d)| (k.clone(), usage_vals(d)))
            .collect();
        *hourly_savings = acc
            .savings
            .iter()
            .map(|(k, d)| (k.clone(), savings_vals(d)))
            .collect();
    }
    *daily_usage = to_daily(&acc.usage, rollups::Delta::merge)
        .iter()
        .map(|(k, d)| (k.clone(), usage_vals(d)))
        .collect();
    *daily_agent = to_daily(&acc.agent, rollups::Delta::merge)
        .iter()
        .map(|(k, d)| (k.clone(), usage_vals(d)))
        .collect();
    *daily_savings = to_daily(&acc.savings, savings::Delta::merge)
        .iter()
        .map(|(k, d)| (k.clone(), savings_vals(d)))
        .collect();
    Ok(out)
}

/// The hourly sums of a tenant-day, built page by page with ingest's functions.
#[derive(Default)]
struct Recompute {
    usage: BTreeMap<Key, rollups::Delta>,
    agent: BTreeMap<Key, rollups::Delta>,
    savings: BTreeMap<Key, savings::Delta>,
}

/// One raw row's baseline prices as stored at ingest: the names and their prices, in order.
type Baselines = (Vec<String>, Vec<BaselineCost>);

impl Recompute {
    fn add_page(&mut self, tenant: &str, page: &[Row]) -> Result<()> {
        let mut events = Vec::with_capacity(page.len());
        let mut prices: Vec<Option<Baselines>> = Vec::with_capacity(page.len());
        for row in page {
            let (e, b) = event_of(tenant, row)?;
            // Ingest prices (and stores baselines for) the savings tasks only; rows stored
            // before baselines existed have none and were never in the savings rollups.
            prices.push(b.filter(|_| SavingsPricer::is_task(&e)));
            events.push(e);
        }
        for (dims, acc) in [
            (Dims::Usage, &mut self.usage),
            (Dims::Agent, &mut self.agent),
        ] {
            for ((b, et, p, m, t, itemized), d) in
                rollups::deltas(Grain::Hourly, dims, events.iter())
            {
                let key = (
                    b,
                    et.to_string(),
                    p.to_string(),
                    m.to_string(),
                    t.to_string(),
                    itemized,
                );
                acc.entry(key).or_default().merge(&d);
            }
        }
        // `savings::deltas` takes one list of baseline names for all its events; a baseline
        // configured later covers only later events, so group by the names each row carries.
        let mut groups: BTreeMap<&[String], Vec<usize>> = BTreeMap::new();
        for (i, p) in prices.iter().enumerate() {
            if let Some((names, _)) = p {
                groups.entry(names.as_slice()).or_default().push(i);
            }
        }
        for (names, idx) in groups {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let tasks = idx.iter().map(|&i| {
                (
                    &events[i],
                    prices[i].as_ref().map(|(_, costs)| costs.as_slice()),
                )
            });
            for ((b, n, p, m, t, s), d) in savings::deltas(Grain::Hourly, &names, tasks) {
                let key = (
                    b,
                    n.to_string(),
                    p.to_string(),
                    m.to_string(),
                    t.to_string(),
                    s,
                );
                self.savings.entry(key).or_default().merge(&d);
            }
        }
        Ok(())
    }

    /// `rollups::hour_totals` of the recomputed hourly usage, keyed as `HOUR_TOTALS_KEY` reads.
    fn hour_totals(&self) -> Rows {
        let hourly = self
            .usage
            .iter()
            .map(|((b, t, _, _, _, itemized), d)| (*b, t.as_str(), *itemized, d));
        rollups::hour_totals(hourly)
            .into_iter()
            .map(|(b, h)| {
                let key = (
                    b,
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    false,
                );
                let vals = vec![
                    Val::Int(h.executions),
                    Val::Int(h.failures),
                    Val::Int(h.api_calls),
                    Val::Usd(Ok(h.cost_usd)),
                    Val::Int(h.unpriced_events),
                    Val::Int(h.tokens),
                ];
                (key, vals)
            })
            .collect()
    }
}

/// The daily sums of hourly ones (keys truncated to the day).
fn to_daily<D: Clone + Default>(
    hourly: &BTreeMap<Key, D>,
    merge: fn(&mut D, &D),
) -> BTreeMap<Key, D> {
    let mut out: BTreeMap<Key, D> = BTreeMap::new();
    for ((b, k2, p, m, t, k6), d) in hourly {
        let key = (
            Grain::Daily.bucket(*b),
            k2.clone(),
            p.clone(),
            m.clone(),
            t.clone(),
            *k6,
        );
        merge(out.entry(key).or_default(), d);
    }
    out
}

/// From here on a `metadata.calls` read back as an integer may have been a float when ingest
/// decided `is_itemized`: serde_json writes an integral float below 1e16 with its `.0` (which
/// jsonb keeps), but `1e16` and up in exponent form, which jsonb stores as a plain integer.
const AMBIGUOUS_CALLS: u64 = 10_000_000_000_000_000;

fn bad_row(id: Uuid, what: impl fmt::Display) -> Error {
    Error::Data(format!("events row {id}: {what}"))
}

/// Column `i` of raw row `id`; a value its type cannot hold (a cost beyond `Decimal`'s range)
/// was not written by ingest, and says so.
fn col<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, i: usize, id: Uuid) -> Result<T> {
    row.try_get(i).map_err(|e| {
        let name = row.columns().get(i).map_or("?", |c| c.name());
        bad_row(id, format!("{name}: {e}"))
    })
}

/// A raw row read back as the event ingest stored, as far as the rollups read it (metadata only
/// `calls`, which decides `is_itemized`), with its stored baseline prices.
fn event_of(tenant: &str, row: &Row) -> Result<(AnalyticsEvent, Option<Baselines>)> {
    let id: Uuid = row.try_get(0)?;
    let event_type: String = col(row, 2, id)?;
    let event_type = EventType::from_str(&event_type).map_err(|e| bad_row(id, e))?;
    let mut e = AnalyticsEvent::new(event_type, tenant);
    e.id = id;
    e.timestamp = col(row, 1, id)?;
    e.provider = col(row, 3, id)?;
    e.model = col(row, 4, id)?;
    e.task_type = col(row, 5, id)?;
    e.agent_id = col(row, 20, id)?;
    e.success = col(row, 6, id)?;
    e.cost_usd = col(row, 7, id)?;
    let status: Option<String> = col(row, 8, id)?;
    e.cost_status = status
        .map(|s| CostStatus::from_str(&s))
        .transpose()
        .map_err(|err| bad_row(id, err))?;
    e.duration_ms = col(row, 9, id)?;
    e.queue_ms = col(row, 10, id)?;
    let mut tokens = [0u64; 7];
    let mut any = false;
    for (i, slot) in tokens.iter_mut().enumerate() {
        let v: Option<i64> = col(row, 11 + i, id)?;
        if let Some(v) = v {
            any = true;
            *slot = u64::try_from(v)
                .map_err(|_| bad_row(id, format!("usage: a negative token count {v}")))?;
        }
    }
    // Ingest stores all seven buckets or none (no usage).
    e.usage = any.then_some(Usage {
        input_tokens: tokens[0],
        cached_input_tokens: tokens[1],
        cache_write_tokens: tokens[2],
        cache_write_1h_tokens: tokens[3],
        output_tokens: tokens[4],
        reasoning_tokens: tokens[5],
        requests: tokens[6],
    });
    let calls: Option<Json<serde_json::Value>> = col(row, 18, id)?;
    if let Some(Json(calls)) = calls {
        if calls.as_u64().is_some_and(|n| n >= AMBIGUOUS_CALLS) {
            return Err(bad_row(
                id,
                format!(
                    "metadata.calls: {calls} may have been sent as an integer (itemized) or as a \
                     float (not itemized); the stored row cannot tell"
                ),
            ));
        }
        e.metadata.insert("calls".into(), calls);
    }
    let baselines: Option<Json<serde_json::Value>> = col(row, 19, id)?;
    let baselines = baselines
        .map(|Json(b)| parse_baselines(&b).map_err(|err| bad_row(id, err)))
        .transpose()?;
    Ok((e, baselines))
}

/// `events.baselines` (`{"<name>": {"status", "usd", "model"}}`, `SavingsPricer::to_json`) back
/// into names and prices.
fn parse_baselines(v: &serde_json::Value) -> std::result::Result<Baselines, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("baselines: must be an object, got {v}"))?;
    let mut names = Vec::with_capacity(obj.len());
    let mut costs = Vec::with_capacity(obj.len());
    for (name, c) in obj {
        let status = c
            .get("status")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("baselines.{name}.status: missing"))?;
        let status =
            CostStatus::from_str(status).map_err(|e| format!("baselines.{name}.status: {e}"))?;
        let usd = match c.get("usd") {
            None | Some(serde_json::Value::Null) => None,
            Some(u) => Some(
                u.as_str()
                    .and_then(|s| Decimal::from_str(s).ok())
                    .ok_or_else(|| {
                        format!("baselines.{name}.usd: must be a decimal string, got {u}")
                    })?,
            ),
        };
        let model = c
            .get("model")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string);
        names.push(name.clone());
        costs.push(BaselineCost { status, usd, model });
    }
    Ok((names, costs))
}

fn usage_vals(d: &rollups::Delta) -> Vec<Val> {
    let t = &d.tokens;
    let int = Val::Int;
    vec![
        int(d.events),
        int(d.successes),
        Val::Usd(Ok(d.cost_usd)),
        int(d.costed_events),
        int(d.unpriced_events),
        int(d.unpriced_tokens),
        int(to_i64(t.input_tokens)),
        int(to_i64(t.cached_input_tokens)),
        int(to_i64(t.cache_write_tokens)),
        int(to_i64(t.cache_write_1h_tokens)),
        int(to_i64(t.output_tokens)),
        int(to_i64(t.reasoning_tokens)),
        int(to_i64(t.requests)),
        int(d.duration_count),
        int(d.duration_sum_ms),
        Val::Hist(Ok(d.duration_hist.0.clone())),
        int(d.queue_count),
        int(d.queue_sum_ms),
        Val::Hist(Ok(d.queue_hist.0.clone())),
    ]
}

fn savings_vals(d: &savings::Delta) -> Vec<Val> {
    vec![
        Val::Int(d.tasks),
        Val::Int(d.compared),
        Val::Int(d.actual_unpriced),
        Val::Int(d.baseline_unpriced),
        Val::Int(d.unpriced_tokens),
        Val::Int(d.estimated),
        Val::Usd(Ok(d.actual_usd)),
        Val::Usd(Ok(d.baseline_usd)),
    ]
}

/// The key columns, then the value columns (money and histograms as text, read by `parse_row`).
fn select_list(t: &Table) -> String {
    // A slot without a column reads back as `""`, as the recomputed keys hold it.
    let mut cols: Vec<String> = t
        .key
        .iter()
        .enumerate()
        .map(|(i, k)| match k {
            Some(k) => k.to_string(),
            // The sixth slot is a boolean.
            None if i == 5 => "false".to_string(),
            None => "''::text".to_string(),
        })
        .collect();
    for (c, kind) in t.cols {
        cols.push(match kind {
            Kind::Int => c.to_string(),
            Kind::Usd | Kind::Hist => format!("{c}::text"),
        });
    }
    cols.join(", ")
}

fn parse_row(t: &Table, row: &Row) -> Result<(Key, Vec<Val>)> {
    let key = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
    );
    let mut vals = Vec::with_capacity(t.cols.len());
    for (i, (_, kind)) in t.cols.iter().enumerate() {
        let col = 6 + i;
        vals.push(match kind {
            Kind::Int => Val::Int(row.try_get(col)?),
            Kind::Usd => {
                let text: String = row.try_get(col)?;
                Val::Usd(Decimal::from_str(&text).map_err(|_| text))
            }
            Kind::Hist => {
                let text: String = row.try_get(col)?;
                Val::Hist(serde_json::from_str(&text).map_err(|_| text))
            }
        });
    }
    Ok((key, vals))
}

/// Compare every table of `day`, pushing the differences; returns the rows compared.
fn compare(tenant: &str, day: &DaySnapshot, out: &mut Vec<Difference>) -> u64 {
    let mut rows = 0;
    for (i, t) in TABLES.iter().enumerate() {
        let (stored, recomputed) = (&day.stored[i], &day.recomputed[i]);
        let keys: BTreeSet<&Key> = stored.keys().chain(recomputed.keys()).collect();
        rows += keys.len() as u64;
        for key in keys {
            let diff = |kind| Difference {
                tenant: tenant.to_string(),
                table: t.name,
                key: key.clone(),
                kind,
            };
            match (stored.get(key), recomputed.get(key)) {
                (None, Some(_)) => out.push(diff(DiffKind::Missing)),
                (Some(_), None) => out.push(diff(DiffKind::Extra)),
                (Some(s), Some(r)) => {
                    for (((column, _), s), r) in t.cols.iter().zip(s).zip(r) {
                        if s != r {
                            out.push(diff(DiffKind::Column {
                                column,
                                stored: s.to_string(),
                                recomputed: r.to_string(),
                            }));
                        }
                    }
                }
                (None, None) => {}
            }
        }
    }
    rows
}

/// Held (per session) by a repair of one tenant from before its snapshot until after its commit.
const REPAIR_LOCK_SQL: &str =
    "SELECT pg_advisory_lock(hashtext('agenttally_verify_repair'), hashtext($1))";
const REPAIR_UNLOCK_SQL: &str =
    "SELECT pg_advisory_unlock(hashtext('agenttally_verify_repair'), hashtext($1))";

/// Attempts of a repair that meets a deadlock or serialization failure (class 40).
const REPAIR_ATTEMPTS: u32 = 4;

/// Repair one tenant-day: returns the rows corrected and notes on rows left as they are.
async fn repair_day(
    client: &mut Object,
    tenant: &str,
    day: NaiveDate,
    hourly: bool,
) -> Result<(u64, Vec<String>)> {
    client.query_one(REPAIR_LOCK_SQL, &[&tenant]).await?;
    let mut attempt = 0;
    let result = loop {
        attempt += 1;
        // A fresh snapshot under the lock: the corrections are computed from it.
        let r = match read_day(client, tenant, day, hourly).await {
            // Retention dropped the day meanwhile: its rollups are all that is left of it.
            Ok(snapshot) if !snapshot.partition => Ok((
                0,
                vec![format!(
                    "{tenant} {day}: not repaired: the day's raw partition is gone"
                )],
            )),
            Ok(snapshot) if snapshot.purged => Ok((
                0,
                vec![format!(
                    "{tenant} {day}: not repaired: raw rows of the day were deleted by an erasure"
                )],
            )),
            Ok(snapshot) => apply(client, tenant, &snapshot).await.map_err(Error::from),
            Err(e) => Err(e),
        };
        match r {
            Err(Error::Db(e))
                if classify(&e) == ErrorClass::Transient && attempt < REPAIR_ATTEMPTS =>
            {
                tracing::info!("verify: repair of {tenant} {day} will be retried: {e}");
            }
            other => break other,
        }
    };
    // Should the unlock fail, the connection is broken and its session (and lock) ends with it.
    let unlocked = client.query_one(REPAIR_UNLOCK_SQL, &[&tenant]).await;
    let result = result?;
    unlocked?;
    Ok(result)
}

/// Add `recomputed − stored` of `snapshot` to every differing row, locked, in one transaction.
async fn apply(
    client: &mut Object,
    tenant: &str,
    snapshot: &DaySnapshot,
) -> std::result::Result<(u64, Vec<String>), tokio_postgres::Error> {
    let tx = TenantTx::begin(client).await?;
    tx.switch_tenant(tenant).await?;
    let mut repaired = 0;
    let mut notes = Vec::new();
    for (i, t) in TABLES.iter().enumerate() {
        let (stored, recomputed) = (&snapshot.stored[i], &snapshot.recomputed[i]);
        let differing: BTreeSet<&Key> = stored
            .keys()
            .chain(recomputed.keys())
            .filter(|k| stored.get(*k) != recomputed.get(*k))
            .collect();
        if differing.is_empty() {
            continue;
        }
        let current = lock_rows(&tx, t, tenant, &differing).await?;
        let zero = zero_vals(t);
        for key in differing {
            let (snap, rec) = (stored.get(key), recomputed.get(key));
            let slots: [&(dyn ToSql + Sync); 6] = [&key.0, &key.1, &key.2, &key.3, &key.4, &key.5];
            // The tenant, then the key slots the table has columns for (`key_match`).
            let params_key: Vec<&(dyn ToSql + Sync)> = std::iter::once(&tenant as _)
                .chain(t.key.iter().zip(slots).filter_map(|(c, v)| c.map(|_| v)))
                .collect();
            match (current.get(key), snap) {
                (Some(cur), _) => {
                    let Some(vals) = corrected(
                        cur,
                        rec.map_or(&zero[..], Vec::as_slice),
                        snap.map_or(&zero[..], Vec::as_slice),
                    ) else {
                        notes.push(format!(
                            "{tenant} {} {key:?}: not repaired: a stored value cannot be read \
                             or the correction overflows",
                            t.name
                        ));
                        continue;
                    };
                    // The key's rows (in a daily table and its month table, `compact`) are
                    // replaced by one row of the corrected total.
                    tx.execute(&delete_sql(t), &params_key).await?;
                    if vals != zero {
                        let boxed = value_params(&vals);
                        let mut params: Vec<&(dyn ToSql + Sync)> = params_key.to_vec();
                        params.extend(boxed.iter().map(|b| &**b as &(dyn ToSql + Sync)));
                        tx.execute(&insert_sql(t), &params).await?;
                    }
                }
                (None, None) => {
                    // A row missing in the snapshot: insert it; should a commit insert the key
                    // meanwhile, add to it as the writer would.
                    let Some(vals) = rec else { continue };
                    let boxed = value_params(vals);
                    let mut params: Vec<&(dyn ToSql + Sync)> = params_key.to_vec();
                    params.extend(boxed.iter().map(|b| &**b as &(dyn ToSql + Sync)));
                    tx.execute(&insert_sql(t), &params).await?;
                }
                (None, Some(_)) => {
                    notes.push(format!(
                        "{tenant} {} {key:?}: not repaired: the row was deleted after the check",
                        t.name
                    ));
                    continue;
                }
            }
            repaired += 1;
        }
    }
    tx.commit().await?;
    Ok((repaired, notes))
}

/// Read and lock the rows of `keys` as they are now, in key order (as the writer locks).
async fn lock_rows(
    tx: &TenantTx<'_>,
    t: &Table,
    tenant: &str,
    keys: &BTreeSet<&Key>,
) -> std::result::Result<Rows, tokio_postgres::Error> {
    let k = key_columns(t).join(", ");
    let slots = ["k1", "k2", "k3", "k4", "k5", "k6"];
    let u = t
        .key
        .iter()
        .zip(slots)
        .filter_map(|(c, s)| c.map(|_| s))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {} FROM {} WHERE tenant_id = $1 AND ({k}) IN (SELECT {u} FROM unnest(\
           $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[]) \
           AS u ({slots})) \
         ORDER BY {k} FOR UPDATE",
        select_list(t),
        t.name,
        slots = slots.join(", "),
    );
    let b: Vec<DateTime<Utc>> = keys.iter().map(|k| k.0).collect();
    let k2: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let p: Vec<&str> = keys.iter().map(|k| k.2.as_str()).collect();
    let m: Vec<&str> = keys.iter().map(|k| k.3.as_str()).collect();
    let tt: Vec<&str> = keys.iter().map(|k| k.4.as_str()).collect();
    let k6: Vec<bool> = keys.iter().map(|k| k.5).collect();
    let mut out = Rows::new();
    for row in tx
        .query(&sql, &[&tenant, &b, &k2, &p, &m, &tt, &k6])
        .await?
    {
        // A row whose key columns cannot be read cannot be locked here either; the check
        // reported it, and it is left as it is.
        if let Ok((key, vals)) = parse_row(t, &row) {
            add_row(t, &mut out, key, vals);
        }
    }
    Ok(out)
}

/// Add a stored row to `rows`. A key can have a row in a daily table and one in its month
/// table (`compact`: a late event after its day was moved); they count together. Should a value
/// of either be unreadable, the unreadable row is kept as it is (it differs from any
/// recomputed value).
fn add_row(t: &Table, rows: &mut Rows, key: Key, vals: Vec<Val>) {
    match rows.entry(key) {
        std::collections::btree_map::Entry::Vacant(e) => {
            e.insert(vals);
        }
        std::collections::btree_map::Entry::Occupied(mut e) => {
            let unreadable = |v: &[Val]| {
                v.iter()
                    .any(|x| matches!(x, Val::Usd(Err(_)) | Val::Hist(Err(_))))
            };
            if unreadable(e.get()) {
                return;
            }
            if unreadable(&vals) {
                e.insert(vals);
                return;
            }
            if let Some(sum) = corrected(e.get(), &vals, &zero_vals(t)) {
                e.insert(sum);
            }
        }
    }
}

fn zero_vals(t: &Table) -> Vec<Val> {
    t.cols
        .iter()
        .map(|(_, kind)| match kind {
            Kind::Int => Val::Int(0),
            Kind::Usd => Val::Usd(Ok(Decimal::ZERO)),
            Kind::Hist => Val::Hist(Ok(BTreeMap::new())),
        })
        .collect()
}

/// `current + recomputed − snapshot`, column by column; `None` when a cost cannot be read or a
/// sum overflows. Histogram entries that cannot be read count as absent, so a garbled histogram
/// is replaced by the recomputed one (plus what was added since).
fn corrected(cur: &[Val], rec: &[Val], snap: &[Val]) -> Option<Vec<Val>> {
    let lenient = |v: &Val| -> BTreeMap<u32, i64> {
        match v {
            Val::Hist(Ok(h)) => h.clone(),
            Val::Hist(Err(text)) => serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.as_object().cloned())
                .map(|o| {
                    o.iter()
                        .filter_map(|(k, n)| Some((k.parse().ok()?, n.as_i64()?)))
                        .collect()
                })
                .unwrap_or_default(),
            _ => BTreeMap::new(),
        }
    };
    cur.iter()
        .zip(rec)
        .zip(snap)
        .map(|((c, r), s)| match (c, r, s) {
            (Val::Int(c), Val::Int(r), Val::Int(s)) => {
                c.checked_add(*r)?.checked_sub(*s).map(Val::Int)
            }
            (Val::Usd(Ok(c)), Val::Usd(Ok(r)), Val::Usd(Ok(s))) => {
                c.checked_add(*r)?.checked_sub(*s).map(|d| Val::Usd(Ok(d)))
            }
            (Val::Hist(_), Val::Hist(_), Val::Hist(_)) => {
                let mut h = lenient(c);
                for (b, n) in lenient(r) {
                    *h.entry(b).or_default() += n;
                }
                for (b, n) in lenient(s) {
                    *h.entry(b).or_default() -= n;
                }
                h.retain(|_, n| *n > 0);
                Some(Val::Hist(Ok(h)))
            }
            _ => None,
        })
        .collect()
}

/// The values as statement parameters, in column order.
fn value_params(vals: &[Val]) -> Vec<Box<dyn ToSql + Sync + Send>> {
    vals.iter()
        .map(|v| -> Box<dyn ToSql + Sync + Send> {
            match v {
                Val::Int(n) => Box::new(*n),
                Val::Usd(Ok(d)) => Box::new(*d),
                // Never reached: `corrected` and the recomputed rows only hold readable values.
                Val::Usd(Err(_)) => Box::new(Decimal::ZERO),
                Val::Hist(Ok(h)) => Box::new(Json(h.clone())),
                Val::Hist(Err(_)) => Box::new(Json(BTreeMap::<u32, i64>::new())),
            }
        })
        .collect()
}

/// The key columns the table has, in `Key` order.
fn key_columns(t: &Table) -> Vec<&'static str> {
    t.key.iter().flatten().copied().collect()
}

/// `$2..` are the key columns (`key_columns`), then the values.
fn key_match(t: &Table) -> String {
    key_columns(t)
        .iter()
        .enumerate()
        .map(|(i, k)| format!("{k} = ${}", i + 2))
        .collect::<Vec<_>>()
        .join(" AND ")
}

fn delete_sql(t: &Table) -> String {
    format!(
        "DELETE FROM {} WHERE tenant_id = $1 AND {}",
        t.name,
        key_match(t)
    )
}

fn insert_sql(t: &Table) -> String {
    let cols: Vec<&str> = t.cols.iter().map(|(c, _)| *c).collect();
    let key = key_columns(t).join(", ");
    let n = 1 + key_columns(t).len() + cols.len();
    let add = t
        .cols
        .iter()
        .map(|(c, kind)| match kind {
            Kind::Hist => format!("{c} = agenttally_hist_merge(r.{c}, EXCLUDED.{c})"),
            _ => format!("{c} = r.{c} + EXCLUDED.{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {} AS r (tenant_id, {}, {}) VALUES ({}) \
         ON CONFLICT (tenant_id, {}) DO UPDATE SET {add}",
        t.name,
        key,
        cols.join(", "),
        (1..=n)
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", "),
        key,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_the_rollup_tables_in_lock_order() {
        let ours: Vec<(&str, Grain)> = TABLES.iter().map(|t| (t.name, t.grain)).collect();
        assert_eq!(ours, rollups::TABLES);
    }

    #[test]
    fn since_is_days_or_a_date() {
        assert_eq!("7d".parse(), Ok(Since::DaysAgo(7)));
        assert_eq!("0d".parse(), Ok(Since::DaysAgo(0)));
        assert_eq!(
            " 2026-11-01 ".parse(),
            Ok(Since::Date(
                NaiveDate::from_ymd_opt(2026, 11, 1).expect("date")
            ))
        );
        for bad in [
            "7",
            "d",
            "-1d",
            "3651d",
            "99999999999d",
            "2026-13-01",
            "yesterday",
        ] {
            let e = bad.parse::<Since>().expect_err(bad);
            assert!(e.starts_with("since: must be"), "{e}");
        }
        let today = NaiveDate::from_ymd_opt(2026, 12, 2).expect("date");
        assert_eq!(
            Since::DaysAgo(7).first_day(today).expect("7d"),
            NaiveDate::from_ymd_opt(2026, 11, 25).expect("date")
        );
        let e = Since::Date(today + TimeDelta::days(1))
            .first_day(today)
            .expect_err("future");
        assert!(
            e.to_string().contains("since: must not be after today"),
            "{e}"
        );
    }

    #[test]
    fn a_correction_keeps_what_was_added_since_the_snapshot() {
        let h = |pairs: &[(u32, i64)]| Val::Hist(Ok(pairs.iter().copied().collect()));
        let usd = |s: &str| Val::Usd(Ok(Decimal::from_str(s).expect("decimal")));
        // Snapshot: corrupted (cost 9, one histogram count too many); recomputed: 1.5 and
        // {3: 1}; since the snapshot a commit added 0.25 and {5: 1}.
        let snap = [Val::Int(2), usd("9"), h(&[(3, 2)])];
        let rec = [Val::Int(2), usd("1.5"), h(&[(3, 1)])];
        let cur = [Val::Int(3), usd("9.25"), h(&[(3, 2), (5, 1)])];
        assert_eq!(
            corrected(&cur, &rec, &snap),
            Some(vec![Val::Int(3), usd("1.75"), h(&[(3, 1), (5, 1)])])
        );
        // An extra row nobody wrote to since: all zero, so it is deleted.
        let zero = [Val::Int(0), usd("0"), h(&[])];
        assert_eq!(corrected(&snap, &zero, &snap), Some(zero.to_vec()));
        // A garbled histogram is replaced by the recomputed one.
        let garbled = [Val::Int(2), usd("1.5"), Val::Hist(Err("\"oops\"".into()))];
        assert_eq!(corrected(&garbled, &rec, &garbled), Some(rec.to_vec()));
        // An unreadable cost cannot be corrected.
        let unreadable = [Val::Int(2), Val::Usd(Err("NaN".into())), h(&[])];
        assert_eq!(corrected(&unreadable, &rec, &unreadable), None);
    }

    #[test]
    fn stored_baselines_read_back_as_priced() {
        let v = serde_json::json!({
            "openai_codex": {"status": "priced", "usd": "0.066", "model": "openai_codex"},
            "most_expensive": {"status": "unpriced"},
        });
        let (names, costs) = parse_baselines(&v).expect("parse");
        assert_eq!(names, ["most_expensive", "openai_codex"]);
        assert_eq!(costs[0].usd, None);
        assert_eq!(costs[0].status, CostStatus::Unpriced);
        assert_eq!(costs[1].usd, Some(Decimal::new(66, 3)));
        assert_eq!(costs[1].model.as_deref(), Some("openai_codex"));
        let e = parse_baselines(&serde_json::json!({"x": {"status": "priced", "usd": 1}}))
            .expect_err("a number");
        assert!(
            e.contains("baselines.x.usd: must be a decimal string"),
            "{e}"
        );
    }
}
