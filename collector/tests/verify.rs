//! Accuracy checks (`store::verify`, `agenttally-collector verify`): after ingest of two tenants
//! (both instrumentation patterns, costs reported, priced at ingest and unpriced, two savings
//! baselines) the rollups recomputed from raw rows equal the stored ones; rollups corrupted in
//! SQL (a cost, a deleted row, a bogus row, a savings sum, a histogram) are reported exactly, by
//! table, key and column, the daily check's `/metrics` gauges show them, and `--repair` restores
//! every rollup row as ingest wrote it. A repair racing ingest loses nothing — with the writer
//! held between its raw insert and its rollup update while the repair takes its snapshot, and
//! under continuous ingest — and the binary's `verify` exits 1 while differences remain.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use agenttally_collector::store::verify::{self, DiffKind, Key, Options, Since};
use agenttally_collector::Scope;
use chrono::{DateTime, NaiveTime, Utc};
use common::runs::tenant_events;
use common::{event, Env};
use deadpool_postgres::Pool;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_agenttally-collector");
const TABLES: [&str; 7] = [
    "rollup_hourly",
    "rollup_daily",
    "rollup_agent_hourly",
    "rollup_agent_daily",
    "rollup_savings_hourly",
    "rollup_savings_daily",
    "rollup_tenant_hourly",
];

fn opts(tenant: Option<&str>, repair: bool) -> Options {
    Options {
        tenant: tenant.map(str::to_string),
        since: Since::DaysAgo(7),
        raw_retention_days: 30,
        hourly_retention_days: 90,
        repair,
    }
}

/// (tenant, table, key, column; "" for a missing or extra row, with the kind)
type Found = BTreeSet<(String, String, Key, String)>;

fn found(r: &verify::Report) -> Found {
    r.differences
        .iter()
        .map(|d| {
            let col = match &d.kind {
                DiffKind::Missing => "<missing>".to_string(),
                DiffKind::Extra => "<extra>".to_string(),
                DiffKind::Column { column, .. } => column.to_string(),
            };
            (d.tenant.clone(), d.table.to_string(), d.key.clone(), col)
        })
        .collect()
}

/// Every rollup row as text (money without trailing zeros), in key order.
async fn dump(env: &Env) -> Vec<String> {
    let mut out = Vec::new();
    for t in TABLES {
        let rows = env
            .db
            .query(
                &format!(
                    "SELECT '{t} ' || (to_jsonb(r) || jsonb_build_object(
                        'cost_usd', trim_scale((to_jsonb(r)->>'cost_usd')::numeric)::text,
                        'actual_usd', trim_scale((to_jsonb(r)->>'actual_usd')::numeric)::text,
                        'baseline_usd', trim_scale((to_jsonb(r)->>'baseline_usd')::numeric)::text
                     ))::text AS row
                     FROM {t} r ORDER BY 1"
                ),
                &[],
            )
            .await
            .expect("dump");
        out.extend(rows.iter().map(|r| r.get::<_, String>(0)));
    }
    out
}

/// The key returned by a statement's `RETURNING bucket, <k2>, provider, model, task_type, <k6>`.
async fn corrupt(env: &Env, sql: &str) -> Key {
    let r = env.db.query_one(sql, &[]).await.expect(sql);
    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4), r.get(5))
}

fn usage_key(table: &str, tenant: &str, filter: &str) -> String {
    format!(
        "(SELECT ctid FROM {table} WHERE tenant_id = '{tenant}' AND {filter} \
          ORDER BY bucket, event_type, provider, model, task_type, itemized LIMIT 1)"
    )
}

