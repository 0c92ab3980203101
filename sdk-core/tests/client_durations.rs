//! Every duration setting and argument at `Duration::MAX` (or any huge value): the builder
//! refuses settings past one day with a field-named error, `flush`/`shutdown` saturate their
//! wait, nothing panics and the client still delivers.
#![cfg(feature = "client")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agenttally::client::{defaults, MemoryTransport};
use agenttally::{Client, ClientBuilder, ErrorKind, ProviderEvent};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn base() -> ClientBuilder {
    Client::builder().transport(MemoryTransport::new())
}

fn refused(b: ClientBuilder, setting: &str) {
    let e = b.build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    assert_eq!(e.field(), Some(setting), "{e}");
    assert!(e.to_string().contains("1 day"), "names the rule: {e}");
}

fn track_one(c: &Client) {
    c.track(
        ProviderEvent::api_call("acme", "openai", "gpt-4o")
            .build()
            .unwrap(),
    )
    .unwrap();
}

#[test]
fn duration_settings_past_a_day_are_refused_by_name() {
    for huge in [
        Duration::MAX,
        DAY + Duration::from_nanos(1),
        DAY * 365 * 1000,
    ] {
        refused(base().flush_interval(huge), "flush_interval");
        refused(base().request_timeout(huge), "request_timeout");
        refused(base().max_retry_time(huge), "max_retry_time");
        refused(base().drop_timeout(huge), "drop_timeout");
        refused(
            base().retry_delays(Duration::from_millis(1), huge),
            "retry_delays",
        );
        refused(base().retry_delays(huge, huge), "retry_delays");
    }
    assert_eq!(defaults::MAX_DURATION_SETTING, DAY);
}

#[test]
fn huge_spool_sizes_are_refused_without_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let e = base()
        .spool_dir(dir.path())
        .spool_segment_bytes(u64::MAX)
        .build()
        .unwrap_err();
    assert_eq!(e.field(), Some("spool_segment_bytes"), "{e}");
    let c = base()
        .spool_dir(dir.path())
        .spool_max_bytes(u64::MAX)
        .build()
        .unwrap();
    track_one(&c);
    c.flush(Duration::from_secs(5)).unwrap();
}

/// Every duration setting at its largest allowed value: the client works as usual.
#[test]
fn settings_at_one_day_still_deliver() {
    let sink = MemoryTransport::new();
    sink.fail_next(1, 503);
    let c = Client::builder()
        .transport(sink.clone())
        .flush_interval(DAY)
        .request_timeout(DAY)
        .max_retry_time(DAY)
        .retry_delays(Duration::from_millis(1), DAY)
        .drop_timeout(DAY)
        .build()
        .unwrap();
    track_one(&c);
    c.flush(Duration::from_secs(10)).unwrap();
    assert_eq!(sink.events().len(), 1);
    assert_eq!(c.stats().retried, 1);
    track_one(&c);
    // Drop shuts down with the one-day deadline: it returns as soon as the event is delivered.
    drop(c);
    assert_eq!(sink.events().len(), 2);
}

#[test]
fn flush_and_shutdown_accept_duration_max() {
    let sink = MemoryTransport::new();
    sink.fail_next(2, 503);
    let c = Client::builder()
        .transport(sink.clone())
        .retry_delays(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap();
    track_one(&c);
    c.flush(Duration::MAX).unwrap();
    assert_eq!(sink.events().len(), 1);
    // Again after a saturated wait: the worker is alive and delivers.
    track_one(&c);
    c.flush(Duration::MAX).unwrap();
    assert_eq!(sink.events().len(), 2);
    track_one(&c);
    c.shutdown(Duration::MAX).unwrap();
    assert_eq!(sink.events().len(), 3);
    assert_eq!(c.stats().delivered(), 3);
    // A second shutdown is a no-op, whatever its timeout.
    c.shutdown(Duration::MAX).unwrap();
    assert_eq!(
        c.flush(Duration::MAX).unwrap_err().kind(),
        ErrorKind::Closed
    );
}
