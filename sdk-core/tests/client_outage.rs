//! The outage test: the collector's port refuses connections for the first 10 s, 100k events
//! are tracked with the spool on, the process "restarts" half-way (the client is dropped and a
//! new one opens the same spool directory), and every event is delivered, none lost.
#![cfg(feature = "client")]
#![allow(clippy::unwrap_used)]

mod client_support;

use std::collections::HashSet;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use agenttally::client::SpoolFsync;
use agenttally::{Client, ClientBuilder, OverflowPolicy};
use client_support::{event, refused_port, wait_until, TestCollector};
use uuid::Uuid;

const N: u64 = 100_000;

fn builder(url: &str, dir: &std::path::Path) -> ClientBuilder {
    Client::builder()
        .endpoint(url)
        .flush_at(1000)
        .flush_interval(Duration::from_millis(100))
        .max_queue_events(10_000)
        .overflow(OverflowPolicy::Spool)
        .spool_dir(dir)
        .spool_fsync(SpoolFsync::EveryN(10_000))
        .max_retry_time(Duration::from_secs(1))
        .retry_delays(Duration::from_millis(50), Duration::from_millis(400))
}

#[test]
fn outage_with_restart_loses_nothing() {
    let start = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let addr = refused_port();
    let url = format!("http://{addr}");
    let events: Vec<_> = (0..N).map(event).collect();
    let ids: HashSet<Uuid> = events.iter().map(|e| e.id).collect();
    let mut events = events.into_iter();

    // First "process": half the events, then it goes away while the collector is still down.
    let a = builder(&url, dir.path()).build().unwrap();
    for e in events.by_ref().take((N / 2) as usize) {
        a.track(e).unwrap();
    }
    std::thread::sleep(Duration::from_millis(1500));
    let sa = a.stats();
    drop(a);

    // Second "process" on the same spool directory.
    let b = builder(&url, dir.path()).build().unwrap();
    assert!(
        b.stats().spool_pending > 0,
        "the first client's events are on disk"
    );
    for e in events {
        b.track(e).unwrap();
    }
    // The collector comes up on the refused port 10 s after the start.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(start.elapsed()));
    let srv = TestCollector::on(TcpListener::bind(addr).unwrap());
    let delivered = wait_until(Duration::from_secs(45), || srv.ctl.unique() as u64 == N);
    b.shutdown(Duration::from_secs(5)).unwrap();
    let sb = b.stats();
    eprintln!(
        "outage: unique {} of {N}, duplicates {}, first client {sa:?}, second client {sb:?}, took {:?}",
        srv.ctl.unique(),
        srv.ctl.duplicates(),
        start.elapsed()
    );
    assert!(delivered, "delivered {} of {N}", srv.ctl.unique());
    assert_eq!(srv.ctl.ids(), ids);
    assert_eq!(sa.dropped.total() + sb.dropped.total(), 0);
    assert_eq!(srv.ctl.seen.lock().unwrap().resent_after_ack, 0);
}
