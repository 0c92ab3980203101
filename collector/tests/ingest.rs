//! Ingest over real HTTP into a real PostgreSQL: exact decimals, dedupe on resend, gzip, tenant
//! binding, rollups equal to raw sums, RLS, poison-row isolation, retention, metrics and health.
//! Each test has its own cluster and collector, so one failure never hides another.

mod common;

use agenttally_collector::Scope;
use common::{batch, event, gzip, Env};
use serde_json::{json, Value};

/// A collector on a fresh cluster and an ingest key of tenant `acme`.
async fn setup() -> (Env, String) {
    let env = Env::start().await;
    let key = env.key(Some("acme"), &[Scope::Ingest]).await;
    (env, key)
}

/// Exact decimals (text and number), one row per id, resends and in-batch copies counted as duplicates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_decimals_are_stored_once_and_resends_are_duplicates() {
    let (mut env, key) = setup().await;
    // -- exact decimals, stored once; a resend counts duplicates --
    let events: Vec<Value> = (0..50)
        .map(|i| {
            event(
                "acme",
                json!({"cost_usd": if i == 0 { json!("0.0123") } else { json!(format!("0.00000000000000000{}", i % 10)) },
                       "metadata": {"n": i, "price": 0.1}}),
            )
        })
        .collect();
    let (s, v) = env.post(&key, &events).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v, json!({"accepted": 50, "duplicates": 0, "rejected": []}));
    let first_id = events[0]["id"].as_str().expect("id").to_string();
    let cost: String = env
        .db
        .query_one(
            "SELECT cost_usd::text FROM events WHERE id = $1::text::uuid",
            &[&first_id],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(cost, "0.0123", "money is stored exactly");
    let (s, v) = env.post(&key, &events).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"accepted": 0, "duplicates": 50, "rejected": []}));
    assert_eq!(env.count("SELECT count(*) FROM events").await, 50);
    assert_eq!(env.count("SELECT count(*) FROM event_ids").await, 50);

    // -- duplicate inside one batch, plus a number cost converted exactly --
    let e = event("acme", json!({"cost_usd": 0.1}));
    let (s, v) = env.post(&key, &[e.clone(), e.clone()]).await;
    assert_eq!(
        (s, v),
        (200, json!({"accepted": 1, "duplicates": 1, "rejected": []}))
    );
    let c: String = env
        .db
        .query_one(
            "SELECT cost_usd::text FROM events WHERE id = $1::text::uuid",
            &[&e["id"].as_str().expect("id")],
        )
        .await
        .expect("row")
        .get(0);
    assert_eq!(c, "0.1");

    env.shutdown().await;
}

/// A gzip body is inflated and stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bodies_are_accepted() {
    let (mut env, key) = setup().await;
    // -- gzip --
    let gz_events: Vec<Value> = (0..20).map(|_| event("acme", json!({}))).collect();
    let (s, v, _) = env
        .post_raw(
            Some(&key),
            gzip(&batch(&gz_events)),
            &[("content-encoding", "gzip")],
        )
        .await;
    assert_eq!((s, &v["accepted"]), (200, &json!(20)), "{v}");

    env.shutdown().await;
}

/// An invalid event and another tenant's event are each rejected by name, with their ids; the rest is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_foreign_event_is_rejected_alone() {
    let (mut env, key) = setup().await;
    // -- a bad event is rejected alone; a foreign tenant's event is rejected by name --
    let mixed = vec![
        event("acme", json!({})),
        event("acme", json!({"duration_ms": -5})),
        event("other", json!({})),
        event("acme", json!({})),
    ];
    let (s, v) = env.post(&key, &mixed).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["accepted"], 2);
    let rej = v["rejected"].as_array().expect("rejected");
    assert_eq!(rej.len(), 2);
    assert_eq!(rej[0]["index"], 1);
    assert_eq!(
        rej[0]["error"],
        "batch[1].duration_ms: must be >= 0, got -5"
    );
    assert_eq!(rej[0]["id"], mixed[1]["id"]);
    assert_eq!(rej[0]["retryable"], json!(false));
    assert_eq!(rej[1]["index"], 2);
    assert_eq!(rej[1]["id"], mixed[2]["id"]);
    assert_eq!(rej[1]["retryable"], json!(false));
    assert!(rej[1]["error"]
        .as_str()
        .expect("str")
        .contains("bound to tenant `acme` and may not write tenant `other`"));

    env.shutdown().await;
}

