//! Property: any valid event → JSON → event is identical, ids and decimals exact.

use agenttally::{AnalyticsEvent, CostStatus, EventType, ServiceTier, Usage};
use chrono::{DateTime, TimeZone, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use uuid::Uuid;

fn short_text() -> impl Strategy<Value = String> {
    // Unicode included: limits count characters, and JSON escaping must round-trip.
    "[a-zA-Z0-9 _./:é漢\"\\\\\n-]{1,40}"
}

fn tenant() -> impl Strategy<Value = String> {
    "[A-Za-z0-9._:-]{1,128}"
}

fn timestamp() -> impl Strategy<Value = DateTime<Utc>> {
    // 1970..2100, microsecond precision (the wire format's).
    (0i64..4_102_444_800_000_000).prop_map(|us| {
        Utc.timestamp_micros(us)
            .single()
            .expect("in range timestamps are unambiguous")
    })
}

fn decimal() -> impl Strategy<Value = Decimal> {
    (0i64..i64::MAX, 0u32..=18).prop_filter_map("<= max cost", |(m, s)| {
        let d = Decimal::new(m, s);
        (d <= agenttally::event::MAX_COST_USD).then_some(d)
    })
}

fn usage() -> impl Strategy<Value = Usage> {
    let n = || 0u64..=1_000_000_000_000;
    (n(), n(), n(), n(), n(), n(), 0u64..1000).prop_map(|(i, c, w, w1, o, r, q)| Usage {
        input_tokens: i,
        cached_input_tokens: c,
        cache_write_tokens: w,
        cache_write_1h_tokens: w1,
        output_tokens: o.max(r),
        reasoning_tokens: r.min(o),
        requests: q,
    })
}

fn metadata() -> impl Strategy<Value = Map<String, Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e300f64..1e300).prop_map(|f| json!(f)),
        short_text().prop_map(Value::String),
    ];
    let value = leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop::collection::btree_map("[a-z_]{1,12}", value, 0..5).prop_map(|m| m.into_iter().collect())
}

