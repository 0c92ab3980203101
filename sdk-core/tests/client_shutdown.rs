//! Shutdown is bounded by one deadline, in-flight HTTP included; what is not delivered by then
//! is spooled (and replayed by the next client on the directory) or counted as dropped.
#![cfg(feature = "client")]
#![allow(clippy::unwrap_used)]

mod client_support;

use std::time::{Duration, Instant};

use agenttally::{Client, ErrorKind};
use client_support::{event, hanging_server, wait_until, TestCollector};

#[test]
fn shutdown_2s_returns_within_2_5s_against_a_collector_that_never_answers() {
    let (addr, _h) = hanging_server();
    let c = Client::builder()
        .endpoint(format!("http://{addr}"))
        .request_timeout(Duration::from_secs(60))
        .flush_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    for i in 0..500 {
        c.track(event(i)).unwrap();
    }
    std::thread::sleep(Duration::from_millis(100)); // let requests get in flight
    let start = Instant::now();
    c.shutdown(Duration::from_secs(2)).unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_millis(2500), "shutdown took {took:?}");
    let st = c.stats();
    assert_eq!(
        st.dropped.shutdown + st.dropped.undeliverable,
        500,
        "{st:?}"
    );
    assert_eq!(c.track(event(1)).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn undelivered_at_shutdown_is_spooled_and_replayed_by_the_next_client() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _h) = hanging_server();
    let c = Client::builder()
        .endpoint(format!("http://{addr}"))
        .spool_dir(dir.path())
        .flush_interval(Duration::from_millis(10))
        .build()
        .unwrap();
    let ids: std::collections::HashSet<_> = (0..300)
        .map(|i| {
            let e = event(i);
            let id = e.id;
            c.track(e).unwrap();
            id
        })
        .collect();
    // The directory is locked while a running client holds it: two never replay the same files.
    let c2 = Client::builder()
        .endpoint(format!("http://{addr}"))
        .spool_dir(dir.path())
        .build();
    assert_eq!(c2.unwrap_err().kind(), ErrorKind::Io);
    let start = Instant::now();
    c.shutdown(Duration::from_secs(1)).unwrap();
    assert!(start.elapsed() < Duration::from_millis(1500));
    assert_eq!(c.stats().spooled, 300);
    drop(c);

    let srv = TestCollector::start();
    let c = Client::builder()
        .endpoint(srv.url())
        .spool_dir(dir.path())
        .build()
        .unwrap();
    assert!(wait_until(Duration::from_secs(20), || srv.ctl.unique() == 300));
    assert_eq!(srv.ctl.ids(), ids, "replay keeps ids");
    assert_eq!(srv.ctl.duplicates(), 0);
    assert!(wait_until(Duration::from_secs(5), || c
        .stats()
        .spool_pending
        == 0));
}

#[test]
fn dropping_the_client_is_a_bounded_shutdown() {
    let (addr, _h) = hanging_server();
    let c = Client::builder()
        .endpoint(format!("http://{addr}"))
        .flush_interval(Duration::from_millis(10))
        .drop_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    for i in 0..100 {
        c.track(event(i)).unwrap();
    }
    let start = Instant::now();
    drop(c);
    assert!(start.elapsed() < Duration::from_millis(1200));
}

#[test]
fn flush_times_out_while_the_collector_hangs_and_delivery_goes_on() {
    let (addr, _h) = hanging_server();
    let c = Client::builder()
        .endpoint(format!("http://{addr}"))
        .build()
        .unwrap();
    c.track(event(0)).unwrap();
    let start = Instant::now();
    let e = c.flush(Duration::from_millis(300)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout);
    assert!(start.elapsed() < Duration::from_secs(1));
    assert_eq!(c.stats().queue_depth, 1);
    c.shutdown(Duration::from_millis(300)).unwrap();
}
