//! The JSON messages of `GET /v1/live` (`hello`, `update`, `resync`; the `type` field names
//! each) and the update's `delta`, whose figures follow the definitions of
//! `GET /v1/metrics/summary` (`store::rollups::RowKind`), so a page can add a delta to the
//! summary it loaded. Money is a decimal string; an unpriced event's cost is `null`.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use uuid::Uuid;

use crate::query::metrics::decimal_string;
use crate::store::committed::{Committed, RecentEvent};
use crate::store::rollups::RowKind;

/// What commits added to a tenant's summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LiveDelta {
    /// Events stored, of every type.
    pub events: i64,
    /// Terminal agent events.
    pub executions: i64,
    pub successes: i64,
    pub failures: i64,
    /// Spend: API calls and terminal agent events that are not itemized.
    #[serde(serialize_with = "decimal_string")]
    pub cost_usd: Decimal,
    pub api_calls: i64,
    /// Counted as spend is.
    pub input_tokens: i64,
    pub output_tokens: i64,
    /// Spend events without a known cost.
    pub unpriced_events: i64,
}

fn i(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl LiveDelta {
    /// The delta of one commit, from its hourly rollup deltas.
    pub fn of(c: &Committed) -> LiveDelta {
        let mut d = LiveDelta {
            events: i64::try_from(c.events).unwrap_or(i64::MAX),
            ..LiveDelta::default()
        };
        for h in &c.hourly {
            let kind = RowKind::of(&h.event_type, h.itemized);
            if kind.outcome {
                d.executions += h.delta.events;
                d.successes += h.delta.successes;
            }
            if kind.api_call {
                d.api_calls += h.delta.events;
            }
            if kind.spend {
                d.cost_usd = d
                    .cost_usd
                    .checked_add(h.delta.cost_usd)
                    .unwrap_or(d.cost_usd);
                d.input_tokens = d
                    .input_tokens
                    .saturating_add(i(h.delta.tokens.input_tokens));
                d.output_tokens = d
                    .output_tokens
                    .saturating_add(i(h.delta.tokens.output_tokens));
                d.unpriced_events += h.delta.unpriced_events;
            }
        }
        d.failures = d.executions - d.successes;
        d.cost_usd = d.cost_usd.normalize();
        d
    }

    /// Add `o` (a later delta of the same tenant).
    pub fn add(&mut self, o: &LiveDelta) {
        self.events = self.events.saturating_add(o.events);
        self.executions = self.executions.saturating_add(o.executions);
        self.successes = self.successes.saturating_add(o.successes);
        self.failures = self.failures.saturating_add(o.failures);
        self.cost_usd = self
            .cost_usd
            .checked_add(o.cost_usd)
            .unwrap_or(self.cost_usd)
            .normalize();
        self.api_calls = self.api_calls.saturating_add(o.api_calls);
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.unpriced_events = self.unpriced_events.saturating_add(o.unpriced_events);
    }
}

/// One message of the stream.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message<'a> {
    /// The first message of every stream.
    Hello {
        tenant_id: &'a str,
        server_time: DateTime<Utc>,
    },
    /// Everything the tenant committed since the previous message, coalesced.
    Update {
        tenant_id: &'a str,
        at: DateTime<Utc>,
        commits: u64,
        delta: &'a LiveDelta,
        /// Newest first.
        recent: Vec<Recent<'a>>,
        /// The billing period's usage when it is kept in memory; this collector reads it from
        /// the database (`GET /v1/billing/usage`), so `null`.
        billing: Option<()>,
    },
    /// Updates for this connection were dropped: re-read the API.
    Resync { reason: &'static str },
}

impl Message<'_> {
    /// The value of the `type` field (the SSE event name).
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello { .. } => "hello",
            Message::Update { .. } => "update",
            Message::Resync { .. } => "resync",
        }
    }

    pub fn to_json(&self) -> String {
        // Strings, numbers and times only: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// One event of `recent`.
#[derive(Debug, Serialize)]
pub struct Recent<'a> {
    pub id: Uuid,
    pub ts: DateTime<Utc>,
    pub event_type: &'static str,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
    pub task_type: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    /// A decimal string; `null` when the event has no cost (unpriced).
    pub cost_usd: Option<String>,
    pub success: bool,
}

