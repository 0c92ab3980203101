//! Price books: effective-dated model entries, deterministic name resolution through hash maps,
//! and per-tenant override layers (negotiated prices) over a shared base book.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::ServiceTier;
use crate::Error;

/// Rates above this many USD per token are flagged as probable unit mistakes (per-1M or per-1k
/// prices entered as per-token).
pub const SUSPICIOUS_TOKEN_RATE_USD: Decimal = Decimal::from_parts(1, 0, 0, false, 3);

/// What a rate prices. Every token kind is USD per token; `Request` is USD per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateKind {
    /// Prompt tokens not read from or written to a cache.
    Input,
    /// Prompt tokens read from a cache.
    CacheRead,
    /// Prompt tokens written to a cache (5-minute / default TTL).
    CacheWrite,
    /// Prompt tokens written to a 1-hour cache.
    CacheWrite1h,
    /// Generated tokens.
    Output,
    /// Reasoning tokens, when priced apart from output.
    Reasoning,
    /// A fee per billable request/completion.
    Request,
}

impl RateKind {
    /// Every kind, in bucket order.
    pub const ALL: [RateKind; 7] = [
        RateKind::Input,
        RateKind::CacheRead,
        RateKind::CacheWrite,
        RateKind::CacheWrite1h,
        RateKind::Output,
        RateKind::Reasoning,
        RateKind::Request,
    ];

    pub(crate) const fn index(self) -> usize {
        self as usize
    }

    /// The LiteLLM field name of the standard base rate of this kind.
    pub const fn litellm_base(self) -> &'static str {
        match self {
            RateKind::Input => "input_cost_per_token",
            RateKind::CacheRead => "cache_read_input_token_cost",
            RateKind::CacheWrite => "cache_creation_input_token_cost",
            RateKind::CacheWrite1h => "cache_creation_input_token_cost_above_1hr",
            RateKind::Output => "output_cost_per_token",
            RateKind::Reasoning => "output_cost_per_reasoning_token",
            RateKind::Request => "input_cost_per_request",
        }
    }

    /// The LiteLLM field name of this kind's rate for a service tier and long-context threshold
    /// (`above_tokens` = N×1000 of `_above_<N>k_tokens`, 0 for the base rate).
    pub fn litellm_field(self, tier: ServiceTier, above_tokens: u64) -> String {
        let mut s = self.litellm_base().to_string();
        if above_tokens > 0 {
            s.push_str(&format!("_above_{}k_tokens", above_tokens / 1000));
        }
        s.push_str(tier_suffix(tier));
        s
    }
}

impl fmt::Display for RateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RateKind::Input => "input",
            RateKind::CacheRead => "cache_read",
            RateKind::CacheWrite => "cache_write",
            RateKind::CacheWrite1h => "cache_write_1h",
            RateKind::Output => "output",
            RateKind::Reasoning => "reasoning",
            RateKind::Request => "request",
        })
    }
}

pub(crate) const fn tier_suffix(tier: ServiceTier) -> &'static str {
    match tier {
        ServiceTier::Standard => "",
        ServiceTier::Batch => "_batches",
        ServiceTier::Priority => "_priority",
        ServiceTier::Flex => "_flex",
    }
}

pub(crate) const fn tier_index(tier: ServiceTier) -> usize {
    match tier {
        ServiceTier::Standard => 0,
        ServiceTier::Batch => 1,
        ServiceTier::Priority => 2,
        ServiceTier::Flex => 3,
    }
}

/// Where a rate applies: which service tier, above which prompt size (0 = base), which bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RateKey {
    pub tier: ServiceTier,
    /// The long-context threshold in tokens (`_above_200k_tokens` → 200000); 0 for the base rate.
    pub above_tokens: u64,
    pub kind: RateKind,
}

