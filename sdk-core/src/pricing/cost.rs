//! Exact-decimal cost of one call from a resolved entry (the rules of docs/pricing.md, in one function),
//! its explanation for debugging, and pricing an `AnalyticsEvent` in place.

use std::fmt;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::book::{tier_index, Compiled, PriceBook, RateKind, Resolution};
use super::{CostStatus, ServiceTier, Usage};
use crate::event::{AnalyticsEvent, EventType};

/// The cost of one call (or one task's usage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cost {
    /// `priced`, `estimated` (a fallback was used), or `unpriced` (`usd` is `None`).
    pub status: CostStatus,
    /// Exact USD, normalised (no trailing zeros). `None` when unpriced: never 0 for unknown.
    pub usd: Option<Decimal>,
    /// The version of the entry that priced it.
    pub price_version: Option<String>,
}

impl Cost {
    /// The unpriced cost: status `unpriced`, no amount, no version.
    pub const UNPRICED: Cost = Cost {
        status: CostStatus::Unpriced,
        usd: None,
        price_version: None,
    };

    /// The status.
    pub fn status(&self) -> CostStatus {
        self.status
    }

    /// The amount, if priced.
    pub fn usd(&self) -> Option<Decimal> {
        self.usd
    }

    /// The price version, if priced.
    pub fn price_version(&self) -> Option<&str> {
        self.price_version.as_deref()
    }

    /// True for `priced` and `estimated`.
    pub fn is_priced(&self) -> bool {
        self.usd.is_some()
    }
}

/// One usage bucket's contribution to a cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    /// The usage bucket (`Output` here means output minus separately priced reasoning).
    pub bucket: RateKind,
    /// Tokens (or requests) billed on this line.
    pub quantity: u64,
    /// The rate that was applied (USD per token or per request).
    pub rate: Decimal,
    /// The LiteLLM-style name of the rate applied, e.g. `input_cost_per_token_above_200k_tokens`.
    pub rate_field: String,
    /// `quantity × rate`.
    pub amount: Decimal,
    /// Why a rate other than the bucket's own one was used, if it was.
    pub fallback: Option<String>,
}

/// How a cost was obtained: the debug view of [`PriceBook::cost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The name asked for.
    pub requested_model: String,
    /// The key it resolved to and how; `None` when unknown.
    pub resolved: Option<(String, Resolution)>,
    /// Provider of the entry used.
    pub provider: Option<String>,
    /// Start (inclusive) of the effective period of the entry used; `None` = since always.
    pub effective_from: Option<DateTime<Utc>>,
    /// End (exclusive) of the effective period of the entry used; `None` = open-ended.
    pub effective_to: Option<DateTime<Utc>>,
    /// The version of the entry used (also on `cost` when priced).
    pub entry_version: Option<String>,
    /// The service tier requested.
    pub service_tier: ServiceTier,
    /// `input + cached + cache_write + cache_write_1h`.
    pub prompt_total: u64,
    /// The long-context threshold (tokens) the whole request was priced above, if any.
    pub long_context_above: Option<u64>,
    /// Per-bucket lines, in bucket order, for buckets with a non-zero quantity.
    pub lines: Vec<LineItem>,
    /// Every fallback taken (also on the lines), and why a cost is unpriced.
    pub notes: Vec<String>,
    /// The result, identical to what `cost` returns.
    pub cost: Cost,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.resolved {
            Some((k, r)) => writeln!(f, "model `{}` → `{k}` ({r})", self.requested_model)?,
            None => writeln!(f, "model `{}` → not in the book", self.requested_model)?,
        }
        if let Some(v) = &self.entry_version {
            let d = |t: Option<DateTime<Utc>>| {
                t.map_or("-".to_string(), |t| t.date_naive().to_string())
            };
            writeln!(
                f,
                "entry {v} (provider {}), effective [{}, {})",
                self.provider.as_deref().unwrap_or("-"),
                d(self.effective_from),
                d(self.effective_to)
            )?;
        }
        writeln!(
            f,
            "tier {}, prompt_total {}, long-context {}",
            self.service_tier,
            self.prompt_total,
            self.long_context_above
                .map_or("none".to_string(), |t| format!("above {t}"))
        )?;
        for l in &self.lines {
            write!(
                f,
                "  {:<14} {:>10} × {} ({}) = {}",
                l.bucket.to_string(),
                l.quantity,
                l.rate,
                l.rate_field,
                l.amount
            )?;
            if let Some(fb) = &l.fallback {
                write!(f, " [{fb}]")?;
            }
            writeln!(f)?;
        }
        for n in &self.notes {
            writeln!(f, "  note: {n}")?;
        }
        write!(
            f,
            "= {} {} (price_version {})",
            self.cost.usd.map_or("-".to_string(), |d| d.to_string()),
            self.cost.status,
            self.cost.price_version.as_deref().unwrap_or("-")
        )
    }
}

