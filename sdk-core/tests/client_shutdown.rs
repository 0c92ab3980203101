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

/// `track()` from several threads racing `shutdown()`: every call either was accepted or got
/// `Closed`/`QueueFull`, and every accepted event is delivered or counted (none left behind in
/// the queue after the worker stopped).
#[test]
fn tracks_racing_shutdown_are_all_accounted_for() {
    use agenttally::client::MemoryTransport;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    for round in 0..20 {
        let sink = MemoryTransport::new();
        let c = Client::builder()
            .transport(sink.clone())
            .flush_at(50)
            .build()
            .unwrap();
        let refused = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..3)
            .map(|t| {
                let (c, refused) = (c.clone(), refused.clone());
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        match c.track(event(t * 10_000 + i)) {
                            Ok(()) => {}
                            Err(e) => {
                                assert!(
                                    matches!(e.kind(), ErrorKind::Closed | ErrorKind::QueueFull),
                                    "{e}"
                                );
                                refused.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_micros(200 * round));
        c.shutdown(Duration::from_secs(5)).unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let st = c.stats();
        let delivered: usize = sink.batches().iter().map(|b| b.batch.len()).sum();
        assert_eq!(
            st.accepted + refused.load(Ordering::Relaxed),
            6_000,
            "{st:?}"
        );
        assert_eq!(
            st.accepted,
            delivered as u64 + st.dropped.total() - st.dropped.queue_full,
            "round {round}: {st:?}"
        );
        assert_eq!(st.queue_depth, 0, "{st:?}");
    }
}