/// One model's prices over one effective period. Build with [`PriceEntry::new`] and the setters;
/// a [`PriceBook`] validates it on insert.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceEntry {
    pub(crate) key: String,
    pub(crate) provider: Option<String>,
    pub(crate) mode: Option<String>,
    pub(crate) effective_from: Option<DateTime<Utc>>,
    pub(crate) effective_to: Option<DateTime<Utc>>,
    pub(crate) version: Option<String>,
    pub(crate) aliases: Vec<String>,
    pub(crate) rates: BTreeMap<RateKey, Decimal>,
}

impl PriceEntry {
    /// An entry for the model key `key` with no rates, in effect forever.
    pub fn new(key: impl Into<String>) -> Self {
        PriceEntry {
            key: key.into(),
            provider: None,
            mode: None,
            effective_from: None,
            effective_to: None,
            version: None,
            aliases: Vec::new(),
            rates: BTreeMap::new(),
        }
    }

    /// The provider (`litellm_provider` in LiteLLM files).
    pub fn provider(mut self, provider: impl Into<String>) -> Self {
        self.provider = Some(provider.into());
        self
    }

    /// The LiteLLM `mode` (`chat`, `embedding`, ...).
    pub fn mode(mut self, mode: impl Into<String>) -> Self {
        self.mode = Some(mode.into());
        self
    }

    /// First instant (inclusive) the entry is in effect; absent = since always.
    pub fn effective_from(mut self, at: DateTime<Utc>) -> Self {
        self.effective_from = Some(at);
        self
    }

    /// First instant (exclusive) the entry is no longer in effect; absent = open-ended.
    pub fn effective_to(mut self, at: DateTime<Utc>) -> Self {
        self.effective_to = Some(at);
        self
    }

    /// The version recorded as `price_version`; absent = the book's version.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Another name that resolves to this entry's key (last resolution step).
    pub fn alias(mut self, alias: impl Into<String>) -> Self {
        self.aliases.push(alias.into());
        self
    }

    /// Set the standard base rate of `kind` (USD per token, or per request for `Request`).
    pub fn rate(self, kind: RateKind, usd: Decimal) -> Self {
        self.rate_at(kind, ServiceTier::Standard, 0, usd)
    }

    /// Set the rate of `kind` for a service tier and long-context threshold in tokens
    /// (`above_tokens = 200_000` for `_above_200k_tokens`; 0 for the base rate).
    pub fn rate_at(
        mut self,
        kind: RateKind,
        tier: ServiceTier,
        above_tokens: u64,
        usd: Decimal,
    ) -> Self {
        self.rates.insert(
            RateKey {
                tier,
                above_tokens,
                kind,
            },
            usd,
        );
        self
    }

    /// One rate per 1,000 tokens on every token bucket (the seed's providers), e.g. `0.01`.
    pub fn per_1k_every_token(mut self, usd_per_1k: Decimal) -> Self {
        let per_token = usd_per_1k / Decimal::ONE_THOUSAND;
        for kind in [
            RateKind::Input,
            RateKind::CacheRead,
            RateKind::CacheWrite,
            RateKind::CacheWrite1h,
            RateKind::Output,
        ] {
            self = self.rate(kind, per_token);
        }
        self
    }

    /// The model key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The provider, if known.
    pub fn provider_name(&self) -> Option<&str> {
        self.provider.as_deref()
    }

    /// The mode, if known.
    pub fn mode_name(&self) -> Option<&str> {
        self.mode.as_deref()
    }

