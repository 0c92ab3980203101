//! The group-commit writer: handlers push validated events into a bounded channel with a oneshot
//! for the ack; a few writer tasks (`writers`, one connection each) take turns at the channel,
//! each committing everything already waiting (up to `max_commit_events`, lingering
//! `commit_interval` for more if set) in a single transaction — dedupe ids, raw rows, rollup deltas
//! of only the newly inserted rows — and acknowledging each request after the commit.
//!
//! Dedupe is optimistic: ids are claimed in `event_ids` with a plain INSERT (its unique key
//! refuses a stored id), which costs less than half of `ON CONFLICT DO NOTHING RETURNING`, and
//! the statements of a tenant are pipelined (sent together, one round trip). Should an id already
//! be stored (a retry or replay) the whole transaction rolls back and is redone carefully: ids
//! claimed with `ON CONFLICT DO NOTHING RETURNING`, and only the claimed events stored and
//! counted. The next few groups of that writer then start carefully too.
//!
//! Failures are answered by what they say about the events (`super::ErrorClass`): only a row the
//! database refuses for that event alone becomes a per-event rejection; a database that is
//! unavailable, a serialization failure or deadlock that outlives the retries, or any other error
//! answers the requests involved 503, with nothing of them acknowledged, and the client resends.
//!
//! After each commit, what it stored per tenant goes to the subscribers of the commit feed
//! (`super::committed`), never before.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttally::AnalyticsEvent;
use chrono::NaiveDate;
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use uuid::Uuid;

use super::committed::{self, CommitFeed, Committed};
use super::rollups::{self, Dims, Grain};
use super::savings;
use super::{classify, ErrorClass, TenantTx};
use crate::config::{ServerConfig, ACK_TIMEOUT, ENQUEUE_TIMEOUT};
use crate::metrics::Metrics;
use crate::pricing::{BaselineCost, SavingsPricer};

/// What happened to one event handed to the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Newly stored.
    Inserted,
    /// Already stored earlier (same tenant_id and id): nothing written.
    Duplicate,
    /// The database refused this event's row (a data error, SQLSTATE class 22, 23 or 54, met
    /// with the event in a transaction of its own): resending the same event cannot succeed.
    Failed(String),
}

/// Nothing of the request was acknowledged (the database is unavailable, the queue is full, or a
/// storage failure that is not the events' fault persisted); the client should retry later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not stored: {0}")]
pub struct Unavailable(pub String);

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Longest wait after the first pending event before committing.
    pub commit_interval: Duration,
    /// Commit as soon as this many events are pending.
    pub max_commit_events: usize,
    /// Requests that may wait in the channel (back-pressure beyond it: 503).
    pub queue_capacity: usize,
    /// How long a handler waits for room in the channel, and then for its ack.
    pub enqueue_timeout: Duration,
    pub ack_timeout: Duration,
    /// Writer tasks, each with its own connection and transaction: while one waits for its
    /// commit (fsync) or for a row lock, another can work.
    pub writers: usize,
    /// Prices every spend event on the savings baselines as it is stored.
    pub savings: Arc<SavingsPricer>,
}

impl WriterConfig {
    /// The writer's part of the collector's settings, with the baselines' pricer.
    pub fn from_server(c: &ServerConfig, savings: Arc<SavingsPricer>) -> Self {
        WriterConfig {
            commit_interval: c.commit_interval,
            max_commit_events: c.max_commit_events,
            queue_capacity: c.queue_capacity,
            enqueue_timeout: ENQUEUE_TIMEOUT,
            ack_timeout: ACK_TIMEOUT,
            writers: c.writers,
            savings,
        }
    }
}

/// After a duplicate, this many commits of that writer claim ids carefully (a replay tends to
/// come in runs).
const CAREFUL_COMMITS: u32 = 8;

struct WriteRequest {
    events: Vec<AnalyticsEvent>,
    reply: oneshot::Sender<Result<Vec<Outcome>, Unavailable>>,
}

/// The handlers' side of the writer. Dropping every handle lets the writer drain and stop.
#[derive(Debug, Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<WriteRequest>,
    cfg: Arc<WriterConfig>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for WriteRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WriteRequest({} events)", self.events.len())
    }
}

impl WriterHandle {
    /// Store `events` (already validated); returns one outcome per event, in order, after commit.
    pub async fn write(&self, events: Vec<AnalyticsEvent>) -> Result<Vec<Outcome>, Unavailable> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let n = events.len() as i64;
        let (reply, rx) = oneshot::channel();
        let req = WriteRequest { events, reply };
        self.metrics.queue_events.fetch_add(n, Ordering::Relaxed);
        if tokio::time::timeout(self.cfg.enqueue_timeout, self.tx.send(req))
            .await
            .map_err(|_| ())
            .and_then(|r| r.map_err(|_| ()))
            .is_err()
        {
            self.metrics.queue_events.fetch_sub(n, Ordering::Relaxed);
            return Err(Unavailable("the write queue is full".into()));
        }
        match tokio::time::timeout(self.cfg.ack_timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(Unavailable("the writer stopped".into())),
            Err(_) => Err(Unavailable("timed out waiting for the commit".into())),
        }
    }
}

