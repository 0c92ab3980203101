//! One broken rule per row; each error must name exactly the field that broke it.

use agenttally::{AnalyticsEvent, ErrorKind};
use serde_json::{json, Value};

fn valid() -> Value {
    json!({
        "id": "0190f5d2-7f47-7cc0-8000-000000000001",
        "tenant_id": "acme-corp",
        "event_type": "provider.api_call",
        "timestamp": "2026-01-31T12:00:00.000000Z",
        "correlation_id": "run-1",
        "user_id": "u-1",
        "agent_id": "agent-7",
        "workflow_id": "wf-1",
        "duration_ms": 1200,
        "queue_ms": 40,
        "cost_usd": "0.0123",
        "cost_status": "priced",
        "price_version": "builtin-2026-07",
        "provider": "openai",
        "model": "gpt-4o",
        "task_type": "bug_fix",
        "service_tier": "standard",
        "usage": {"input_tokens": 1000, "output_tokens": 200, "reasoning_tokens": 50, "requests": 1},
        "success": true,
        "metadata": {"repo": "acme/api"}
    })
}

fn set(path: &str, v: Value) -> Value {
    let mut e = valid();
    let mut cur = &mut e;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = &mut cur[*p];
    }
    cur[parts[parts.len() - 1]] = v;
    e
}

fn remove(path: &str) -> Value {
    let mut e = valid();
    let mut cur = &mut e;
    let parts: Vec<&str> = path.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = &mut cur[*p];
    }
    if let Value::Object(m) = cur {
        m.remove(parts[parts.len() - 1]);
    }
    e
}

fn with(pairs: &[(&str, Value)]) -> Value {
    let mut e = valid();
    for (k, v) in pairs {
        if v.is_null() {
            if let Value::Object(m) = &mut e {
                m.remove(*k);
            }
        } else {
            e[*k] = v.clone();
        }
    }
    e
}

