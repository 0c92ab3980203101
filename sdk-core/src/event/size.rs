//! Exact length of an event's wire JSON, computed from its fields without serialising (the size
//! rule runs on `track()`'s hot path), and an estimate of the heap memory an event holds (what
//! the client's queue counts against `max_queue_bytes`).
//!
//! The length must equal `serde_json::to_vec(event).len()` for every event: the round-trip
//! property test and the fuzz targets check it.

use serde_json::{Map, Value};

use super::{AnalyticsEvent, Usage};
use chrono::Datelike;

/// Extra output bytes per input byte when serde_json escapes a string: `\n`-style escapes add 1,
/// `\u00XX` escapes add 5; everything else (UTF-8 included) is copied as it is.
static EXTRA: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = match i {
            0x08 | 0x09 | 0x0A | 0x0C | 0x0D => 1,
            _ => 5,
        };
        i += 1;
    }
    t[b'"' as usize] = 1;
    t[b'\\' as usize] = 1;
    t
};

/// What one pass over a string tells: NUL bytes (validation), its length in characters (the
/// limits count characters) and the length of its JSON form with quotes and escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Text {
    pub nul: bool,
    pub chars: usize,
    pub json: usize,
}

/// Scan `s` once. Most text is ASCII with nothing to escape: checked eight bytes at a time.
pub(crate) fn text(s: &str) -> Text {
    if plain(s.as_bytes()) {
        return Text {
            nul: false,
            chars: s.len(),
            json: s.len() + 2,
        };
    }
    let extra: usize = s.bytes().map(|b| EXTRA[b as usize] as usize).sum();
    Text {
        nul: s.as_bytes().contains(&0),
        chars: s.chars().count(),
        json: s.len() + 2 + extra,
    }
}

/// `"s"` with escapes.
pub(crate) fn str_len(s: &str) -> usize {
    text(s).json
}

/// True when no byte is below 0x20, `"`, `\\` or non-ASCII. Word at a time with the classic
/// has-less-than / has-zero-byte tricks: they never miss such a byte (a rare false alarm only
/// sends the string down the exact path).
fn plain(s: &[u8]) -> bool {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    fn special(w: u64) -> bool {
        let quote = w ^ (LO * b'"' as u64);
        let slash = w ^ (LO * b'\\' as u64);
        let control = w.wrapping_sub(LO * 0x20) & !w;
        let quote = quote.wrapping_sub(LO) & !quote;
        let slash = slash.wrapping_sub(LO) & !slash;
        (control | quote | slash | w) & HI != 0
    }
    fn byte(b: u8) -> bool {
        b < 0x20 || b == b'"' || b == b'\\' || b >= 0x80
    }
    // Whole words, then the last 8 bytes again (overlapping) for the tail; short strings as two
    // overlapping 4-byte halves. Plain loads only: no byte loop, no copy through the stack.
    let word = |at: usize| {
        s.get(at..)
            .and_then(|r| r.first_chunk::<8>())
            .is_none_or(|w| special(u64::from_le_bytes(*w)))
    };
    let half = |at: usize| {
        s.get(at..)
            .and_then(|r| r.first_chunk::<4>())
            .map_or(u64::MAX, |w| u64::from(u32::from_le_bytes(*w)))
    };
    let n = s.len();
    if n >= 8 {
        let mut any = false;
        let mut at = 0;
        while at + 8 <= n {
            any |= word(at);
            at += 8;
        }
        !(any || (at < n && word(n - 8)))
    } else if n >= 4 {
        !special(half(0) | (half(n - 4) << 32))
    } else {
        !s.iter().any(|&b| byte(b))
    }
}

fn u64_len(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

fn i64_len(n: i64) -> usize {
    u64_len(n.unsigned_abs()) + usize::from(n < 0)
}

/// Counts what `Display` writes, without allocating.
struct Count(usize);

impl std::fmt::Write for Count {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0 += s.len();
        Ok(())
    }
}

fn display_len(v: &impl std::fmt::Display) -> usize {
    let mut c = Count(0);
    // Writing to a counter cannot fail.
    let _ = std::fmt::write(&mut c, format_args!("{v}"));
    c.0
}

/// `"name":` plus the separating comma (every field but the first has one).
const fn key(name: &str) -> usize {
    name.len() + 4
}

/// Length of `metadata`'s JSON (serde_json's compact form, keys in map order).
pub(crate) fn map_len(m: &Map<String, Value>) -> usize {
    scan_map(m).json
}

/// Where metadata first holds a NUL character (keys before their values, in map order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nul {
    Key,
    String,
}

/// What one walk over `metadata` tells: its JSON length, its first NUL character (validation)
/// and the heap it holds (the client's queue budget). One walk, because `track()` needs all
/// three and metadata is the part of an event whose size the caller chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapScan {
    pub json: usize,
    pub nul: Option<Nul>,
    pub heap: usize,
}

pub(crate) fn scan_map(m: &Map<String, Value>) -> MapScan {
    let mut s = MapScan {
        json: 0,
        nul: None,
        heap: 0,
    };
    s.json = object(m, &mut s.nul, &mut s.heap);
    s
}