/// A platform key writes several tenants in one batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_key_writes_several_tenants() {
    let (mut env, _key) = setup().await;
    // -- a platform key writes several tenants in one batch --
    let platform = env.key(None, &[Scope::Ingest]).await;
    let multi: Vec<Value> = ["t1", "t2", "t3", "t1"]
        .iter()
        .map(|t| event(t, json!({})))
        .collect();
    let (s, v) = env.post(&platform, &multi).await;
    assert_eq!((s, &v["accepted"]), (200, &json!(4)), "{v}");

    env.shutdown().await;
}

/// The same events sent concurrently (retries racing their original, across the writers): each stored once, every copy answered; rollups, hourly and daily, equal the raw rows, histograms bucket by bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_resends_store_once_and_rollups_equal_raw_rows() {
    let (mut env, _key) = setup().await;
    // -- the same events sent concurrently (retries racing their original, across the writers):
    //    each stored once, every copy answered as accepted or duplicate --
    let race_key = env.key(Some("race"), &[Scope::Ingest]).await;
    let race: Vec<Value> = (0..300)
        .map(|i| event("race", json!({"duration_ms": 10 + i, "queue_ms": i % 7})))
        .collect();
    let results = tokio::join!(
        env.post(&race_key, &race),
        env.post(&race_key, &race[100..250]),
        env.post(&race_key, &race),
        env.post(&race_key, &race[..150]),
        env.post(&race_key, &race),
        env.post(&race_key, &race[200..]),
    );
    let (mut accepted, mut duplicates) = (0, 0);
    for (s, v) in [
        results.0, results.1, results.2, results.3, results.4, results.5,
    ] {
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["rejected"], json!([]), "{v}");
        accepted += v["accepted"].as_i64().expect("accepted");
        duplicates += v["duplicates"].as_i64().expect("duplicates");
    }
    assert_eq!((accepted, duplicates), (300, 1300 - 300));
    for sql in [
        "SELECT count(*) FROM events WHERE tenant_id = 'race'",
        "SELECT count(DISTINCT id) FROM events WHERE tenant_id = 'race'",
        "SELECT count(*) FROM event_ids WHERE tenant_id = 'race'",
        "SELECT sum(events)::int8 FROM rollup_hourly WHERE tenant_id = 'race'",
        "SELECT sum(events)::int8 FROM rollup_daily WHERE tenant_id = 'race'",
        "SELECT sum(value::int8)::int8 FROM rollup_daily, jsonb_each_text(queue_hist) \
         WHERE tenant_id = 'race'",
    ] {
        assert_eq!(env.count(sql).await, 300, "{sql}");
    }

    // -- rollups: sums over rollups equal sums over raw rows, hourly and daily --
    for table in ["rollup_hourly", "rollup_daily"] {
        let raw = env
            .db
            .query_one(
                "SELECT count(*)::int8, sum(cost_usd)::text, sum(input_tokens)::int8, \
                 sum(output_tokens)::int8, sum(duration_ms)::int8, count(*) FILTER (WHERE success)::int8 \
                 FROM events",
                &[],
            )
            .await
            .expect("raw");
        let roll = env
            .db
            .query_one(
                &format!(
                    "SELECT sum(events)::int8, sum(cost_usd)::text, sum(input_tokens)::int8, \
                     sum(output_tokens)::int8, sum(duration_sum_ms)::int8, sum(successes)::int8 FROM {table}"
                ),
                &[],
            )
            .await
            .expect("rollup");
        for i in 0..6 {
            if i == 1 {
                let (a, b): (String, String) = (raw.get(1), roll.get(1));
                assert_eq!(
                    a.parse::<rust_decimal::Decimal>().expect("dec"),
                    b.parse::<rust_decimal::Decimal>().expect("dec"),
                    "{table} cost"
                );
            } else {
                assert_eq!(
                    raw.get::<_, i64>(i),
                    roll.get::<_, i64>(i),
                    "{table} column {i}"
                );
            }
        }
    }
    let hist_total = env
        .count("SELECT sum(value::int8)::int8 FROM rollup_hourly, jsonb_each_text(duration_hist)")
        .await;
    assert_eq!(
        hist_total,
        env.count("SELECT count(duration_ms) FROM events").await
    );
    // Every rollup row's histograms hold exactly its counts (merged over many commits).
    for table in ["rollup_hourly", "rollup_daily"] {
        let sql = format!(
            "SELECT count(*) FROM {table} r WHERE \
               (SELECT coalesce(sum(value::int8), 0) FROM jsonb_each_text(r.duration_hist)) \
                 <> r.duration_count \
               OR (SELECT coalesce(sum(value::int8), 0) FROM jsonb_each_text(r.queue_hist)) \
                 <> r.queue_count"
        );
        assert_eq!(env.count(&sql).await, 0, "{table}: histogram counts");
    }
    // ... and equal the histograms of the raw rows, bucket by bucket.
    let mut raw_hist = agenttally_collector::store::histogram::Histogram::default();
    for r in env
        .db
        .query(
            "SELECT duration_ms FROM events WHERE tenant_id = 'race'",
            &[],
        )
        .await
        .expect("raw durations")
    {
        raw_hist.record(r.get(0));
    }
    let raw_hist: Vec<(i64, i64)> = raw_hist
        .0
        .iter()
        .map(|(b, n)| (i64::from(*b), *n))
        .collect();
    let rollup_hist: Vec<(i64, i64)> = env
        .db
        .query(
            "SELECT key::int8, sum(value::int8)::int8 FROM rollup_daily, \
               jsonb_each_text(duration_hist) WHERE tenant_id = 'race' \
             GROUP BY 1 ORDER BY 1",
            &[],
        )
        .await
        .expect("rollup histogram")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        raw_hist, rollup_hist,
        "daily duration histogram of tenant race"
    );

    env.shutdown().await;
}

