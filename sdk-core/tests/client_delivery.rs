//! Delivery against a real HTTP collector that plays faults: every accepted event arrives once
//! by id, retries reuse ids, 413 splits, other 4xx are not retried, per-event rejections.
#![cfg(feature = "client")]
#![allow(clippy::unwrap_used)]

mod client_support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use agenttally::client::defaults::MAX_IN_FLIGHT;
use agenttally::client::MemoryTransport;
use agenttally::{Client, ClientBuilder, ErrorKind, OverflowPolicy};
use client_support::{event, hanging_server, refused_port, Fault, TestCollector};
use serde_json::json;
use uuid::Uuid;

fn client(url: &str) -> ClientBuilder {
    Client::builder()
        .endpoint(url)
        .api_key("test-key")
        .flush_interval(Duration::from_millis(50))
        .retry_delays(Duration::from_millis(20), Duration::from_millis(200))
        .max_retry_time(Duration::from_secs(20))
}

fn track_n(c: &Client, n: u64) -> HashSet<Uuid> {
    (0..n)
        .map(|i| {
            let e = event(i);
            let id = e.id;
            c.track(e).unwrap();
            id
        })
        .collect()
}

#[test]
fn delivers_every_event_once_with_gzip_and_auth_from_many_threads() {
    let srv = TestCollector::start();
    let c = client(&srv.url()).build().unwrap();
    let ids: HashSet<Uuid> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4).map(|_| s.spawn(|| track_n(&c, 1500))).collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    c.flush(Duration::from_secs(20)).unwrap();
    assert_eq!(srv.ctl.ids(), ids);
    assert_eq!(srv.ctl.duplicates(), 0);
    let st = c.stats();
    assert_eq!((st.accepted, st.sent, st.retried), (6000, 6000, 0));
    assert_eq!(st.queue_depth, 0);
    assert_eq!(st.queue_bytes, 0);
    let seen = srv.ctl.seen.lock().unwrap();
    assert!(seen
        .auth
        .iter()
        .all(|a| a.as_deref() == Some("Bearer test-key")));
    assert_eq!(seen.gzip as usize, seen.requests.len());
    // flush_at (100) bounds a batch.
    assert!(seen.requests.iter().all(|(_, ids)| ids.len() <= 100));
}

#[test]
fn retries_503_and_429_reusing_ids_and_honouring_retry_after() {
    let srv = TestCollector::start();
    srv.ctl.fault(Fault::Status(503));
    srv.ctl.fault(Fault::Status(500));
    srv.ctl.fault(Fault::RetryAfter(429, 1));
    let c = client(&srv.url()).flush_at(50).build().unwrap();
    let ids = track_n(&c, 50);
    c.flush(Duration::from_secs(20)).unwrap();
    let reqs = srv.ctl.requests();
    assert_eq!(reqs.len(), 4);
    for (_, r) in &reqs {
        assert_eq!(
            r.iter().copied().collect::<HashSet<_>>(),
            ids,
            "every attempt resends the same ids"
        );
    }
    let gap = reqs[3].0 - reqs[2].0;
    assert!(
        gap >= Duration::from_secs(1),
        "Retry-After: 1 honoured, waited {gap:?}"
    );
    assert_eq!(srv.ctl.ids(), ids);
    let st = c.stats();
    assert_eq!((st.sent, st.retried, st.requests), (50, 150, 4));
}

#[test]
fn splits_a_batch_on_413_until_it_fits() {
    let srv = TestCollector::start();
    *srv.ctl.max_events.lock().unwrap() = Some(7);
    let c = client(&srv.url()).flush_at(100).build().unwrap();
    let ids = track_n(&c, 100);
    c.flush(Duration::from_secs(20)).unwrap();
    assert_eq!(srv.ctl.ids(), ids);
    assert_eq!(srv.ctl.duplicates(), 0);
    assert_eq!(c.stats().sent, 100);
}

