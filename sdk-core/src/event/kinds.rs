//! Small closed vocabularies of the wire format: event types, service tiers, cost statuses.
//! Each serialises to the exact string the wire format names (docs/wire-format.md), and unknown
//! strings are rejected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $wire)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The wire name.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = crate::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($wire => Ok($name::$variant),)+
                    other => Err(crate::Error::invalid(
                        stringify!($name),
                        format!("unknown value `{other}`, expected one of: {}",
                            [$($wire),+].join(", ")),
                    )),
                }
            }
        }
    };
}

wire_enum! {
    /// Every instrumentation point of the platform. Unknown types are rejected.
    EventType {
        AgentCreated = "agent.created",
        AgentStarted = "agent.started",
        AgentCompleted = "agent.completed",
        AgentFailed = "agent.failed",
        AgentTimeout = "agent.timeout",
        ProviderApiCall = "provider.api_call",
        ProviderRateLimit = "provider.rate_limit",
        ProviderError = "provider.error",
        BillingUsageRecorded = "billing.usage_recorded",
        BillingTierLimitWarning = "billing.tier_limit_warning",
        BillingTierLimitExceeded = "billing.tier_limit_exceeded",
        BillingSubscriptionCreated = "billing.subscription_created",
        BillingSubscriptionUpgraded = "billing.subscription_upgraded",
        CustomerSignup = "customer.signup",
        CustomerLogin = "customer.login",
        CustomerDashboardView = "customer.dashboard_view",
        CustomerExportData = "customer.export_data",
    }
}

impl EventType {
    /// The family: `agent`, `provider`, `billing` or `customer` (the wire name's prefix; a
    /// match, not a string search, as validation asks it on every `track()`).
    pub const fn family(self) -> &'static str {
        use EventType::*;
        match self {
            AgentCreated | AgentStarted | AgentCompleted | AgentFailed | AgentTimeout => "agent",
            ProviderApiCall | ProviderRateLimit | ProviderError => "provider",
            BillingUsageRecorded
            | BillingTierLimitWarning
            | BillingTierLimitExceeded
            | BillingSubscriptionCreated
            | BillingSubscriptionUpgraded => "billing",
            CustomerSignup | CustomerLogin | CustomerDashboardView | CustomerExportData => {
                "customer"
            }
        }
    }

    /// Terminal states of an agent run.
    pub fn is_agent_outcome(self) -> bool {
        matches!(
            self,
            EventType::AgentCompleted | EventType::AgentFailed | EventType::AgentTimeout
        )
    }
}

wire_enum! {
    /// The provider's processing tier; selects the `_batches`/`_priority`/`_flex` rate variants.
    #[derive(Default)]
    ServiceTier {
        #[default]
        Standard = "standard",
        Batch = "batch",
        Priority = "priority",
        Flex = "flex",
    }
}

wire_enum! {
    /// How an event's `cost_usd` was obtained.
    CostStatus {
        /// Priced from a price book entry that covers the request exactly.
        Priced = "priced",
        /// Priced, but with a fallback (e.g. standard rates for a tier the book lacks).
        Estimated = "estimated",
        /// The model is not in the book: the cost is absent, never 0.
        Unpriced = "unpriced",
        /// The caller supplied the cost (e.g. the provider reported it).
        Reported = "reported",
    }
}

#[cfg(test)]
mod tests {
    use super::EventType;

    #[test]
    fn family_is_the_wire_prefix() {
        for t in EventType::ALL {
            let (prefix, _) = t.as_str().split_once('.').unwrap_or_default();
            assert_eq!(t.family(), prefix, "{t}");
        }
    }
}