/// Start the writer task. It ends once every `WriterHandle` is dropped and the queue is drained.
pub fn spawn(
    pool: Pool,
    cfg: WriterConfig,
    metrics: Arc<Metrics>,
    feed: CommitFeed,
) -> (WriterHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
    let rx = Arc::new(Mutex::new(rx));
    let cfg = Arc::new(cfg);
    let writers: Vec<JoinHandle<()>> = (0..cfg.writers.max(1))
        .map(|_| {
            let mut w = Writer {
                pool: pool.clone(),
                cfg: cfg.clone(),
                metrics: metrics.clone(),
                partitions: HashSet::new(),
                hourly_sql: rollups::sql(Grain::Hourly, Dims::Usage),
                daily_sql: rollups::sql(Grain::Daily, Dims::Usage),
                agent_hourly_sql: rollups::sql(Grain::Hourly, Dims::Agent),
                agent_daily_sql: rollups::sql(Grain::Daily, Dims::Agent),
                savings_hourly_sql: savings::upsert_sql(Grain::Hourly),
                savings_daily_sql: savings::upsert_sql(Grain::Daily),
                careful: 0,
                feed: feed.clone(),
            };
            let rx = rx.clone();
            tokio::spawn(async move { w.run(&rx).await })
        })
        .collect();
    let task = tokio::spawn(async move {
        for w in writers {
            let _ = w.await;
        }
        tracing::info!("writer drained and stopped");
    });
    (WriterHandle { tx, cfg, metrics }, task)
}

struct Writer {
    pool: Pool,
    cfg: Arc<WriterConfig>,
    metrics: Arc<Metrics>,
    /// Day partitions known to exist.
    partitions: HashSet<NaiveDate>,
    hourly_sql: rollups::RollupSql,
    daily_sql: rollups::RollupSql,
    agent_hourly_sql: rollups::RollupSql,
    agent_daily_sql: rollups::RollupSql,
    savings_hourly_sql: String,
    savings_daily_sql: String,
    /// Commits left that claim ids carefully (see `CAREFUL_COMMITS`).
    careful: u32,
    /// Post-commit subscribers (`super::committed`).
    feed: CommitFeed,
}

/// Why one commit attempt failed (see `ErrorClass`).
enum Fail {
    Unavailable(String),
    Transient(String),
    /// The event's own fault: a row refused. Isolated by splitting, then rejected.
    Data(String),
    /// Not the events' fault: 503 for the request, never a rejection.
    Other(String),
    /// An optimistic claim met an id already stored: redo the transaction carefully.
    Duplicate(String),
}

/// How a transaction claims ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    /// Plain INSERT; fails (unique violation) if any id is already stored.
    Optimistic,
    /// `ON CONFLICT DO NOTHING RETURNING id`; only the claimed events are stored.
    Careful,
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        let msg = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        match classify(&e) {
            ErrorClass::Unavailable => Fail::Unavailable(msg),
            ErrorClass::Transient => Fail::Transient(msg),
            ErrorClass::EventData => Fail::Data(msg),
            ErrorClass::Other => Fail::Other(msg),
        }
    }
}

impl From<deadpool_postgres::PoolError> for Fail {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            other => Fail::Unavailable(other.to_string()),
        }
    }
}

