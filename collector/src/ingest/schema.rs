//! The schema of a batch body for the OpenAPI document: the envelope exactly, and each event as
//! an object with the fields of wire format v1 (docs/wire-format.md). Built from sdk-core's own
//! vocabularies (event types, cost statuses, service tiers, usage buckets, limits), so the
//! document follows them. The per-type rules (`provider.api_call` needs `model`, ...) are checked
//! event by event and not expressed here: an event breaking one is rejected alone, in the answer.

use agenttally::event::{CostStatus, EventType, ServiceTier, USAGE_BUCKETS};
use agenttally::BatchLimits;
use utoipa::openapi::schema::{
    AdditionalProperties, ArrayBuilder, ObjectBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{KnownFormat, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::query::metrics::DecimalString;

/// The body of `POST /v1/batch`: `{"batch": [event, ...], "sent_at": "<RFC 3339>"}`.
#[derive(Debug)]
pub struct BatchEnvelope;

impl PartialSchema for BatchEnvelope {
    fn schema() -> RefOr<Schema> {
        let limits = BatchLimits::V1;
        ObjectBuilder::new()
            .description(Some(format!(
                "At most {} events and {} bytes uncompressed (gzip accepted with \
                 `Content-Encoding: gzip`).",
                limits.max_events, limits.max_batch_bytes
            )))
            .property(
                "batch",
                ArrayBuilder::new()
                    .items(RefOr::T(event()))
                    .max_items(Some(limits.max_events)),
            )
            .required("batch")
            .property(
                "sent_at",
                string()
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                    .description(Some("When the batch was sent; for clock-skew diagnostics.")),
            )
            .required("sent_at")
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .into()
    }
}

impl ToSchema for BatchEnvelope {}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn bounded(max: usize) -> ObjectBuilder {
    string().max_length(Some(max))
}

fn count(max: f64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(0))
        .maximum(Some(max))
}

fn one_of<'a>(values: impl IntoIterator<Item = &'a str>) -> ObjectBuilder {
    string().enum_values(Some(values.into_iter().collect::<Vec<_>>()))
}

/// One event of wire format v1. Unknown fields are rejected, so the object is closed.
fn event() -> Schema {
    let id = "[A-Za-z0-9._:-]";
    let mut e = ObjectBuilder::new()
        .description(Some(
            "An event of wire format v1 (docs/wire-format.md). The per-type rules are checked \
             event by event: an event that breaks one is listed in `rejected`.",
        ))
        .property(
            "id",
            string()
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
                .description(Some("Non-nil; with tenant_id, the dedupe key.")),
        )
        .property(
            "tenant_id",
            string().pattern(Some(format!("^{id}{{1,128}}$"))),
        )
        .property(
            "event_type",
            one_of(EventType::ALL.iter().map(|t| t.as_str())),
        )
        .property(
            "timestamp",
            string().format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime))),
        )
        .property("correlation_id", bounded(128).min_length(Some(1)))
        .property("success", ObjectBuilder::new().schema_type(Type::Boolean));
    for f in ["user_id", "agent_id", "workflow_id"] {
        e = e.property(f, bounded(256));
    }
    for f in ["duration_ms", "queue_ms"] {
        e = e.property(f, count(1e12));
    }
    e = e
        .property(
            "cost_usd",
            utoipa::openapi::schema::AnyOfBuilder::new()
                .item(DecimalString::schema())
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::Number)
                        .minimum(Some(0)),
                )
                .description(Some(
                    "Exact USD, 0 to 1,000,000,000: a decimal string, or a number (read from its \
                     decimal text).",
                )),
        )
        .property(
            "cost_status",
            one_of(CostStatus::ALL.iter().map(|s| s.as_str())),
        )
        .property(
            "service_tier",
            one_of(ServiceTier::ALL.iter().map(|s| s.as_str())),
        );
    for f in [
        "price_version",
        "provider",
        "model",
        "task_type",
        "error_code",
    ] {
        e = e.property(f, bounded(128));
    }
    let mut usage =
        ObjectBuilder::new().additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for b in USAGE_BUCKETS {
        usage = usage.property(*b, count(1e12));
    }
    for f in [
        "id",
        "tenant_id",
        "event_type",
        "timestamp",
        "correlation_id",
        "success",
    ] {
        e = e.required(f);
    }
    e.property("usage", usage)
        .property(
            "metadata",
            ObjectBuilder::new().description(Some("Free-form JSON, at most 32 KiB serialized.")),
        )
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}