async fn metric(env: &Env, name: &str) -> Option<i64> {
    let text = env.get("/metrics").await.text().await.expect("metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
}

/// Wait until the daily check (every second in this test) reports `differences`.
async fn wait_for_check(env: &Env, differences: i64) {
    for _ in 0..300 {
        if metric(env, "agenttally_verify_differences").await == Some(differences)
            && metric(env, "agenttally_verify_last_run_timestamp_seconds")
                .await
                .is_some_and(|t| t > 0)
            && metric(env, "agenttally_verify_rows_checked")
                .await
                .is_some_and(|n| n > 0)
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the daily check never reported {differences} differences");
}

/// Raw totals equal rollup totals for `tenant`: events and cost in the usage and agent tables, tasks and
/// both sums per baseline in both savings tables.
async fn totals_match(env: &Env, tenant: &str) {
    let raw = env
        .db
        .query_one(
            "SELECT count(*), coalesce(sum(cost_usd), 0)::text FROM events WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .expect("raw");
    for t in [
        "rollup_hourly",
        "rollup_daily",
        "rollup_agent_hourly",
        "rollup_agent_daily",
    ] {
        let r = env
            .db
            .query_one(
                &format!(
                    "SELECT sum(events)::bigint, sum(cost_usd)::text FROM {t} WHERE tenant_id = $1"
                ),
                &[&tenant],
            )
            .await
            .expect("rollup");
        assert_eq!(
            r.get::<_, i64>(0),
            raw.get::<_, i64>(0),
            "{tenant} {t} events"
        );
        assert_eq!(
            r.get::<_, String>(1).parse::<rust_decimal::Decimal>().ok(),
            raw.get::<_, String>(1)
                .parse::<rust_decimal::Decimal>()
                .ok(),
            "{tenant} {t} cost"
        );
    }
    for t in ["rollup_savings_hourly", "rollup_savings_daily"] {
        let diff: i64 = env
            .db
            .query_one(
                &format!(
                    "SELECT count(*) FROM (
                       SELECT baseline, sum(tasks)::bigint AS n FROM {t} WHERE tenant_id = $1
                       GROUP BY 1) s
                     FULL JOIN (
                       SELECT b.key AS baseline, count(*) AS n FROM events e,
                         jsonb_each(e.baselines) b WHERE e.tenant_id = $1 GROUP BY 1) r
                     USING (baseline) WHERE s.n IS DISTINCT FROM r.n"
                ),
                &[&tenant],
            )
            .await
            .expect("savings")
            .get(0);
        assert_eq!(
            diff, 0,
            "{tenant} {t}: tasks per baseline differ from raw rows"
        );
    }
}

async fn run(pool: &Pool, o: &Options) -> verify::Report {
    verify::run(pool, o).await.expect("verify")
}

async fn post_all(env: &Env, key: &str, events: &[Value]) {
    for chunk in events.chunks(100) {
        let (s, body) = env.post(key, chunk).await;
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["accepted"], json!(chunk.len()), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_reports_every_corruption_and_repair_restores_the_rollups() {
    let mut env = Env::start_with(|c| {
        c.savings_baselines = vec!["most_expensive".into(), "openai_codex".into()];
        c.verify_delay = Duration::ZERO;
        c.verify_interval = Duration::from_secs(1);
    })
    .await;
    let pool = agenttally_collector::store::connect_pool(&env.pg.database_url(), 2).expect("pool");
    let now = Utc::now();
    let mut keys = Vec::new();
    for (tenant, seed) in [("acme", 3u64), ("globex", 5)] {
        let key = env.key(Some(tenant), &[Scope::Ingest]).await;
        post_all(&env, &key, &tenant_events(tenant, seed, 80, now)).await;
        // Hot keys for the races below: calls of this hour.
        post_all(&env, &key, &[event(tenant, json!({}))]).await;
        keys.push(key);
    }

    // -- as ingested: nothing differs --
    let clean = run(&pool, &opts(None, false)).await;
    assert_eq!(clean.differences, [], "{clean}");
    // 7d: today and the 7 days before it, each with its (pre-created) partition.
    assert_eq!((clean.tenants, clean.days), (2, 8), "{clean}");
    assert!(clean.rows_checked > 200, "{clean}");
    let before = dump(&env).await;
    // Shorter retention: older days are named as not checked, not reported as differences.
    let short = run(
        &pool,
        &Options {
            raw_retention_days: 2,
            hourly_retention_days: 1,
            ..opts(None, false)
        },
    )
    .await;
    assert_eq!((short.days, short.differences.len()), (3, 0), "{short}");
    let notes = short.notes.join("\n");
    assert!(
        notes.contains("not checked: their raw rows are past the raw retention (2 days)")
            && notes.contains("hourly rollups of")
            && notes.contains("past the hourly retention (1 days)"),
        "{notes}"
    );
    assert!(short.rows_checked < clean.rows_checked, "{short}");
    wait_for_check(&env, 0).await;

    // -- corruption: exactly these nine are reported --
    let cost = corrupt(
        &env,
        &format!(
            "UPDATE rollup_daily SET cost_usd = cost_usd + 1 WHERE ctid = {}
             RETURNING bucket, event_type, provider, model, task_type, itemized",
            usage_key("rollup_daily", "acme", "event_type = 'provider.api_call'")
        ),
    )
    .await;
    let deleted = corrupt(
        &env,
        &format!(
            "DELETE FROM rollup_hourly WHERE ctid = {}
             RETURNING bucket, event_type, provider, model, task_type, itemized",
            usage_key("rollup_hourly", "globex", "event_type = 'agent.completed'")
        ),
    )
    .await;
    let today = now.date_naive().and_time(NaiveTime::MIN).and_utc();
    let bogus = corrupt(
        &env,
        "INSERT INTO rollup_daily VALUES ('acme', date_trunc('day', now() AT TIME ZONE 'UTC') \
           AT TIME ZONE 'UTC', 'customer.login', 'bogus', '', '', 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, \
           0, 0, 0, 0, 0, '{}', 0, 0, '{}', false)
         RETURNING bucket, event_type, provider, model, task_type, itemized",
    )
    .await;
    assert_eq!(bogus.0, today);
    let saving = corrupt(
        &env,
        "UPDATE rollup_savings_hourly SET baseline_usd = baseline_usd + 0.5 WHERE ctid = \
           (SELECT ctid FROM rollup_savings_hourly WHERE tenant_id = 'globex' \
            AND baseline = 'openai_codex' AND compared > 0 \
            ORDER BY bucket, provider, model, task_type, success LIMIT 1)
         RETURNING bucket, baseline, provider, model, task_type, success",
    )
    .await;
    let hist = corrupt(
        &env,
        &format!(
            "UPDATE rollup_hourly SET duration_hist = agenttally_hist_merge(duration_hist, \
               '{{\"7\": 1}}') WHERE ctid = {}
             RETURNING bucket, event_type, provider, model, task_type, itemized",
            usage_key(
                "rollup_hourly",
                "acme",
                "event_type = 'agent.completed' AND duration_count > 0"
            )
        ),
    )
    .await;
    // The agent rollups: a cost changed, a row gone (their key slots without a column read
    // back as "").
    let agent_cost = corrupt(
        &env,
        "UPDATE rollup_agent_daily SET cost_usd = cost_usd + 2 WHERE ctid = \
           (SELECT ctid FROM rollup_agent_daily WHERE tenant_id = 'acme' \
            AND event_type = 'provider.api_call' ORDER BY bucket, agent_id LIMIT 1)
         RETURNING bucket, event_type, agent_id, '', '', itemized",
    )
    .await;
    let agent_deleted = corrupt(
        &env,
        "DELETE FROM rollup_agent_hourly WHERE ctid = \
           (SELECT ctid FROM rollup_agent_hourly WHERE tenant_id = 'globex' \
            AND event_type = 'agent.completed' AND duration_count > 0 \
            ORDER BY bucket, agent_id, itemized LIMIT 1)
         RETURNING bucket, event_type, agent_id, '', '', itemized",
    )
    .await;
    // The hour totals (keyed by bucket alone; the other slots read back as "" and false): a
    // token count changed, a row gone.
    let totals_tokens = corrupt(
        &env,
        "UPDATE rollup_tenant_hourly SET tokens = tokens + 5 WHERE ctid = \
           (SELECT ctid FROM rollup_tenant_hourly WHERE tenant_id = 'acme' ORDER BY bucket LIMIT 1)
         RETURNING bucket, '', '', '', '', false",
    )
    .await;
    let totals_deleted = corrupt(
        &env,
        "DELETE FROM rollup_tenant_hourly WHERE ctid = \
           (SELECT ctid FROM rollup_tenant_hourly WHERE tenant_id = 'globex' \
            ORDER BY bucket DESC LIMIT 1)
         RETURNING bucket, '', '', '', '', false",
    )
    .await;
    let want: Found = [
        ("acme", "rollup_daily", cost, "cost_usd"),
        ("globex", "rollup_hourly", deleted, "<missing>"),
        ("acme", "rollup_daily", bogus, "<extra>"),
        ("globex", "rollup_savings_hourly", saving, "baseline_usd"),
        ("acme", "rollup_hourly", hist, "duration_hist"),
        ("acme", "rollup_agent_daily", agent_cost, "cost_usd"),
        ("globex", "rollup_agent_hourly", agent_deleted, "<missing>"),
        ("acme", "rollup_tenant_hourly", totals_tokens, "tokens"),
        (
            "globex",
            "rollup_tenant_hourly",
            totals_deleted,
            "<missing>",
        ),
    ]
    .into_iter()
    .map(|(t, table, k, c)| (t.to_string(), table.to_string(), k, c.to_string()))
    .collect();
    let dirty = run(&pool, &opts(None, false)).await;
    assert_eq!(found(&dirty), want, "{dirty}");
    assert_eq!(dirty.differences.len(), 9, "{dirty}");
    let text = dirty.to_string();
    assert!(text.contains(": 9 differences"), "{text}");
    assert!(text.contains("rollup_tenant_hourly (bucket "), "{text}");
    assert!(text.contains("rollup_agent_daily (bucket "), "{text}");
    assert!(
        text.contains("cost_usd: stored ") && text.contains("missing row"),
        "{text}"
    );
    // One tenant only: only its five.
    let acme = run(&pool, &opts(Some("acme"), false)).await;
    assert_eq!(acme.tenants, 1);
    assert_eq!(
        found(&acme),
        want.iter().filter(|d| d.0 == "acme").cloned().collect(),
        "{acme}"
    );
    // The daily check sees them too.
    wait_for_check(&env, 9).await;

    // -- repair: every row as ingest wrote it --
    let repaired = run(&pool, &opts(None, true)).await;
    assert_eq!(found(&repaired), want, "{repaired}");
    assert_eq!(repaired.repaired_rows, 9, "{repaired}");
    assert_eq!(repaired.notes, Vec::<String>::new());
    let again = run(&pool, &opts(None, false)).await;
    assert_eq!(again.differences, [], "{again}");
    assert_eq!(
        dump(&env).await,
        before,
        "rollups differ from what ingest wrote"
    );
    wait_for_check(&env, 0).await;

    // -- two repairs at once: the correction is added once --
    repairs_at_once(&env, &pool).await;
    assert_eq!(
        dump(&env).await,
        before,
        "rollups differ from what ingest wrote"
    );

    // -- a repair racing ingest, the writer held between its raw rows and its rollups --
    repair_while_the_writer_waits(&env, &pool, &keys[0]).await;
    // -- and under continuous ingest --
    repair_under_ingest(&env, &pool, &keys).await;
    for tenant in ["acme", "globex"] {
        totals_match(&env, tenant).await;
    }

    // -- the binary --
    cli(&env).await;

    // -- a raw row ingest could not have written: that day is not checked, the rest is --
    let id: uuid::Uuid = env
        .db
        .query_one(
            "UPDATE events SET baselines = '[1]' WHERE tenant_id = 'globex' AND id = \
               (SELECT id FROM events WHERE tenant_id = 'globex' AND baselines IS NOT NULL \
                ORDER BY id LIMIT 1) RETURNING id",
            &[],
        )
        .await
        .expect("corrupt raw row")
        .get(0);
    let r = run(&pool, &opts(None, false)).await;
    assert!(!r.is_clean() && r.differences.is_empty(), "{r}");
    assert_eq!(r.unreadable.len(), 1, "{r}");
    assert!(
        r.unreadable[0].starts_with("globex ")
            && r.unreadable[0].contains(&format!("events row {id}: baselines: must be an object")),
        "{r}"
    );
    assert_eq!(r.days, 8, "{r}");

    // -- `metadata.calls` as floats: 1e15 reads back as `1000000000000000.0` (a float, as
    // ingest saw it); 1e16 reads back as an integer, so whether it was itemized is unknown --
    let key = env.key(Some("edge"), &[Scope::Ingest]).await;
    for calls in [json!(1e15), json!(2.0), json!(1e16)] {
        let mut e = event(
            "edge",
            json!({"event_type": "agent.completed", "agent_id": "a1", "provider": null}),
        );
        e["metadata"] = json!({ "calls": calls });
        post_all(&env, &key, &[e]).await;
    }
    let stored: Vec<String> = env
        .db
        .query(
            "SELECT metadata->>'calls' FROM events WHERE tenant_id = 'edge' ORDER BY id",
            &[],
        )
        .await
        .expect("edge rows")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(stored, ["1000000000000000.0", "2.0", "10000000000000000"]);
    let r = run(&pool, &opts(Some("edge"), false)).await;
    assert_eq!(r.differences, [], "{r}");
    assert_eq!(r.unreadable.len(), 1, "{r}");
    assert!(
        r.unreadable[0].contains("metadata.calls: 10000000000000000 may have been sent"),
        "{r}"
    );
    env.shutdown().await;
}

/// The writer has inserted raw rows and holds the hourly rollup row of their key, but waits for
/// the daily one (held here); the repair takes its snapshot then (without those rows) and must
/// wait for the writer's lock. A repair that wrote the values of its snapshot would drop the
/// writer's events from the rollups; a correction added under the lock keeps them.
async fn repair_while_the_writer_waits(env: &Env, pool: &Pool, key: &str) {
    let hot = "tenant_id = 'acme' AND event_type = 'provider.api_call' AND provider = 'openai' \
               AND model = 'gpt-4o' AND task_type = 'code' AND NOT itemized \
               AND bucket = date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";
    let n = env
        .db
        .execute(
            &format!(
                "UPDATE rollup_daily SET cost_usd = cost_usd + 7, events = events + 2 WHERE {hot}"
            ),
            &[],
        )
        .await
        .expect("corrupt");
    assert_eq!(n, 1);
    let holder = hold_row(env, "rollup_daily", hot).await;
    let http = env.http.clone();
    let (base, key) = (env.base.clone(), key.to_string());
    let events: Vec<Value> = (0..5).map(|_| event("acme", json!({}))).collect();
    let ingest = tokio::spawn(async move {
        let r = http
            .post(format!("{base}/v1/batch"))
            .header("authorization", format!("Bearer {key}"))
            .header("content-type", "application/json")
            .body(common::batch(&events))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 200);
        r.json::<Value>().await.expect("json")
    });
    lock_waiters(env, 1).await;
    let repair = {
        let pool = pool.clone();
        tokio::spawn(async move { verify::run(&pool, &opts(Some("acme"), true)).await })
    };
    lock_waiters(env, 2).await;
    holder.batch_execute("ROLLBACK").await.expect("release");
    let body = ingest.await.expect("join");
    assert_eq!(body["accepted"], json!(5), "{body}");
    let report = repair.await.expect("join").expect("repair");
    assert_eq!(report.repaired_rows, 1, "{report}");
    let after = run(pool, &opts(None, false)).await;
    assert_eq!(after.differences, [], "{after}");
    totals_match(env, "acme").await;
}

/// Wait until `n` sessions wait for a lock (a row lock or an advisory lock).
async fn lock_waiters(env: &Env, n: i64) {
    for _ in 0..200 {
        let w: i64 = env
            .db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'",
                &[],
            )
            .await
            .expect("activity")
            .get(0);
        if w >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("fewer than {n} sessions wait for a lock");
}

/// A connection holding the row lock of the rows of `table` matching `filter` until it sends
/// `ROLLBACK`.
async fn hold_row(env: &Env, table: &str, filter: &str) -> tokio_postgres::Client {
    let (holder, conn) = tokio_postgres::connect(&env.pg.database_url(), tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM {table} WHERE {filter} FOR UPDATE"
        ))
        .await
        .expect("lock");
    holder
}

/// Both repairs find the corrupted row and reach their repair while the row is held here; the
/// first takes its snapshot and waits for the row, the second waits for the first to finish
/// before taking its own, finds nothing left to correct, and the row is corrected once.
async fn repairs_at_once(env: &Env, pool: &Pool) {
    let key = corrupt(
        env,
        &format!(
            "UPDATE rollup_daily SET cost_usd = cost_usd - 2, events = events + 1 WHERE ctid = {}
             RETURNING bucket, event_type, provider, model, task_type, itemized",
            usage_key("rollup_daily", "globex", "itemized")
        ),
    )
    .await;
    let filter = format!(
        "tenant_id = 'globex' AND bucket = '{}' AND event_type = '{}' AND provider = '{}' \
         AND model = '{}' AND task_type = '{}' AND itemized = {}",
        key.0.to_rfc3339(),
        key.1,
        key.2,
        key.3,
        key.4,
        key.5
    );
    let holder = hold_row(env, "rollup_daily", &filter).await;
    let repairs: Vec<_> = (0..2)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { verify::run(&pool, &opts(Some("globex"), true)).await })
        })
        .collect();
    lock_waiters(env, 2).await;
    holder.batch_execute("ROLLBACK").await.expect("release");
    let mut total = 0;
    for r in repairs {
        let r = r.await.expect("join").expect("repair");
        assert_eq!(r.differences.len(), 2, "{r}");
        total += r.repaired_rows;
    }
    assert_eq!(total, 1, "the row is corrected once");
    let again = run(pool, &opts(None, false)).await;
    assert_eq!(again.differences, [], "{again}");
}

