//! A tenant's summary: run outcomes and cost by provider from the daily rollups, and the priced
//! provider calls (with their run's outcome) that savings are computed from.

use agenttally::pricing::Task;
use agenttally::Usage;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use tokio_postgres::GenericClient;

use crate::error::Result;
use crate::store::TenantTx;

/// The tenants with rolled-up data, in order. Reads across tenants: an operator's listing, run
/// as the collector's own user, not under a tenant.
pub async fn tenants_with_data(client: &impl GenericClient) -> Result<Vec<String>> {
    Ok(client
        .query(
            "SELECT DISTINCT tenant_id FROM rollup_daily ORDER BY tenant_id",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// How a tenant's runs ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOutcomes {
    pub completed: i64,
    pub failed: i64,
    pub timed_out: i64,
}

impl RunOutcomes {
    pub fn runs(&self) -> i64 {
        self.completed + self.failed + self.timed_out
    }
}

/// Runs by outcome, from `agent.completed|failed|timeout` events.
pub async fn run_outcomes(tx: &TenantTx<'_>) -> Result<RunOutcomes> {
    let rows = tx
        .query(
            "SELECT event_type, sum(events)::bigint FROM rollup_daily
             WHERE event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
             GROUP BY event_type",
            &[],
        )
        .await?;
    let count = |t: &str| -> i64 {
        rows.iter()
            .find(|r| r.get::<_, String>(0) == t)
            .map_or(0, |r| r.get(1))
    };
    Ok(RunOutcomes {
        completed: count("agent.completed"),
        failed: count("agent.failed"),
        timed_out: count("agent.timeout"),
    })
}

/// One provider's calls, tokens and cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderCost {
    pub provider: String,
    pub calls: i64,
    /// Input (all kinds) and output tokens.
    pub tokens: i64,
    pub cost_usd: Decimal,
    /// Calls without a price (cost absent, never counted as $0).
    pub unpriced: i64,
}

/// Cost by provider, most expensive first.
pub async fn cost_by_provider(tx: &TenantTx<'_>) -> Result<Vec<ProviderCost>> {
    let rows = tx
        .query(
            "SELECT provider, sum(events)::bigint, sum(cost_usd), sum(unpriced_events)::bigint,
                    sum(input_tokens + cached_input_tokens + cache_write_tokens
                        + cache_write_1h_tokens + output_tokens)::bigint
             FROM rollup_daily WHERE event_type = 'provider.api_call'
             GROUP BY provider ORDER BY sum(cost_usd) DESC",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| ProviderCost {
            provider: r.get(0),
            calls: r.get(1),
            cost_usd: r.get(2),
            unpriced: r.get(3),
            tokens: r.get(4),
        })
        .collect())
}

/// Every provider call with a model, as a pricing task carrying the outcome of its run (the
/// call's own success when the run has no outcome event).
pub async fn priced_calls(tx: &TenantTx<'_>) -> Result<Vec<Task>> {
    let rows = tx
        .query(
            "SELECT c.provider, c.model, c.task_type, c.service_tier, c.ts, c.cost_usd,
                    coalesce(c.input_tokens, 0), coalesce(c.cached_input_tokens, 0),
                    coalesce(c.cache_write_tokens, 0), coalesce(c.cache_write_1h_tokens, 0),
                    coalesce(c.output_tokens, 0), coalesce(c.reasoning_tokens, 0),
                    coalesce(c.requests, 0),
                    coalesce(o.success, c.success)
             FROM events c
             LEFT JOIN events o
               ON o.tenant_id = c.tenant_id AND o.correlation_id = c.correlation_id
              AND o.event_type IN ('agent.completed', 'agent.failed', 'agent.timeout')
             WHERE c.event_type = 'provider.api_call' AND c.model IS NOT NULL",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| {
            let n = |i: usize| u64::try_from(r.get::<_, i64>(i)).unwrap_or(0);
            let usage = Usage {
                input_tokens: n(6),
                cached_input_tokens: n(7),
                cache_write_tokens: n(8),
                cache_write_1h_tokens: n(9),
                output_tokens: n(10),
                reasoning_tokens: n(11),
                requests: n(12).max(1),
            };
            let at: DateTime<Utc> = r.get(4);
            let mut t = Task::new(r.get::<_, String>(1), usage, at);
            t.provider = r.get(0);
            t.task_type = r.get(2);
            t.tier = r
                .get::<_, Option<String>>(3)
                .and_then(|s| s.parse().ok())
                .unwrap_or_default();
            t.actual_usd = r.get(5);
            t.success = r.get(13);
            t
        })
        .collect())
}