    /// The effective period `[from, to)`.
    pub fn effective(&self) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (self.effective_from, self.effective_to)
    }

    /// Every rate the entry declares.
    pub fn rates(&self) -> &BTreeMap<RateKey, Decimal> {
        &self.rates
    }

    /// A declared rate.
    pub fn get_rate(
        &self,
        kind: RateKind,
        tier: ServiceTier,
        above_tokens: u64,
    ) -> Option<Decimal> {
        self.rates
            .get(&RateKey {
                tier,
                above_tokens,
                kind,
            })
            .copied()
    }

    /// Check the rules a book enforces: a key, non-negative rates, a non-empty period.
    pub fn validate(&self) -> Result<(), Error> {
        if self.key.is_empty() {
            return Err(Error::invalid("price_entry.key", "must not be empty"));
        }
        for (k, v) in &self.rates {
            if v.is_sign_negative() && !v.is_zero() {
                return Err(Error::invalid(
                    format!(
                        "price_entry[{}].{}",
                        self.key,
                        k.kind.litellm_field(k.tier, k.above_tokens)
                    ),
                    format!("must be >= 0, got {v}"),
                ));
            }
        }
        if let (Some(from), Some(to)) = (self.effective_from, self.effective_to) {
            if to <= from {
                return Err(Error::invalid(
                    format!("price_entry[{}].effective_to", self.key),
                    format!("must be after effective_from ({from}), got {to}"),
                ));
            }
        }
        Ok(())
    }

    /// Warnings a book does not reject: per-token rates above 0.001 USD, cache read above input.
    pub fn lint(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.rates {
            if k.kind != RateKind::Request && *v > SUSPICIOUS_TOKEN_RATE_USD {
                out.push(format!(
                    "{}: {v} USD per token is above {SUSPICIOUS_TOKEN_RATE_USD}; per-1k or per-1M price entered as per-token?",
                    k.kind.litellm_field(k.tier, k.above_tokens)
                ));
            }
            if k.kind == RateKind::CacheRead {
                if let Some(input) = self.get_rate(RateKind::Input, k.tier, k.above_tokens) {
                    if *v > input {
                        out.push(format!(
                            "{}: cache read {v} is above the input rate {input}",
                            k.kind.litellm_field(k.tier, k.above_tokens)
                        ));
                    }
                }
            }
        }
        out
    }

    fn in_effect(&self, at: DateTime<Utc>) -> bool {
        self.effective_from.is_none_or(|f| f <= at) && self.effective_to.is_none_or(|t| at < t)
    }
}

/// One row of rates (indexed by `RateKind::index`) for one service tier and context level.
pub(crate) type RateRow = [Option<Decimal>; 7];

/// An entry compiled for pricing: rates in arrays, so a call does no map lookups past resolution.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub(crate) entry: PriceEntry,
    pub(crate) version: Arc<str>,
    /// Override layer: higher wins over lower among entries in effect (0 = base book).
    pub(crate) layer: u32,
    /// Long-context thresholds in tokens, ascending.
    pub(crate) thresholds: Box<[u64]>,
    /// `tables[tier_index]` is empty when the tier has no variant, else one row per level
    /// (0 = base, i = `thresholds[i - 1]`).
    pub(crate) tables: [Box<[RateRow]>; 4],
    /// The highest prompt-token, output-token and per-request rates of any tier and level,
    /// rounded up to `f64`: they bound every cost this entry can give (`RateBound::cost_bound`),
    /// so a search for the dearest model can skip entries that cannot win.
    pub(crate) bound: RateBound,
}

/// Upper bounds of an entry's rates, as `f64` rounded away from zero (see `Compiled::bound`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RateBound {
    /// Prompt kinds (input, cache read, cache writes): a prompt bucket falls back only to
    /// another prompt kind.
    pub(crate) prompt_max: f64,
    /// Output and reasoning (reasoning tokens are part of the output tokens).
    pub(crate) output_max: f64,
    pub(crate) request_max: f64,
}

impl RateBound {
    /// The bound of a rate of `kind`.
    fn slot(&mut self, kind: RateKind) -> &mut f64 {
        match kind {
            RateKind::Input
            | RateKind::CacheRead
            | RateKind::CacheWrite
            | RateKind::CacheWrite1h => &mut self.prompt_max,
            RateKind::Output | RateKind::Reasoning => &mut self.output_max,
            RateKind::Request => &mut self.request_max,
        }
    }