/// The app role sees and writes only the tenant set in its transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_limits_the_app_role_to_its_tenant() {
    let (mut env, _key) = setup().await;
    let platform = env.key(None, &[Scope::Ingest]).await;
    let multi: Vec<Value> = ["t1", "t2", "t1"]
        .iter()
        .map(|t| event(t, json!({})))
        .collect();
    let (s, v) = env.post(&platform, &multi).await;
    assert_eq!((s, &v["accepted"]), (200, &json!(3)), "{v}");
    // -- RLS: the app role sees only the tenant set in its transaction --
    let rls = env
        .db
        .batch_execute(
            "BEGIN; SET LOCAL ROLE agenttally_app; \
             SELECT set_config('agenttally.tenant_id', 't2', true); \
             CREATE TEMP TABLE seen ON COMMIT DROP AS SELECT count(*) AS n FROM events;",
        )
        .await;
    rls.expect("rls query");
    let n: i64 = env
        .db
        .query_one("SELECT n FROM seen", &[])
        .await
        .expect("seen")
        .get(0);
    env.db.batch_execute("COMMIT").await.expect("commit");
    assert_eq!(n, 1, "tenant t2 sees only its own row");
    let err = env
        .db
        .batch_execute(
            "BEGIN; SET LOCAL ROLE agenttally_app; \
             SELECT set_config('agenttally.tenant_id', 't2', true); \
             INSERT INTO event_ids VALUES ('t1', gen_random_uuid());",
        )
        .await
        .expect_err("writing another tenant's row must fail under RLS");
    assert!(
        err.to_string().contains("row-level security")
            || format!("{err:?}").contains("row-level security"),
        "{err:?}"
    );
    env.db.batch_execute("ROLLBACK").await.expect("rollback");

    env.shutdown().await;
}

