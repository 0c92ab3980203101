//! Price books, exact-decimal cost of one call, and savings against a baseline (DESIGN.md §3).
//! Money is `rust_decimal::Decimal` throughout; no f64 touches a rate or a cost.

pub use crate::event::{CostStatus, ServiceTier, Usage};
