//! Import of LiteLLM's `model_prices_and_context_window.json`: rates converted exactly from their
//! JSON decimal text (never through f64), validated, with a report of what was skipped and why.

use std::collections::BTreeMap;
use std::fmt;

use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::book::{PriceBook, PriceEntry, RateKind};
use super::ServiceTier;
use crate::Error;

/// Why an entry of the file was not imported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SkipReason {
    /// The `sample_spec` documentation entry.
    SampleSpec,
    /// The value is not an object (e.g. the mirror's `last_updated`).
    NotAnEntry,
    /// No per-token (or per-request) rate: priced per image, second, character, page, ...
    NotTokenPriced,
    /// A rate is negative.
    NegativeRate,
    /// A rate is not a decimal number.
    InvalidRate,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::SampleSpec => "sample_spec (documentation, not a model)",
            SkipReason::NotAnEntry => "not a model entry (value is not an object)",
            SkipReason::NotTokenPriced => {
                "not token-priced (no per-token or per-request rate; e.g. per image/second/character)"
            }
            SkipReason::NegativeRate => "negative rate",
            SkipReason::InvalidRate => "rate is not a decimal number",
        })
    }
}

/// One entry that was not imported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub key: String,
    pub reason: SkipReason,
    /// The field and value at fault, when there is one.
    pub detail: String,
}

/// One imported entry with something suspicious about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportWarning {
    pub key: String,
    pub message: String,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Entries imported.
    pub imported: usize,
    /// Entries not imported, each with its reason.
    pub skipped: Vec<Skipped>,
    /// Imported entries flagged: per-token rates above 0.001 USD, cache read above input.
    pub warnings: Vec<ImportWarning>,
    /// Cost fields AgentTally does not price (audio, image, per-second, ...) → imported entries
    /// having them (their cost is not part of any computed cost).
    pub ignored_fields: BTreeMap<String, usize>,
}

impl ImportReport {
    /// Skipped entries counted per reason.
    pub fn skipped_by_reason(&self) -> BTreeMap<SkipReason, usize> {
        let mut m = BTreeMap::new();
        for s in &self.skipped {
            *m.entry(s.reason).or_insert(0) += 1;
        }
        m
    }
}

/// A LiteLLM field name split into the rate it sets: base kind, long-context threshold, tier.
/// `None` for fields that are not per-token/per-request rates AgentTally prices.
pub(crate) fn parse_field(name: &str) -> Option<(RateKind, u64, ServiceTier)> {
    let (rest, tier) = if let Some(r) = name.strip_suffix("_batches") {
        (r, ServiceTier::Batch)
    } else if let Some(r) = name.strip_suffix("_priority") {
        (r, ServiceTier::Priority)
    } else if let Some(r) = name.strip_suffix("_flex") {
        (r, ServiceTier::Flex)
    } else {
        (name, ServiceTier::Standard)
    };
    let (base, above) = match rest.strip_suffix("k_tokens").and_then(|r| {
        let pos = r.rfind("_above_")?;
        let n: u64 = r[pos + "_above_".len()..].parse().ok()?;
        Some((&r[..pos], n.checked_mul(1000)?))
    }) {
        Some((b, n)) => (b, n),
        None => (rest, 0),
    };
    let kind = match base {
        "input_cost_per_token" => RateKind::Input,
        "output_cost_per_token" => RateKind::Output,
        "cache_read_input_token_cost" => RateKind::CacheRead,
        "cache_creation_input_token_cost" => RateKind::CacheWrite,
        "cache_creation_input_token_cost_above_1hr" => RateKind::CacheWrite1h,
        "output_cost_per_reasoning_token" => RateKind::Reasoning,
        "input_cost_per_request" => RateKind::Request,
        _ => return None,
    };
    Some((kind, above, tier))
}

/// A JSON object with each value kept as its JSON text (keys sorted, the last duplicate wins,
/// like serde_json's `Map`): numbers are read from their digits, never through f64.
pub(crate) type RawObject<'a> = BTreeMap<String, &'a RawValue>;

/// A JSON number's exact decimal value, from its text.
pub(crate) fn decimal_of(v: &RawValue) -> Result<Decimal, String> {
    let text = v.get();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(format!("must be a number, got {text}"));
    }
    crate::event::parse_decimal(text)
}

/// The value as a string, when it is a JSON string.
fn string_of(v: &RawValue) -> Option<String> {
    serde_json::from_str(v.get()).ok()
}

/// The value as an object, when it is a JSON object.
fn object_of(v: &RawValue) -> Option<RawObject<'_>> {
    if v.get().starts_with('{') {
        serde_json::from_str(v.get()).ok()
    } else {
        None
    }
}