#[test]
fn other_4xx_is_not_retried_and_counts_as_rejected() {
    let srv = TestCollector::start();
    srv.ctl.fault(Fault::Status(400));
    let c = client(&srv.url()).flush_at(10).build().unwrap();
    track_n(&c, 10);
    c.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(srv.ctl.requests().len(), 1);
    assert_eq!(srv.ctl.unique(), 0);
    let st = c.stats();
    assert_eq!((st.rejected, st.sent, st.retried), (10, 0, 0));
}

#[test]
fn per_event_rejections_only_retryable_ones_are_resent() {
    let srv = TestCollector::start();
    let c = client(&srv.url()).flush_at(20).build().unwrap();
    let events: Vec<_> = (0..20).map(event).collect();
    let (bad, busy) = (events[3].id, events[11].id);
    // Only the `retryable` field counts: an error text or object that merely mentions
    // "retryable" (what clients used to parse) is a permanent rejection.
    let (texty, objecty) = (events[5].id, events[7].id);
    {
        let mut r = srv.ctl.reject.lock().unwrap();
        r.insert(
            bad,
            (
                json!("batch[3].tenant_id: must match [A-Za-z0-9._:-]"),
                false,
            ),
        );
        r.insert(
            busy,
            (json!("batch[11]: could not be stored right now"), true),
        );
        r.insert(texty, (json!("retryable: storage busy"), false));
        r.insert(objecty, (json!({"code": "busy", "retryable": true}), false));
    }
    let ids: HashSet<Uuid> = events.iter().map(|e| e.id).collect();
    for e in events {
        c.track(e).unwrap();
    }
    c.flush(Duration::from_secs(10)).unwrap();
    let reqs = srv.ctl.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(
        reqs[1].1,
        vec![busy],
        "only the retryable event is sent again, with the same id"
    );
    let mut want = ids.clone();
    for id in [bad, texty, objecty] {
        want.remove(&id);
    }
    assert_eq!(srv.ctl.ids(), want);
    let st = c.stats();
    assert_eq!((st.sent, st.rejected, st.retried), (17, 3, 1));
}