/// A row the database refuses with a data error fails alone (a final rejection naming its id); its batch-mates are stored, and so is it once the cause is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_row_is_rejected_alone_and_stored_once_fixed() {
    let (mut env, key) = setup().await;
    // -- a poison row (here: a trigger refuses it with a data error, a check violation) fails
    //    alone, a final rejection naming its id; its batch-mates are stored --
    env.db
        .batch_execute(
            "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
               IF NEW.correlation_id = 'poison' THEN \
                 RAISE EXCEPTION 'poison row' USING ERRCODE = 'check_violation'; END IF; \
               RETURN NEW; END $$; \
             CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison();",
        )
        .await
        .expect("trigger");
    let a: Vec<Value> = (0..5).map(|_| event("acme", json!({}))).collect();
    let mut b: Vec<Value> = (0..5).map(|_| event("acme", json!({}))).collect();
    b[3] = event("acme", json!({"correlation_id": "poison"}));
    let (ra, rb) = tokio::join!(env.post(&key, &a), env.post(&key, &b));
    assert_eq!(
        ra,
        (200, json!({"accepted": 5, "duplicates": 0, "rejected": []}))
    );
    assert_eq!(rb.0, 200);
    assert_eq!(rb.1["accepted"], 4, "{}", rb.1);
    let rej = &rb.1["rejected"][0];
    assert_eq!(rej["index"], 3);
    assert_eq!(rej["id"], b[3]["id"]);
    assert_eq!(rej["retryable"], json!(false));
    assert!(
        rej["error"].as_str().expect("s").contains("poison row"),
        "{rej}"
    );
    env.db
        .batch_execute("DROP TRIGGER poison ON events")
        .await
        .expect("drop trigger");
    // ... and once the cause is gone it is stored on resend, the others counted as duplicates.
    let (s, v) = env.post(&key, &b).await;
    assert_eq!(
        (s, v),
        (200, json!({"accepted": 1, "duplicates": 4, "rejected": []}))
    );

    env.shutdown().await;
}

/// Store one event of tenant `old`, `days` old, with its dedupe id, in its own day partition.
async fn store_old_event(env: &Env, days: u32) {
    env.db
        .batch_execute(&format!(
            "SELECT agenttally_ensure_partition((now() - interval '{days} days')::date); \
             INSERT INTO events (tenant_id, id, ts, event_type, correlation_id, success) \
               VALUES ('old', gen_random_uuid(), now() - interval '{days} days', \
                       'agent.started', 'c', true); \
             INSERT INTO event_ids SELECT tenant_id, id FROM events WHERE tenant_id = 'old';"
        ))
        .await
        .expect("an old event");
}

/// Store one hour-totals row of tenant `old` for the hour `days` ago.
async fn store_old_hour_totals(env: &Env, days: u32) {
    env.db
        .batch_execute(&format!(
            "INSERT INTO rollup_tenant_hourly VALUES ('old', \
               date_trunc('hour', now() - interval '{days} days'), 1, 0, 0, 0, 0, 0)"
        ))
        .await
        .expect("an old hour-totals row");
}

