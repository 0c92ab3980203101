//! Admitting decoded events: the collector's own rules on top of sdk-core's validation — the
//! caller may write the event's tenant, and the event's time is within the stored window (not
//! older than raw retention, not further ahead than `max_future`). Shared by every ingest
//! route, so they refuse the same events with the same messages.

use agenttally::event::{DecodedBatch, Rejected};
use agenttally::ErrorKind;
use chrono::{DateTime, TimeDelta, Utc};

use super::answer::{Admitted, RejectedEvent, Rejection};
use crate::api_error::ApiError;
use crate::auth::Principal;
use crate::config::ServerConfig;

/// The time window events must fall in, fixed for one request.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    oldest: DateTime<Utc>,
    newest: DateTime<Utc>,
    raw_retention_days: u32,
    max_future: TimeDelta,
}

impl Window {
    pub fn at(now: DateTime<Utc>, config: &ServerConfig) -> Window {
        // Checked: `ServerConfig` is validated at start, but a bad window must not panic a
        // request.
        let oldest = TimeDelta::try_days(i64::from(config.raw_retention_days))
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        let newest = now
            .checked_add_signed(config.max_future)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Window {
            oldest,
            newest,
            raw_retention_days: config.raw_retention_days,
            max_future: config.max_future,
        }
    }
}

/// Sort the events of `decoded` into admitted and rejected, each rejection naming the field
/// and the rule. 403 for the whole request when no event is for a tenant `principal` may write.
pub fn admit(
    principal: &Principal,
    decoded: DecodedBatch,
    window: &Window,
) -> Result<Admitted, ApiError> {
    let total = decoded.events.len();
    let mut out = Admitted {
        events: Vec::with_capacity(total),
        rejected: Vec::new(),
    };
    let mut foreign = 0usize;
    for (index, r) in decoded.events.into_iter().enumerate() {
        let e = match r {
            Ok(e) => e,
            Err(rej) => {
                out.rejected.push(decode_rejection(rej));
                continue;
            }
        };
        let problem = if !principal.allows_tenant(&e.tenant_id) {
            foreign += 1;
            Some((
                format!(
                    "batch[{index}].tenant_id: this {} is bound to tenant `{}` and may not \
                     write tenant `{}`",
                    principal.describe(),
                    principal.tenant.as_deref().unwrap_or_default(),
                    e.tenant_id
                ),
                "tenant",
            ))
        } else if e.timestamp < window.oldest {
            Some((
                format!(
                    "batch[{index}].timestamp: must be within the last {} days (raw retention), \
                     got {}",
                    window.raw_retention_days,
                    e.timestamp.to_rfc3339()
                ),
                "timestamp",
            ))
        } else if e.timestamp > window.newest {
            Some((
                format!(
                    "batch[{index}].timestamp: must not be more than {} hours in the future \
                     (check the sender's clock), got {}",
                    window.max_future.num_hours(),
                    e.timestamp.to_rfc3339()
                ),
                "timestamp",
            ))
        } else {
            None
        };
        match problem {
            // Final: the key's binding does not change, and an event past the retention window
            // only gets older. One more than `max_future` ahead would pass a while later, but the
            // cause is the sender's clock and the wait (a day or more) outlasts any retry budget.
            Some((error, reason)) => out.rejected.push((
                RejectedEvent {
                    index,
                    id: Some(e.id),
                    error,
                    retryable: false,
                },
                reason,
            )),
            None => out.events.push((index, e)),
        }
    }
    if total > 0 && foreign == total {
        // Nothing in the request is for a tenant this key may write: refuse it as a whole.
        let tenant = principal.tenant.as_deref().unwrap_or_default();
        return Err(ApiError::forbidden(
            "tenant_forbidden",
            format!(
                "this {} is bound to tenant `{tenant}` and may not write the tenant(s) of \
                 this batch",
                principal.describe()
            ),
        ));
    }
    Ok(out)
}

/// An event sdk-core's rules refused. Final: the same bytes fail the same way.
fn decode_rejection(rej: Rejected) -> Rejection {
    let reason = match rej.error.kind() {
        ErrorKind::Decode => "decode",
        _ => "invalid",
    };
    (
        RejectedEvent {
            index: rej.index,
            id: rej.id,
            error: rej.error.to_string(),
            retryable: false,
        },
        reason,
    )
}