impl Writer {
    async fn run(&mut self, rx: &Mutex<mpsc::Receiver<WriteRequest>>) {
        loop {
            // Writers take turns at the channel: the one holding it waits for the next request
            // and takes the group; the others are committing, or queued behind it.
            let mut rx = rx.lock().await;
            let Some(first) = rx.recv().await else { break };
            let deadline = tokio::time::Instant::now() + self.cfg.commit_interval;
            let mut n = first.events.len();
            let mut group = vec![first];
            // Group commit: take everything already waiting, then commit at once; requests that
            // arrive during the commit form the next group, so commits run back to back under
            // load. `commit_interval` (0 by default) lets a group linger for more.
            while n < self.cfg.max_commit_events {
                let next = match rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(mpsc::error::TryRecvError::Disconnected) => None,
                    Err(mpsc::error::TryRecvError::Empty) if self.cfg.commit_interval.is_zero() => {
                        None
                    }
                    Err(mpsc::error::TryRecvError::Empty) => {
                        tokio::time::timeout_at(deadline, rx.recv())
                            .await
                            .ok()
                            .flatten()
                    }
                };
                let Some(r) = next else { break };
                n += r.events.len();
                group.push(r);
            }
            drop(rx);
            self.metrics
                .queue_events
                .fetch_sub(n as i64, Ordering::Relaxed);
            self.commit_group(group).await;
        }
    }

    async fn commit_group(&mut self, group: Vec<WriteRequest>) {
        let started = Instant::now();
        // Flatten, grouped by tenant and sorted by id (the order rows are locked in, the same in
        // every writer), and settle duplicates inside the group here: only the first (tenant,
        // id) goes to the database; the later copies keep the `Duplicate` they start with
        // unless the first is not stored (below).
        let mut outcomes: Vec<Vec<Outcome>> = group
            .iter()
            .map(|r| vec![Outcome::Duplicate; r.events.len()])
            .collect();
        let mut by_tenant: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
        for (ri, r) in group.iter().enumerate() {
            for (ei, e) in r.events.iter().enumerate() {
                by_tenant
                    .entry(e.tenant_id.as_str())
                    .or_default()
                    .push((ri, ei));
            }
        }
        let id = |&(ri, ei): &(usize, usize)| group[ri].events[ei].id;
        let mut entries: Vec<(usize, usize)> = Vec::new();
        // (copy, the entry stored for it)
        let mut copies: Vec<((usize, usize), (usize, usize))> = Vec::new();
        for (_, mut es) in by_tenant {
            // Stable: of equal ids the first sent stays first.
            es.sort_by_key(id);
            let first = entries.len();
            for e in es {
                match entries[first..].last() {
                    Some(&kept) if id(&kept) == id(&e) => copies.push((e, kept)),
                    _ => entries.push(e),
                }
            }
        }
        let mut failed = self.store(&group, &entries, &mut outcomes).await;
        // A copy shares the fate of the entry stored for it: were it answered `Duplicate` while
        // that entry's request gets a 503 (or its row is refused), the copy would be acknowledged
        // as stored when it is not.
        let own_failures = failed.clone();
        for ((ri, ei), (ro, eo)) in copies {
            if let Some(e) = &own_failures[ro] {
                if failed[ri].is_none() {
                    failed[ri] = Some(e.clone());
                }
            } else if let Outcome::Failed(m) = &outcomes[ro][eo] {
                outcomes[ri][ei] = Outcome::Failed(m.clone());
            }
        }
        self.metrics.commit_latency.observe(started.elapsed());
        for ((r, outs), failed) in group.into_iter().zip(outcomes).zip(failed) {
            let reply = match failed {
                None => Ok(outs),
                Some(e) => Err(e),
            };
            let _ = r.reply.send(reply);
        }
    }

    /// Store `entries`, settling `outcomes`. Returns, per request of `group`, why it must be
    /// answered 503 instead (`None`: its outcomes stand).
    ///
    /// A data error splits the failing part (by request, then in halves) and retries each piece
    /// in its own transaction, so a poison row is rejected by itself in about 2·log2(n) extra
    /// transactions and everything else is stored. A failure that is not the events' fault (a
    /// transient one that outlived `attempt`'s retries, or any other) is never a rejection: a
    /// part holding several requests is retried request by request, so that one request's
    /// trouble does not cost the other requests of the group (often other tenants) a 503; a part
    /// of one request answers that request 503 and its remaining parts are skipped. Parts of it
    /// committed earlier stay committed: its resend meets them as duplicates. The database being
    /// unavailable answers every request of the group 503.
    async fn store(
        &mut self,
        group: &[WriteRequest],
        entries: &[(usize, usize)],
        outcomes: &mut [Vec<Outcome>],
    ) -> Vec<Option<Unavailable>> {
        let mut failed: Vec<Option<Unavailable>> = vec![None; group.len()];
        let mut pending = vec![entries.to_vec()];
        while let Some(mut part) = pending.pop() {
            part.retain(|&(ri, _)| failed[ri].is_none());
            let Some(&(first_request, _)) = part.first() else {
                continue;
            };
            let several_requests = part.iter().any(|&(ri, _)| ri != first_request);
            let fail = match self.attempt(group, &part, outcomes).await {
                Ok(()) => continue,
                Err(fail) => fail,
            };
            self.metrics.commit_failures.fetch_add(1, Ordering::Relaxed);
            // A partition dropped behind our back shows up as a data error: re-check.
            self.partitions.clear();
            match fail {
                Fail::Unavailable(m) => {
                    tracing::warn!("commit failed, database unavailable: {m}");
                    return vec![
                        Some(Unavailable(format!("database unavailable ({m})")));
                        group.len()
                    ];
                }
                Fail::Data(m) => {
                    if let [(ri, ei)] = part[..] {
                        tracing::warn!("event {ei} of a request could not be stored: {m}");
                        outcomes[ri][ei] = Outcome::Failed(m);
                        continue;
                    }
                    tracing::debug!("commit of {} events failed ({m}); splitting", part.len());
                    if several_requests {
                        pending.extend(by_request(part));
                    } else {
                        let (a, b) = part.split_at(part.len() / 2);
                        pending.push(b.to_vec());
                        pending.push(a.to_vec());
                    }
                }
                // (`attempt` redoes a `Duplicate` carefully and does not return it.)
                Fail::Transient(m) | Fail::Other(m) | Fail::Duplicate(m) => {
                    if several_requests {
                        tracing::debug!(
                            "commit of {} events failed ({m}); retrying request by request",
                            part.len()
                        );
                        pending.extend(by_request(part));
                        continue;
                    }
                    tracing::warn!("a request could not be stored, answering it 503: {m}");
                    failed[first_request] = Some(Unavailable(format!(
                        "a storage failure that is not the events' fault ({m})"
                    )));
                }
            }
        }
        failed
    }

    /// One transaction, retried a few times on serialization failures and deadlocks, and redone
    /// carefully if an optimistic claim met a stored id.
    async fn attempt(
        &mut self,
        group: &[WriteRequest],
        entries: &[(usize, usize)],
        outcomes: &mut [Vec<Outcome>],
    ) -> Result<(), Fail> {
        let mut tries = 0;
        let mut claim = if self.careful > 0 {
            Claim::Careful
        } else {
            Claim::Optimistic
        };
        loop {
            match self.transaction(group, entries, claim).await {
                Ok(None) => {
                    for &(ri, ei) in entries {
                        outcomes[ri][ei] = Outcome::Inserted;
                    }
                    return Ok(());
                }
                Ok(Some(inserted)) => {
                    if inserted.len() < entries.len() {
                        self.careful = CAREFUL_COMMITS;
                    } else {
                        self.careful = self.careful.saturating_sub(1);
                    }
                    for &(ri, ei) in entries {
                        let e = &group[ri].events[ei];
                        let fresh = inserted.contains(&(e.tenant_id.as_str(), e.id));
                        outcomes[ri][ei] = if fresh {
                            Outcome::Inserted
                        } else {
                            Outcome::Duplicate
                        };
                    }
                    return Ok(());
                }
                Err(Fail::Duplicate(_)) => {
                    tracing::debug!("an id of the group is already stored; claiming carefully");
                    self.careful = CAREFUL_COMMITS;
                    claim = Claim::Careful;
                }
                Err(Fail::Transient(m)) if tries < 3 => {
                    tries += 1;
                    tracing::debug!("transient commit failure ({m}), retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Store `entries` in one transaction. Returns `None` when every entry was inserted
    /// (optimistic claim), else the `(tenant, id)`s inserted (careful claim).
    async fn transaction<'g>(
        &mut self,
        group: &'g [WriteRequest],
        entries: &[(usize, usize)],
        claim: Claim,
    ) -> Result<Option<HashSet<(&'g str, Uuid)>>, Fail> {
        let started = Instant::now();
        let mut client = self.pool.get().await?;
        // Partitions are DDL: created as the owner, outside the data transaction.
        let days: BTreeSet<NaiveDate> = entries
            .iter()
            .map(|&(ri, ei)| group[ri].events[ei].timestamp.date_naive())
            .filter(|d| !self.partitions.contains(d))
            .collect();
        for day in days {
            client
                .execute("SELECT agenttally_ensure_partition($1)", &[&day])
                .await?;
            self.partitions.insert(day);
        }
        // `entries` come grouped by tenant and sorted by id (`commit_group`); a part split off
        // for a retry keeps that order.
        let mut by_tenant: Vec<(&str, Vec<&AnalyticsEvent>)> = Vec::new();
        for &(ri, ei) in entries {
            let e = &group[ri].events[ei];
            match by_tenant.last_mut() {
                Some((t, es)) if *t == e.tenant_id => es.push(e),
                _ => by_tenant.push((e.tenant_id.as_str(), vec![e])),
            }
        }
        let stmts = Statements {
            claim: client
                .prepare_cached(match claim {
                    Claim::Optimistic => CLAIM_IDS_SQL,
                    Claim::Careful => CLAIM_NEW_IDS_SQL,
                })
                .await?,
            insert: client.prepare_cached(INSERT_SQL).await?,
            hourly: RollupStatements::prepare(&client, &self.hourly_sql).await?,
            daily: RollupStatements::prepare(&client, &self.daily_sql).await?,
            agent_hourly: RollupStatements::prepare(&client, &self.agent_hourly_sql).await?,
            agent_daily: RollupStatements::prepare(&client, &self.agent_daily_sql).await?,
            savings_hourly: client.prepare_cached(&self.savings_hourly_sql).await?,
            savings_daily: client.prepare_cached(&self.savings_daily_sql).await?,
            hour_totals: client.prepare_cached(rollups::HOUR_TOTALS_SQL).await?,
        };
        let pricer = &*self.cfg.savings;
        // Data access as the non-superuser app role, one tenant at a time, under RLS.
        let tx = TenantTx::begin(&mut client).await?;
        let mut inserted = HashSet::new();
        // Kept only for subscribers, and sent only once the commit succeeded.
        let keep = self.feed.keep();
        let mut committed: Vec<Committed> = Vec::new();
        for (tenant, events) in by_tenant {
            match claim {
                Claim::Optimistic => {
                    let stored =
                        store_tenant(&tx, &stmts, pricer, tenant, &events, claim, keep).await?;
                    committed.extend(stored.committed(tenant));
                }
                Claim::Careful => {
                    let stored =
                        store_tenant(&tx, &stmts, pricer, tenant, &events, claim, keep).await?;
                    inserted.extend(stored.fresh.iter().map(|e| (tenant, e.id)));
                    committed.extend(stored.committed(tenant));
                }
            }
        }
        let commit = Instant::now();
        tx.commit().await?;
        for c in committed {
            self.feed.send(c);
        }
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(
            "committed {} events ({claim:?} claim) in {:?}, of which COMMIT {:?}",
            entries.len(),
            started.elapsed(),
            commit.elapsed()
        );
        Ok(match claim {
            Claim::Optimistic => None,
            Claim::Careful => Some(inserted),
        })
    }
}

/// `part` cut into one piece per request, each keeping its order.
fn by_request(part: Vec<(usize, usize)>) -> impl Iterator<Item = Vec<(usize, usize)>> {
    let mut by_request: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
    for e in part {
        by_request.entry(e.0).or_default().push(e);
    }
    by_request.into_values()
}

/// The prepared statements of one transaction.
struct Statements {
    claim: tokio_postgres::Statement,
    insert: tokio_postgres::Statement,
    hourly: RollupStatements,
    daily: RollupStatements,
    agent_hourly: RollupStatements,
    agent_daily: RollupStatements,
    savings_hourly: tokio_postgres::Statement,
    savings_daily: tokio_postgres::Statement,
    hour_totals: tokio_postgres::Statement,
}

/// The prepared `RollupSql` of one table.
struct RollupStatements {
    lock: tokio_postgres::Statement,
    update: tokio_postgres::Statement,
    upsert: tokio_postgres::Statement,
}

impl RollupStatements {
    async fn prepare(
        client: &deadpool_postgres::Object,
        sql: &rollups::RollupSql,
    ) -> Result<Self, tokio_postgres::Error> {
        Ok(RollupStatements {
            lock: client.prepare_cached(&sql.lock).await?,
            update: client.prepare_cached(&sql.update).await?,
            upsert: client.prepare_cached(&sql.upsert).await?,
        })
    }
}

/// Optimistic claim: a plain INSERT, refused (unique violation) if any id is already stored.
const CLAIM_IDS_SQL: &str = "INSERT INTO event_ids (tenant_id, id) SELECT $1, unnest($2::uuid[])";

/// Careful claim: only ids not stored before come back.
const CLAIM_NEW_IDS_SQL: &str =
    "INSERT INTO event_ids (tenant_id, id) SELECT $1, unnest($2::uuid[])
    ON CONFLICT DO NOTHING RETURNING id";

/// Raw rows of events whose ids were just claimed, from column arrays. Empty metadata is sent as
/// NULL and stored as `{}`: parsing a jsonb `{}` per row was ~4% of the server's time. One
/// `unnest` per column in a target list (a ProjectSet) streams the rows; `FROM unnest(a, b, ...)`
/// materializes every column in a tuplestore first (~10% of the backend's time during ingest).
/// All arrays have the same length, so the two forms give the same rows.
const INSERT_SQL: &str =
    "INSERT INTO events (tenant_id, id, ts, event_type, correlation_id, user_id, agent_id,
        workflow_id, duration_ms, queue_ms, cost_usd, cost_status, price_version, provider,
        model, task_type, service_tier, input_tokens, cached_input_tokens, cache_write_tokens,
        cache_write_1h_tokens, output_tokens, reasoning_tokens, requests, success, error_code,
        metadata, baselines)
    SELECT $1, id, ts, event_type, correlation_id, user_id, agent_id, workflow_id, duration_ms,
        queue_ms, cost_usd, cost_status, price_version, provider, model, task_type, service_tier,
        input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens,
        output_tokens, reasoning_tokens, requests, success, error_code,
        coalesce(metadata, '{}'::jsonb), baselines
    FROM (SELECT unnest($2::uuid[]) AS id,
        unnest($3::timestamptz[]) AS ts,
        unnest($4::text[]) AS event_type,
        unnest($5::text[]) AS correlation_id,
        unnest($6::text[]) AS user_id,
        unnest($7::text[]) AS agent_id,
        unnest($8::text[]) AS workflow_id,
        unnest($9::int8[]) AS duration_ms,
        unnest($10::int8[]) AS queue_ms,
        unnest($11::numeric[]) AS cost_usd,
        unnest($12::text[]) AS cost_status,
        unnest($13::text[]) AS price_version,
        unnest($14::text[]) AS provider,
        unnest($15::text[]) AS model,
        unnest($16::text[]) AS task_type,
        unnest($17::text[]) AS service_tier,
        unnest($18::int8[]) AS input_tokens,
        unnest($19::int8[]) AS cached_input_tokens,
        unnest($20::int8[]) AS cache_write_tokens,
        unnest($21::int8[]) AS cache_write_1h_tokens,
        unnest($22::int8[]) AS output_tokens,
        unnest($23::int8[]) AS reasoning_tokens,
        unnest($24::int8[]) AS requests,
        unnest($25::bool[]) AS success,
        unnest($26::text[]) AS error_code,
        unnest($27::jsonb[]) AS metadata,
        unnest($28::jsonb[]) AS baselines) u";

/// Store the events of one tenant (sorted by id): claim their ids, insert the raw rows of the
/// claimed ones and add them to the rollups (usage, agent, savings, hour totals), after switching
/// `tx` to the tenant. The statements are pipelined — sent together, answered in one round trip —
/// in two or three steps: (claim, rows, lock the stored rollup rows) then (write the rollups); a
/// careful claim is answered before the rows are sent. The first error in statement order is the
/// one reported (later statements of a failed transaction only say it is aborted). Returns the
/// events stored, and what `keep` asks of them.
#[allow(clippy::too_many_arguments)]
async fn store_tenant<'e>(
    tx: &TenantTx<'_>,
    st: &Statements,
    pricer: &SavingsPricer,
    tenant: &str,
    events: &[&'e AnalyticsEvent],
    claim: Claim,
    keep: committed::Keep,
) -> Result<Stored<'e>, Fail> {
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let claim_params: [&(dyn ToSql + Sync); 2] = [&tenant, &ids];
    // Each stored event's baseline prices (`None`: not a savings task), in event order.
    let baselines: Vec<Option<Vec<BaselineCost>>>;
    let (fresh, deltas, locked) = match claim {
        Claim::Optimistic => {
            let d = RollupDeltas::of(events);
            let books = pricer.books();
            let book = books.for_tenant(tenant);
            baselines = events.iter().map(|e| pricer.price(book, e)).collect();
            let (r_tenant, r_claim, r_insert, r_locked) = tokio::join!(
                biased;
                tx.switch_tenant(tenant),
                tx.execute(&st.claim, &claim_params),
                insert_rows(tx, &st.insert, pricer, tenant, events, &baselines),
                d.lock(tx, st, tenant),
            );
            r_tenant?;
            match r_claim {
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                    return Err(Fail::Duplicate(e.to_string()))
                }
                r => r?,
            };
            r_insert?;
            (events.to_vec(), d, r_locked?)
        }
        Claim::Careful => {
            let (r_tenant, r_claim) = tokio::join!(
                biased;
                tx.switch_tenant(tenant),
                tx.query(&st.claim, &claim_params),
            );
            r_tenant?;
            let claimed = r_claim?;
            let fresh: Vec<&'e AnalyticsEvent> = if claimed.len() == events.len() {
                events.to_vec()
            } else {
                let claimed: HashSet<Uuid> = claimed.iter().map(|r| r.get(0)).collect();
                events
                    .iter()
                    .copied()
                    .filter(|e| claimed.contains(&e.id))
                    .collect()
            };
            if fresh.is_empty() {
                return Ok(Stored { fresh, kept: None });
            }
            let d = RollupDeltas::of(&fresh);
            let books = pricer.books();
            let book = books.for_tenant(tenant);
            baselines = fresh.iter().map(|e| pricer.price(book, e)).collect();
            let (r_insert, r_locked) = tokio::join!(
                biased;
                insert_rows(tx, &st.insert, pricer, tenant, &fresh, &baselines),
                d.lock(tx, st, tenant),
            );
            r_insert?;
            (fresh, d, r_locked?)
        }
    };
    let kept = keep.deltas.then(|| {
        let recent = if keep.recent {
            committed::recent(&fresh)
        } else {
            Vec::new()
        };
        (committed::owned(&deltas.hourly), recent)
    });
    let [locked_hourly, locked_daily, locked_agent_hourly, locked_agent_daily] = locked;
    let hour_totals = rollups::hour_totals(
        deltas
            .hourly
            .iter()
            .map(|((b, t, _, _, _, itemized), d)| (*b, *t, *itemized, d)),
    );
    let (update_hourly, upsert_hourly) = rollups::merge_stored(deltas.hourly, &locked_hourly);
    let (update_daily, upsert_daily) = rollups::merge_stored(deltas.daily, &locked_daily);
    let (update_agent_hourly, upsert_agent_hourly) =
        rollups::merge_stored(deltas.agent_hourly, &locked_agent_hourly);
    let (update_agent_daily, upsert_agent_daily) =
        rollups::merge_stored(deltas.agent_daily, &locked_agent_daily);
    let names: Vec<&str> = pricer.names().collect();
    let tasks = || {
        fresh
            .iter()
            .copied()
            .zip(baselines.iter().map(Option::as_deref))
    };
    let savings_hourly = savings::deltas(Grain::Hourly, &names, tasks());
    let savings_daily = savings::daily_from_hourly(&savings_hourly);
    let (r_uh, r_ih, r_ud, r_id, r_uah, r_iah, r_uad, r_iad, r_sh, r_sd, r_th) = tokio::join!(
        biased;
        rollups::write(tx.pg(), &st.hourly.update, tenant, &update_hourly),
        rollups::write(tx.pg(), &st.hourly.upsert, tenant, &upsert_hourly),
        rollups::write(tx.pg(), &st.daily.update, tenant, &update_daily),
        rollups::write(tx.pg(), &st.daily.upsert, tenant, &upsert_daily),
        rollups::write(tx.pg(), &st.agent_hourly.update, tenant, &update_agent_hourly),
        rollups::write(tx.pg(), &st.agent_hourly.upsert, tenant, &upsert_agent_hourly),
        rollups::write(tx.pg(), &st.agent_daily.update, tenant, &update_agent_daily),
        rollups::write(tx.pg(), &st.agent_daily.upsert, tenant, &upsert_agent_daily),
        savings::write(tx.pg(), &st.savings_hourly, tenant, &savings_hourly),
        savings::write(tx.pg(), &st.savings_daily, tenant, &savings_daily),
        rollups::write_hour_totals(tx.pg(), &st.hour_totals, tenant, &hour_totals),
    );
    // In statement order: the first error is the one that says why.
    let uh = r_uh?;
    r_ih?;
    let ud = r_ud?;
    r_id?;
    let uah = r_uah?;
    r_iah?;
    let uad = r_uad?;
    r_iad?;
    r_sh?;
    r_sd?;
    r_th?;
    // A subscription event sets the tenant's tier (the latest wins): rare, so not pipelined.
    for e in &fresh {
        if let Some(tier) = subscribed_tier(e) {
            super::tiers::record_tier(tx.pg(), tenant, tier, "event", e.timestamp).await?;
        }
    }
    // The rows updated were read and locked above: every one must still be there.
    if uh != update_hourly.len() as u64
        || ud != update_daily.len() as u64
        || uah != update_agent_hourly.len() as u64
        || uad != update_agent_daily.len() as u64
    {
        return Err(Fail::Transient(format!(
            "rollup rows changed under a lock: updated {uh}/{} hourly, {ud}/{} daily, \
             {uah}/{} agent hourly, {uad}/{} agent daily",
            update_hourly.len(),
            update_daily.len(),
            update_agent_hourly.len(),
            update_agent_daily.len()
        )));
    }
    Ok(Stored { fresh, kept })
}

