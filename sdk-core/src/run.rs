//! The run helper: one agent run's `agent.started` → provider calls → outcome, sharing a
//! correlation id, with duration from a monotonic clock and the summed cost of its calls.
//!
//! It mirrors the seed's `executeAgent`: start (emits `agent.started` and makes the correlation
//! id), record provider calls, then `complete()`, `fail(code)` or `timeout()`, which emit
//! `agent.completed` / `agent.failed` / `agent.timeout` with `duration_ms`, the summed
//! `cost_usd` and the summed `usage` of the recorded calls. A run dropped without an outcome
//! emits `agent.failed` with error code `abandoned`, so a crashed task is still counted.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use uuid::Uuid;

use crate::client::Client;
use crate::{AgentEvent, CostStatus, Error, EventBuilder, ProviderEvent, Usage};

/// The error code of a run dropped without `complete()`, `fail()` or `timeout()`.
pub const ABANDONED: &str = "abandoned";

/// A provider call to record on a run: a `ProviderEvent` builder, or `(provider, model, usage)`.
#[derive(Debug, Clone)]
pub enum Call {
    /// A full event builder (e.g. `ProviderEvent::api_call(..)` with usage, cost, duration).
    Builder(Box<EventBuilder>),
    /// Provider, model and usage; the run's tenant is used.
    Usage {
        provider: String,
        model: String,
        usage: Usage,
    },
}

impl From<EventBuilder> for Call {
    fn from(b: EventBuilder) -> Self {
        Call::Builder(Box::new(b))
    }
}

impl<P: Into<String>, M: Into<String>> From<(P, M, Usage)> for Call {
    fn from((p, m, usage): (P, M, Usage)) -> Self {
        Call::Usage {
            provider: p.into(),
            model: m.into(),
            usage,
        }
    }
}

#[derive(Debug, Default)]
struct Totals {
    cost: Option<Decimal>,
    /// Some call carried usage but no cost (unpriced) or an estimated cost.
    estimated: bool,
    usage: Option<Usage>,
    calls: u64,
    finished: bool,
}

/// One agent run. Created by [`Client::run`]; finish it with [`complete`](Run::complete),
/// [`fail`](Run::fail) or [`timeout`](Run::timeout).
#[derive(Debug)]
#[must_use = "a run emits agent.failed (abandoned) when dropped unfinished"]
pub struct Run {
    client: Client,
    tenant_id: String,
    agent_id: String,
    task_type: String,
    correlation_id: String,
    started: Instant,
    totals: Mutex<Totals>,
}

impl Run {
    pub(crate) fn start(
        client: Client,
        tenant_id: String,
        agent_id: String,
        task_type: String,
    ) -> Run {
        let run = Run {
            client,
            correlation_id: Uuid::now_v7().to_string(),
            tenant_id,
            agent_id,
            task_type,
            started: Instant::now(),
            totals: Mutex::new(Totals::default()),
        };
        let ev = run.tag(AgentEvent::started(
            run.tenant_id.clone(),
            run.agent_id.clone(),
        ));
        if let Err(e) = run.client.track(ev.build_unchecked()) {
            tracing::warn!(error = %e, "agenttally: agent.started was not tracked");
        }
        run
    }

    fn tag(&self, b: EventBuilder) -> EventBuilder {
        b.correlation_id(self.correlation_id.clone())
            .task_type(self.task_type.clone())
    }

    fn totals(&self) -> std::sync::MutexGuard<'_, Totals> {
        self.totals.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The correlation id every event of this run carries.
    pub fn correlation_id(&self) -> &str {
        &self.correlation_id
    }

    /// Time since the run started (monotonic).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sum of the costs of the calls recorded so far (`None` when none had a cost).
    pub fn cost(&self) -> Option<Decimal> {
        self.totals().cost
    }

    /// Track a `provider.api_call` (or other provider event) with this run's correlation id,
    /// agent and task type, priced with the client's price book, and add its cost to the run.
    pub fn record_call(&self, call: impl Into<Call>) -> Result<(), Error> {
        let b = match call.into() {
            Call::Builder(b) => *b,
            Call::Usage {
                provider,
                model,
                usage,
            } => ProviderEvent::api_call(self.tenant_id.clone(), provider, model).usage(usage),
        };
        let mut ev = self
            .tag(b)
            .agent_id(self.agent_id.clone())
            .build_unchecked();
        self.client.price(&mut ev);
        let (cost, status, usage) = (ev.cost_usd, ev.cost_status, ev.usage);
        self.client.track(ev)?;
        let mut t = self.totals();
        t.calls += 1;
        if let Some(c) = cost {
            t.cost = Some(t.cost.unwrap_or_default() + c);
        }
        if matches!(status, Some(CostStatus::Estimated | CostStatus::Unpriced))
            || (cost.is_none() && usage.is_some())
        {
            t.estimated = true;
        }
        if let Some(u) = usage {
            t.usage = Some(t.usage.map_or(u, |s| s.add(&u)));
        }
        Ok(())
    }

    /// Emit `agent.completed`.
    pub fn complete(self) -> Result<(), Error> {
        let b = AgentEvent::completed(self.tenant_id.clone(), self.agent_id.clone());
        self.finish(b)
    }

    /// Emit `agent.failed` with `error_code`.
    pub fn fail(self, error_code: impl Into<String>) -> Result<(), Error> {
        let b = AgentEvent::failed(self.tenant_id.clone(), self.agent_id.clone(), error_code);
        self.finish(b)
    }

    /// Emit `agent.timeout`.
    pub fn timeout(self) -> Result<(), Error> {
        let b = AgentEvent::timeout(self.tenant_id.clone(), self.agent_id.clone());
        self.finish(b)
    }

    fn finish(&self, b: EventBuilder) -> Result<(), Error> {
        let mut b = self.tag(b).duration(self.started.elapsed());
        {
            let mut t = self.totals();
            if t.finished {
                return Ok(());
            }
            t.finished = true;
            if let Some(c) = t.cost {
                let status = if t.estimated {
                    CostStatus::Estimated
                } else {
                    CostStatus::Priced
                };
                b = b.cost(Some(c), status);
            }
            if let Some(u) = t.usage {
                b = b.usage(u);
            }
            b = b.meta("calls", t.calls);
        }
        self.client.track(b.build_unchecked())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if !self.totals().finished {
            let b = AgentEvent::failed(self.tenant_id.clone(), self.agent_id.clone(), ABANDONED);
            if let Err(e) = self.finish(b) {
                tracing::warn!(error = %e, "agenttally: abandoned run was not tracked");
            }
        }
    }
}