/// A rate found for a bucket: value, where it came from, whether it is a silent-guess fallback.
struct Found {
    rate: Decimal,
    kind: RateKind,
    tier: ServiceTier,
    above: u64,
    estimated: bool,
}

/// Look up `kind`'s own rate: the tier variant at the context level, then the variant's base;
/// for a non-standard tier then the standard rates (context level, base) marked estimated.
fn own_rate(c: &Compiled, kind: RateKind, tier: ServiceTier, level: usize) -> Option<Found> {
    let try_tier = |t: ServiceTier| -> Option<(Decimal, u64)> {
        let table = &c.tables[tier_index(t)];
        if table.is_empty() {
            return None;
        }
        if level > 0 {
            if let Some(r) = table[level][kind.index()] {
                return Some((r, c.thresholds[level - 1]));
            }
        }
        table[0][kind.index()].map(|r| (r, 0))
    };
    if let Some((rate, above)) = try_tier(tier) {
        return Some(Found {
            rate,
            kind,
            tier,
            above,
            estimated: false,
        });
    }
    if tier != ServiceTier::Standard {
        if let Some((rate, above)) = try_tier(ServiceTier::Standard) {
            return Some(Found {
                rate,
                kind,
                tier: ServiceTier::Standard,
                above,
                estimated: true,
            });
        }
    }
    None
}

/// The rate for a bucket including the §3 missing-rate rules: cache read/write → input;
/// 1-hour write → 5-minute write → input. (Reasoning → output is handled by the caller.)
fn bucket_rate(c: &Compiled, kind: RateKind, tier: ServiceTier, level: usize) -> Option<Found> {
    let chain: &[RateKind] = match kind {
        RateKind::CacheRead => &[RateKind::CacheRead, RateKind::Input],
        RateKind::CacheWrite => &[RateKind::CacheWrite, RateKind::Input],
        RateKind::CacheWrite1h => &[
            RateKind::CacheWrite1h,
            RateKind::CacheWrite,
            RateKind::Input,
        ],
        RateKind::Input => &[RateKind::Input],
        RateKind::Output => &[RateKind::Output],
        RateKind::Reasoning => &[RateKind::Reasoning],
        RateKind::Request => &[RateKind::Request],
    };
    chain.iter().find_map(|&k| own_rate(c, k, tier, level))
}

/// Receives each line when explaining; a no-op when pricing, so `cost` does not allocate.
trait Sink {
    fn line(&mut self, bucket: RateKind, qty: u64, found: &Found, amount: Decimal);
    fn note(&mut self, f: impl FnOnce() -> String);
}

struct NoSink;
impl Sink for NoSink {
    #[inline]
    fn line(&mut self, _: RateKind, _: u64, _: &Found, _: Decimal) {}
    #[inline]
    fn note(&mut self, _: impl FnOnce() -> String) {}
}

struct Lines {
    lines: Vec<LineItem>,
    notes: Vec<String>,
}

impl Sink for Lines {
    fn line(&mut self, bucket: RateKind, qty: u64, found: &Found, amount: Decimal) {
        let mut why = Vec::new();
        if found.kind != bucket {
            why.push(format!(
                "no {bucket} rate: billed at the {} rate",
                found.kind
            ));
        }
        if found.estimated {
            why.push("no rate for the requested service tier: standard rate, estimated".into());
        }
        let fallback = (!why.is_empty()).then(|| why.join("; "));
        if let Some(fb) = &fallback {
            self.notes.push(format!("{bucket}: {fb}"));
        }
        self.lines.push(LineItem {
            bucket,
            quantity: qty,
            rate: found.rate,
            rate_field: found.kind.litellm_field(found.tier, found.above),
            amount: amount.normalize(),
            fallback,
        });
    }
    fn note(&mut self, f: impl FnOnce() -> String) {
        self.notes.push(f());
    }
}