/// Retention drops an expired day partition and its dedupe ids, expired hourly agent rollups, and
/// leaves current data alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_drops_expired_partitions_with_their_ids() {
    let (mut env, key) = setup().await;
    let current: Vec<Value> = (0..5).map(|_| event("acme", json!({}))).collect();
    let (s, _) = env.post(&key, &current).await;
    assert_eq!(s, 200);
    // -- retention: an expired day partition is dropped with its dedupe ids --
    store_old_event(&env, 40).await;
    let dropped = agenttally_collector::store::retention::run_once(&env.db, 30, 90)
        .await
        .expect("retention");
    assert_eq!(dropped, 1);
    assert_eq!(
        env.count("SELECT count(*) FROM event_ids WHERE tenant_id = 'old'")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE tenant_id = 'old'")
            .await,
        0
    );
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE tenant_id = 'acme'")
            .await,
        5,
        "retention leaves current data alone"
    );

    // -- hourly agent rollups and hour totals expire with the hourly retention; daily rollups
    // are kept --
    for (table, age) in [
        ("rollup_agent_hourly", "100 days"),
        ("rollup_agent_hourly", "10 days"),
        ("rollup_agent_daily", "100 days"),
    ] {
        env.db
            .batch_execute(&format!(
                "INSERT INTO {table} (tenant_id, bucket, event_type, agent_id, itemized, events, \
                   successes, cost_usd, costed_events, unpriced_events, unpriced_tokens, \
                   input_tokens, cached_input_tokens, cache_write_tokens, cache_write_1h_tokens, \
                   output_tokens, reasoning_tokens, requests, duration_count, duration_sum_ms, \
                   duration_hist, queue_count, queue_sum_ms, queue_hist) \
                 VALUES ('old', date_trunc('hour', now() - interval '{age}'), 'agent.started', \
                   'a1', false, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, '{{}}', 0, 0, '{{}}')"
            ))
            .await
            .expect("agent rollup row");
    }
    // Hour totals expire with the hourly retention too.
    for days in [100, 10] {
        store_old_hour_totals(&env, days).await;
    }
    agenttally_collector::store::retention::run_once(&env.db, 30, 90)
        .await
        .expect("retention");
    assert_eq!(
        env.count("SELECT count(*) FROM rollup_agent_hourly WHERE tenant_id = 'old'")
            .await,
        1,
        "the hourly row older than 90 days is deleted, the 10-day-old one kept"
    );
    assert_eq!(
        env.count("SELECT count(*) FROM rollup_agent_daily WHERE tenant_id = 'old'")
            .await,
        1
    );
    let current_agents = env
        .count("SELECT sum(events)::int8 FROM rollup_agent_hourly WHERE tenant_id = 'acme'")
        .await;
    assert_eq!(current_agents, 5);

    assert_eq!(
        env.count("SELECT count(*) FROM rollup_tenant_hourly WHERE tenant_id = 'old'")
            .await,
        1,
        "the hour totals older than 90 days are deleted, the 10-day-old ones kept"
    );

    env.shutdown().await;
}

/// Health answers, and the metrics count what was accepted and rejected, by reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics_report_what_happened() {
    let (mut env, key) = setup().await;
    let (s, _) = env
        .post(
            &key,
            &(0..7).map(|_| event("acme", json!({}))).collect::<Vec<_>>(),
        )
        .await;
    assert_eq!(s, 200);
    let (s, _) = env
        .post(
            &key,
            &[
                event("acme", json!({"duration_ms": -5})),
                event("other", json!({})),
            ],
        )
        .await;
    assert_eq!(s, 200);
    // -- health and metrics --
    let h = env.get("/healthz").await;
    assert_eq!(h.status().as_u16(), 200);
    let m = env.get("/metrics").await.text().await.expect("text");
    for needle in [
        "agenttally_ingest_events_accepted_total 7",
        "agenttally_ingest_events_duplicate_total",
        "agenttally_ingest_events_rejected_total{reason=\"invalid\"} 1",
        "agenttally_ingest_events_rejected_total{reason=\"tenant\"} 1",
        "agenttally_writer_queue_events 0",
        "agenttally_ingest_batch_duration_seconds_count",
    ] {
        assert!(m.contains(needle), "metrics lack `{needle}`:\n{m}");
    }

    env.shutdown().await;
}

/// The old raw events and old hour-total rows stored.
async fn held_old(env: &Env) -> (i64, i64) {
    (
        env.count("SELECT count(*) FROM events WHERE tenant_id = 'old'")
            .await,
        env.count("SELECT count(*) FROM rollup_tenant_hourly WHERE tenant_id = 'old'")
            .await,
    )
}

/// A collector on `url` keeping raw events `raw` days and hourly rollups `hourly` days.
async fn start_with_retention(
    url: &str,
    raw: u32,
    hourly: u32,
) -> agenttally_collector::Result<agenttally_collector::Server> {
    let mut cfg = agenttally_collector::ServerConfig::new(url.to_string());
    cfg.listen = "127.0.0.1:0".parse().expect("addr");
    cfg.raw_retention_days = raw;
    cfg.hourly_retention_days = hourly;
    agenttally_collector::Server::start(cfg).await
}