    /// At least the cost of `usage` under any rate these bounds cover: every prompt token at the
    /// highest prompt rate, every output token (reasoning included) at the highest output or
    /// reasoning rate, every request at the highest request rate.
    pub(crate) fn cost_bound(&self, usage: &super::Usage) -> f64 {
        // `as f64` of a u64 is within 2^-53 relative; the caller's margin covers it.
        self.prompt_max * usage.prompt_total() as f64
            + self.output_max * usage.output_tokens.max(usage.reasoning_tokens) as f64
            + self.request_max * usage.requests as f64
    }

    fn widen(&mut self, o: RateBound) {
        self.prompt_max = self.prompt_max.max(o.prompt_max);
        self.output_max = self.output_max.max(o.output_max);
        self.request_max = self.request_max.max(o.request_max);
    }
}

/// `d` as an `f64` no smaller than it (rates are non-negative).
fn f64_at_least(d: Decimal) -> f64 {
    use rust_decimal::prelude::ToPrimitive;
    let f = d.to_f64().unwrap_or(f64::MAX);
    // One part in 10^12 above: more than the conversion's rounding error.
    f * (1.0 + 1e-12)
}

impl Compiled {
    fn new(entry: PriceEntry, book_version: &Arc<str>, layer: u32) -> Self {
        let mut thresholds: Vec<u64> = entry
            .rates
            .keys()
            .map(|k| k.above_tokens)
            .filter(|&t| t > 0)
            .collect();
        thresholds.sort_unstable();
        thresholds.dedup();
        let levels = thresholds.len() + 1;
        let mut tables: [Vec<RateRow>; 4] = Default::default();
        for (k, v) in &entry.rates {
            let t = &mut tables[tier_index(k.tier)];
            if t.is_empty() {
                t.resize(levels, [None; 7]);
            }
            let level = match thresholds.binary_search(&k.above_tokens) {
                Ok(i) => i + 1,
                Err(_) => 0,
            };
            t[level][k.kind.index()] = Some(*v);
        }
        let version = match &entry.version {
            Some(v) => Arc::from(v.as_str()),
            None => Arc::clone(book_version),
        };
        let mut bound = RateBound::default();
        for (k, v) in &entry.rates {
            let slot = bound.slot(k.kind);
            *slot = slot.max(f64_at_least(*v));
        }
        Compiled {
            entry,
            version,
            layer,
            thresholds: thresholds.into_boxed_slice(),
            tables: tables.map(Vec::into_boxed_slice),
            bound,
        }
    }
}

/// All effective-dated entries of one model key.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub(crate) key: Arc<str>,
    pub(crate) entries: Vec<Compiled>,
}

impl Model {
    /// Bounds covering every entry of the model (whichever is in effect).
    pub(crate) fn bound(&self) -> RateBound {
        let mut b = RateBound::default();
        for c in &self.entries {
            b.widen(c.bound);
        }
        b
    }

    /// The entry in effect at `at`: highest override layer first, then the latest
    /// `effective_from` (an open start counts as earliest).
    pub(crate) fn at(&self, at: DateTime<Utc>) -> Option<&Compiled> {
        self.entries
            .iter()
            .filter(|c| c.entry.in_effect(at))
            .max_by(|a, b| {
                (a.layer, a.entry.effective_from).cmp(&(b.layer, b.entry.effective_from))
            })
    }
}

type NameMap = HashMap<Arc<str>, usize>;

/// How a requested model name was matched to a book key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// The name is a key.
    Exact,
    /// A provider prefix was stripped (`openai/gpt-4o` → `gpt-4o`), or a bare name matched a
    /// key that carries a prefix (`mistral-large-latest` → `mistral/mistral-large-latest`).
    ProviderPrefix,
    /// The name is a declared alias.
    Alias,
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resolution::Exact => "exact",
            Resolution::ProviderPrefix => "provider-prefix",
            Resolution::Alias => "alias",
        })
    }
}

