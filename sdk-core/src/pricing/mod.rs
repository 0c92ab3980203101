//! Price books, exact-decimal cost of one call, and savings against a baseline (docs/pricing.md).
//! Money is `rust_decimal::Decimal` throughout; no f64 touches a rate or a cost.

pub mod adapters;
mod book;
mod builtin;
mod cost;
mod litellm;
mod savings;

pub use crate::event::{CostStatus, ServiceTier, Usage};
pub use book::{
    PriceBook, PriceEntry, RateKey, RateKind, Resolution, TenantPriceBooks, FIRST_PARTY_PREFIXES,
    SUSPICIOUS_TOKEN_RATE_USD,
};
pub use builtin::{builtin_entries, BUILTIN_VERSION};
pub use cost::{Cost, Explanation, LineItem};
pub use litellm::{ImportReport, ImportWarning, SkipReason, Skipped};
pub use savings::{
    display_round, Baseline, SavingsReport, SavingsSummary, SavingsSums, Task, TaskSavings,
};
