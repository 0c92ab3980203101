//! The group-commit writer: handlers push validated events into a bounded channel with a oneshot
//! for the ack; one task commits everything already waiting (up to `max_events`, lingering
//! `commit_interval` for more if set) in a single transaction — raw rows and dedupe ids with ON CONFLICT DO NOTHING RETURNING, rollup
//! deltas of only the newly inserted rows — and acknowledges each request after the commit.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttally::AnalyticsEvent;
use chrono::NaiveDate;
use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::rollups::{self, Grain};
use super::{is_transient, is_unavailable};
use crate::metrics::Metrics;

/// What happened to one event handed to the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Newly stored.
    Inserted,
    /// Already stored earlier (same tenant_id and id): nothing written.
    Duplicate,
    /// The database refused this event alone (found by retrying it by itself).
    Failed(String),
}

/// The database is unavailable: nothing of the request was acknowledged; retry later.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("database unavailable: {0}")]
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
}

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
) -> (WriterHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(cfg.queue_capacity.max(1));
    let cfg = Arc::new(cfg);
    let mut w = Writer {
        pool,
        cfg: cfg.clone(),
        metrics: metrics.clone(),
        partitions: HashSet::new(),
        hourly_sql: rollups::upsert_sql(Grain::Hourly),
        daily_sql: rollups::upsert_sql(Grain::Daily),
    };
    let task = tokio::spawn(async move { w.run(rx).await });
    (WriterHandle { tx, cfg, metrics }, task)
}

struct Writer {
    pool: Pool,
    cfg: Arc<WriterConfig>,
    metrics: Arc<Metrics>,
    /// Day partitions known to exist.
    partitions: HashSet<NaiveDate>,
    hourly_sql: String,
    daily_sql: String,
}

/// Why one commit attempt failed.
enum Fail {
    Unavailable(String),
    Transient(String),
    Data(String),
}

