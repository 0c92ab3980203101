//! Rate limits per credential and per tenant, by class (`super::RateClass`): query requests per
//! minute, exports per hour, ingest requests per second; each class off when its setting is 0.
//! GCRA (`governor`): a limit of N per period allows a burst of N, then one more every period/N.
//! In memory and per process: limits neither survive a restart nor are shared between replicas.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::api_error::ApiError;
use crate::auth::{Principal, Tenant};
use crate::config::ServerConfig;

/// Which rate limit a route counts against (`RateLimits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateClass {
    None,
    Query,
    Export,
    Ingest,
}

impl RateClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RateClass::None => "none",
            RateClass::Query => "query",
            RateClass::Export => "export",
            RateClass::Ingest => "ingest",
        }
    }
}

/// Checks between two sweeps of idle keys (whose buckets are full again).
const SWEEP_EVERY: u64 = 4_096;

/// One class's limit: one bucket per credential, one per tenant.
#[derive(Debug)]
struct ClassLimit {
    /// "100 requests per minute", for messages.
    text: String,
    per_credential: DefaultKeyedRateLimiter<String>,
    per_tenant: DefaultKeyedRateLimiter<String>,
}

/// The limits of every class, from the settings.
#[derive(Debug)]
pub struct RateLimits {
    query: Option<ClassLimit>,
    export: Option<ClassLimit>,
    ingest: Option<ClassLimit>,
    checks: AtomicU64,
    clock: DefaultClock,
}

impl ClassLimit {
    fn new(n: u32, per: &str, quota: fn(NonZeroU32) -> Quota) -> Option<ClassLimit> {
        let n = NonZeroU32::new(n)?;
        Some(ClassLimit {
            text: format!("{n} requests per {per}"),
            per_credential: DefaultKeyedRateLimiter::keyed(quota(n)),
            per_tenant: DefaultKeyedRateLimiter::keyed(quota(n)),
        })
    }
}

impl RateLimits {
    pub fn new(cfg: &ServerConfig) -> RateLimits {
        RateLimits {
            query: ClassLimit::new(cfg.rate_query_per_minute, "minute", Quota::per_minute),
            export: ClassLimit::new(cfg.rate_export_per_hour, "hour", Quota::per_hour),
            ingest: ClassLimit::new(cfg.rate_ingest_per_second, "second", Quota::per_second),
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }
    }

    /// Count one request of `class` by `principal` for `tenant` (or the credential's own tenant
    /// when the request names none): 429 with `Retry-After` naming the limit when either the
    /// credential's or the tenant's bucket is empty.
    pub fn check(
        &self,
        class: RateClass,
        principal: &Principal,
        tenant: Option<&Tenant>,
    ) -> Result<(), ApiError> {
        let (limit, name) = match class {
            RateClass::None => return Ok(()),
            RateClass::Query => (&self.query, "query"),
            RateClass::Export => (&self.export, "export"),
            RateClass::Ingest => (&self.ingest, "ingest"),
        };
        let Some(limit) = limit else {
            return Ok(());
        };
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.sweep();
        }
        let refused = |who: &str, wait: Duration| {
            // Whole seconds, rounded up, at least one.
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let secs = u32::try_from(secs.max(1)).unwrap_or(u32::MAX);
            ApiError::too_many_requests(
                format!(
                    "rate limit: the {name} limit of {} per {who} is used up; retry in {secs} s",
                    limit.text
                ),
                secs,
            )
        };
        limit
            .per_credential
            .check_key(&principal.credential_id)
            .map_err(|n| refused("credential", n.wait_time_from(self.clock.now())))?;
        let tenant = tenant
            .map(|t| t.id.as_str())
            .or(principal.tenant.as_deref());
        if let Some(tenant) = tenant {
            limit
                .per_tenant
                .check_key(&tenant.to_string())
                .map_err(|n| refused("tenant", n.wait_time_from(self.clock.now())))?;
        }
        Ok(())
    }

    /// Drop the buckets that are full again, so idle keys do not accumulate.
    fn sweep(&self) {
        for l in [&self.query, &self.export, &self.ingest]
            .into_iter()
            .flatten()
        {
            l.per_credential.retain_recent();
            l.per_credential.shrink_to_fit();
            l.per_tenant.retain_recent();
            l.per_tenant.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{CredentialKind, Scope};

    fn key(id: &str, tenant: Option<&str>) -> Principal {
        Principal {
            tenant: tenant.map(str::to_string),
            scopes: vec![Scope::Read, Scope::Export],
            credential_id: id.into(),
            kind: CredentialKind::Key,
            sub: None,
        }
    }

    fn limits(query: u32, export: u32) -> RateLimits {
        let mut cfg = ServerConfig::new("postgresql://x");
        cfg.rate_query_per_minute = query;
        cfg.rate_export_per_hour = export;
        RateLimits::new(&cfg)
    }

    #[test]
    fn the_sixth_export_in_an_hour_is_refused_with_retry_after() {
        let l = limits(100, 5);
        let a = key("at_aaaaaaaa", Some("acme"));
        for _ in 0..5 {
            l.check(RateClass::Export, &a, None)
                .expect("within the limit");
        }
        let e = l.check(RateClass::Export, &a, None).expect_err("6th");
        assert_eq!(e.status.as_u16(), 429);
        // One export more every 12 minutes.
        let secs = e.retry_after.expect("Retry-After");
        assert!((700..=720).contains(&secs), "{secs}");
        assert!(
            e.message.contains("export limit of 5 requests per hour"),
            "{}",
            e.message
        );
        // Another tenant's credential is not affected; query requests neither.
        l.check(RateClass::Export, &key("at_bbbbbbbb", Some("globex")), None)
            .expect("other tenant");
        l.check(RateClass::Query, &a, None).expect("other class");
    }

    #[test]
    fn a_tenant_shares_its_budget_between_its_credentials() {
        let l = limits(3, 5);
        for i in 0..3 {
            let k = key(&format!("at_{i:08}"), Some("acme"));
            l.check(RateClass::Query, &k, None).expect("within");
        }
        let e = l
            .check(RateClass::Query, &key("at_99999999", Some("acme")), None)
            .expect_err("tenant used up");
        assert!(e.message.contains("per tenant"), "{}", e.message);
        // A platform credential acting for another tenant has its own buckets.
        let platform = key("at_pppppppp", None);
        let globex = Tenant {
            id: "globex".into(),
            principal: platform.clone(),
        };
        l.check(RateClass::Query, &platform, Some(&globex))
            .expect("globex");
    }

    #[test]
    fn zero_is_off() {
        let l = limits(0, 0);
        let a = key("at_aaaaaaaa", Some("acme"));
        for _ in 0..1_000 {
            l.check(RateClass::Query, &a, None).expect("off");
            l.check(RateClass::Export, &a, None).expect("off");
            l.check(RateClass::Ingest, &a, None)
                .expect("off by default");
        }
    }
}