fn string(v: &str, nul: &mut Option<Nul>, which: Nul) -> usize {
    let t = text(v);
    if t.nul && nul.is_none() {
        *nul = Some(which);
    }
    t.json
}

fn object(m: &Map<String, Value>, nul: &mut Option<Nul>, heap: &mut usize) -> usize {
    *heap += heap_of::map_nodes(m);
    let mut n = 2 + m.len().saturating_sub(1);
    for (k, v) in m {
        *heap += heap_of::string(k);
        n += string(k, nul, Nul::Key) + 1 + value(v, nul, heap);
    }
    n
}

fn value(v: &Value, nul: &mut Option<Nul>, heap: &mut usize) -> usize {
    match v {
        Value::Null => 4,
        Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(n) => number_len(n),
        Value::String(s) => {
            *heap += heap_of::string(s);
            string(s, nul, Nul::String)
        }
        Value::Array(a) => {
            *heap += heap_of::array(a);
            2 + a.len().saturating_sub(1) + a.iter().map(|v| value(v, nul, heap)).sum::<usize>()
        }
        Value::Object(o) => object(o, nul, heap),
    }
}

/// What serde_json writes for `n`: the integer, or the float's shortest round-trip form (its
/// `Display` is the serializer's formatter; floats are rare enough in metadata to format them).
fn number_len(n: &serde_json::Number) -> usize {
    if let Some(u) = n.as_u64() {
        u64_len(u)
    } else if let Some(i) = n.as_i64() {
        i64_len(i)
    } else {
        display_len(n)
    }
}

fn usage_len(u: &Usage) -> usize {
    let mut n = 2;
    let mut first = true;
    for (name, v) in u.buckets() {
        if v != 0 {
            // `key` counts a comma; the first field has none.
            n += key(name) + u64_len(v) - usize::from(first);
            first = false;
        }
    }
    n
}

/// The fields validation checks as text, scanned once while the JSON length is summed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    /// Length of `serde_json::to_vec(e)`.
    pub json_len: usize,
    pub correlation_id: Text,
    pub user_id: Option<Text>,
    pub agent_id: Option<Text>,
    pub workflow_id: Option<Text>,
    pub price_version: Option<Text>,
    pub provider: Option<Text>,
    pub model: Option<Text>,
    pub task_type: Option<Text>,
    pub error_code: Option<Text>,
    pub metadata: MapScan,
}

/// Length of `serde_json::to_vec(e)`.
pub(crate) fn json_len(e: &AnalyticsEvent) -> usize {
    measure(e).json_len
}

/// Scan every text field once and sum the JSON length of the whole event.
pub(crate) fn measure(e: &AnalyticsEvent) -> Measured {
    let opt = |v: &Option<String>| v.as_deref().map(text);
    let m = Measured {
        json_len: 0,
        correlation_id: text(&e.correlation_id),
        user_id: opt(&e.user_id),
        agent_id: opt(&e.agent_id),
        workflow_id: opt(&e.workflow_id),
        price_version: opt(&e.price_version),
        provider: opt(&e.provider),
        model: opt(&e.model),
        task_type: opt(&e.task_type),
        error_code: opt(&e.error_code),
        metadata: scan_map(&e.metadata),
    };
    let field = |name: &str, t: Option<Text>| t.map_or(0, |t| key(name) + t.json);
    // `"YYYY-MM-DDTHH:MM:SS.ffffffZ"` for years 0–9999 (see `wire::timestamp`).
    let ts = if (0..=9999).contains(&e.timestamp.naive_utc().year()) {
        29
    } else {
        str_len(
            &e.timestamp
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        )
    };
    // `{` `}`, then `"id":` (no comma) and the uuid.
    let mut n = 2 + (key("id") - 1) + 38;
    n += key("tenant_id") + str_len(&e.tenant_id);
    n += key("event_type") + e.event_type.as_str().len() + 2;
    n += key("timestamp") + ts;
    n += key("correlation_id") + m.correlation_id.json;
    n += field("user_id", m.user_id);
    n += field("agent_id", m.agent_id);
    n += field("workflow_id", m.workflow_id);
    n += e.duration_ms.map_or(0, |v| key("duration_ms") + i64_len(v));
    n += e.queue_ms.map_or(0, |v| key("queue_ms") + i64_len(v));
    n += e
        .cost_usd
        .map_or(0, |d| key("cost_usd") + display_len(&d) + 2);
    n += e
        .cost_status
        .map_or(0, |s| key("cost_status") + s.as_str().len() + 2);
    n += field("price_version", m.price_version);
    n += field("provider", m.provider);
    n += field("model", m.model);
    n += field("task_type", m.task_type);
    n += e
        .service_tier
        .map_or(0, |s| key("service_tier") + s.as_str().len() + 2);
    n += e.usage.as_ref().map_or(0, |u| key("usage") + usage_len(u));
    n += key("success") + if e.success { 4 } else { 5 };
    n += field("error_code", m.error_code);
    n += key("metadata") + m.metadata.json;
    Measured { json_len: n, ..m }
}