/// Corrupt, repair, repeat, while both tenants ingest into the very rows being repaired.
async fn repair_under_ingest(env: &Env, pool: &Pool, keys: &[String]) {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut senders = Vec::new();
    for (tenant, key) in ["acme", "globex"].into_iter().zip(keys) {
        let (http, base, key, stop) = (
            env.http.clone(),
            env.base.clone(),
            key.clone(),
            stop.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut sent = 0;
            let mut seed = 100;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                seed += 1;
                let mut events: Vec<Value> = (0..20).map(|_| event(tenant, json!({}))).collect();
                events.extend(tenant_events(tenant, seed, 3, Utc::now()));
                let r = http
                    .post(format!("{base}/v1/batch"))
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(common::batch(&events))
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status().as_u16(), 200);
                sent += events.len();
            }
            sent
        }));
    }
    let today = "date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";
    let this_hour = "date_trunc('hour', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'";
    let hot = "event_type = 'provider.api_call' AND provider = 'openai' AND model = 'gpt-4o' \
               AND task_type = 'code' AND NOT itemized";
    let mut repaired = 0;
    for round in 0..5 {
        let tenant = ["acme", "globex"][round % 2];
        let mut corrupted = 0;
        for sql in [
            format!(
                "UPDATE rollup_daily SET cost_usd = cost_usd + 1, successes = successes - 1
                 WHERE tenant_id = '{tenant}' AND {hot} AND bucket = {today}"
            ),
            format!(
                "UPDATE rollup_hourly SET queue_hist = '{{\"2\": 9}}', events = events + 4
                 WHERE tenant_id = '{tenant}' AND {hot} AND bucket = {this_hour}"
            ),
            format!(
                "DELETE FROM rollup_savings_daily
                 WHERE tenant_id = '{tenant}' AND baseline = 'openai_codex' AND provider = 'openai'
                   AND model = 'gpt-4o' AND task_type = 'code' AND bucket = {today}"
            ),
        ] {
            corrupted += env.db.execute(&sql, &[]).await.expect("corrupt");
        }
        assert!(
            corrupted >= 2,
            "round {round}: only {corrupted} rows to corrupt"
        );
        let r = run(pool, &opts(Some(tenant), true)).await;
        assert!(r.repaired_rows >= corrupted, "round {round}: {r}");
        repaired += r.repaired_rows;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut sent = 0;
    for s in senders {
        sent += s.await.expect("sender");
    }
    assert!(
        sent > 100 && repaired >= 10,
        "sent {sent}, repaired {repaired}"
    );
    let after = run(pool, &opts(None, false)).await;
    assert_eq!(after.differences, [], "{after}");
}