/// A retryable rejection that keeps coming is re-sent until the batch's retry budget is spent,
/// then the event is kept like any undelivered batch (dropped and counted, without a spool).
#[test]
fn retryable_rejections_are_bounded_by_the_retry_budget() {
    let srv = TestCollector::start();
    let c = client(&srv.url())
        .flush_at(5)
        .max_retry_time(Duration::from_millis(400))
        .build()
        .unwrap();
    let events: Vec<_> = (0..5).map(event).collect();
    let stuck = events[2].id;
    srv.ctl
        .reject
        .lock()
        .unwrap()
        .insert(stuck, (json!("batch[2]: busy"), true));
    for e in events {
        c.track(e).unwrap();
    }
    // Re-armed while the client retries, so every attempt is refused.
    let ctl = srv.ctl.clone();
    let refuser = std::thread::spawn(move || {
        let until = std::time::Instant::now() + Duration::from_secs(2);
        while std::time::Instant::now() < until {
            ctl.reject
                .lock()
                .unwrap()
                .insert(stuck, (json!("batch[2]: busy"), true));
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let r = c.flush(Duration::from_secs(5));
    refuser.join().unwrap();
    assert!(
        r.is_err(),
        "an event dropped on the way fails the flush: {r:?}"
    );
    let st = c.stats();
    assert_eq!(st.sent, 4);
    assert_eq!(st.dropped.undeliverable, 1);
    assert!(st.retried >= 2, "re-sent several times: {st:?}");
    assert!(srv
        .ctl
        .requests()
        .iter()
        .skip(1)
        .all(|(_, ids)| ids == &vec![stuck]));
}

#[test]
fn lost_ack_is_resent_and_counted_as_duplicates_never_after_an_ack() {
    let srv = TestCollector::start();
    srv.ctl.fault(Fault::LoseAck);
    let c = client(&srv.url()).flush_at(30).build().unwrap();
    let ids = track_n(&c, 30);
    let more = track_n(&c, 30);
    c.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(srv.ctl.ids(), ids.union(&more).copied().collect());
    // The first batch was stored, its ack lost, so its retry is 30 duplicates: at-least-once,
    // made exactly-once by the collector's dedupe on id.
    assert_eq!(srv.ctl.duplicates(), 30);
    let st = c.stats();
    assert_eq!((st.sent, st.duplicates, st.delivered()), (30, 30, 60));
    assert_eq!(srv.ctl.seen.lock().unwrap().resent_after_ack, 0);
}

#[test]
fn slow_response_times_out_and_is_retried() {
    let srv = TestCollector::start();
    srv.ctl.fault(Fault::Slow(Duration::from_millis(1500)));
    let c = client(&srv.url())
        .flush_at(10)
        .request_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let ids = track_n(&c, 10);
    c.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(srv.ctl.ids(), ids);
    let st = c.stats();
    assert!(st.requests >= 2);
    assert_eq!(st.delivered(), 10);
}

#[test]
fn connection_refused_without_spool_counts_undeliverable_after_the_budget() {
    let addr = refused_port();
    let c = client(&format!("http://{addr}"))
        .flush_at(10)
        .max_retry_time(Duration::from_millis(300))
        .build()
        .unwrap();
    track_n(&c, 25);
    // The flush waits for the budget to run out, then says it could not deliver.
    let err = c.flush(Duration::from_secs(10)).unwrap_err();
    assert_eq!(err.kind(), agenttally::ErrorKind::Io, "{err}");
    let st = c.stats();
    assert_eq!(st.dropped.undeliverable, 25);
    assert!(st.retried > 0);
    assert_eq!(st.queue_depth, 0);
}

#[test]
fn track_never_blocks_while_the_collector_hangs() {
    let (addr, _h) = hanging_server();
    // A send blocked on this collector would wait the whole request timeout (30 s).
    let c = client(&format!("http://{addr}"))
        .max_queue_events(1000)
        .request_timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let events: Vec<_> = (0..5_000).map(event).collect();
    let start = Instant::now();
    let mut full = 0;
    let mut slowest = Duration::ZERO;
    for e in events {
        let t = Instant::now();
        let r = c.track(e);
        slowest = slowest.max(t.elapsed());
        match r {
            Ok(()) => {}
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::QueueFull);
                full += 1;
            }
        }
    }
    let took = start.elapsed();
    // Generous bounds (debug build, shared CI cores): the point is that no call waited on the
    // network, which would take the 30 s request timeout.
    assert!(
        slowest < Duration::from_secs(2),
        "slowest track() took {slowest:?}"
    );
    assert!(took < Duration::from_secs(10), "5k track() took {took:?}");
    let st = c.stats();
    assert!(full > 0);
    assert_eq!(st.accepted + st.dropped.queue_full, 5_000);
    assert_eq!(st.dropped.queue_full, full);
    assert!(st.oldest_queued_age > Duration::ZERO);
    c.shutdown(Duration::from_millis(500)).unwrap();
}

#[test]
fn drop_oldest_evicts_and_accepts() {
    let sink = MemoryTransport::new();
    sink.fail_always(Some(503));
    let c = Client::builder()
        .transport(sink.clone())
        .max_queue_events(100)
        .overflow(OverflowPolicy::DropOldest)
        .build()
        .unwrap();
    for i in 0..1000 {
        c.track(event(i)).unwrap();
    }
    let st = c.stats();
    assert_eq!(st.accepted, 1000);
    // 4 batches of 100 are in flight (never evicted) and 100 queued; the rest were evicted.
    assert!(st.dropped.evicted >= 400, "{st:?}");
    sink.fail_always(None);
    c.flush(Duration::from_secs(10)).unwrap();
    let st = c.stats();
    assert_eq!(st.sent + st.dropped.evicted, 1000);
}

#[test]
fn wire_json_event_without_id_is_tracked_with_a_fresh_id() {
    let sink = MemoryTransport::new();
    let c = Client::builder().transport(sink.clone()).build().unwrap();
    let mut e = event(1);
    e.id = Uuid::nil();
    let text = serde_json::to_string(&e)
        .unwrap()
        .replace(&format!(r#""id":"{}","#, Uuid::nil()), "");
    let parsed: agenttally::AnalyticsEvent = serde_json::from_str(&text).unwrap();
    assert!(parsed.id.is_nil());
    c.track(parsed).unwrap();
    c.flush(Duration::from_secs(5)).unwrap();
    let got = sink.events();
    assert_eq!(got.len(), 1);
    assert!(!got[0].id.is_nil());
    assert_eq!(got[0].id.get_version_num(), 7);
}

/// Longer than the client (a debug build) takes to send 16 requests, so answers come back only
/// after every slot is busy.
const SLOW: Duration = Duration::from_millis(200);

#[test]
fn requests_in_flight_grow_under_a_backlog_up_to_max_in_flight() {
    // A slow collector and a backlog of 60 batches: the client starts at 4 requests at once and
    // adds one per answer while all are busy, up to `max_in_flight`.
    let srv = TestCollector::slow(SLOW);
    let c = client(&srv.url()).build().unwrap();
    let s = c.stats();
    assert_eq!((s.in_flight_limit, s.requests_in_flight), (4, 0));
    let ids = track_n(&c, 6_000);
    c.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(srv.ctl.ids(), ids);
    assert_eq!(srv.ctl.most_at_once(), MAX_IN_FLIGHT, "most at once");
    // `stats()` reports the limit reached; nothing is in flight after the flush.
    let s = c.stats();
    assert_eq!(s.in_flight_limit, MAX_IN_FLIGHT as u64);
    assert_eq!(s.requests_in_flight, 0);

    // A lower `max_in_flight` bounds it.
    let srv = TestCollector::slow(SLOW);
    let c = client(&srv.url()).max_in_flight(3).build().unwrap();
    let ids = track_n(&c, 3_000);
    c.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(srv.ctl.ids(), ids);
    assert_eq!(srv.ctl.most_at_once(), 3);
}

#[test]
fn a_collector_that_asks_to_slow_down_gets_fewer_requests_at_once() {
    // Grown to 16 at once, then every request is answered 503 once (each batch is re-sent
    // after its backoff): the limit halves, so fewer requests arrive at once afterwards.
    let srv = TestCollector::slow(SLOW);
    let c = client(&srv.url()).build().unwrap();
    track_n(&c, 6_000);
    c.flush(Duration::from_secs(30)).unwrap();
    assert_eq!(srv.ctl.most_at_once(), MAX_IN_FLIGHT);
    for _ in 0..MAX_IN_FLIGHT {
        srv.ctl.fault(Fault::Status(503));
    }
    // 16 batches meet the 16 faults; the limit halves once (they were all sent before the cut).
    let first = track_n(&c, 1_600);
    c.flush(Duration::from_secs(30)).unwrap();
    srv.ctl.reset_most_at_once();
    // 16 batches again: 8 go at once, and each of the first answers lets two more go (one
    // freed, one grown), so at most 12 are in flight at once where 16 were before the 503s.
    let second = track_n(&c, 1_600);
    c.flush(Duration::from_secs(30)).unwrap();
    let most = srv.ctl.most_at_once();
    assert!(most <= 12, "after the 503s at most 12 at once, saw {most}");
    // Halved once to 8, then grown by at most one per answer of the second 16 batches.
    let limit = c.stats().in_flight_limit;
    assert!((8..MAX_IN_FLIGHT as u64).contains(&limit), "limit {limit}");
    let ids = srv.ctl.ids();
    assert!(first.is_subset(&ids) && second.is_subset(&ids));
    assert_eq!(srv.ctl.duplicates(), 0);
}