#[test]
fn each_invalid_event_names_its_field() {
    assert_eq!(
        AnalyticsEvent::from_json(&valid().to_string()).map(|_| ()),
        Ok(())
    );
    let big = "x".repeat(33 * 1024);
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        // (what, event, field named in the error, words in the rule)
        (
            "id not a uuid",
            set("id", json!("not-a-uuid")),
            "event.id",
            "UUID",
        ),
        (
            "id a number",
            set("id", json!(7)),
            "event.id",
            "invalid type",
        ),
        ("tenant missing", remove("tenant_id"), "event", "tenant_id"),
        (
            "tenant empty",
            set("tenant_id", json!("")),
            "event.tenant_id",
            "must not be empty",
        ),
        (
            "tenant too long",
            set("tenant_id", json!("t".repeat(129))),
            "event.tenant_id",
            "at most 128",
        ),
        (
            "tenant bad chars",
            set("tenant_id", json!("acme corp")),
            "event.tenant_id",
            "A-Z a-z 0-9",
        ),
        (
            "tenant slash",
            set("tenant_id", json!("acme/../x")),
            "event.tenant_id",
            "A-Z a-z 0-9",
        ),
        (
            "tenant number",
            set("tenant_id", json!(5)),
            "event.tenant_id",
            "invalid type",
        ),
        (
            "event type unknown",
            set("event_type", json!("agent.exploded")),
            "event.event_type",
            "unknown variant",
        ),
        (
            "event type wrong case",
            set("event_type", json!("Agent.Completed")),
            "event.event_type",
            "unknown variant",
        ),
        (
            "event type missing",
            remove("event_type"),
            "event",
            "event_type",
        ),
        (
            "timestamp not rfc3339",
            set("timestamp", json!("31/01/2026")),
            "event.timestamp",
            "RFC 3339",
        ),
        (
            "timestamp number",
            set("timestamp", json!(1767225600)),
            "event.timestamp",
            "invalid type",
        ),
        (
            "timestamp missing",
            remove("timestamp"),
            "event",
            "timestamp",
        ),
        (
            "correlation empty",
            set("correlation_id", json!("")),
            "event.correlation_id",
            "must not be empty",
        ),
        (
            "correlation too long",
            set("correlation_id", json!("c".repeat(129))),
            "event.correlation_id",
            "at most 128",
        ),
        (
            "correlation missing",
            remove("correlation_id"),
            "event",
            "correlation_id",
        ),
        (
            "user id too long",
            set("user_id", json!("u".repeat(257))),
            "event.user_id",
            "at most 256",
        ),
        (
            "agent id too long",
            set("agent_id", json!("a".repeat(257))),
            "event.agent_id",
            "at most 256",
        ),
        (
            "workflow id too long",
            set("workflow_id", json!("w".repeat(257))),
            "event.workflow_id",
            "at most 256",
        ),
        (
            "workflow id NUL",
            set("workflow_id", json!("a\u{0}b")),
            "event.workflow_id",
            "NUL",
        ),
        (
            "duration negative",
            set("duration_ms", json!(-5)),
            "event.duration_ms",
            "must be >= 0, got -5",
        ),
        (
            "duration fractional",
            set("duration_ms", json!(1.5)),
            "event.duration_ms",
            "invalid type",
        ),
        (
            "duration string",
            set("duration_ms", json!("12")),
            "event.duration_ms",
            "invalid type",
        ),
        (
            "duration absurd",
            set("duration_ms", json!(2_000_000_000_000_i64)),
            "event.duration_ms",
            "must be <=",
        ),
        (
            "queue negative",
            set("queue_ms", json!(-1)),
            "event.queue_ms",
            "must be >= 0",
        ),
        (
            "cost negative",
            set("cost_usd", json!("-0.01")),
            "event.cost_usd",
            "must be >= 0",
        ),
        (
            "cost negative number",
            set("cost_usd", json!(-1)),
            "event.cost_usd",
            "must be >= 0",
        ),
        (
            "cost NaN",
            set("cost_usd", json!("NaN")),
            "event.cost_usd",
            "decimal",
        ),
        (
            "cost garbage",
            set("cost_usd", json!("12 USD")),
            "event.cost_usd",
            "decimal",
        ),
        (
            "cost bool",
            set("cost_usd", json!(true)),
            "event.cost_usd",
            "invalid type",
        ),
        (
            "cost too large",
            set("cost_usd", json!("1000000001")),
            "event.cost_usd",
            "must be <=",
        ),
        (
            "cost too precise",
            set("cost_usd", json!("0.0000000000000000001")),
            "event.cost_usd",
            "decimal places",
        ),
        (
            "cost status unknown",
            set("cost_status", json!("free")),
            "event.cost_status",
            "unknown variant",
        ),
        (
            "unpriced with cost",
            set("cost_status", json!("unpriced")),
            "event.cost_usd",
            "must be absent",
        ),
        (
            "priced without cost",
            with(&[("cost_usd", Value::Null)]),
            "event.cost_usd",
            "required when cost_status",
        ),
        (
            "price version too long",
            set("price_version", json!("v".repeat(129))),
            "event.price_version",
            "at most 128",
        ),
        (
            "provider too long",
            set("provider", json!("p".repeat(129))),
            "event.provider",
            "at most 128",
        ),
        (
            "provider empty",
            set("provider", json!("")),
            "event.provider",
            "must not be empty",
        ),
        (
            "model too long",
            set("model", json!("m".repeat(129))),
            "event.model",
            "at most 128",
        ),
        (
            "task type too long",
            set("task_type", json!("t".repeat(129))),
            "event.task_type",
            "at most 128",
        ),
        (
            "service tier unknown",
            set("service_tier", json!("turbo")),
            "event.service_tier",
            "unknown variant",
        ),
        (
            "usage negative",
            set("usage.input_tokens", json!(-3)),
            "event.usage.input_tokens",
            "invalid value",
        ),
        (
            "usage fractional",
            set("usage.output_tokens", json!(2.5)),
            "event.usage.output_tokens",
            "invalid type",
        ),
        (
            "usage provider-shaped",
            set("usage.prompt_tokens", json!(10)),
            "event.usage",
            "unknown field `prompt_tokens`",
        ),
        (
            "usage absurd",
            set("usage.cached_input_tokens", json!(2_000_000_000_000_u64)),
            "event.usage.cached_input_tokens",
            "must be <=",
        ),
        (
            "reasoning above output",
            set("usage.reasoning_tokens", json!(500)),
            "event.usage.reasoning_tokens",
            "must be <= usage.output_tokens",
        ),
        (
            "usage not an object",
            set("usage", json!([1, 2])),
            "event.usage",
            "invalid type",
        ),
        ("success missing", remove("success"), "event", "success"),
        (
            "success string",
            set("success", json!("yes")),
            "event.success",
            "invalid type",
        ),
        (
            "error code too long",
            set("error_code", json!("e".repeat(129))),
            "event.error_code",
            "at most 128",
        ),
        (
            "metadata array",
            set("metadata", json!([1])),
            "event.metadata",
            "invalid type",
        ),
        (
            "metadata too big",
            set("metadata", json!({"blob": big})),
            "event.metadata",
            "at most 32768 bytes",
        ),
        (
            "metadata NUL",
            set("metadata", json!({"k": "a\u{0}"})),
            "event.metadata",
            "NUL",
        ),
        (
            "unknown field",
            set("costUsd", json!("1")),
            "event.costUsd",
            "unknown field `costUsd`",
        ),
        (
            "api call without model",
            remove("model"),
            "event.model",
            "required for event_type `provider.api_call`",
        ),
        (
            "provider event without provider",
            remove("provider"),
            "event.provider",
            "required for event_type",
        ),
        (
            "agent event without agent",
            with(&[
                ("event_type", json!("agent.started")),
                ("agent_id", Value::Null),
            ]),
            "event.agent_id",
            "required for event_type `agent.started`",
        ),
        (
            "agent failed without error code",
            with(&[
                ("event_type", json!("agent.failed")),
                ("success", json!(false)),
            ]),
            "event.error_code",
            "required for event_type `agent.failed`",
        ),
        (
            "agent failed but success",
            with(&[
                ("event_type", json!("agent.failed")),
                ("error_code", json!("E1")),
            ]),
            "event.success",
            "must be false",
        ),
        (
            "agent completed but failure",
            with(&[
                ("event_type", json!("agent.completed")),
                ("success", json!(false)),
            ]),
            "event.success",
            "must be true",
        ),
        (
            "customer event without user",
            with(&[
                ("event_type", json!("customer.login")),
                ("user_id", Value::Null),
            ]),
            "event.user_id",
            "required for event_type `customer.login`",
        ),
        (
            "nil id",
            set("id", json!("00000000-0000-0000-0000-000000000000")),
            "event.id",
            "non-nil",
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let mut failures = Vec::new();
    for (what, event, field, words) in &cases {
        match AnalyticsEvent::from_json(&event.to_string()) {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(e) => {
                let msg = e.to_string();
                let named = msg.starts_with(&format!("{field}: "));
                if !named || !msg.contains(words) {
                    failures.push(format!(
                        "{what}: got `{msg}`, want `{field}: ...{words}...`"
                    ));
                }
                assert!(matches!(e.kind(), ErrorKind::Invalid | ErrorKind::Decode));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    println!(
        "{} invalid events, each rejected with its field named",
        cases.len()
    );
}

/// A number no f64 holds cannot be a `Value` (so not a row above): the decoder refuses it, naming
/// where it is, and nothing non-finite can reach the jsonb column.
#[test]
fn metadata_number_out_of_range() {
    let text = valid()
        .to_string()
        .replace(r#"{"repo":"acme/api"}"#, r#"{"n":1e999}"#);
    assert!(text.contains("1e999"));
    let e = AnalyticsEvent::from_json(&text).expect_err("1e999");
    let msg = e.to_string();
    assert!(
        msg.starts_with("event.metadata.n: ") && msg.contains("number out of range"),
        "{msg}"
    );
    assert_eq!(e.kind(), ErrorKind::Decode);
}

#[test]
fn batch_rejects_bad_events_alone_and_names_their_index() {
    let good = valid();
    let bad = set("duration_ms", json!(-5));
    let body = json!({"batch": [good, bad, "not an event"], "sent_at": "2026-01-31T12:00:01Z"});
    let d = agenttally::Batch::decode(body.to_string().as_bytes(), &agenttally::BatchLimits::V1)
        .expect("envelope is fine");
    assert!(d.events[0].is_ok());
    let r1 = d.events[1].as_ref().expect_err("bad");
    assert_eq!(r1.index, 1);
    assert_eq!(
        r1.id.map(|u| u.to_string()).as_deref(),
        Some("0190f5d2-7f47-7cc0-8000-000000000001")
    );
    assert_eq!(
        r1.error.to_string(),
        "batch[1].duration_ms: must be >= 0, got -5"
    );
    let r2 = d.events[2].as_ref().expect_err("bad");
    assert!(
        r2.error
            .to_string()
            .starts_with("batch[2]: must be a JSON object"),
        "{}",
        r2.error
    );
}

#[test]
fn batch_envelope_errors_are_whole_request_errors() {
    let limits = agenttally::BatchLimits::V1;
    for (body, want) in [
        ("", "EOF"),
        ("[]", "batch: must be a JSON object"),
        (r#"{"events": []}"#, "unknown field `events`"),
        (r#"{"batch": {}}"#, "batch: invalid type"),
        (r#"{"batch": []} trailing"#, "trailing characters"),
        (
            r#"{"batch": [], "sent_at": "yesterday"}"#,
            "sent_at: must be an RFC 3339",
        ),
    ] {
        let e = agenttally::Batch::decode(body.as_bytes(), &limits).expect_err(body);
        assert!(e.to_string().contains(want), "{body}: {e}");
    }
    let many = format!(r#"{{"batch": [{}]}}"#, vec!["{}"; 1001].join(","));
    let e = agenttally::Batch::decode(many.as_bytes(), &limits).expect_err("too many");
    assert_eq!(
        e.to_string(),
        "batch: must hold at most 1000 events, got 1001"
    );
}

#[test]
fn deep_nesting_gives_a_short_error() {
    let deep = format!(
        r#"{{"metadata": {{"a": {}1{}}}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let e = AnalyticsEvent::from_json(&deep).expect_err("too deep");
    assert!(e.to_string().len() < 400, "{}", e.to_string().len());
}