/// A set of model prices with a version. Cheap to clone (entries are shared).
#[derive(Debug, Clone)]
pub struct PriceBook {
    pub(crate) version: Arc<str>,
    pub(crate) models: Vec<Arc<Model>>,
    /// Exact key → index into `models`.
    pub(crate) keys: NameMap,
    /// Name after the first `/` of a prefixed key → index, when that name is not itself a key.
    /// Several prefixed keys with one bare name: see [`FIRST_PARTY_PREFIXES`].
    pub(crate) bare: NameMap,
    /// Declared alias → index. The first declaration wins.
    pub(crate) aliases: NameMap,
    pub(crate) top_layer: u32,
}

impl PriceBook {
    /// An empty book whose entries record `version` as their `price_version` by default.
    pub fn new(version: impl Into<String>) -> Self {
        PriceBook {
            version: Arc::from(version.into().as_str()),
            models: Vec::new(),
            keys: NameMap::default(),
            bare: NameMap::default(),
            aliases: NameMap::default(),
            top_layer: 0,
        }
    }

    /// A book built from `entries`; the first invalid entry is the error.
    pub fn from_entries(
        version: impl Into<String>,
        entries: impl IntoIterator<Item = PriceEntry>,
    ) -> Result<Self, Error> {
        let mut book = PriceBook::new(version);
        for e in entries {
            book.insert(e)?;
        }
        Ok(book)
    }

    /// The book's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Number of distinct model keys.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// True when the book has no models.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// Every model key, in insertion order.
    pub fn model_keys(&self) -> impl Iterator<Item = &str> {
        self.models.iter().map(|m| &*m.key)
    }

    /// Every entry (all effective periods and layers) of the model `name` resolves to.
    pub fn entries(&self, name: &str) -> Vec<&PriceEntry> {
        match self.resolve(name) {
            Some((i, _)) => self.models[i].entries.iter().map(|c| &c.entry).collect(),
            None => Vec::new(),
        }
    }

    /// Add an entry (a model key may have several, with different effective periods).
    pub fn insert(&mut self, entry: PriceEntry) -> Result<(), Error> {
        let layer = self.top_layer;
        self.insert_layer(entry, layer)
    }

    fn insert_layer(&mut self, entry: PriceEntry, layer: u32) -> Result<(), Error> {
        entry.validate()?;
        let aliases = entry.aliases.clone();
        let compiled = Compiled::new(entry, &self.version, layer);
        let key = compiled.entry.key.as_str();
        let idx = match self.keys.get(key) {
            Some(&i) => {
                Arc::make_mut(&mut self.models[i]).entries.push(compiled);
                i
            }
            None => {
                let key: Arc<str> = Arc::from(key);
                let i = self.models.len();
                self.models.push(Arc::new(Model {
                    key: Arc::clone(&key),
                    entries: vec![compiled],
                }));
                self.keys.insert(Arc::clone(&key), i);
                // A new exact key shadows a bare-name match of the same text.
                self.bare.remove(&*key);
                if let Some(pos) = key.find('/') {
                    let bare = &key[pos + 1..];
                    if !bare.is_empty() && !self.keys.contains_key(bare) {
                        let better = match self.bare.get(bare) {
                            Some(&j) => bare_rank(&key) < bare_rank(&self.models[j].key),
                            None => true,
                        };
                        if better {
                            self.bare.insert(Arc::from(bare), i);
                        }
                    }
                }
                i
            }
        };
        for a in aliases {
            self.aliases.entry(Arc::from(a.as_str())).or_insert(idx);
        }
        Ok(())
    }

    /// Resolve a model name: exact key; then provider prefix (strip leading `segment/` parts one
    /// at a time, trying each rest as a key, then the bare-name index); then declared aliases of
    /// the name and of each stripped rest. Deterministic; allocation-free.
    pub(crate) fn resolve(&self, name: &str) -> Option<(usize, Resolution)> {
        if let Some(&i) = self.keys.get(name) {
            return Some((i, Resolution::Exact));
        }
        let mut rest = name;
        while let Some(pos) = rest.find('/') {
            rest = &rest[pos + 1..];
            if let Some(&i) = self.keys.get(rest) {
                return Some((i, Resolution::ProviderPrefix));
            }
        }
        if let Some(&i) = self.bare.get(name) {
            return Some((i, Resolution::ProviderPrefix));
        }
        if let Some(&i) = self.aliases.get(name) {
            return Some((i, Resolution::Alias));
        }
        let mut rest = name;
        while let Some(pos) = rest.find('/') {
            rest = &rest[pos + 1..];
            if let Some(&i) = self.aliases.get(rest) {
                return Some((i, Resolution::Alias));
            }
        }
        None
    }