/// The rollup deltas of one tenant's stored events: usage and agent, hourly and daily.
struct RollupDeltas<'e> {
    hourly: rollups::Deltas<'e>,
    daily: rollups::Deltas<'e>,
    agent_hourly: rollups::Deltas<'e>,
    agent_daily: rollups::Deltas<'e>,
}

impl<'e> RollupDeltas<'e> {
    fn of(events: &[&'e AnalyticsEvent]) -> Self {
        let hourly = rollups::deltas(Grain::Hourly, Dims::Usage, events.iter().copied());
        let agent_hourly = rollups::deltas(Grain::Hourly, Dims::Agent, events.iter().copied());
        RollupDeltas {
            daily: rollups::daily_from_hourly(&hourly),
            agent_daily: rollups::daily_from_hourly(&agent_hourly),
            hourly,
            agent_hourly,
        }
    }

    /// Lock the stored rows of every key, table by table in the order verify's repair locks
    /// them (usage hourly, daily, agent hourly, daily), pipelined.
    async fn lock(
        &self,
        tx: &TenantTx<'_>,
        st: &Statements,
        tenant: &str,
    ) -> Result<[Vec<tokio_postgres::Row>; 4], tokio_postgres::Error> {
        let (h, d, ah, ad) = tokio::join!(
            biased;
            rollups::lock(tx.pg(), &st.hourly.lock, tenant, &self.hourly),
            rollups::lock(tx.pg(), &st.daily.lock, tenant, &self.daily),
            rollups::lock(tx.pg(), &st.agent_hourly.lock, tenant, &self.agent_hourly),
            rollups::lock(tx.pg(), &st.agent_daily.lock, tenant, &self.agent_daily),
        );
        Ok([h?, d?, ah?, ad?])
    }
}

/// The tier a `billing.subscription_created|upgraded` event puts its tenant on.
fn subscribed_tier(e: &AnalyticsEvent) -> Option<&str> {
    matches!(
        e.event_type,
        agenttally::EventType::BillingSubscriptionCreated
            | agenttally::EventType::BillingSubscriptionUpgraded
    )
    .then(|| e.metadata.get("tier").and_then(serde_json::Value::as_str))
    .flatten()
    .filter(|t| !t.is_empty())
}

/// What `store_tenant` stored for one tenant.
struct Stored<'e> {
    fresh: Vec<&'e AnalyticsEvent>,
    /// A copy of the hourly deltas of `fresh` and its newest events, when there are subscribers.
    kept: Option<(Vec<committed::CommittedDelta>, Vec<committed::RecentEvent>)>,
}

