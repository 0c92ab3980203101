//! Canonical token usage: disjoint buckets so nothing is counted twice (docs/pricing.md).
//! Provider-shaped usage (OpenAI, Anthropic, Gemini) is converted into these by `pricing::adapters`.

use serde::{Deserialize, Serialize};

use super::validate::{Check, MAX_COUNT};

/// Token and request counts of one call (or a sum of calls), in disjoint buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Usage {
    /// Prompt tokens not read from or written to a cache.
    #[serde(skip_serializing_if = "is_zero")]
    pub input_tokens: u64,
    /// Prompt tokens read from a cache.
    #[serde(skip_serializing_if = "is_zero")]
    pub cached_input_tokens: u64,
    /// Prompt tokens written to a cache with the default (5-minute) TTL.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Prompt tokens written to a 1-hour cache.
    #[serde(skip_serializing_if = "is_zero")]
    pub cache_write_1h_tokens: u64,
    /// All generated tokens, reasoning included.
    #[serde(skip_serializing_if = "is_zero")]
    pub output_tokens: u64,
    /// The part of `output_tokens` that was reasoning.
    #[serde(skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    /// Billable calls/completions. Pricing treats 0 on a `provider.api_call` as 1.
    #[serde(skip_serializing_if = "is_zero")]
    pub requests: u64,
}

// Hand-written so that only a JSON object is accepted (a derived impl also takes an array) and
// an unknown key such as `prompt_tokens` is an error rather than a silent zero.
impl<'de> Deserialize<'de> for Usage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Usage;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of token counts")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Usage, A::Error> {
                let mut u = Usage::default();
                while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    let slot = match key.as_ref() {
                        "input_tokens" => &mut u.input_tokens,
                        "cached_input_tokens" => &mut u.cached_input_tokens,
                        "cache_write_tokens" => &mut u.cache_write_tokens,
                        "cache_write_1h_tokens" => &mut u.cache_write_1h_tokens,
                        "output_tokens" => &mut u.output_tokens,
                        "reasoning_tokens" => &mut u.reasoning_tokens,
                        "requests" => &mut u.requests,
                        other => return Err(serde::de::Error::unknown_field(other, BUCKETS)),
                    };
                    *slot = m.next_value()?;
                }
                Ok(u)
            }
        }
        d.deserialize_map(V)
    }
}

/// The canonical bucket names, in wire order.
pub const BUCKETS: &[&str] = &[
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "cache_write_1h_tokens",
    "output_tokens",
    "reasoning_tokens",
    "requests",
];

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Every bucket with its wire name, in wire order (the names of [`BUCKETS`]).
    pub fn buckets(&self) -> [(&'static str, u64); 7] {
        [
            ("input_tokens", self.input_tokens),
            ("cached_input_tokens", self.cached_input_tokens),
            ("cache_write_tokens", self.cache_write_tokens),
            ("cache_write_1h_tokens", self.cache_write_1h_tokens),
            ("output_tokens", self.output_tokens),
            ("reasoning_tokens", self.reasoning_tokens),
            ("requests", self.requests),
        ]
    }

    /// All prompt-side tokens: the figure long-context tiers are decided on.
    pub fn prompt_total(&self) -> u64 {
        self.input_tokens
            .saturating_add(self.cached_input_tokens)
            .saturating_add(self.cache_write_tokens)
            .saturating_add(self.cache_write_1h_tokens)
    }

    /// Prompt plus output tokens (reasoning is already inside output).
    pub fn total_tokens(&self) -> u64 {
        self.prompt_total().saturating_add(self.output_tokens)
    }

    /// True when every bucket is zero.
    pub fn is_empty(&self) -> bool {
        *self == Usage::default()
    }

    /// Bucket-wise saturating sum, for summing the calls of one run.
    pub fn add(&self, other: &Usage) -> Usage {
        Usage {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            cached_input_tokens: self
                .cached_input_tokens
                .saturating_add(other.cached_input_tokens),
            cache_write_tokens: self
                .cache_write_tokens
                .saturating_add(other.cache_write_tokens),
            cache_write_1h_tokens: self
                .cache_write_1h_tokens
                .saturating_add(other.cache_write_1h_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            reasoning_tokens: self.reasoning_tokens.saturating_add(other.reasoning_tokens),
            requests: self.requests.saturating_add(other.requests),
        }
    }

    pub(crate) fn validate(&self, c: &mut Check) {
        let buckets = [
            ("usage.input_tokens", self.input_tokens),
            ("usage.cached_input_tokens", self.cached_input_tokens),
            ("usage.cache_write_tokens", self.cache_write_tokens),
            ("usage.cache_write_1h_tokens", self.cache_write_1h_tokens),
            ("usage.output_tokens", self.output_tokens),
            ("usage.reasoning_tokens", self.reasoning_tokens),
            ("usage.requests", self.requests),
        ];
        for (field, n) in buckets {
            if n > MAX_COUNT {
                c.fail(field, format!("must be <= {MAX_COUNT}, got {n}"));
            }
        }
        if self.reasoning_tokens > self.output_tokens {
            c.fail(
                "usage.reasoning_tokens",
                format!(
                    "must be <= usage.output_tokens ({}) because output includes reasoning, got {}",
                    self.output_tokens, self.reasoning_tokens
                ),
            );
        }
    }
}
