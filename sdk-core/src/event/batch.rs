//! The batch envelope `{"batch": [...], "sent_at": "..."}`: its limits, a packer that splits
//! events into batches under them, and lenient decoding where one bad event is rejected alone.

use std::ops::Range;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use super::{now_micros, wire, AnalyticsEvent, MAX_EVENT_BYTES};
use crate::Error;

/// Size limits of a batch (docs/wire-format.md). The SDK splits to fit; the collector enforces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most events in one batch.
    pub max_events: usize,
    /// Largest uncompressed body, envelope included, in bytes.
    pub max_batch_bytes: usize,
    /// Largest serialized event, in bytes.
    pub max_event_bytes: usize,
}

impl BatchLimits {
    /// The wire format v1 limits: 1,000 events, 512 KiB per batch, 32 KiB per event.
    pub const V1: BatchLimits = BatchLimits {
        max_events: 1_000,
        max_batch_bytes: 512 * 1024,
        max_event_bytes: MAX_EVENT_BYTES,
    };
}

impl BatchLimits {
    /// Whether an event of `size` bytes may join a batch already holding `count` events of
    /// `held` bytes in all. An empty batch takes any event (the collector judges its size).
    pub fn fits(&self, count: usize, held: usize, size: usize) -> bool {
        count == 0
            || (count < self.max_events
                && encoded_batch_len(count + 1, held + size) <= self.max_batch_bytes)
    }
}

/// Length of a batch body holding `count` events of `held` bytes in all: the envelope, the
/// events and the commas between them.
pub fn encoded_batch_len(count: usize, held: usize) -> usize {
    ENVELOPE_OVERHEAD + held + count.saturating_sub(1)
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits::V1
    }
}

/// `{"batch":[` + `],"sent_at":"YYYY-MM-DDTHH:MM:SS.ffffffZ"}`: bytes around the events.
const ENVELOPE_OVERHEAD: usize = r#"{"batch":[],"sent_at":""}"#.len() + 27;

/// A batch as sent over the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    pub batch: Vec<AnalyticsEvent>,
    /// When the SDK sent it; for clock-skew diagnostics only.
    #[serde(with = "wire::timestamp")]
    pub sent_at: DateTime<Utc>,
}

/// One event of a decoded batch that broke a rule; the rest of the batch is unaffected.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Position in the batch.
    pub index: usize,
    /// The event's id, when it could be read.
    pub id: Option<Uuid>,
    /// What was wrong, naming the field (`batch[3].duration_ms: must be >= 0, got -5`).
    pub error: Error,
}

/// A batch decoded event by event: valid events and rejections, in batch order.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedBatch {
    pub sent_at: Option<DateTime<Utc>>,
    pub events: Vec<Result<AnalyticsEvent, Rejected>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Envelope<'a> {
    #[serde(borrow)]
    batch: Vec<&'a RawValue>,
    #[serde(default, with = "opt_ts")]
    sent_at: Option<DateTime<Utc>>,
}

mod opt_ts {
    use chrono::{DateTime, Utc};
    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        super::wire::timestamp::deserialize(d).map(Some)
    }
}

#[derive(Deserialize)]
struct IdOnly {
    id: Option<Uuid>,
}

impl Batch {
    /// A batch stamped `sent_at = now`.
    pub fn new(events: Vec<AnalyticsEvent>) -> Self {
        Batch {
            batch: events,
            sent_at: now_micros(),
        }
    }

    /// Split `events` into batches that each fit `limits`, keeping order.
    pub fn split(events: Vec<AnalyticsEvent>, limits: &BatchLimits) -> Vec<Batch> {
        let ranges = pack_encoded(events.iter().map(AnalyticsEvent::encoded_len), limits);
        let mut it = events.into_iter();
        ranges
            .into_iter()
            .map(|r| Batch::new(it.by_ref().take(r.len()).collect()))
            .collect()
    }

    /// The wire JSON.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Write an envelope around events that are already encoded (one JSON object each).
    pub fn encode_raw<'a>(
        out: &mut Vec<u8>,
        events: impl IntoIterator<Item = &'a [u8]>,
        sent_at: DateTime<Utc>,
    ) {
        out.extend_from_slice(br#"{"batch":["#);
        for (i, e) in events.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(e);
        }
        out.extend_from_slice(br#"],"sent_at":""#);
        out.extend_from_slice(
            sent_at
                .to_rfc3339_opts(SecondsFormat::Micros, true)
                .as_bytes(),
        );
        out.extend_from_slice(br#""}"#);
    }

    /// Decode a batch body: the envelope must be well-formed and within `limits` (else `Err`,
    /// which a collector answers with 400/413); each event is then decoded and validated on its
    /// own, so a bad event is rejected by itself. Never panics on any input.
    pub fn decode(bytes: &[u8], limits: &BatchLimits) -> Result<DecodedBatch, Error> {
        if bytes.len() > limits.max_batch_bytes {
            return Err(Error::too_large(
                "batch",
                format!(
                    "body must be at most {} bytes uncompressed, got {}",
                    limits.max_batch_bytes,
                    bytes.len()
                ),
            ));
        }
        let env: Envelope<'_> = wire::decode_borrowed(bytes).map_err(|e| match e.field() {
            Some(f) if f.starts_with("batch") => e,
            _ => e.within("batch"),
        })?;
        if env.batch.len() > limits.max_events {
            return Err(Error::too_large(
                "batch",
                format!(
                    "must hold at most {} events, got {}",
                    limits.max_events,
                    env.batch.len()
                ),
            ));
        }
        let events = env
            .batch
            .iter()
            .enumerate()
            .map(|(index, raw)| {
                decode_one(raw, limits).map_err(|error| Rejected {
                    index,
                    id: serde_json::from_str::<IdOnly>(raw.get())
                        .ok()
                        .and_then(|i| i.id),
                    error: error.within(&format!("batch[{index}]")),
                })
            })
            .collect();
        Ok(DecodedBatch {
            sent_at: env.sent_at,
            events,
        })
    }
}

fn decode_one(raw: &RawValue, limits: &BatchLimits) -> Result<AnalyticsEvent, Error> {
    let text = raw.get();
    if text.len() > limits.max_event_bytes {
        return Err(Error::invalid(
            "",
            format!(
                "serialized event must be at most {} bytes, got {}",
                limits.max_event_bytes,
                text.len()
            ),
        ));
    }
    let e = AnalyticsEvent::from_json(text)?;
    if e.id.is_nil() {
        return Err(Error::invalid(
            "id",
            "is required: a UUID the SDK assigns when the event is created",
        ));
    }
    Ok(e)
}

/// Group encoded events (given by size, in order) into consecutive ranges that each fit `limits`.
/// An event larger than a whole batch still gets a range of its own (the collector rejects it).
pub fn pack_encoded(
    sizes: impl IntoIterator<Item = usize>,
    limits: &BatchLimits,
) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut count, mut held) = (0usize, 0usize, 0usize);
    for (i, size) in sizes.into_iter().enumerate() {
        if !limits.fits(count, held, size) {
            out.push(start..i);
            (start, count, held) = (i, 0, 0);
        }
        count += 1;
        held += size;
    }
    if count > 0 {
        out.push(start..start + count);
    }
    out
}