impl<'a> From<&'a RecentEvent> for Recent<'a> {
    fn from(e: &'a RecentEvent) -> Self {
        Recent {
            id: e.id,
            ts: e.ts,
            event_type: e.event_type,
            provider: e.provider.as_deref(),
            model: e.model.as_deref(),
            task_type: e.task_type.as_deref(),
            agent_id: e.agent_id.as_deref(),
            cost_usd: e.cost_usd.map(|c| c.normalize().to_string()),
            success: e.success,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::committed::CommittedDelta;
    use crate::store::rollups::Delta;
    use agenttally::Usage;

    fn row(
        event_type: &str,
        itemized: bool,
        events: i64,
        successes: i64,
        cost: &str,
    ) -> CommittedDelta {
        CommittedDelta {
            bucket: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            event_type: event_type.into(),
            provider: "openai".into(),
            model: "gpt-4o".into(),
            task_type: "code".into(),
            itemized,
            delta: Delta {
                events,
                successes,
                cost_usd: cost.parse().expect("decimal"),
                unpriced_events: 1,
                tokens: Usage {
                    input_tokens: 100,
                    output_tokens: 10,
                    ..Usage::default()
                },
                ..Delta::default()
            },
        }
    }

    #[test]
    fn delta_counts_as_the_summary_does() {
        let c = Committed {
            tenant: "acme".into(),
            events: 10,
            hourly: vec![
                row("provider.api_call", false, 4, 4, "0.40"),
                // Itemized: an execution, but its cost repeats the calls'.
                row("agent.completed", true, 2, 2, "0.40"),
                row("agent.failed", false, 1, 0, "0.05"),
                row("agent.started", false, 3, 3, "0"),
            ],
            recent: Vec::new(),
        };
        let d = LiveDelta::of(&c);
        let want = LiveDelta {
            events: 10,
            executions: 3,
            successes: 2,
            failures: 1,
            cost_usd: "0.45".parse().expect("decimal"),
            api_calls: 4,
            input_tokens: 200,
            output_tokens: 20,
            unpriced_events: 2,
        };
        assert_eq!(d, want);
        let mut sum = d.clone();
        sum.add(&d);
        assert_eq!(sum.cost_usd.to_string(), "0.9");
        assert_eq!(sum.executions, 6);
    }

    #[test]
    fn messages_are_tagged_and_money_is_a_string() {
        let d = LiveDelta {
            cost_usd: "1.2345".parse().expect("decimal"),
            ..LiveDelta::default()
        };
        let e = RecentEvent {
            id: Uuid::nil(),
            ts: DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            event_type: "provider.api_call",
            provider: Some("openai".into()),
            model: Some("gpt-4o".into()),
            task_type: None,
            agent_id: None,
            cost_usd: None,
            success: true,
        };
        let m = Message::Update {
            tenant_id: "acme",
            at: e.ts,
            commits: 2,
            delta: &d,
            recent: vec![Recent::from(&e)],
            billing: None,
        };
        let v: serde_json::Value = serde_json::from_str(&m.to_json()).expect("json");
        assert_eq!(m.kind(), "update");
        assert_eq!(v["type"], "update");
        assert_eq!(v["delta"]["cost_usd"], "1.2345");
        assert_eq!(v["recent"][0]["cost_usd"], serde_json::Value::Null);
        assert_eq!(v["billing"], serde_json::Value::Null);
        let r = Message::Resync { reason: "lagged" }.to_json();
        assert_eq!(r, r#"{"type":"resync","reason":"lagged"}"#);
    }
}