impl Stored<'_> {
    /// The post-commit record for subscribers, if one was kept and anything was stored.
    fn committed(self, tenant: &str) -> Option<Committed> {
        let (hourly, recent) = self.kept?;
        (!self.fresh.is_empty()).then(|| Committed {
            tenant: tenant.to_string(),
            events: self.fresh.len(),
            hourly,
            recent,
        })
    }
}

/// Insert the raw rows of `events` (all of `tenant`, ids already claimed) as column arrays.
async fn insert_rows(
    tx: &deadpool_postgres::Transaction<'_>,
    stmt: &tokio_postgres::Statement,
    pricer: &SavingsPricer,
    tenant: &str,
    events: &[&AnalyticsEvent],
    baselines: &[Option<Vec<BaselineCost>>],
) -> Result<u64, tokio_postgres::Error> {
    use super::to_i64 as i;
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let ts: Vec<_> = events.iter().map(|e| e.timestamp).collect();
    let et: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let corr: Vec<&str> = events.iter().map(|e| e.correlation_id.as_str()).collect();
    let s = |f: fn(&AnalyticsEvent) -> Option<&str>| -> Vec<Option<&str>> {
        events.iter().map(|e| f(e)).collect()
    };
    let user = s(|e| e.user_id.as_deref());
    let agent = s(|e| e.agent_id.as_deref());
    let workflow = s(|e| e.workflow_id.as_deref());
    let status = s(|e| e.cost_status.map(|c| c.as_str()));
    let pv = s(|e| e.price_version.as_deref());
    let provider = s(|e| e.provider.as_deref());
    let model = s(|e| e.model.as_deref());
    let task = s(|e| e.task_type.as_deref());
    let tier = s(|e| e.service_tier.map(|t| t.as_str()));
    let err = s(|e| e.error_code.as_deref());
    let dur: Vec<Option<i64>> = events.iter().map(|e| e.duration_ms).collect();
    let queue: Vec<Option<i64>> = events.iter().map(|e| e.queue_ms).collect();
    let cost: Vec<_> = events.iter().map(|e| e.cost_usd).collect();
    let u = |f: fn(&agenttally::Usage) -> u64| -> Vec<Option<i64>> {
        events.iter().map(|e| e.usage.map(|u| i(f(&u)))).collect()
    };
    let u0 = u(|u| u.input_tokens);
    let u1 = u(|u| u.cached_input_tokens);
    let u2 = u(|u| u.cache_write_tokens);
    let u3 = u(|u| u.cache_write_1h_tokens);
    let u4 = u(|u| u.output_tokens);
    let u5 = u(|u| u.reasoning_tokens);
    let u6 = u(|u| u.requests);
    let success: Vec<bool> = events.iter().map(|e| e.success).collect();
    // Bound by reference: no copy of each event's metadata. Empty: NULL, stored as `{}`.
    type Meta<'a> =
        Option<tokio_postgres::types::Json<&'a serde_json::Map<String, serde_json::Value>>>;
    let meta: Vec<Meta<'_>> = events
        .iter()
        .map(|e| (!e.metadata.is_empty()).then_some(tokio_postgres::types::Json(&e.metadata)))
        .collect();
    // Every task's baselines as JSON text in one buffer, bound by slices of it.
    let mut text = String::with_capacity(baselines.len() * 160);
    let ends: Vec<Option<(usize, usize)>> = baselines
        .iter()
        .map(|b| {
            b.as_deref().map(|b| {
                let start = text.len();
                pricer.write_json(b, &mut text);
                (start, text.len())
            })
        })
        .collect();
    let base: Vec<Option<super::JsonText<'_>>> = ends
        .iter()
        .map(|r| r.map(|(a, b)| super::JsonText(&text[a..b])))
        .collect();
    tx.execute(
        stmt,
        &[
            &tenant, &ids, &ts, &et, &corr, &user, &agent, &workflow, &dur, &queue, &cost, &status,
            &pv, &provider, &model, &task, &tier, &u0, &u1, &u2, &u3, &u4, &u5, &u6, &success,
            &err, &meta, &base,
        ],
    )
    .await
}