/// Build one entry from a LiteLLM model object. `Err` is the skip reason and detail.
pub(crate) fn entry_from_litellm(
    key: &str,
    obj: &RawObject<'_>,
    ignored: &mut Vec<String>,
) -> Result<PriceEntry, (SkipReason, String)> {
    let mut e = PriceEntry::new(key);
    if let Some(p) = obj.get("litellm_provider").and_then(|v| string_of(v)) {
        e = e.provider(p.as_str());
    }
    if let Some(m) = obj.get("mode").and_then(|v| string_of(v)) {
        e = e.mode(m.as_str());
    }
    // DeepSeek's older spelling of the cache-read rate; the canonical field wins.
    let mut cache_hit = None;
    let mut priced = false;
    for (field, v) in obj {
        let parsed = parse_field(field);
        if parsed.is_none() && field != "input_cost_per_token_cache_hit" {
            if field.contains("cost") {
                ignored.push(field.clone());
            }
            continue;
        }
        let rate = decimal_of(v).map_err(|m| (SkipReason::InvalidRate, format!("{field}: {m}")))?;
        if rate.is_sign_negative() && !rate.is_zero() {
            return Err((
                SkipReason::NegativeRate,
                format!("{field}: must be >= 0, got {rate}"),
            ));
        }
        match parsed {
            Some((kind, above, tier)) => {
                priced |= matches!(kind, RateKind::Input | RateKind::Output | RateKind::Request);
                e = e.rate_at(kind, tier, above, rate);
            }
            None => cache_hit = Some(rate),
        }
    }
    if !priced {
        return Err((SkipReason::NotTokenPriced, String::new()));
    }
    if let Some(r) = cache_hit {
        if e.get_rate(RateKind::CacheRead, ServiceTier::Standard, 0)
            .is_none()
        {
            e = e.rate(RateKind::CacheRead, r);
        }
    }
    Ok(e)
}

impl PriceBook {
    /// Import a LiteLLM `model_prices_and_context_window.json`. The book's version is
    /// `litellm:<last_updated>` when the file has a `last_updated` string, else `litellm`.
    /// Only a document that is not a JSON object is an error; bad entries are skipped and reported.
    pub fn from_litellm_json(text: &str) -> Result<(PriceBook, ImportReport), Error> {
        let root: RawObject<'_> = serde_json::from_str(text)
            .map_err(|e| Error::Pricing(format!("litellm price file: not a JSON object ({e})")))?;
        let version = match root.get("last_updated").and_then(|v| string_of(v)) {
            Some(s) => format!("litellm:{s}"),
            None => "litellm".to_string(),
        };
        let mut book = PriceBook::new(version);
        let mut report = ImportReport::default();
        for (key, v) in &root {
            let skip = |reason, detail: String| Skipped {
                key: key.clone(),
                reason,
                detail,
            };
            if key == "sample_spec" {
                report
                    .skipped
                    .push(skip(SkipReason::SampleSpec, String::new()));
                continue;
            }
            let Some(obj) = object_of(v) else {
                report
                    .skipped
                    .push(skip(SkipReason::NotAnEntry, String::new()));
                continue;
            };
            let mut ignored = Vec::new();
            match entry_from_litellm(key, &obj, &mut ignored) {
                Ok(entry) => {
                    for f in ignored {
                        *report.ignored_fields.entry(f).or_insert(0) += 1;
                    }
                    for message in entry.lint() {
                        report.warnings.push(ImportWarning {
                            key: key.clone(),
                            message,
                        });
                    }
                    match book.insert(entry) {
                        Ok(()) => report.imported += 1,
                        Err(e) => report
                            .skipped
                            .push(skip(SkipReason::InvalidRate, e.to_string())),
                    }
                }
                Err((reason, detail)) => report.skipped.push(skip(reason, detail)),
            }
        }
        Ok((book, report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_split_into_kind_threshold_and_tier() {
        use RateKind::*;
        use ServiceTier::*;
        let cases = [
            ("input_cost_per_token", Some((Input, 0, Standard))),
            ("output_cost_per_token_batches", Some((Output, 0, Batch))),
            (
                "cache_read_input_token_cost_flex",
                Some((CacheRead, 0, Flex)),
            ),
            (
                "input_cost_per_token_above_272k_tokens_priority",
                Some((Input, 272_000, Priority)),
            ),
            (
                "cache_creation_input_token_cost_above_1hr",
                Some((CacheWrite1h, 0, Standard)),
            ),
            (
                "cache_creation_input_token_cost_above_1hr_above_200k_tokens",
                Some((CacheWrite1h, 200_000, Standard)),
            ),
            (
                "output_cost_per_reasoning_token",
                Some((Reasoning, 0, Standard)),
            ),
            ("input_cost_per_request", Some((Request, 0, Standard))),
            ("input_cost_per_audio_token", None),
            ("input_cost_per_token_above_xk_tokens", None),
            ("output_cost_per_image", None),
        ];
        for (name, want) in cases {
            assert_eq!(parse_field(name), want, "{name}");
            if let Some((k, a, t)) = want {
                assert_eq!(k.litellm_field(t, a), name);
            }
        }
    }

    #[test]
    fn rates_convert_from_decimal_text() {
        let v: Vec<&RawValue> =
            serde_json::from_str("[1e-07, 0.0000025, 3, 1.25E-6, 0.1234567890123456789]")
                .expect("json");
        let got: Vec<String> = v
            .iter()
            .map(|n| decimal_of(n).expect("decimal").to_string())
            .collect();
        assert_eq!(
            got,
            [
                "0.0000001",
                "0.0000025",
                "3",
                "0.00000125",
                "0.1234567890123456789"
            ]
        );
        for not_a_number in [r#""1""#, "null", "[1]"] {
            let v: &RawValue = serde_json::from_str(not_a_number).expect("json");
            assert!(decimal_of(v).is_err(), "{not_a_number}");
        }
    }
}