/// The context level (0 = base, i = `thresholds[i - 1]`): the highest threshold strictly below
/// the prompt total.
fn context_level(c: &Compiled, prompt_total: u64) -> usize {
    c.thresholds
        .iter()
        .rposition(|&t| prompt_total > t)
        .map_or(0, |i| i + 1)
}

/// Price `usage` with entry `c`. `None` when a non-zero bucket has no applicable rate or the
/// arithmetic overflows; otherwise the exact amount and whether a fallback made it estimated.
fn compute<S: Sink>(
    c: &Compiled,
    usage: &Usage,
    tier: ServiceTier,
    sink: &mut S,
) -> Option<(Decimal, bool)> {
    let level = context_level(c, usage.prompt_total());
    let mut total = Decimal::ZERO;
    let mut estimated = false;
    let mut add = |bucket: RateKind, qty: u64, sink: &mut S| -> Option<()> {
        if qty == 0 {
            return Some(());
        }
        let Some(found) = bucket_rate(c, bucket, tier, level) else {
            sink.note(|| {
                format!("{bucket}: {qty} with no {bucket} rate (nor a fallback): unpriced")
            });
            return None;
        };
        let amount = Decimal::from(qty).checked_mul(found.rate)?;
        total = total.checked_add(amount)?;
        estimated |= found.estimated;
        sink.line(bucket, qty, &found, amount);
        Some(())
    };
    add(RateKind::Input, usage.input_tokens, sink)?;
    add(RateKind::CacheRead, usage.cached_input_tokens, sink)?;
    add(RateKind::CacheWrite, usage.cache_write_tokens, sink)?;
    add(RateKind::CacheWrite1h, usage.cache_write_1h_tokens, sink)?;
    // Reasoning is part of output: priced apart only when the entry has a reasoning rate.
    let reasoning = usage.reasoning_tokens.min(usage.output_tokens);
    let has_reasoning_rate =
        reasoning > 0 && own_rate(c, RateKind::Reasoning, tier, level).is_some();
    if has_reasoning_rate {
        add(RateKind::Reasoning, reasoning, sink)?;
        add(RateKind::Output, usage.output_tokens - reasoning, sink)?;
    } else {
        if reasoning > 0 {
            sink.note(|| {
                format!("reasoning: no reasoning rate, {reasoning} tokens billed as output")
            });
        }
        add(RateKind::Output, usage.output_tokens, sink)?;
    }
    if usage.requests > 0 && own_rate(c, RateKind::Request, tier, level).is_some() {
        add(RateKind::Request, usage.requests, sink)?;
    }
    Some((total.normalize(), estimated))
}

fn finish(c: &Compiled, result: Option<(Decimal, bool)>) -> Cost {
    match result {
        Some((usd, estimated)) => Cost {
            status: if estimated {
                CostStatus::Estimated
            } else {
                CostStatus::Priced
            },
            usd: Some(usd),
            price_version: Some(c.version.to_string()),
        },
        None => Cost::UNPRICED,
    }
}

impl PriceBook {
    /// The cost of one call of `model` with `usage` at service tier `tier`, priced with the
    /// entry in effect at `at`. Unknown model (or none in effect at `at`) → `unpriced`.
    pub fn cost(&self, model: &str, usage: &Usage, tier: ServiceTier, at: DateTime<Utc>) -> Cost {
        match self.resolve(model) {
            Some((i, _)) => self.cost_of(i, usage, tier, at),
            None => Cost::UNPRICED,
        }
    }

    /// [`cost`](Self::cost) of the model at index `i` of the book (no name resolution).
    pub(crate) fn cost_at_index(
        &self,
        i: usize,
        usage: &Usage,
        tier: ServiceTier,
        at: DateTime<Utc>,
    ) -> Cost {
        self.cost_of(i, usage, tier, at)
    }

