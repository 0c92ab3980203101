//! Several writer tasks committing at once: the same events sent concurrently many times (a
//! retry racing its original, replays) are stored once, every copy is answered as accepted or
//! duplicate, and the rollups equal the raw rows exactly. Optimistic claims that meet an id a
//! concurrent writer has not yet committed wait for it, fail, and are redone carefully.

mod common;

use agenttally_collector::Scope;
use common::{event, join_all, Env};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_store_each_event_once() {
    let mut env = Env::start_with(|c| {
        c.commit_interval = std::time::Duration::ZERO;
        c.writers = 4;
    })
    .await;
    let key = env.key(None, &[Scope::Ingest]).await;
    let mut sent = 0i64;
    let mut expected = 0i64;
    for round in 0..4 {
        // Two tenants, overlapping slices: the same ids reach different writers at once.
        let events: Vec<Value> = (0..400)
            .map(|i| {
                let model = ["gpt-4o", "gpt-4o-mini"][i % 3 % 2];
                // Every fifth call names no agent.
                let agent = ["a1", "a2", "a3", "a4", ""][i % 5];
                event(
                    ["w1", "w2"][i % 2],
                    json!({"duration_ms": 1 + (i * 7 + round) % 900, "queue_ms": i % 3,
                           "model": model,
                           "agent_id": if agent.is_empty() { Value::Null } else { json!(agent) }}),
                )
            })
            .collect();
        expected += 400;
        let slices: Vec<&[Value]> = vec![
            &events[..],
            &events[100..300],
            &events[..200],
            &events[200..],
            &events[..],
            &events[50..350],
            &events[300..],
            &events[..],
        ];
        let posts = slices.iter().map(|s| {
            let env = &env;
            let key = &key;
            async move { env.post(key, s).await }
        });
        let mut handles = Vec::new();
        for p in posts {
            handles.push(p);
        }
        let results = join_all(handles).await;
        let (mut accepted, mut duplicates) = (0, 0);
        for (s, v) in results {
            assert_eq!(s, 200, "{v}");
            assert_eq!(v["rejected"], json!([]), "{v}");
            accepted += v["accepted"].as_i64().expect("accepted");
            duplicates += v["duplicates"].as_i64().expect("duplicates");
        }
        sent += slices.iter().map(|s| s.len() as i64).sum::<i64>();
        assert_eq!(accepted, 400, "round {round}");
        assert_eq!(
            accepted + duplicates,
            slices.iter().map(|s| s.len() as i64).sum::<i64>()
        );
    }
    assert!(sent > expected);
    for sql in [
        "SELECT count(*) FROM events",
        "SELECT count(DISTINCT (tenant_id, id)) FROM events",
        "SELECT count(*) FROM event_ids",
        "SELECT sum(events)::int8 FROM rollup_hourly",
        "SELECT sum(events)::int8 FROM rollup_daily",
        "SELECT sum(duration_count)::int8 FROM rollup_daily",
        "SELECT sum(value::int8)::int8 FROM rollup_hourly, jsonb_each_text(duration_hist)",
        "SELECT sum(value::int8)::int8 FROM rollup_daily, jsonb_each_text(queue_hist)",
        "SELECT sum(events)::int8 FROM rollup_agent_hourly",
        "SELECT sum(events)::int8 FROM rollup_agent_daily",
        "SELECT sum(value::int8)::int8 FROM rollup_agent_hourly, jsonb_each_text(duration_hist)",
    ] {
        assert_eq!(env.count(sql).await, expected, "{sql}");
    }
    for table in ["rollup_hourly", "rollup_daily"] {
        let sql = format!(
            "SELECT count(*) FROM {table} r FULL JOIN ( \
               SELECT tenant_id, provider, model, count(*) AS n, sum(duration_ms) AS d, \
                 sum(cost_usd) AS c FROM events GROUP BY 1, 2, 3) e \
             USING (tenant_id, provider, model) \
             WHERE r.events IS DISTINCT FROM e.n OR r.duration_sum_ms IS DISTINCT FROM e.d \
               OR r.cost_usd IS DISTINCT FROM e.c"
        );
        assert_eq!(env.count(&sql).await, 0, "{table} equals the raw rows");
    }
    for table in ["rollup_agent_hourly", "rollup_agent_daily"] {
        let sql = format!(
            "SELECT count(*) FROM {table} r FULL JOIN ( \
               SELECT tenant_id, coalesce(agent_id, '') AS agent_id, count(*) AS n, \
                 sum(duration_ms) AS d, sum(cost_usd) AS c FROM events GROUP BY 1, 2) e \
             USING (tenant_id, agent_id) \
             WHERE r.events IS DISTINCT FROM e.n OR r.duration_sum_ms IS DISTINCT FROM e.d \
               OR r.cost_usd IS DISTINCT FROM e.c"
        );
        assert_eq!(env.count(&sql).await, 0, "{table} equals the raw rows");
    }
    env.shutdown().await;
}
