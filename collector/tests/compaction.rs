//! Compaction of closed days' daily rollups (`store::compact`): the rows of days before
//! yesterday move out of the three daily tables into month tables written in tenant order, and
//! every answer of the read API stays what it was; late events after the move add rows beside
//! the moved ones and are counted once; a closed month's table is rewritten in tenant order; the
//! accuracy check still finds the rollups equal to the raw rows, reports a corrupted moved row
//! and repairs it; the month tables are under row-level security like their daily table; rounds
//! run while ingest goes on lose and double nothing.

mod common;

use agenttally_collector::store::compact::{self, DAILY_TABLES};
use agenttally_collector::store::verify::{self, Options, Since};
use agenttally_collector::Scope;
use chrono::{Datelike, NaiveDate, TimeDelta, Utc};
use common::runs::tenant_events;
use common::Env;
use deadpool_postgres::Pool;
use serde_json::Value;

const TENANTS: [&str; 2] = ["acme", "globex"];

async fn post_all(env: &Env, key: &str, events: &[Value]) {
    for chunk in events.chunks(100) {
        let (s, body) = env.post(key, chunk).await;
        assert_eq!(s, 200, "{body}");
    }
}

/// Every answer the test compares, per tenant: whole UTC days over the last two weeks (read
/// from the daily rollups) and the default range.
async fn answers(env: &Env, key: &str, today: NaiveDate) -> Vec<Value> {
    let from = format!("{}T00:00:00Z", today - TimeDelta::days(14));
    let to = format!("{}T00:00:00Z", today + TimeDelta::days(1));
    let range = format!("from={from}&to={to}");
    let mut out = Vec::new();
    for tenant in TENANTS {
        for path in [
            format!("/v1/metrics/summary?tenant_id={tenant}&{range}"),
            format!("/v1/metrics/summary?tenant_id={tenant}"),
            format!(
                "/v1/metrics/timeseries?tenant_id={tenant}&{range}&metric=cost_usd&interval=day\
                 &group_by=provider"
            ),
            format!(
                "/v1/metrics/timeseries?tenant_id={tenant}&{range}&metric=executions\
                 &interval=day&group_by=agent_id"
            ),
            format!(
                "/v1/metrics/timeseries?tenant_id={tenant}&{range}&metric=p95_duration_ms\
                 &interval=day"
            ),
            format!("/v1/metrics/savings?tenant_id={tenant}&{range}"),
            format!("/v1/metrics/recommendations?tenant_id={tenant}&{range}"),
        ] {
            let r = env
                .http
                .get(format!("{}{path}", env.base))
                .bearer_auth(key)
                .send()
                .await
                .expect("GET");
            assert_eq!(r.status(), 200, "{path}");
            out.push(r.json().await.expect("json"));
        }
    }
    out
}

async fn check(pool: &Pool, repair: bool) -> verify::Report {
    verify::run(
        pool,
        &Options {
            tenant: None,
            since: Since::DaysAgo(10),
            raw_retention_days: 30,
            hourly_retention_days: 90,
            repair,
        },
    )
    .await
    .expect("verify")
}

/// `child` is in tenant order, but for a row now and then that PostgreSQL fits into the space
/// left on an earlier page (a shorter row than the one that did not fit).
async fn in_order(env: &Env, child: &str) {
    let r = env
        .db
        .query_one(
            &format!(
                "SELECT count(*) FILTER (WHERE tenant_id < t0 \
                          OR (tenant_id = t0 AND bucket < b0)), count(*) \
                 FROM (SELECT tenant_id, bucket, \
                         lag(tenant_id) OVER (ORDER BY ctid) AS t0, \
                         lag(bucket) OVER (ORDER BY ctid) AS b0 \
                       FROM ONLY {child}) s"
            ),
            &[],
        )
        .await
        .expect("order");
    let (back, rows) = (r.get::<_, i64>(0), r.get::<_, i64>(1));
    assert!(
        rows > 0 && back * 50 <= rows,
        "{child}: {back} of {rows} rows out of order"
    );
}