    /// The key `name` resolves to and how (the first step of [`cost`](Self::cost)).
    pub fn resolve_key(&self, name: &str) -> Option<(&str, Resolution)> {
        self.resolve(name).map(|(i, r)| (&*self.models[i].key, r))
    }

    /// A new book: this one with `overrides` layered on top. An override entry applies to the
    /// model its key resolves to in this book (or becomes a new model) and, while in effect, wins
    /// over every base entry; outside its period the base entries apply.
    pub fn with_overrides(&self, overrides: &PriceBook) -> PriceBook {
        let mut out = self.clone();
        out.top_layer = self.top_layer + 1;
        for m in &overrides.models {
            for c in &m.entries {
                let mut e = c.entry.clone();
                if e.version.is_none() {
                    e.version = Some(c.version.to_string());
                }
                if let Some((i, _)) = self.resolve(&e.key) {
                    e.key = self.models[i].key.to_string();
                }
                let layer = out.top_layer;
                // Entries of a valid book are valid; keep the base if one is not.
                let _ = out.insert_layer(e, layer);
            }
        }
        out
    }

    pub(crate) fn model(&self, i: usize) -> &Model {
        &self.models[i]
    }
}

/// Prefixes of first-party vendor listings. When several prefixed keys share a bare name
/// (`azure/mistral-large-latest`, `mistral/mistral-large-latest`), a bare-name lookup prefers a
/// first-party prefix, then the lexicographically smallest key.
pub const FIRST_PARTY_PREFIXES: &[&str] = &[
    "openai",
    "anthropic",
    "gemini",
    "vertex_ai",
    "mistral",
    "deepseek",
    "xai",
    "cohere",
    "perplexity",
    "moonshot",
    "dashscope",
];

fn bare_rank(key: &str) -> (bool, &str) {
    let prefix = key.split('/').next().unwrap_or(key);
    (!FIRST_PARTY_PREFIXES.contains(&prefix), key)
}

/// Per-tenant books: negotiated prices layered over one shared base book.
#[derive(Debug, Clone)]
pub struct TenantPriceBooks {
    base: Arc<PriceBook>,
    tenants: HashMap<String, Arc<PriceBook>>,
}

impl TenantPriceBooks {
    /// Every tenant prices with `base` until it gets overrides.
    pub fn new(base: PriceBook) -> Self {
        TenantPriceBooks {
            base: Arc::new(base),
            tenants: HashMap::new(),
        }
    }

    /// Layer `overrides` over the base for `tenant_id` (replacing earlier overrides).
    pub fn set_overrides(&mut self, tenant_id: impl Into<String>, overrides: &PriceBook) {
        self.tenants.insert(
            tenant_id.into(),
            Arc::new(self.base.with_overrides(overrides)),
        );
    }

    /// Drop a tenant's overrides.
    pub fn remove_overrides(&mut self, tenant_id: &str) {
        self.tenants.remove(tenant_id);
    }

    /// The book a tenant prices with.
    pub fn for_tenant(&self, tenant_id: &str) -> &PriceBook {
        self.tenants.get(tenant_id).unwrap_or(&self.base)
    }

    /// The shared base book.
    pub fn base(&self) -> &PriceBook {
        &self.base
    }

    /// Price an event with its tenant's book (see [`PriceBook::price_event`]).
    pub fn price_event(&self, event: &mut crate::AnalyticsEvent) {
        self.for_tenant(&event.tenant_id).price_event(event);
    }
}
