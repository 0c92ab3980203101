//! `agenttally`: cost and usage analytics for multi-agent AI platforms.
//!
//! - [`event`]: the typed [`AnalyticsEvent`] every part shares, its builders and validation.
//! - [`pricing`]: price books, exact-decimal cost and savings.
//! - `client`: a non-blocking delivery client (feature `client`).

pub mod error;
pub mod event;
pub mod pricing;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "client")]
pub mod run;

pub use error::{Error, ErrorKind, Result};
pub use event::{
    AgentEvent, AnalyticsEvent, Batch, BatchLimits, BillingEvent, CostStatus, CustomerEvent,
    EventBuilder, EventType, ProviderEvent, ServiceTier, Usage,
};

#[cfg(feature = "client")]
pub use client::{Client, ClientBuilder, OverflowPolicy, Stats};
#[cfg(feature = "client")]
pub use run::Run;

/// The crate version, reported by bindings and the collector.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
