//! A direct writer for an event's wire JSON: byte-for-byte what the `Serialize` impl gives through
//! serde_json (a property test holds it to that), about twice as fast. The client's worker
//! serializes every event it sends with it.

use std::io::Write;

use super::size;
use super::wire::timestamp::format_micros;
use super::{AnalyticsEvent, Usage};

fn str(out: &mut Vec<u8>, s: &str) {
    if size::text(s).json == s.len() + 2 {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Escapes needed: serde_json's own escaping, so the output stays identical.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

fn uint(out: &mut Vec<u8>, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    uint(out, n.unsigned_abs());
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn opt_str(out: &mut Vec<u8>, name: &str, v: &Option<String>) {
    if let Some(s) = v {
        key(out, name);
        str(out, s);
    }
}

fn usage(out: &mut Vec<u8>, u: &Usage) {
    out.push(b'{');
    let mut first = true;
    for (name, v) in u.buckets() {
        if v != 0 {
            if !first {
                out.push(b',');
            }
            first = false;
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            uint(out, v);
        }
    }
    out.push(b'}');
}

/// Append `e`'s wire JSON to `out`.
pub(crate) fn write(out: &mut Vec<u8>, e: &AnalyticsEvent) {
    out.extend_from_slice(b"{\"id\":\"");
    out.extend_from_slice(
        e.id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .as_bytes(),
    );
    out.push(b'"');
    key(out, "tenant_id");
    str(out, &e.tenant_id);
    key(out, "event_type");
    str(out, e.event_type.as_str());
    key(out, "timestamp");
    match format_micros(&e.timestamp) {
        Some(b) => {
            out.push(b'"');
            out.extend_from_slice(&b);
            out.push(b'"');
        }
        None => str(
            out,
            &e.timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        ),
    }
    key(out, "correlation_id");
    str(out, &e.correlation_id);
    opt_str(out, "user_id", &e.user_id);
    opt_str(out, "agent_id", &e.agent_id);
    opt_str(out, "workflow_id", &e.workflow_id);
    if let Some(v) = e.duration_ms {
        key(out, "duration_ms");
        int(out, v);
    }
    if let Some(v) = e.queue_ms {
        key(out, "queue_ms");
        int(out, v);
    }
    if let Some(d) = &e.cost_usd {
        key(out, "cost_usd");
        out.push(b'"');
        // Writing to a Vec cannot fail.
        let _ = write!(out, "{d}");
        out.push(b'"');
    }
    if let Some(s) = e.cost_status {
        key(out, "cost_status");
        str(out, s.as_str());
    }
    opt_str(out, "price_version", &e.price_version);
    opt_str(out, "provider", &e.provider);
    opt_str(out, "model", &e.model);
    opt_str(out, "task_type", &e.task_type);
    if let Some(s) = e.service_tier {
        key(out, "service_tier");
        str(out, s.as_str());
    }
    if let Some(u) = &e.usage {
        key(out, "usage");
        usage(out, u);
    }
    key(out, "success");
    out.extend_from_slice(if e.success { b"true" } else { b"false" });
    opt_str(out, "error_code", &e.error_code);
    key(out, "metadata");
    if e.metadata.is_empty() {
        out.extend_from_slice(b"{}");
    } else {
        let _ = serde_json::to_writer(&mut *out, &e.metadata);
    }
    out.push(b'}');
}

/// `e`'s wire JSON in an exactly sized buffer.
pub(crate) fn to_vec(e: &AnalyticsEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(size::json_len(e));
    write(&mut out, e);
    out
}
