//! `store::tenant_tx` is the way tenant data is read: it sees the rows of its tenant only (row-level
//! security as `agenttally_app`), and the report, which reads through it, lists each tenant's own.
//! `store::tenant_read_tx`, the read API's, is isolated the same way.

mod common;

use agenttally_collector::{report, store, Scope};
use common::{event, Env};
use serde_json::json;
use tokio_postgres::GenericClient;

/// The one text value `sql` returns.
async fn one_text(c: &impl GenericClient, sql: &str) -> String {
    c.query_one(sql, &[]).await.expect(sql).get(0)
}

/// `tx` sees `want` events (its tenant's) and runs as the row-level-security role.
async fn assert_isolated(tx: &store::TenantTx<'_>, tenant: &str, want: i64) {
    let n: i64 = tx
        .query_one("SELECT count(*) FROM events", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, want, "{tenant}");
    assert_eq!(
        one_text(tx.pg(), "SELECT current_user::text").await,
        "agenttally_app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_transaction_sees_its_tenant_only() {
    let mut env = Env::start().await;
    let key = env.key(None, &[Scope::Ingest]).await;
    let mut events: Vec<_> = (0..3).map(|_| event("acme", json!({}))).collect();
    events.extend((0..2).map(|_| event("globex", json!({"provider": "anthropic"}))));
    let (status, body) = env.post(&key, &events).await;
    assert_eq!(status, 200, "{body}");

    let url = env.pg.database_url();
    let pool = store::connect_pool(&url, 1).expect("pool");
    let mut client = pool.get().await.expect("connection");
    for (tenant, want) in [("acme", 3i64), ("globex", 2), ("nobody", 0)] {
        let tx = store::tenant_tx(&mut client, tenant)
            .await
            .expect("tenant tx");
        assert_isolated(&tx, tenant, want).await;
        tx.commit().await.expect("commit");
    }
    // Outside a tenant transaction the connection is the collector's own user again.
    assert_ne!(
        one_text(&**client, "SELECT current_user::text").await,
        "agenttally_app"
    );

    let text = report::report(&url, &[]).await.expect("report");
    let acme = text.split("tenant globex").next().expect("acme part");
    assert!(acme.contains("tenant acme"), "{text}");
    assert!(
        acme.contains("openai") && !acme.contains("anthropic"),
        "{text}"
    );
    let globex = text.split("tenant globex").nth(1).expect("globex part");
    assert!(
        globex.contains("anthropic") && !globex.contains("openai"),
        "{text}"
    );

    // The read API's transaction: the same isolation; on the embedded cluster (which prefetches
    // on Linux) index scans are off for that transaction only.
    let scans = "SELECT current_setting('enable_indexscan')";
    let eic = "SELECT current_setting('effective_io_concurrency')";
    for (tenant, want) in [("acme", 3i64), ("nobody", 0)] {
        let tx = store::tenant_read_tx(&mut client, tenant)
            .await
            .expect("read tx");
        assert_isolated(&tx, tenant, want).await;
        let (scans, eic) = (one_text(tx.pg(), scans).await, one_text(tx.pg(), eic).await);
        if cfg!(target_os = "linux") {
            assert_eq!((eic.as_str(), scans.as_str()), ("256", "off"));
        } else {
            assert_eq!(scans, "on", "no prefetching, planner's choice kept");
        }
        tx.commit().await.expect("commit");
    }
    assert_eq!(
        one_text(&**client, scans).await,
        "on",
        "outside the read transaction"
    );
    env.shutdown().await;
}
