//! The event every part shares: `AnalyticsEvent` (wire format v1, docs/wire-format.md), its builders,
//! its validation, and the batch envelope the SDK sends and the collector accepts.

mod batch;
mod builder;
pub(crate) mod json;
mod kinds;
pub(crate) mod size;
mod usage;
pub(crate) mod validate;
mod wire;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

pub use batch::{encoded_batch_len, pack_encoded, Batch, BatchLimits, DecodedBatch, Rejected};
pub use builder::{AgentEvent, BillingEvent, CustomerEvent, EventBuilder, ProviderEvent};
pub use kinds::{CostStatus, EventType, ServiceTier};
pub use usage::{Usage, BUCKETS as USAGE_BUCKETS};
pub use validate::{
    is_valid_tenant_id, MAX_COST_SCALE, MAX_COST_USD, MAX_COUNT, MAX_EVENT_BYTES, MAX_ID,
    MAX_SHORT, MAX_TENANT_ID,
};
pub(crate) use wire::parse_decimal;

use crate::Error;

/// One thing that happened on the platform: an agent run step, a provider call, a billing or
/// customer action. Serialises to wire format v1; `timestamp` carries microsecond precision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalyticsEvent {
    /// UUIDv7 assigned at creation and reused on every retry and replay: the dedupe key.
    /// Absent on input means "not yet assigned" (nil); `Client::track` assigns one.
    #[serde(default)]
    pub id: Uuid,
    pub tenant_id: String,
    pub event_type: EventType,
    /// When it happened, UTC, microseconds.
    #[serde(with = "wire::timestamp")]
    pub timestamp: DateTime<Utc>,
    /// Ties the events of one agent run together.
    pub correlation_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow_id: Option<String>,
    /// Signed so that a negative value from the wire is reported by validation, not lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_ms: Option<i64>,
    /// Exact USD; a decimal string on the wire, numbers accepted on input (converted from their
    /// decimal text, never through f64).
    #[serde(
        default,
        with = "wire::opt_decimal",
        skip_serializing_if = "Option::is_none"
    )]
    pub cost_usd: Option<Decimal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_status: Option<CostStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_type: Option<String>,
    /// The provider's service tier for pricing (`standard` when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Free-form JSON object, at most 32 KiB serialized.
    #[serde(default)]
    pub metadata: Map<String, Value>,
}

impl AnalyticsEvent {
    /// A new event with a fresh UUIDv7 id, `timestamp = now`, a fresh correlation id and
    /// `success = true`. Prefer the family builders (`AgentEvent`, `ProviderEvent`, ...).
    pub fn new(event_type: EventType, tenant_id: impl Into<String>) -> Self {
        let id = Uuid::now_v7();
        AnalyticsEvent {
            id,
            tenant_id: tenant_id.into(),
            event_type,
            timestamp: now_micros(),
            correlation_id: id.to_string(),
            user_id: None,
            agent_id: None,
            workflow_id: None,
            duration_ms: None,
            queue_ms: None,
            cost_usd: None,
            cost_status: None,
            price_version: None,
            provider: None,
            model: None,
            task_type: None,
            service_tier: None,
            usage: None,
            success: true,
            error_code: None,
            metadata: Map::new(),
        }
    }

    /// Check every rule of wire format v1. The error names the field and the rule.
    pub fn validate(&self) -> Result<(), Error> {
        validate::validate(self)
    }

    /// Decode one event from JSON and validate it. Never panics on any input.
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let e: AnalyticsEvent = wire::decode(text.as_bytes())?;
        e.validate()?;
        Ok(e)
    }

    /// Decode one event from JSON bytes and validate it.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let e: AnalyticsEvent = wire::decode(bytes)?;
        e.validate()?;
        Ok(e)
    }

    /// The wire JSON.
    pub fn to_json(&self) -> String {
        // The writer emits UTF-8 only (it copies `str`s and ASCII).
        String::from_utf8(json::to_vec(self)).unwrap_or_default()
    }

    /// Length of the wire JSON in bytes, computed without allocating it.
    pub fn encoded_len(&self) -> usize {
        size::json_len(self)
    }

    /// The service tier pricing should use.
    pub fn tier(&self) -> ServiceTier {
        self.service_tier.unwrap_or_default()
    }
}

/// Current time truncated to the microsecond precision of the wire format and of PostgreSQL.
pub fn now_micros() -> DateTime<Utc> {
    wire::truncate_micros(Utc::now())
}