/// `agenttally-collector verify` as an operator runs it.
async fn cli(env: &Env) {
    let url = env.pg.database_url();
    let verify = |args: &[&str]| {
        let out = Command::new(BIN)
            .arg("verify")
            .args(["--database-url", &url])
            .args(args)
            .output()
            .expect("run verify");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, out, err) = tokio::task::block_in_place(|| verify(&["--since", "7d"]));
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.starts_with("verified ") && out.contains(" days, 2 tenants: 0 differences"),
        "{out}"
    );

    let key: (DateTime<Utc>, String) = {
        let r = env
            .db
            .query_one(
                "UPDATE rollup_daily SET output_tokens = output_tokens + 5 WHERE ctid = \
                   (SELECT ctid FROM rollup_daily WHERE tenant_id = 'globex' \
                    AND event_type = 'agent.failed' ORDER BY bucket LIMIT 1)
                 RETURNING bucket, event_type",
                &[],
            )
            .await
            .expect("corrupt");
        (r.get(0), r.get(1))
    };
    let since = (Utc::now().date_naive() - chrono::TimeDelta::days(7)).to_string();
    let (code, out, _) = tokio::task::block_in_place(|| verify(&["--since", &since]));
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains(": 1 differences"), "{out}");
    let line = out
        .lines()
        .find(|l| l.contains("output_tokens: stored"))
        .unwrap_or_else(|| panic!("no difference line in {out}"));
    assert!(
        line.contains("globex rollup_daily")
            && line.contains(&key.0.format("%Y-%m-%dT%H:%MZ").to_string())
            && line.contains("\"agent.failed\""),
        "{line}"
    );
    // Another tenant alone: nothing.
    let (code, out, _) = tokio::task::block_in_place(|| verify(&["--tenant", "acme"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(" 1 tenants: 0 differences"), "{out}");

    let (code, out, _) = tokio::task::block_in_place(|| verify(&["--repair"]));
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("repaired 1 rollup rows") && out.contains("after repair: verified "),
        "{out}"
    );
    let (code, out, _) = tokio::task::block_in_place(|| verify(&[]));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(": 0 differences"), "{out}");

    for bad in ["7", "2026-13-01", "9999d"] {
        let (code, _, err) = tokio::task::block_in_place(|| verify(&["--since", bad]));
        assert_eq!(code, Some(2), "{bad}: {err}");
        assert!(err.contains("since: must be"), "{bad}: {err}");
    }
}