/// A database that held data before it had a floor (one from before migration 0011): the first
/// start records the age of the data held where it is longer than the settings, so a start
/// with a shorter retention is refused instead of deleting it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_floor_covers_the_data_a_database_already_holds() {
    use agenttally_collector::store::retention::{floor, Floor};
    use std::time::Duration;

    let (mut env, _) = setup().await;
    let url = env.pg.database_url();
    // What a database from before the floor looks like: data, and no floor recorded.
    env.db
        .batch_execute("DELETE FROM retention_floor")
        .await
        .expect("a database without a floor");
    store_old_hour_totals(&env, 100).await;
    store_old_event(&env, 45).await;
    let start = |raw: u32, hourly: u32| start_with_retention(&url, raw, hourly);

    // The defaults (30 / 90) would delete the 45-day-old event and the 100-day-old hour row.
    let err = match start(30, 90).await {
        Ok(_) => panic!("started below the age of the data held"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains(
            "raw_retention_days (--raw-retention-days, AGENTTALLY_RAW_RETENTION_DAYS): 30 days \
             is shorter than the 45 days"
        ),
        "{err}"
    );
    assert_eq!(
        floor(&env.db).await.expect("floor"),
        Some(Floor {
            raw_days: 45,
            hourly_days: 101,
        }),
        "the first floor is the age of the data held (the hour row: 100 days and part of one)"
    );
    assert_eq!(held_old(&env).await, (1, 1), "nothing deleted");
    // Settings that keep it start, and delete none of it.
    let keeping = start(45, 101).await.expect("starts at the floor");
    keeping
        .shutdown(Duration::from_secs(10))
        .await
        .expect("stop");
    assert_eq!(held_old(&env).await, (1, 1), "nothing deleted");
    env.shutdown().await;
}

/// The retention floor: the first start records its retention; a collector configured to keep
/// less refuses to start, naming the setting and the command, and deletes nothing; a longer
/// setting starts and records nothing; after `retention` lowers the floor, the shorter setting
/// starts and applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retention_below_the_floor_refuses_to_start_and_deletes_nothing() {
    use agenttally_collector::store::retention::{floor, Floor};
    use std::time::Duration;

    let (mut env, _) = setup().await;
    let url = env.pg.database_url();
    assert_eq!(
        floor(&env.db).await.expect("floor"),
        Some(Floor {
            raw_days: 30,
            hourly_days: 90
        }),
        "the first start records its settings"
    );
    store_old_event(&env, 20).await;
    let start = |raw: u32, hourly: u32| start_with_retention(&url, raw, hourly);
    let old = "SELECT count(*) FROM events WHERE tenant_id = 'old'";

    for (raw, hourly, setting) in [
        (
            7,
            90,
            "raw_retention_days (--raw-retention-days, AGENTTALLY_RAW_RETENTION_DAYS): 7 days is \
             shorter than the 30 days",
        ),
        (
            30,
            14,
            "hourly_retention_days (--hourly-retention-days, AGENTTALLY_HOURLY_RETENTION_DAYS): \
             14 days is shorter than the 90 days",
        ),
    ] {
        let err = match start(raw, hourly).await {
            Ok(_) => panic!("raw {raw} / hourly {hourly} started below the floor"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(setting), "{err}");
        assert!(
            err.contains(&format!(
                "agenttally-collector retention --raw-retention-days {raw} \
                 --hourly-retention-days {hourly}"
            )),
            "{err}"
        );
        assert_eq!(env.count(old).await, 1, "nothing deleted: {err}");
    }

    // Longer settings delete less: they start, and the floor stays.
    let longer = start(60, 120).await.expect("longer retention starts");
    longer
        .shutdown(Duration::from_secs(10))
        .await
        .expect("stop");
    assert_eq!(
        floor(&env.db).await.expect("floor").map(|f| f.raw_days),
        Some(30)
    );

    // The deliberate step: lower the floor, then the shorter setting starts and applies.
    let before = agenttally_collector::set_retention_floor(
        &url,
        Floor {
            raw_days: 7,
            hourly_days: 90,
        },
    )
    .await
    .expect("set floor");
    assert_eq!(before.map(|f| f.raw_days), Some(30));
    let shorter = start(7, 90).await.expect("starts at the lowered floor");
    assert_eq!(
        env.count(old).await,
        0,
        "the 20-day-old event is past 7 days"
    );
    shorter
        .shutdown(Duration::from_secs(10))
        .await
        .expect("stop");
    env.shutdown().await;
}
