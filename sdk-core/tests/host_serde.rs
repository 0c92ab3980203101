//! The SDK does not change serde_json for the program embedding it: untagged, internally tagged
//! and flattened types of the host's own deserialize numbers as usual (serde_json's
//! `arbitrary_precision`, which breaks them, is on nowhere in the build), while money given as a
//! JSON number is still read exactly from its digits.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use agenttally::{AnalyticsEvent, Batch, BatchLimits};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, PartialEq, Deserialize)]
#[serde(untagged)]
enum Setting {
    Count(u64),
    Ratio(f64),
    Name(String),
}

#[derive(Debug, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Shape {
    Circle { radius: f64 },
    Square { side: u32 },
}

#[derive(Debug, PartialEq, Deserialize)]
struct Point {
    label: String,
    #[serde(flatten)]
    coords: BTreeMap<String, f64>,
}

#[test]
fn numbers_are_plain_serde_json_numbers() {
    // With `arbitrary_precision` a Value keeps the text `1.50`; without, it is the f64 1.5.
    let v: Value = serde_json::from_str("1.50").unwrap();
    assert_eq!(v.to_string(), "1.5");
    assert!(v.is_f64());
}

#[test]
fn untagged_enum_with_a_float_variant() {
    let got: Vec<Setting> = serde_json::from_str(r#"[0.75, 3, "auto"]"#).unwrap();
    assert_eq!(
        got,
        [
            Setting::Ratio(0.75),
            Setting::Count(3),
            Setting::Name("auto".into())
        ]
    );
}

#[test]
fn internally_tagged_enum_with_numbers() {
    let got: Vec<Shape> = serde_json::from_str(
        r#"[{"kind": "circle", "radius": 1.5}, {"kind": "square", "side": 4}]"#,
    )
    .unwrap();
    assert_eq!(
        got,
        [Shape::Circle { radius: 1.5 }, Shape::Square { side: 4 }]
    );
}

#[test]
fn flattened_map_of_floats() {
    let got: Point = serde_json::from_str(r#"{"label": "a", "x": 0.5, "y": -2}"#).unwrap();
    assert_eq!(got.label, "a");
    assert_eq!(got.coords["x"], 0.5);
    assert_eq!(got.coords["y"], -2.0);
}

const EVENT: &str = r#"{
    "id": "0190f5d2-7f47-7cc0-8000-000000000001",
    "tenant_id": "acme-corp",
    "event_type": "billing.usage_recorded",
    "timestamp": "2026-01-31T12:00:00.000000Z",
    "correlation_id": "run-1",
    "cost_usd": COST,
    "cost_status": "reported",
    "success": true,
    "metadata": {"ratio": 0.30000000000000004, "n": 7}
}"#;

fn event_with_cost(cost: &str) -> String {
    EVENT.replace("COST", cost)
}

#[test]
fn cost_given_as_a_long_json_number_is_kept_exactly() {
    // 19 decimal places: decoded exactly (f64 would keep about 17 significant digits); the
    // validation rule on decimal places then refuses it, naming the scale it saw.
    let long = "0.1234567890123456789";
    let e: AnalyticsEvent = serde_json::from_str(&event_with_cost(long)).unwrap();
    assert_eq!(e.cost_usd.unwrap().to_string(), long);
    let err = AnalyticsEvent::from_json(&event_with_cost(long)).unwrap_err();
    assert!(err.to_string().contains("got 19"), "{err}");

    // The longest a cost may be: 18 places, 23 significant digits, through every decoder.
    for cost in [
        "12345.123456789012345678",
        "1.25e-06",
        "0.100000000000000000",
    ] {
        let want = agenttally::event::MAX_COST_SCALE;
        let text = event_with_cost(cost);
        let exact = if cost.contains('e') {
            Decimal::from_scientific(cost).unwrap().normalize()
        } else {
            Decimal::from_str_exact(cost).unwrap()
        };
        assert!(exact.scale() <= want);

        let e = AnalyticsEvent::from_json(&text).unwrap();
        assert_eq!(e.cost_usd.unwrap().to_string(), exact.to_string(), "{cost}");
        let e = AnalyticsEvent::from_slice(text.as_bytes()).unwrap();
        assert_eq!(e.cost_usd.unwrap().to_string(), exact.to_string(), "{cost}");

        let body = format!(r#"{{"batch": [{text}]}}"#);
        let d = Batch::decode(body.as_bytes(), &BatchLimits::V1).unwrap();
        let e = d.events[0].as_ref().unwrap();
        assert_eq!(e.cost_usd.unwrap().to_string(), exact.to_string(), "{cost}");

        // A `Value` holds the number as an f64 already; the shortest text of that f64 is used.
        let v: Value = serde_json::from_str(&text).unwrap();
        let e: AnalyticsEvent = serde_json::from_value(v).unwrap();
        assert!(e.cost_usd.is_some());
    }
}

#[test]
fn an_event_inside_the_hosts_untagged_enum() {
    // serde buffers untagged content before trying each variant; the cost arrives as an f64.
    #[derive(Debug, Deserialize)]
    #[serde(untagged)]
    enum Message {
        Event(Box<AnalyticsEvent>),
        Other(Value),
    }
    let m: Message = serde_json::from_str(&event_with_cost("0.5")).unwrap();
    match m {
        Message::Event(e) => {
            assert_eq!(e.cost_usd, Some(Decimal::new(5, 1)));
            assert_eq!(e.metadata["n"], 7);
        }
        Message::Other(v) => panic!("not decoded as an event: {v}"),
    }
}

#[test]
fn cost_strings_and_wrong_types() {
    for (cost, want) in [
        (r#""0.0123""#, Ok("0.0123")),
        (r#""0.0\u0031""#, Ok("0.01")),
        ("null", Err("required when cost_status")),
        ("true", Err("invalid type: boolean `true`")),
        ("[1]", Err("invalid type: sequence")),
        (r#"{"a": 1}"#, Err("invalid type: map")),
        (r#""12 USD""#, Err("must be a decimal number")),
    ] {
        let got = AnalyticsEvent::from_json(&event_with_cost(cost));
        match (got, want) {
            (Ok(e), Ok(w)) => assert_eq!(e.cost_usd.unwrap().to_string(), w),
            (Err(e), Err(w)) => {
                let msg = e.to_string();
                assert!(msg.starts_with("event.cost_usd: "), "{cost}: {msg}");
                assert!(msg.contains(w), "{cost}: {msg}");
            }
            (got, want) => panic!("{cost}: got {got:?}, want {want:?}"),
        }
    }
}