prop_compose! {
    fn event()(
        id in any::<u128>().prop_filter("non-nil", |n| *n != 0),
        tenant_id in tenant(),
        ty in prop::sample::select(EventType::ALL),
        timestamp in timestamp(),
        correlation_id in short_text(),
        user_id in prop::option::of(short_text()),
        agent_id in prop::option::of(short_text()),
        workflow_id in prop::option::of(short_text()),
        duration_ms in prop::option::of(0i64..=1_000_000_000_000),
        queue_ms in prop::option::of(0i64..=1_000_000_000_000),
        cost in prop::option::of(decimal()),
        reported in any::<bool>(),
        price_version in prop::option::of(short_text()),
        provider in short_text(),
        model in short_text(),
        task_type in prop::option::of(short_text()),
        service_tier in prop::option::of(prop::sample::select(ServiceTier::ALL)),
        usage in prop::option::of(usage()),
        error_code in short_text(),
        metadata in metadata(),
    ) -> AnalyticsEvent {
        let mut e = AnalyticsEvent::new(ty, tenant_id);
        e.id = Uuid::from_u128(id);
        e.timestamp = timestamp;
        e.correlation_id = correlation_id;
        e.user_id = user_id;
        e.agent_id = agent_id;
        e.workflow_id = workflow_id;
        e.duration_ms = duration_ms;
        e.queue_ms = queue_ms;
        e.cost_status = match (cost, reported) {
            (Some(_), true) => Some(CostStatus::Reported),
            (Some(_), false) => Some(CostStatus::Priced),
            (None, true) => Some(CostStatus::Unpriced),
            (None, false) => None,
        };
        e.cost_usd = cost;
        e.price_version = price_version;
        e.provider = Some(provider);
        e.model = Some(model);
        e.task_type = task_type;
        e.service_tier = service_tier;
        e.usage = usage;
        e.metadata = metadata;
        // Satisfy the per-type rules so every generated event is valid.
        match ty.family() {
            "agent" => { e.agent_id.get_or_insert_with(|| "agent".into()); }
            "customer" => { e.user_id.get_or_insert_with(|| "user".into()); }
            _ => {}
        }
        e.success = !matches!(ty, EventType::AgentFailed | EventType::AgentTimeout | EventType::ProviderError);
        if !e.success || ty == EventType::ProviderRateLimit {
            e.error_code = Some(error_code);
        }
        e
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_event_round_trips_exactly(e in event()) {
        prop_assert_eq!(e.validate(), Ok(()));
        let json = e.to_json();
        // `to_json` is a direct writer: byte for byte what serde gives.
        prop_assert_eq!(&json, &serde_json::to_string(&e).map_err(|err| TestCaseError::fail(err.to_string()))?);
        prop_assert_eq!(json.len(), e.encoded_len());
        let back = AnalyticsEvent::from_json(&json).map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(&back, &e);
        // Decimal equality is numeric; the wire text (scale included) must be identical too.
        prop_assert_eq!(back.cost_usd.map(|d| d.to_string()), e.cost_usd.map(|d| d.to_string()));
        prop_assert_eq!(back.id, e.id);
        prop_assert_eq!(back.to_json(), json);
    }

    /// `encoded_len()` is computed from the fields, not by serialising: it must match the
    /// serialiser for any text (control characters, quotes, any Unicode), valid or not.
    #[test]
    fn encoded_len_matches_the_serialiser_for_any_text(
        mut e in event(),
        texts in prop::collection::vec(any::<String>(), 6),
        key in any::<String>(),
        duration in any::<i64>(),
        cost in any::<i64>(),
        scale in 0u32..=28,
        year in prop::sample::select(vec![-5000i32, 0, 9999, 10000, 200000]),
    ) {
        use chrono::Datelike;
        e.tenant_id = texts[0].clone();
        e.correlation_id = texts[1].clone();
        e.agent_id = Some(texts[2].clone());
        e.model = Some(texts[3].clone());
        e.error_code = Some(texts[4].clone());
        e.metadata.insert(key, Value::String(texts[5].clone()));
        e.duration_ms = Some(duration);
        e.cost_usd = Some(Decimal::new(cost, scale));
        if let Some(t) = e.timestamp.with_year(year) {
            e.timestamp = t;
        }
        let serde = serde_json::to_string(&e).map_err(|err| TestCaseError::fail(err.to_string()))?;
        prop_assert_eq!(&e.to_json(), &serde);
        prop_assert_eq!(serde.len(), e.encoded_len());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = AnalyticsEvent::from_slice(&bytes);
        let _ = agenttally::Batch::decode(&bytes, &agenttally::BatchLimits::V1);
    }

}

proptest! {
    // Each case serialises thousands of events; a few dozen cases cover the boundaries.
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn split_batches_fit_the_limits(n in 0usize..2500, pad in 0usize..3000) {
        let limits = agenttally::BatchLimits::V1;
        let ev = agenttally::BillingEvent::usage_recorded("acme").meta("pad", "x".repeat(pad)).build()
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        let events = vec![ev; n];
        let batches = agenttally::Batch::split(events, &limits);
        let total: usize = batches.iter().map(|b| b.batch.len()).sum();
        prop_assert_eq!(total, n);
        for b in &batches {
            prop_assert!(!b.batch.is_empty());
            prop_assert!(b.batch.len() <= limits.max_events);
            prop_assert!(b.to_json().len() <= limits.max_batch_bytes, "{} bytes", b.to_json().len());
        }
    }
}

#[test]
fn cost_numbers_are_converted_from_their_decimal_text() {
    let base = r#"{"id":"0190f5d2-7f47-7cc0-8000-000000000001","tenant_id":"acme","event_type":"provider.api_call","timestamp":"2026-01-31T12:00:00Z","correlation_id":"c","provider":"openai","model":"gpt-4o","success":true,"cost_status":"reported","cost_usd":COST}"#;
    for (input, want) in [
        ("0.1", "0.1"),
        ("0.0123", "0.0123"),
        ("\"0.0120\"", "0.0120"),
        ("1.5e-7", "0.00000015"),
        ("0.30000000000000004", "0.30000000000000004"),
        ("12", "12"),
    ] {
        let e = AnalyticsEvent::from_json(&base.replace("COST", input)).expect(input);
        assert_eq!(
            e.cost_usd.map(|d| d.to_string()).as_deref(),
            Some(want),
            "{input}"
        );
    }
}

#[test]
fn timestamps_normalise_to_utc_microseconds() {
    let json = r#"{"id":"0190f5d2-7f47-7cc0-8000-000000000001","tenant_id":"acme","event_type":"billing.usage_recorded","timestamp":"2026-01-31T14:00:00.123456789+02:00","correlation_id":"c","success":true}"#;
    let e = AnalyticsEvent::from_json(json).expect("valid");
    assert!(e
        .to_json()
        .contains(r#""timestamp":"2026-01-31T12:00:00.123456Z""#));
}