impl From<tokio_postgres::Error> for Fail {
    fn from(e: tokio_postgres::Error) -> Self {
        let msg = match e.as_db_error() {
            Some(db) => format!("{} ({})", db.message(), db.code().code()),
            None => e.to_string(),
        };
        if is_unavailable(&e) {
            Fail::Unavailable(msg)
        } else if is_transient(&e) {
            Fail::Transient(msg)
        } else {
            Fail::Data(msg)
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
    async fn run(&mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        while let Some(first) = rx.recv().await {
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
            self.metrics
                .queue_events
                .fetch_sub(n as i64, Ordering::Relaxed);
            self.commit_group(group).await;
        }
        tracing::info!("writer drained and stopped");
    }

    async fn commit_group(&mut self, group: Vec<WriteRequest>) {
        let started = Instant::now();
        // Flatten, and settle duplicates inside the group here: only the first (tenant, id)
        // goes to the database; the rest keep the `Duplicate` they start with.
        let mut outcomes: Vec<Vec<Outcome>> = group
            .iter()
            .map(|r| vec![Outcome::Duplicate; r.events.len()])
            .collect();
        let mut seen: HashSet<(&str, Uuid)> = HashSet::new();
        let mut entries: Vec<(usize, usize)> = Vec::new();
        for (ri, r) in group.iter().enumerate() {
            for (ei, e) in r.events.iter().enumerate() {
                if seen.insert((e.tenant_id.as_str(), e.id)) {
                    entries.push((ri, ei));
                }
            }
        }
        let result = self.store(&group, &entries, &mut outcomes).await;
        self.metrics.commit_latency.observe(started.elapsed());
        for (r, outs) in group.into_iter().zip(outcomes) {
            let reply = match &result {
                Ok(()) => Ok(outs),
                Err(e) => Err(e.clone()),
            };
            let _ = r.reply.send(reply);
        }
    }

    /// Store `entries`; on a data error, split the failing part (by request, then in halves) and
    /// retry each piece in its own transaction, so a poison row is rejected by itself in about
    /// 2·log2(n) extra transactions and everything else is stored.
    async fn store(
        &mut self,
        group: &[WriteRequest],
        entries: &[(usize, usize)],
        outcomes: &mut [Vec<Outcome>],
    ) -> Result<(), Unavailable> {
        let mut pending = vec![entries.to_vec()];
        while let Some(part) = pending.pop() {
            match self.attempt(group, &part, outcomes).await {
                Ok(()) => {}
                Err(Fail::Unavailable(m)) => {
                    self.metrics.commit_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("commit failed, database unavailable: {m}");
                    return Err(Unavailable(m));
                }
                Err(Fail::Data(m) | Fail::Transient(m)) => {
                    self.metrics.commit_failures.fetch_add(1, Ordering::Relaxed);
                    // A partition dropped behind our back shows up as a data error: re-check.
                    self.partitions.clear();
                    if let [(ri, ei)] = part[..] {
                        tracing::warn!("event {ei} of a request could not be stored: {m}");
                        outcomes[ri][ei] = Outcome::Failed(m);
                        continue;
                    }
                    tracing::debug!("commit of {} events failed ({m}); splitting", part.len());
                    let first_request = part[0].0;
                    if part.iter().any(|&(ri, _)| ri != first_request) {
                        let mut by_request: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
                        for e in part {
                            by_request.entry(e.0).or_default().push(e);
                        }
                        pending.extend(by_request.into_values());
                    } else {
                        let (a, b) = part.split_at(part.len() / 2);
                        pending.push(b.to_vec());
                        pending.push(a.to_vec());
                    }
                }
            }
        }
        Ok(())
    }

    /// One transaction, retried a few times on serialization failures and deadlocks.
    async fn attempt(
        &mut self,
        group: &[WriteRequest],
        entries: &[(usize, usize)],
        outcomes: &mut [Vec<Outcome>],
    ) -> Result<(), Fail> {
        let mut tries = 0;
        loop {
            match self.transaction(group, entries).await {
                Ok(inserted) => {
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
                Err(Fail::Transient(m)) if tries < 3 => {
                    tries += 1;
                    tracing::debug!("transient commit failure ({m}), retrying");
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn transaction<'g>(
        &mut self,
        group: &'g [WriteRequest],
        entries: &[(usize, usize)],
    ) -> Result<HashSet<(&'g str, Uuid)>, Fail> {
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
        let mut by_tenant: BTreeMap<&str, Vec<&AnalyticsEvent>> = BTreeMap::new();
        for &(ri, ei) in entries {
            let e = &group[ri].events[ei];
            by_tenant.entry(e.tenant_id.as_str()).or_default().push(e);
        }
        let tx = client.transaction().await?;
        let claim = tx.prepare_cached(CLAIM_IDS_SQL).await?;
        let insert = tx.prepare_cached(INSERT_SQL).await?;
        let set_tenant = tx.prepare_cached(super::SET_TENANT_SQL).await?;
        let hourly = tx.prepare_cached(&self.hourly_sql).await?;
        let daily = tx.prepare_cached(&self.daily_sql).await?;
        // Data access as the non-superuser app role, one tenant at a time, under RLS.
        tx.batch_execute("SET LOCAL ROLE agenttally_app").await?;
        let mut inserted = HashSet::new();
        for (tenant, events) in by_tenant {
            tx.query_one(&set_tenant, &[&tenant]).await?;
            let fresh = insert_events(&tx, &claim, &insert, tenant, &events).await?;
            for (grain, stmt) in [(Grain::Hourly, &hourly), (Grain::Daily, &daily)] {
                let d = rollups::deltas(grain, fresh.iter().copied());
                rollups::upsert(&*tx, stmt, tenant, &d).await?;
            }
            inserted.extend(fresh.iter().map(|e| (tenant, e.id)));
        }
        tx.commit().await?;
        self.metrics.commits.fetch_add(1, Ordering::Relaxed);
        Ok(inserted)
    }
}

/// Claim ids in the dedupe table; only ids not stored before come back.
const CLAIM_IDS_SQL: &str = "INSERT INTO event_ids (tenant_id, id) SELECT $1, unnest($2::uuid[])
    ON CONFLICT DO NOTHING RETURNING id";

/// Raw rows of events whose ids were just claimed. Two statements rather than one CTE joining
/// the claimed ids back to the input: the join's hash build was a third of the commit's time.
const INSERT_SQL: &str =
    "INSERT INTO events (tenant_id, id, ts, event_type, correlation_id, user_id, agent_id,
        workflow_id, duration_ms, queue_ms, cost_usd, cost_status, price_version, provider,
        model, task_type, service_tier, input_tokens, cached_input_tokens, cache_write_tokens,
        cache_write_1h_tokens, output_tokens, reasoning_tokens, requests, success, error_code,
        metadata)
    SELECT $1, * FROM unnest($2::uuid[], $3::timestamptz[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::int8[], $10::int8[], $11::numeric[], $12::text[],
        $13::text[], $14::text[], $15::text[], $16::text[], $17::text[], $18::int8[],
        $19::int8[], $20::int8[], $21::int8[], $22::int8[], $23::int8[], $24::int8[],
        $25::bool[], $26::text[], $27::jsonb[])";

/// Store the events not stored before and return them (the ones rollups must count).
async fn insert_events<'e>(
    tx: &deadpool_postgres::Transaction<'_>,
    claim: &tokio_postgres::Statement,
    stmt: &tokio_postgres::Statement,
    tenant: &str,
    events: &[&'e AnalyticsEvent],
) -> Result<Vec<&'e AnalyticsEvent>, tokio_postgres::Error> {
    let all_ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let claimed = tx.query(claim, &[&tenant, &all_ids]).await?;
    let events: Vec<&'e AnalyticsEvent> = if claimed.len() == events.len() {
        events.to_vec()
    } else {
        let fresh: HashSet<Uuid> = claimed.iter().map(|r| r.get(0)).collect();
        events
            .iter()
            .copied()
            .filter(|e| fresh.contains(&e.id))
            .collect()
    };
    if events.is_empty() {
        return Ok(events);
    }
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
    // Bound by reference: no copy of each event's metadata.
    let meta: Vec<tokio_postgres::types::Json<&serde_json::Map<String, serde_json::Value>>> =
        events
            .iter()
            .map(|e| tokio_postgres::types::Json(&e.metadata))
            .collect();
    tx.execute(
        stmt,
        &[
            &tenant, &ids, &ts, &et, &corr, &user, &agent, &workflow, &dur, &queue, &cost, &status,
            &pv, &provider, &model, &task, &tier, &u0, &u1, &u2, &u3, &u4, &u5, &u6, &success,
            &err, &meta,
        ],
    )
    .await?;
    Ok(events)
}
