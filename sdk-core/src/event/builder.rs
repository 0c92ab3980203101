//! Builders: one per event family, with the fields an event type cannot be without as
//! constructor arguments, so the common case is one line and a required field cannot be forgotten.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use super::{wire, AnalyticsEvent, CostStatus, EventType, ServiceTier, Usage};
use crate::Error;

/// Sets the optional fields of an event; `build()` validates it once.
#[derive(Debug, Clone)]
#[must_use = "an EventBuilder does nothing until build() is called"]
pub struct EventBuilder {
    event: AnalyticsEvent,
}

macro_rules! opt_string_setters {
    ($($(#[$m:meta])* $name:ident),+) => {$(
        $(#[$m])*
        pub fn $name(mut self, v: impl Into<String>) -> Self {
            self.event.$name = Some(v.into());
            self
        }
    )+};
}

impl EventBuilder {
    /// Any event type; prefer the family constructors, which take the required fields.
    pub fn new(event_type: EventType, tenant_id: impl Into<String>) -> Self {
        EventBuilder {
            event: AnalyticsEvent::new(event_type, tenant_id),
        }
    }

    /// Ties this event to a run. Defaults to a fresh id, which suits one-off events.
    pub fn correlation_id(mut self, v: impl Into<String>) -> Self {
        self.event.correlation_id = v.into();
        self
    }

    opt_string_setters!(
        user_id,
        agent_id,
        workflow_id,
        price_version,
        provider,
        model,
        task_type,
        error_code
    );

    /// Override the id (e.g. to re-create an event from a store). Normally left as assigned.
    pub fn id(mut self, id: Uuid) -> Self {
        self.event.id = id;
        self
    }

    /// When it happened; defaults to now. Truncated to microseconds.
    pub fn timestamp(mut self, t: DateTime<Utc>) -> Self {
        self.event.timestamp = wire::truncate_micros(t);
        self
    }

    /// Wall time the operation took.
    pub fn duration(mut self, d: Duration) -> Self {
        self.event.duration_ms = Some(millis(d));
        self
    }

    /// Wall time the operation took, in milliseconds.
    pub fn duration_ms(mut self, ms: u64) -> Self {
        self.event.duration_ms = Some(i64::try_from(ms).unwrap_or(i64::MAX));
        self
    }

    /// Time spent waiting before execution.
    pub fn queue_ms(mut self, ms: u64) -> Self {
        self.event.queue_ms = Some(i64::try_from(ms).unwrap_or(i64::MAX));
        self
    }

    /// A cost the caller knows (e.g. the provider reported it): status `reported`.
    pub fn cost_usd(mut self, usd: Decimal) -> Self {
        self.event.cost_usd = Some(usd);
        self.event.cost_status = Some(CostStatus::Reported);
        self
    }

    /// A cost with an explicit status (pricing code sets `priced`/`estimated`).
    pub fn cost(mut self, usd: Option<Decimal>, status: CostStatus) -> Self {
        self.event.cost_usd = usd;
        self.event.cost_status = Some(status);
        self
    }

    /// Token usage in canonical buckets.
    pub fn usage(mut self, u: Usage) -> Self {
        self.event.usage = Some(u);
        self
    }

    /// Service tier the provider processed the call in.
    pub fn service_tier(mut self, t: ServiceTier) -> Self {
        self.event.service_tier = Some(t);
        self
    }

    /// Whether the operation succeeded.
    pub fn success(mut self, ok: bool) -> Self {
        self.event.success = ok;
        self
    }

    /// Mark failed with an error code.
    pub fn failed(mut self, error_code: impl Into<String>) -> Self {
        self.event.success = false;
        self.event.error_code = Some(error_code.into());
        self
    }

    /// Add one metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.event.metadata.insert(key.into(), value.into());
        self
    }

    /// Validate and return the event.
    pub fn build(self) -> Result<AnalyticsEvent, Error> {
        self.event.validate()?;
        Ok(self.event)
    }

    /// The event without validation (for tests of validation itself, and for `track()`, which
    /// validates anyway).
    pub fn build_unchecked(self) -> AnalyticsEvent {
        self.event
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `agent.*` events: the lifecycle of one agent run.
#[derive(Debug, Clone, Copy)]
pub struct AgentEvent;

impl AgentEvent {
    fn with(t: EventType, tenant: impl Into<String>, agent: impl Into<String>) -> EventBuilder {
        EventBuilder::new(t, tenant).agent_id(agent)
    }
    /// `agent.created`.
    pub fn created(tenant: impl Into<String>, agent_id: impl Into<String>) -> EventBuilder {
        Self::with(EventType::AgentCreated, tenant, agent_id)
    }
    /// `agent.started`.
    pub fn started(tenant: impl Into<String>, agent_id: impl Into<String>) -> EventBuilder {
        Self::with(EventType::AgentStarted, tenant, agent_id)
    }
    /// `agent.completed` (success).
    pub fn completed(tenant: impl Into<String>, agent_id: impl Into<String>) -> EventBuilder {
        Self::with(EventType::AgentCompleted, tenant, agent_id)
    }
    /// `agent.failed`, with the error code it failed with.
    pub fn failed(
        tenant: impl Into<String>,
        agent_id: impl Into<String>,
        error_code: impl Into<String>,
    ) -> EventBuilder {
        Self::with(EventType::AgentFailed, tenant, agent_id).failed(error_code)
    }
    /// `agent.timeout` (error code `timeout`).
    pub fn timeout(tenant: impl Into<String>, agent_id: impl Into<String>) -> EventBuilder {
        Self::with(EventType::AgentTimeout, tenant, agent_id).failed("timeout")
    }
}

/// `provider.*` events: calls to an LLM provider.
#[derive(Debug, Clone, Copy)]
pub struct ProviderEvent;

impl ProviderEvent {
    /// `provider.api_call` to `model` at `provider`.
    pub fn api_call(
        tenant: impl Into<String>,
        provider: impl Into<String>,
        model: impl Into<String>,
    ) -> EventBuilder {
        EventBuilder::new(EventType::ProviderApiCall, tenant)
            .provider(provider)
            .model(model)
    }
    /// `provider.rate_limit` (error code `rate_limited`).
    pub fn rate_limit(tenant: impl Into<String>, provider: impl Into<String>) -> EventBuilder {
        EventBuilder::new(EventType::ProviderRateLimit, tenant)
            .provider(provider)
            .failed("rate_limited")
    }
    /// `provider.error` with the provider's error code.
    pub fn error(
        tenant: impl Into<String>,
        provider: impl Into<String>,
        error_code: impl Into<String>,
    ) -> EventBuilder {
        EventBuilder::new(EventType::ProviderError, tenant)
            .provider(provider)
            .failed(error_code)
    }
}

/// `billing.*` events.
#[derive(Debug, Clone, Copy)]
pub struct BillingEvent;

impl BillingEvent {
    /// `billing.usage_recorded`.
    pub fn usage_recorded(tenant: impl Into<String>) -> EventBuilder {
        EventBuilder::new(EventType::BillingUsageRecorded, tenant)
    }
    /// `billing.tier_limit_warning`: `metric` reached `used` of `limit`.
    pub fn tier_limit_warning(
        tenant: impl Into<String>,
        metric: impl Into<String>,
        used: u64,
        limit: u64,
    ) -> EventBuilder {
        EventBuilder::new(EventType::BillingTierLimitWarning, tenant)
            .meta("metric", metric.into())
            .meta("used", used)
            .meta("limit", limit)
    }
    /// `billing.tier_limit_exceeded`: `metric` went over `limit`.
    pub fn tier_limit_exceeded(
        tenant: impl Into<String>,
        metric: impl Into<String>,
        used: u64,
        limit: u64,
    ) -> EventBuilder {
        EventBuilder::new(EventType::BillingTierLimitExceeded, tenant)
            .meta("metric", metric.into())
            .meta("used", used)
            .meta("limit", limit)
            .success(false)
    }
    /// `billing.subscription_created` on `tier`.
    pub fn subscription_created(
        tenant: impl Into<String>,
        tier: impl Into<String>,
    ) -> EventBuilder {
        EventBuilder::new(EventType::BillingSubscriptionCreated, tenant).meta("tier", tier.into())
    }
    /// `billing.subscription_upgraded` from one tier to another.
    pub fn subscription_upgraded(
        tenant: impl Into<String>,
        from_tier: impl Into<String>,
        to_tier: impl Into<String>,
    ) -> EventBuilder {
        EventBuilder::new(EventType::BillingSubscriptionUpgraded, tenant)
            .meta("from_tier", from_tier.into())
            .meta("tier", to_tier.into())
    }
}

/// `customer.*` events: what a platform customer's users do.
#[derive(Debug, Clone, Copy)]
pub struct CustomerEvent;

impl CustomerEvent {
    fn with(t: EventType, tenant: impl Into<String>, user: impl Into<String>) -> EventBuilder {
        EventBuilder::new(t, tenant).user_id(user)
    }
    /// `customer.signup`.
    pub fn signup(tenant: impl Into<String>, user_id: impl Into<String>) -> EventBuilder {
        Self::with(EventType::CustomerSignup, tenant, user_id)
    }
    /// `customer.login`.
    pub fn login(tenant: impl Into<String>, user_id: impl Into<String>) -> EventBuilder {
        Self::with(EventType::CustomerLogin, tenant, user_id)
    }
    /// `customer.dashboard_view`.
    pub fn dashboard_view(tenant: impl Into<String>, user_id: impl Into<String>) -> EventBuilder {
        Self::with(EventType::CustomerDashboardView, tenant, user_id)
    }
    /// `customer.export_data`.
    pub fn export_data(tenant: impl Into<String>, user_id: impl Into<String>) -> EventBuilder {
        Self::with(EventType::CustomerExportData, tenant, user_id)
    }
}
