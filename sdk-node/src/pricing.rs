//! `PriceBook`: sdk-core's pricing with money as decimal strings (never a JavaScript number).

use std::sync::Arc;

use agenttally::pricing as core;
use agenttally::ServiceTier;
use chrono::Utc;
use napi::bindgen_prelude::*;
use napi::Env;
use napi_derive::napi;

use crate::client::tier;
use crate::convert;
use crate::errors;

/// A price book (see sdk-core's `PriceBook`).
#[derive(Debug)]
#[napi]
pub struct PriceBook {
    pub(crate) inner: Arc<core::PriceBook>,
}

/// The cost of one call.
#[derive(Debug)]
#[napi(object)]
pub struct Cost {
    /// Exact USD as a decimal string; `null` when the model or a bucket is unpriced.
    #[napi(ts_type = "string | null")]
    pub usd: Either<String, Null>,
    /// `priced`, `estimated`, `unpriced` or `reported` (see docs/pricing.md).
    pub status: String,
    #[napi(ts_type = "string | null")]
    pub price_version: Either<String, Null>,
}

fn or_null(v: Option<String>) -> Either<String, Null> {
    match v {
        Some(s) => Either::A(s),
        None => Either::B(Null),
    }
}

#[napi]
impl PriceBook {
    /// The price book compiled into sdk-core.
    #[napi(factory)]
    pub fn builtin() -> Self {
        PriceBook {
            inner: Arc::new(core::PriceBook::builtin()),
        }
    }

    /// Import LiteLLM's `model_prices_and_context_window.json`, given as its text or a path.
    #[napi(factory)]
    pub fn from_litellm_json(env: Env, path_or_text: String) -> Result<Self> {
        let text = if path_or_text.trim_start().starts_with('{') {
            path_or_text
        } else {
            std::fs::read_to_string(&path_or_text).map_err(|e| {
                errors::to_js(
                    &env,
                    agenttally::Error::Pricing(format!("reading {path_or_text}: {e}")),
                )
            })?
        };
        let (book, _report) =
            core::PriceBook::from_litellm_json(&text).map_err(|e| errors::to_js(&env, e))?;
        Ok(PriceBook {
            inner: Arc::new(book),
        })
    }

    /// The book's version label.
    #[napi(getter)]
    pub fn version(&self) -> String {
        self.inner.version().to_string()
    }

    /// The number of models the book prices.
    #[napi(getter)]
    pub fn size(&self) -> u32 {
        u32::try_from(self.inner.len()).unwrap_or(u32::MAX)
    }

    /// The cost of one call of `model` with `usage` (canonical buckets or a provider usage
    /// object), at `options.serviceTier` (default `standard`) and `options.at` (default now).
    #[napi(
        ts_args_type = "model: string, usage: Record<string, unknown>, options?: { serviceTier?: string; at?: Date | string }"
    )]
    pub fn cost(
        &self,
        env: Env,
        model: Unknown<'_>,
        usage: Unknown<'_>,
        options: Unknown<'_>,
    ) -> Result<Cost> {
        let env = &env;
        let model = convert::string(env, &model, "model")?;
        let usage = convert::usage(env, &usage, None, "usage")?;
        let (tier_v, at) = match options.get_type()? {
            napi::ValueType::Undefined | napi::ValueType::Null => {
                (ServiceTier::Standard, Utc::now())
            }
            napi::ValueType::Object => {
                let o = options.coerce_to_object()?;
                let st: Unknown<'_> = o.get_named_property("serviceTier")?;
                let st = match convert::opt_string(env, &st, convert::Kind::Event, "service_tier")?
                {
                    Some(s) => tier(env, &s, "service_tier")?,
                    None => ServiceTier::Standard,
                };
                let at: Unknown<'_> = o.get_named_property("at")?;
                let at = convert::opt_timestamp(env, &at, "at")?.unwrap_or_else(Utc::now);
                (st, at)
            }
            _ => {
                return Err(errors::invalid(
                    env,
                    "options",
                    format!("must be an object, got {}", convert::type_name(&options)),
                ))
            }
        };
        let cost = self.inner.cost(&model, &usage, tier_v, at);
        Ok(Cost {
            usd: or_null(cost.usd.map(|d| d.to_string())),
            status: cost.status.as_str().to_string(),
            price_version: or_null(cost.price_version),
        })
    }
}
