//! The rules of wire format v1 (docs/wire-format.md), checked once, in core, for every event however it
//! was made (builder, wire JSON, bindings). The first broken rule is reported with its field.

use rust_decimal::Decimal;

use super::size::{self, MapScan, Measured, Nul, Text};
use super::{AnalyticsEvent, CostStatus, EventType};
use crate::Error;

/// Longest `tenant_id`, in characters.
pub const MAX_TENANT_ID: usize = 128;
/// Longest `correlation_id`, `provider`, `model`, `task_type`, `error_code`, `price_version`.
pub const MAX_SHORT: usize = 128;
/// Longest `user_id`, `agent_id`, `workflow_id`.
pub const MAX_ID: usize = 256;
/// Largest serialized `metadata` object, and largest serialized event, in bytes.
pub const MAX_EVENT_BYTES: usize = 32 * 1024;
/// Largest token count or duration one event may carry. Far above any real call, and low enough
/// that sums over billions of events cannot overflow a 64-bit column.
pub const MAX_COUNT: u64 = 1_000_000_000_000;
/// Largest `cost_usd` of one event (USD).
pub const MAX_COST_USD: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Most decimal places a cost may carry (PostgreSQL `NUMERIC` stores them all; this bounds size).
pub const MAX_COST_SCALE: u32 = 18;

/// Collects the first rule violation.
#[derive(Debug, Default)]
pub(crate) struct Check {
    first: Option<Error>,
}

impl Check {
    pub(crate) fn fail(&mut self, field: &str, rule: impl Into<String>) {
        if self.first.is_none() {
            self.first = Some(Error::invalid(field, rule));
        }
    }

    // Inlined: called for ten fields per event on `track()`'s hot path, and the passing case is
    // three comparisons; naming the broken rule is kept out of line.
    #[inline]
    fn text(&mut self, field: &str, t: Text, min: usize, max: usize) {
        if t.nul || t.chars < min || t.chars > max {
            self.text_failed(field, t, min, max);
        }
    }

    #[cold]
    fn text_failed(&mut self, field: &str, t: Text, min: usize, max: usize) {
        if t.nul {
            self.fail(field, "must not contain NUL characters");
        } else if t.chars < min {
            self.fail(field, "is required and must not be empty");
        } else if t.chars > max {
            self.fail(
                field,
                format!("must be at most {max} characters, got {}", t.chars),
            );
        }
    }

    #[inline]
    fn opt_text(&mut self, field: &str, t: Option<Text>, max: usize) {
        if let Some(t) = t {
            self.text(field, t, 1, max);
        }
    }

    fn finish(self) -> Result<(), Error> {
        self.first.map_or(Ok(()), Err)
    }
}

/// True when `s` is 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn is_valid_tenant_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_TENANT_ID
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

pub(crate) fn validate(e: &AnalyticsEvent) -> Result<(), Error> {
    validate_measured(e).map(|_| ())
}

/// Validate, and return the metadata's scan that served it: the client's queue takes the
/// metadata's heap estimate from it rather than walking the metadata again.
pub(crate) fn validate_measured(e: &AnalyticsEvent) -> Result<MapScan, Error> {
    // One scan of the text fields and of the metadata serves the rules and the serialized length.
    let m = size::measure(e);
    validate_fields(e, &m)?;
    check_encoded_len(e, m.json_len)?;
    Ok(m.metadata)
}