/// The memory estimate, for the client's queue budget.
#[cfg(feature = "client")]
pub(crate) use heap_of::{chunk, heap};

/// Heap blocks and what glibc's malloc takes for them.
#[cfg_attr(not(feature = "client"), allow(dead_code))]
mod heap_of {
    use std::mem::size_of;

    use serde_json::{Map, Value};

    use super::AnalyticsEvent;

    /// What glibc's malloc takes for a request of `n` bytes (header and 16-byte rounding, 32 at
    /// least). Other allocators are close; this is an estimate for the queue's memory budget.
    pub(crate) const fn chunk(n: usize) -> usize {
        if n == 0 {
            0
        } else {
            let c = (n + 8 + 15) & !15;
            if c < 32 {
                32
            } else {
                c
            }
        }
    }

    pub(super) fn string(s: &String) -> usize {
        chunk(s.capacity())
    }

    fn opt(s: &Option<String>) -> usize {
        s.as_ref().map_or(0, string)
    }

    /// A JSON object's B-tree nodes of up to 11 entries (its keys and values not included).
    pub(super) fn map_nodes(m: &Map<String, Value>) -> usize {
        const NODE: usize = chunk(11 * (size_of::<String>() + size_of::<Value>()) + 16);
        m.len().div_ceil(11) * NODE
    }

    /// A JSON array's buffer (its elements' own heap not included). A number is held inline.
    pub(super) fn array(a: &Vec<Value>) -> usize {
        chunk(a.capacity() * size_of::<Value>())
    }

    /// Heap memory an `AnalyticsEvent` owns (its strings and metadata; not the struct itself),
    /// given its metadata's (`MapScan::heap`).
    pub(crate) fn heap(e: &AnalyticsEvent, metadata: usize) -> usize {
        string(&e.tenant_id)
            + string(&e.correlation_id)
            + opt(&e.user_id)
            + opt(&e.agent_id)
            + opt(&e.workflow_id)
            + opt(&e.price_version)
            + opt(&e.provider)
            + opt(&e.model)
            + opt(&e.task_type)
            + opt(&e.error_code)
            + metadata
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn escapes_are_counted_like_serde_json() {
        for s in [
            "",
            "plain",
            "quote \" and \\ backslash",
            "\n\t\r\u{8}\u{c}",
            "\u{1}\u{1f}\u{7f}",
            "ünïcødé ✓ 🚀",
        ] {
            assert_eq!(str_len(s), serde_json::to_string(s).unwrap().len(), "{s:?}");
        }
    }

    #[test]
    fn plain_detection_is_exact_for_every_byte_at_every_position() {
        for b in 0u8..=255 {
            for len in 1..=17 {
                for at in 0..len {
                    let mut v = vec![b'x'; len];
                    v[at] = b;
                    let want = b < 0x20 || b == b'"' || b == b'\\' || b >= 0x80;
                    assert_eq!(!plain(&v), want, "byte {b:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn numbers_and_metadata() {
        for n in [0i64, 9, 10, 99, 100, -1, -10, i64::MAX, i64::MIN] {
            assert_eq!(i64_len(n), n.to_string().len());
        }
        let m: Map<String, Value> = serde_json::from_str(
            r#"{"a":[1,2.50,-3e7,1e300,1.5e-7,0.30000000000000004,-0.0,18446744073709551615,-9223372036854775808,null,true,false,"x\n"],"b":{"c":{},"d":[]},"é":"ü"}"#,
        )
        .unwrap();
        assert_eq!(map_len(&m), serde_json::to_string(&m).unwrap().len());
    }

    #[test]
    fn one_walk_gives_length_first_nul_and_heap() {
        let scan = |text: &str| scan_map(&serde_json::from_str(text).unwrap());
        // Keys in order, each before its value.
        assert_eq!(
            scan(r#"{"a":"x\u0000","b\u0000":1}"#).nul,
            Some(Nul::String)
        );
        assert_eq!(scan(r#"{"a\u0000":"x","b":"y\u0000"}"#).nul, Some(Nul::Key));
        assert_eq!(scan(r#"{"a":{"b":["\u0000"]}}"#).nul, Some(Nul::String));
        assert_eq!(scan(r#"{"a":"x","b":[1,{"c":null}]}"#).nul, None);
        // One B-tree node (11 entries of 24 + 32 bytes, plus 16: a 640-byte chunk) and three
        // short strings (32-byte chunks); numbers are inline.
        let s = scan(r#"{"k":"vv","n":1}"#);
        assert_eq!(s.heap, 640 + 3 * 32);
        assert_eq!(s.json, r#"{"k":"vv","n":1}"#.len());
        assert_eq!(scan("{}").heap, 0);
    }

    #[cfg(feature = "client")]
    #[test]
    fn chunk_sizes() {
        assert_eq!(chunk(0), 0);
        assert_eq!(chunk(1), 32);
        assert_eq!(chunk(24), 32);
        assert_eq!(chunk(25), 48);
        assert_eq!(chunk(451), 464);
    }
}