    /// The exact USD of [`cost_at_index`](Self::cost_at_index) alone (`None`: unpriced), without
    /// building the `Cost` (its version text): for comparing many models.
    pub(crate) fn usd_at_index(
        &self,
        i: usize,
        usage: &Usage,
        tier: ServiceTier,
        at: DateTime<Utc>,
    ) -> Option<Decimal> {
        let c = self.model(i).at(at)?;
        compute(c, usage, tier, &mut NoSink).map(|(usd, _)| usd)
    }

    fn cost_of(&self, model: usize, usage: &Usage, tier: ServiceTier, at: DateTime<Utc>) -> Cost {
        match self.model(model).at(at) {
            Some(c) => finish(c, compute(c, usage, tier, &mut NoSink)),
            None => Cost::UNPRICED,
        }
    }

    /// [`cost`](Self::cost) with its reasoning: resolution step, entry, context tier, per-bucket
    /// rates and every fallback.
    pub fn explain(
        &self,
        model: &str,
        usage: &Usage,
        tier: ServiceTier,
        at: DateTime<Utc>,
    ) -> Explanation {
        let mut ex = Explanation {
            requested_model: model.to_string(),
            resolved: None,
            provider: None,
            effective_from: None,
            effective_to: None,
            entry_version: None,
            service_tier: tier,
            prompt_total: usage.prompt_total(),
            long_context_above: None,
            lines: Vec::new(),
            notes: Vec::new(),
            cost: Cost::UNPRICED,
        };
        let Some((i, how)) = self.resolve(model) else {
            ex.notes
                .push("no exact key, provider-prefix match or alias: unpriced".into());
            return ex;
        };
        let m = self.model(i);
        ex.resolved = Some((m.key.to_string(), how));
        let Some(c) = m.at(at) else {
            ex.notes.push(format!(
                "no entry of `{}` in effect at {at}: unpriced",
                m.key
            ));
            return ex;
        };
        ex.provider = c.entry.provider.clone();
        ex.effective_from = c.entry.effective_from;
        ex.effective_to = c.entry.effective_to;
        ex.entry_version = Some(c.version.to_string());
        let level = context_level(c, ex.prompt_total);
        ex.long_context_above = (level > 0).then(|| c.thresholds[level - 1]);
        if tier != ServiceTier::Standard && c.tables[tier_index(tier)].is_empty() {
            ex.notes.push(format!(
                "the entry has no `{tier}` rates: standard rates used, estimated"
            ));
        }
        let mut sink = Lines {
            lines: Vec::new(),
            notes: std::mem::take(&mut ex.notes),
        };
        let result = compute(c, usage, tier, &mut sink);
        ex.lines = sink.lines;
        ex.notes = sink.notes;
        ex.cost = finish(c, result);
        ex
    }

    /// Price an event in place. A caller-supplied `cost_usd` wins: its status becomes `reported`
    /// when it has none. Otherwise, with `usage`, price the `model`; when the model is absent or
    /// unknown, the `provider` if the book knows it (the seed's providers are keyed by provider);
    /// set `cost_usd`, `cost_status` and `price_version`. Neither known → `unpriced`, no cost.
    /// A `provider.api_call` with `requests == 0` is priced as one request (the event's usage is
    /// not changed). Events with no usage, or with neither model nor provider, are left alone.
    pub fn price_event(&self, event: &mut AnalyticsEvent) {
        if event.cost_usd.is_some() {
            if event.cost_status.is_none() {
                event.cost_status = Some(CostStatus::Reported);
            }
            return;
        }
        let Some(mut usage) = event.usage else {
            return;
        };
        if event.model.is_none() && event.provider.is_none() {
            return;
        }
        let lookup = |name: &Option<String>| name.as_deref().and_then(|n| self.resolve(n));
        let cost = match lookup(&event.model).or_else(|| lookup(&event.provider)) {
            Some((i, _)) => {
                if usage.requests == 0 && event.event_type == EventType::ProviderApiCall {
                    usage.requests = 1;
                }
                self.cost_of(i, &usage, event.tier(), event.timestamp)
            }
            None => Cost::UNPRICED,
        };
        event.cost_status = Some(cost.status);
        event.cost_usd = cost.usd;
        event.price_version = cost.price_version;
    }
}