/// Every rule except the serialized-size one, given the text fields' scan.
fn validate_fields(e: &AnalyticsEvent, m: &Measured) -> Result<(), Error> {
    let mut c = Check::default();
    if e.id.is_nil() {
        c.fail("id", "must be a non-nil UUID (the SDK assigns a UUIDv7)");
    }
    if e.tenant_id.is_empty() {
        c.fail("tenant_id", "is required and must not be empty");
    } else if e.tenant_id.len() > MAX_TENANT_ID {
        c.fail(
            "tenant_id",
            format!(
                "must be at most {MAX_TENANT_ID} characters, got {}",
                e.tenant_id.chars().count()
            ),
        );
    } else if !is_valid_tenant_id(&e.tenant_id) {
        c.fail(
            "tenant_id",
            "must contain only the characters A-Z a-z 0-9 . _ : -",
        );
    }
    c.text("correlation_id", m.correlation_id, 1, MAX_SHORT);
    c.opt_text("user_id", m.user_id, MAX_ID);
    c.opt_text("agent_id", m.agent_id, MAX_ID);
    c.opt_text("workflow_id", m.workflow_id, MAX_ID);
    for (field, v) in [("duration_ms", e.duration_ms), ("queue_ms", e.queue_ms)] {
        match v {
            Some(n) if n < 0 => c.fail(field, format!("must be >= 0, got {n}")),
            Some(n) if n as u64 > MAX_COUNT => {
                c.fail(field, format!("must be <= {MAX_COUNT}, got {n}"))
            }
            _ => {}
        }
    }
    if let Some(cost) = e.cost_usd {
        if cost.is_sign_negative() && !cost.is_zero() {
            c.fail("cost_usd", format!("must be >= 0, got {cost}"));
        } else if cost > MAX_COST_USD {
            c.fail(
                "cost_usd",
                format!("must be <= {MAX_COST_USD} USD for one event, got {cost}"),
            );
        } else if cost.scale() > MAX_COST_SCALE {
            c.fail(
                "cost_usd",
                format!(
                    "must have at most {MAX_COST_SCALE} decimal places, got {}",
                    cost.scale()
                ),
            );
        }
    }
    match (e.cost_status, e.cost_usd) {
        (Some(CostStatus::Unpriced), Some(_)) => c.fail(
            "cost_usd",
            "must be absent when cost_status is `unpriced` (an unpriced cost is unknown, not 0)",
        ),
        (Some(s), None) if s != CostStatus::Unpriced => {
            c.fail("cost_usd", format!("is required when cost_status is `{s}`"))
        }
        _ => {}
    }
    c.opt_text("price_version", m.price_version, MAX_SHORT);
    c.opt_text("provider", m.provider, MAX_SHORT);
    c.opt_text("model", m.model, MAX_SHORT);
    c.opt_text("task_type", m.task_type, MAX_SHORT);
    c.opt_text("error_code", m.error_code, MAX_SHORT);
    if let Some(u) = &e.usage {
        u.validate(&mut c);
    }
    validate_type_rules(e, &mut c);
    match m.metadata.nul {
        Some(Nul::Key) => c.fail("metadata", "keys must not contain NUL characters"),
        Some(Nul::String) => c.fail("metadata", "strings must not contain NUL characters"),
        // Numbers are stored as PostgreSQL jsonb NUMERIC and must be finite: a serde_json
        // Number always is (it refuses NaN and infinities, and the parser refuses `1e999`).
        None => {}
    }
    c.finish()
}

/// The serialized-size rules, given the length `n` of the event's wire JSON. Metadata is part of
/// the event, so its own 32 KiB bound can only be broken when the event's is; it is measured
/// only then, to name the right field, which keeps a second serialization off the hot path.
pub(crate) fn check_encoded_len(e: &AnalyticsEvent, n: usize) -> Result<(), Error> {
    if n <= MAX_EVENT_BYTES {
        return Ok(());
    }
    let m = super::size::map_len(&e.metadata);
    if m > MAX_EVENT_BYTES {
        return Err(Error::invalid(
            "metadata",
            format!("must be at most {MAX_EVENT_BYTES} bytes serialized, got {m}"),
        ));
    }
    Err(Error::invalid(
        "",
        format!("serialized event must be at most {MAX_EVENT_BYTES} bytes, got {n}"),
    ))
}

/// Fields that a given event type cannot be without; the builders make them constructor arguments.
fn validate_type_rules(e: &AnalyticsEvent, c: &mut Check) {
    let t = e.event_type;
    let need = |c: &mut Check, field: &str, present: bool| {
        if !present {
            c.fail(field, format!("is required for event_type `{t}`"));
        }
    };
    match t.family() {
        "agent" => need(c, "agent_id", e.agent_id.is_some()),
        "provider" => need(c, "provider", e.provider.is_some()),
        "customer" => need(c, "user_id", e.user_id.is_some()),
        _ => {}
    }
    match t {
        EventType::ProviderApiCall => need(c, "model", e.model.is_some()),
        EventType::AgentFailed | EventType::ProviderError => {
            need(c, "error_code", e.error_code.is_some())
        }
        _ => {}
    }
    if matches!(
        t,
        EventType::AgentFailed | EventType::AgentTimeout | EventType::ProviderError
    ) && e.success
    {
        c.fail("success", format!("must be false for event_type `{t}`"));
    }
    if t == EventType::AgentCompleted && !e.success {
        c.fail(
            "success",
            "must be true for event_type `agent.completed` (use `agent.failed` for a failure)",
        );
    }
}