async fn count(env: &Env, sql: &str) -> i64 {
    env.count(sql).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moved_rollups_answer_the_same_and_late_rows_count_once() {
    let mut env = Env::start_with(|c| {
        c.rate_query_per_minute = 0;
        c.savings_baselines = vec!["most_expensive".into(), "gpt-4o".into()];
    })
    .await;
    let pool = agenttally_collector::store::connect_pool(&env.pg.database_url(), 2).expect("pool");
    let ingest = env.key(None, &[Scope::Ingest]).await;
    let read = env.key(None, &[Scope::Read]).await;
    let now = Utc::now();
    let today = now.date_naive();
    // Runs four to seven days ago and in the last three days, for both tenants.
    for (i, tenant) in TENANTS.iter().enumerate() {
        let seed = 11 + i as u64;
        post_all(
            &env,
            &ingest,
            &tenant_events(tenant, seed, 60, now - TimeDelta::days(4)),
        )
        .await;
        post_all(&env, &ingest, &tenant_events(tenant, seed + 7, 30, now)).await;
    }
    let before = answers(&env, &read, today).await;
    let yesterday = format!("{}T00:00:00Z", today - TimeDelta::days(1));

    // The rows of days before yesterday leave the daily tables; nothing else changes.
    let done = compact::run_once(&mut env.db, today)
        .await
        .expect("compact");
    assert!(done.moved > 0, "{done:?}");
    for t in DAILY_TABLES {
        let left = count(
            &env,
            &format!("SELECT count(*) FROM ONLY {t} WHERE bucket < '{yesterday}'"),
        )
        .await;
        assert_eq!(left, 0, "{t}: rows of closed days left");
        let moved = count(
            &env,
            &format!(
                "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = '{t}'::regclass AND c.relrowsecurity \
                   AND c.relforcerowsecurity"
            ),
        )
        .await;
        assert!(
            moved >= 1,
            "{t}: a month table under forced row-level security"
        );
    }
    assert_eq!(
        answers(&env, &read, today).await,
        before,
        "answers after the move"
    );
    let report = check(&pool, false).await;
    assert!(report.differences.is_empty(), "{report}");

    // Late events for the moved days: new rows beside the moved ones, counted once.
    let late: Vec<Value> = TENANTS
        .iter()
        .enumerate()
        .flat_map(|(i, t)| tenant_events(t, 40 + i as u64, 20, now - TimeDelta::days(4)))
        .collect();
    post_all(&env, &ingest, &late).await;
    let duplicated = count(
        &env,
        "SELECT count(*) FROM ONLY rollup_daily p WHERE EXISTS (SELECT 1 FROM rollup_daily c \
           WHERE c.tableoid <> 'rollup_daily'::regclass AND c.tenant_id = p.tenant_id \
             AND c.bucket = p.bucket AND c.event_type = p.event_type \
             AND c.provider = p.provider AND c.model = p.model AND c.task_type = p.task_type \
             AND c.itemized = p.itemized)",
    )
    .await;
    assert!(duplicated > 0, "late rows share keys with moved ones");
    let report = check(&pool, false).await;
    assert!(report.differences.is_empty(), "{report}");
    let with_late = answers(&env, &read, today).await;
    assert_ne!(with_late, before);
    // The next round moves the late rows too; a month table that got a quarter more rows than
    // it had in order (1% once its month is over) is rewritten in order.
    let done = compact::run_once(&mut env.db, today)
        .await
        .expect("compact");
    assert!(done.moved > 0, "{done:?}");
    for child in &done.rewritten {
        in_order(&env, child).await;
    }
    println!("late rows moved: {done:?}");
    assert_eq!(
        answers(&env, &read, today).await,
        with_late,
        "after moving late rows"
    );
    let summary = &with_late[0];
    let executions = count(
        &env,
        &format!(
            "SELECT count(*) FROM events WHERE tenant_id = 'acme' AND event_type IN \
             ('agent.completed', 'agent.failed', 'agent.timeout') AND ts >= '{}T00:00:00Z'",
            today - TimeDelta::days(14)
        ),
    )
    .await;
    assert_eq!(summary["executions"], executions, "{summary}");

    // As if a month later: everything moves, the months are closed and rewritten in order.
    let done = compact::run_once(&mut env.db, today + TimeDelta::days(40))
        .await
        .expect("compact");
    assert!(done.moved > 0 && !done.rewritten.is_empty(), "{done:?}");
    for child in &done.rewritten {
        in_order(&env, child).await;
    }
    for t in DAILY_TABLES {
        assert_eq!(
            count(&env, &format!("SELECT count(*) FROM ONLY {t}")).await,
            0,
            "{t}"
        );
    }
    assert_eq!(
        answers(&env, &read, today).await,
        with_late,
        "after the rewrite"
    );
    let report = check(&pool, false).await;
    assert!(report.differences.is_empty(), "{report}");

    // A moved row corrupted is reported, and repaired into one row of the right total.
    let month = (today - TimeDelta::days(5)).with_day(1).expect("day");
    let child = compact::month_table("rollup_daily", month);
    env.db
        .execute(
            &format!(
                "UPDATE {child} SET events = events + 5 WHERE ctid = \
                 (SELECT ctid FROM {child} WHERE tenant_id = 'acme' ORDER BY bucket DESC LIMIT 1)"
            ),
            &[],
        )
        .await
        .expect("corrupt");
    let report = check(&pool, false).await;
    assert_eq!(report.differences.len(), 1, "{report}");
    let report = check(&pool, true).await;
    assert_eq!(report.repaired_rows, 1, "{report}");
    let report = check(&pool, false).await;
    assert!(report.differences.is_empty(), "{report}");
    assert_eq!(
        answers(&env, &read, today).await,
        with_late,
        "after the repair"
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_beside_continuous_ingest_loses_nothing() {
    let mut env = Env::start_with(|c| c.rate_query_per_minute = 0).await;
    let pool = agenttally_collector::store::connect_pool(&env.pg.database_url(), 2).expect("pool");
    let ingest = env.key(None, &[Scope::Ingest]).await;
    let now = Utc::now();
    let mut total = 0;
    for (i, tenant) in TENANTS.iter().enumerate() {
        let events = tenant_events(tenant, 70 + i as u64, 40, now);
        total += events.len();
        post_all(&env, &ingest, &events).await;
    }
    // Batches of runs of today and of a week ago, sent back to back while rounds move every
    // day (as if a month later), the rows the writer is updating included.
    let sender = {
        let (base, http, key) = (env.base.clone(), env.http.clone(), ingest.clone());
        tokio::spawn(async move {
            let mut sent = 0;
            for round in 0..12u64 {
                for (i, tenant) in TENANTS.iter().enumerate() {
                    let when = if round % 2 == 0 {
                        now
                    } else {
                        now - TimeDelta::days(7)
                    };
                    let events = tenant_events(tenant, 100 + round * 2 + i as u64, 8, when);
                    let r = http
                        .post(format!("{base}/v1/batch"))
                        .bearer_auth(&key)
                        .body(common::batch(&events))
                        .header("content-type", "application/json")
                        .send()
                        .await
                        .expect("POST");
                    assert_eq!(r.status(), 200);
                    sent += events.len();
                }
            }
            sent
        })
    };
    let (mut moved, mut rounds) = (0, 0);
    let later = now.date_naive() + TimeDelta::days(40);
    while !sender.is_finished() {
        moved += compact::run_once(&mut env.db, later)
            .await
            .expect("compact")
            .moved;
        rounds += 1;
    }
    println!("{rounds} rounds beside ingest moved {moved} rows");
    total += sender.await.expect("sender");
    while count(&env, "SELECT count(*) FROM events").await < total as i64 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    moved += compact::run_once(&mut env.db, later)
        .await
        .expect("compact")
        .moved;
    assert!(moved > 0);
    let report = check(&pool, false).await;
    assert!(report.days > 0 && report.differences.is_empty(), "{report}");
    for t in DAILY_TABLES {
        assert_eq!(
            count(&env, &format!("SELECT count(*) FROM ONLY {t}")).await,
            0,
            "{t}"
        );
    }
    env.shutdown().await;
}
