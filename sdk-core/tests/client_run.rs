//! The run helper: agent.started → provider calls → outcome, one correlation id, summed cost,
//! duration, and `abandoned` when a run is dropped unfinished.
#![cfg(feature = "client")]
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use agenttally::client::{AutoPrice, MemoryTransport};
use agenttally::{AnalyticsEvent, Client, CostStatus, EventType, ProviderEvent, Usage};
use rust_decimal::Decimal;

/// One micro-dollar per token, for tests.
struct PerToken;

impl AutoPrice for PerToken {
    fn price_event(&self, e: &mut AnalyticsEvent) {
        if let Some(u) = e.usage {
            e.cost_usd = Some(Decimal::new(u.total_tokens() as i64, 6));
            e.cost_status = Some(CostStatus::Priced);
            e.price_version = Some("test-1".into());
        }
    }
}

fn setup() -> (Client, MemoryTransport) {
    let sink = MemoryTransport::new();
    let c = Client::builder()
        .transport(sink.clone())
        .price_book(PerToken)
        .build()
        .unwrap();
    (c, sink)
}

fn usage(i: u64, o: u64) -> Usage {
    Usage {
        input_tokens: i,
        output_tokens: o,
        ..Usage::default()
    }
}

#[test]
fn completed_run_shares_correlation_id_and_sums_cost() {
    let (c, sink) = setup();
    let run = c.run("acme", "reviewer", "code_review");
    let cid = run.correlation_id().to_string();
    run.record_call(("openai", "gpt-4o", usage(1000, 500)))
        .unwrap();
    run.record_call(
        ProviderEvent::api_call("acme", "anthropic", "claude-sonnet-4")
            .usage(usage(2000, 100))
            .duration_ms(900),
    )
    .unwrap();
    assert_eq!(run.cost(), Some(Decimal::new(3600, 6)));
    std::thread::sleep(Duration::from_millis(20));
    run.complete().unwrap();
    c.flush(Duration::from_secs(5)).unwrap();
    let ev = sink.events();
    let types: Vec<_> = ev.iter().map(|e| e.event_type).collect();
    assert_eq!(
        types,
        [
            EventType::AgentStarted,
            EventType::ProviderApiCall,
            EventType::ProviderApiCall,
            EventType::AgentCompleted
        ]
    );
    assert!(ev.iter().all(|e| e.correlation_id == cid));
    assert!(ev
        .iter()
        .all(|e| e.task_type.as_deref() == Some("code_review")));
    assert!(ev.iter().all(|e| e.agent_id.as_deref() == Some("reviewer")));
    assert_eq!(ev[1].cost_usd, Some(Decimal::new(1500, 6)));
    let done = &ev[3];
    assert!(done.success);
    assert_eq!(done.cost_usd, Some(Decimal::new(3600, 6)));
    assert_eq!(done.cost_status, Some(CostStatus::Priced));
    assert_eq!(done.usage, Some(usage(3000, 600)));
    assert!(done.duration_ms.unwrap() >= 20);
}

#[test]
fn fail_and_timeout_emit_their_outcomes() {
    let (c, sink) = setup();
    let r = c.run("acme", "a1", "t");
    r.fail("tool_error").unwrap();
    let r = c.run("acme", "a1", "t");
    r.timeout().unwrap();
    c.flush(Duration::from_secs(5)).unwrap();
    let ev = sink.events();
    assert_eq!(ev[1].event_type, EventType::AgentFailed);
    assert_eq!(ev[1].error_code.as_deref(), Some("tool_error"));
    assert!(!ev[1].success);
    assert_eq!(ev[3].event_type, EventType::AgentTimeout);
    assert_eq!(ev[3].cost_usd, None, "no calls, no cost (absent, not 0)");
}

#[test]
fn a_dropped_run_is_failed_as_abandoned() {
    let (c, sink) = setup();
    {
        let r = c.run("acme", "a1", "t");
        r.record_call(("openai", "gpt-4o", usage(10, 10))).unwrap();
    }
    c.flush(Duration::from_secs(5)).unwrap();
    let ev = sink.events();
    let last = ev.last().unwrap();
    assert_eq!(last.event_type, EventType::AgentFailed);
    assert_eq!(last.error_code.as_deref(), Some(agenttally::run::ABANDONED));
    assert_eq!(last.cost_usd, Some(Decimal::new(20, 6)));
}

#[test]
fn a_bad_call_is_a_field_named_error() {
    let (c, _sink) = setup();
    let r = c.run("acme", "a1", "t");
    let bad = usage(0, 5);
    let bad = Usage {
        reasoning_tokens: 10,
        ..bad
    };
    let e = r.record_call(("openai", "gpt-4o", bad)).unwrap_err();
    assert_eq!(e.field(), Some("usage.reasoning_tokens"));
    r.complete().unwrap();
}

#[test]
fn the_builtin_price_book_prices_calls_and_the_run_sums_them() {
    let sink = MemoryTransport::new();
    let c = Client::builder()
        .transport(sink.clone())
        .price_book(agenttally::pricing::PriceBook::builtin())
        .build()
        .unwrap();
    let run = c.run("acme", "copilot-agent", "completion");
    let u = Usage {
        input_tokens: 1000,
        output_tokens: 500,
        requests: 1,
        ..Usage::default()
    };
    run.record_call(("github_copilot", "github_copilot", u))
        .unwrap();
    run.record_call(("github_copilot", "github_copilot", u))
        .unwrap();
    // The seed's semantics: 0.01 USD per 1k tokens + 0.002 USD per completion.
    assert_eq!(run.cost(), Some(Decimal::new(34, 3)));
    run.complete().unwrap();
    c.flush(Duration::from_secs(5)).unwrap();
    let ev = sink.events();
    assert_eq!(ev[1].cost_usd, Some(Decimal::new(17, 3)));
    assert_eq!(ev[1].cost_status, Some(CostStatus::Priced));
    assert!(ev[1].price_version.is_some());
    assert_eq!(ev[3].cost_usd, Some(Decimal::new(34, 3)));
}
