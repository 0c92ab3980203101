//! Builder validation names the setting; a disabled client is a no-op; track() validates.
#![cfg(feature = "client")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agenttally::client::{defaults, MemoryTransport};
use agenttally::{Client, ErrorKind, OverflowPolicy, ProviderEvent};

fn setting(b: agenttally::ClientBuilder) -> String {
    let e = b.build().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config);
    e.field().unwrap().to_string()
}

#[test]
fn bad_settings_are_named() {
    assert_eq!(setting(Client::builder()), "endpoint");
    assert_eq!(setting(Client::builder().endpoint("ftp://x")), "endpoint");
    let ok = || Client::builder().endpoint("http://127.0.0.1:9");
    assert_eq!(setting(ok().flush_at(0)), "flush_at");
    assert_eq!(setting(ok().flush_at(1001)), "flush_at");
    assert_eq!(setting(ok().max_queue_events(0)), "max_queue_events");
    assert_eq!(setting(ok().max_queue_bytes(100)), "max_queue_bytes");
    assert_eq!(setting(ok().overflow(OverflowPolicy::Spool)), "overflow");
    assert_eq!(setting(ok().api_key("a b")), "api_key");
    assert_eq!(
        setting(ok().flush_interval(Duration::ZERO)),
        "flush_interval"
    );
    assert_eq!(setting(ok().max_in_flight(0)), "max_in_flight");
    let msg = ok().flush_at(0).build().unwrap_err().to_string();
    assert_eq!(msg, "config.flush_at: must be 1..=1000, got 0");
    assert_eq!(defaults::FLUSH_AT, 100);
}

#[test]
fn track_returns_the_field_named_error_and_queues_nothing() {
    let sink = MemoryTransport::new();
    let c = Client::builder().transport(sink.clone()).build().unwrap();
    let mut e = ProviderEvent::api_call("acme", "openai", "gpt-4o")
        .build()
        .unwrap();
    e.duration_ms = Some(-5);
    let err = c.track(e).unwrap_err();
    assert_eq!(err.to_string(), "event.duration_ms: must be >= 0, got -5");
    assert_eq!(c.stats().accepted, 0);
}

#[test]
fn disabled_client_is_a_no_op() {
    let c = Client::builder().disabled(true).build().unwrap();
    c.track(
        ProviderEvent::api_call("acme", "openai", "gpt-4o")
            .build()
            .unwrap(),
    )
    .unwrap();
    c.flush(Duration::from_millis(10)).unwrap();
    c.shutdown(Duration::from_millis(10)).unwrap();
    assert_eq!(c.stats().accepted, 0);
}

#[test]
fn memory_transport_can_fail_and_records_batches() {
    let sink = MemoryTransport::new();
    sink.fail_next(2, 503);
    let c = Client::builder()
        .transport(sink.clone())
        .retry_delays(Duration::from_millis(1), Duration::from_millis(5))
        .build()
        .unwrap();
    c.track(
        ProviderEvent::api_call("acme", "openai", "gpt-4o")
            .build()
            .unwrap(),
    )
    .unwrap();
    c.flush(Duration::from_secs(5)).unwrap();
    assert_eq!(sink.attempts(), 3);
    assert_eq!(sink.batches().len(), 1);
    assert_eq!(c.stats().retried, 2);
}

#[cfg(feature = "tls")]
#[test]
fn a_ca_file_that_cannot_be_used_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let https = || Client::builder().endpoint("https://127.0.0.1:9");
    let err = |b: agenttally::ClientBuilder| {
        let e = b.build().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(e.field(), Some("ca_file"), "{e}");
        e.to_string()
    };

    let missing = dir.path().join("missing.pem");
    let msg = err(https().ca_file(&missing));
    assert!(msg.starts_with("config.ca_file: `"), "{msg}");
    assert!(msg.contains("missing.pem` cannot be read"), "{msg}");

    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "no certificate here\n").unwrap();
    let msg = err(https().ca_file(&empty));
    assert!(msg.contains("holds no PEM certificate"), "{msg}");

    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let msg = err(https().ca_file(&broken));
    assert!(msg.contains("is not a PEM certificate file"), "{msg}");

    // Well-formed PEM whose content is no X.509 certificate.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(
        &bogus,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let msg = err(https().ca_file(&bogus));
    assert!(msg.contains("bogus.pem"), "{msg}");
}
