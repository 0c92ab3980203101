//! Serde details of the wire format: µs RFC 3339 timestamps, exact decimals from strings or
//! JSON numbers, and decoding with the path of the offending field in every error.

use chrono::{DateTime, SubsecRound, Utc};
use serde::de::DeserializeOwned;

use crate::Error;

pub(crate) fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.trunc_subsecs(6)
}

/// Decode `bytes` as `T`, reporting the dotted path of the field that failed.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    decode_borrowed(bytes)
}

/// Like `decode`, for types that borrow from the input.
/// The input must be a JSON object (serde would also take an array for a struct).
pub(crate) fn decode_borrowed<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, Error> {
    if !matches!(
        bytes.iter().find(|b| !b.is_ascii_whitespace()),
        Some(b'{') | None
    ) {
        return Err(Error::Decode {
            field: String::new(),
            message: "must be a JSON object".into(),
        });
    }
    // Valid input (nearly all of it) decodes without tracking the path; only a failure is
    // decoded again, with the path, to name the field.
    let mut de = serde_json::Deserializer::from_slice(bytes);
    if let Ok(out) = T::deserialize(&mut de) {
        if de.end().is_ok() {
            return Ok(out);
        }
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let out = serde_path_to_error::deserialize(&mut de).map_err(|e| Error::Decode {
        field: field_path(&e.path().to_string()),
        message: strip_position(&e.into_inner().to_string()),
    })?;
    de.end().map_err(|e| Error::Decode {
        field: String::new(),
        message: strip_position(&e.to_string()),
    })?;
    Ok(out)
}

/// Longest field path kept in an error; deeply nested metadata would otherwise make the path
/// (`metadata.a[0][0][0]...`) larger than the event.
const MAX_PATH: usize = 160;

fn field_path(path: &str) -> String {
    if path == "." {
        return String::new();
    }
    match path.char_indices().nth(MAX_PATH) {
        Some((cut, _)) => format!("{}…", &path[..cut]),
        None => path.to_string(),
    }
}

/// serde_json appends " at line L column C"; the field path says more, so drop it.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains(" column ") => msg[..i].to_string(),
        _ => msg.to_string(),
    }
}

pub(crate) mod timestamp {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// `YYYY-MM-DDTHH:MM:SS.ffffffZ` written into a stack buffer: this runs once per event in
    /// `track()`, where chrono's general formatter and its String allocation showed up.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        match format_micros(t) {
            Some(buf) => s.serialize_str(std::str::from_utf8(&buf).unwrap_or_default()),
            None => s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true)),
        }
    }

    /// The fixed-width form for years 0–9999 (`None` outside, where chrono's formatter is used).
    pub fn format_micros(t: &DateTime<Utc>) -> Option<[u8; 27]> {
        use chrono::{Datelike, Timelike};
        let year = t.year();
        if !(0..=9999).contains(&year) {
            return None;
        }
        let mut b = *b"0000-00-00T00:00:00.000000Z";
        let mut put = |at: usize, width: usize, mut v: u32| {
            for i in (0..width).rev() {
                b[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, year as u32);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        // Leap seconds are carried in the nanoseconds by chrono; the wire format has none.
        put(17, 2, t.second());
        put(20, 6, (t.nanosecond() % 1_000_000_000) / 1_000);
        Some(b)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| super::truncate_micros(t.with_timezone(&Utc)))
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "must be an RFC 3339 timestamp like 2026-01-31T12:00:00.000000Z, got `{s}` ({e})"
                ))
            })
    }
}

/// Parse a decimal from its text exactly: plain (`0.0123`) or scientific (`1.5e-7`).
pub(crate) fn parse_decimal(s: &str) -> Result<rust_decimal::Decimal, String> {
    use rust_decimal::Decimal;
    let t = s.trim();
    let parsed = if t.contains(['e', 'E']) {
        Decimal::from_scientific(t).map(|d| d.normalize())
    } else {
        Decimal::from_str_exact(t)
    };
    parsed.map_err(|e| format!("must be a decimal number, got `{s}` ({e})"))
}

pub(crate) mod opt_decimal {
    use std::fmt;

    use rust_decimal::Decimal;
    use serde::de::{self, DeserializeSeed, MapAccess, Unexpected, Visitor};
    use serde::{Deserializer, Serializer};

    use super::parse_decimal;

    pub fn serialize<S: Serializer>(v: &Option<Decimal>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(d) => s.collect_str(d),
            None => s.serialize_none(),
        }
    }

    /// serde_json (with its `raw_value` feature) hands a newtype struct of this name over as
    /// the value's JSON text: the one way to read a number's digits without `arbitrary_precision`,
    /// which the SDK must not force on the programs embedding it. Other deserializers see a plain
    /// newtype struct and give the value as they hold it.
    const RAW_TOKEN: &str = "$serde_json::private::RawValue";

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Decimal>, D::Error> {
        d.deserialize_newtype_struct(RAW_TOKEN, DecVisitor)
    }

    struct DecVisitor;

    /// A decoding failure, raised once the raw value's map is left (an error raised inside it
    /// would name the token as part of the field path).
    enum RawError {
        Custom(String),
        Type(Unexpected<'static>),
    }

    /// `raw` is one complete JSON value (serde_json checked its syntax).
    fn from_raw(raw: &str) -> Result<Option<Decimal>, RawError> {
        let raw = raw.trim();
        let text = |s: &str| parse_decimal(s).map(Some).map_err(RawError::Custom);
        match raw.as_bytes().first() {
            Some(b'n') => Ok(None),
            Some(b'"') if !raw.contains('\\') => {
                text(raw.get(1..raw.len() - 1).unwrap_or_default())
            }
            Some(b'"') => {
                let s: String =
                    serde_json::from_str(raw).map_err(|e| RawError::Custom(e.to_string()))?;
                text(&s)
            }
            Some(b'-' | b'0'..=b'9') => text(raw),
            Some(b't') => Err(RawError::Type(Unexpected::Bool(true))),
            Some(b'f') => Err(RawError::Type(Unexpected::Bool(false))),
            Some(b'[') => Err(RawError::Type(Unexpected::Seq)),
            _ => Err(RawError::Type(Unexpected::Map)),
        }
    }

    impl<'de> Visitor<'de> for DecVisitor {
        type Value = Option<Decimal>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a decimal string like \"0.0123\" or a JSON number")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
        fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
            parse_decimal(s).map(Some).map_err(E::custom)
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
            Ok(Some(Decimal::from(n)))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
            Ok(Some(Decimal::from(n)))
        }
        fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
            // Only reached from deserializers that parsed the number already (not serde_json's
            // own, which gives the text); the shortest round-trip text is the best left.
            self.visit_str(&n.to_string())
        }
        /// serde_json's raw value: a one-entry map, the token then the JSON text.
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let parsed = match map.next_key::<RawKey>()? {
                Some(RawKey) => map.next_value_seed(RawText)?,
                None => Err(RawError::Type(Unexpected::Map)),
            };
            parsed.map_err(|e| match e {
                RawError::Custom(m) => de::Error::custom(m),
                RawError::Type(u) => de::Error::invalid_type(u, &self),
            })
        }
    }

    /// The raw value's key, checked without allocating.
    struct RawKey;

    impl<'de> de::Deserialize<'de> for RawKey {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl Visitor<'_> for V {
                type Value = RawKey;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("a decimal string like \"0.0123\" or a JSON number")
                }
                fn visit_str<E: de::Error>(self, s: &str) -> Result<RawKey, E> {
                    if s == RAW_TOKEN {
                        Ok(RawKey)
                    } else {
                        Err(E::invalid_type(Unexpected::Map, &self))
                    }
                }
            }
            d.deserialize_str(V)
        }
    }

    /// The raw value's JSON text, borrowed when the input allows.
    struct RawText;

    impl<'de> DeserializeSeed<'de> for RawText {
        type Value = Result<Option<Decimal>, RawError>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl Visitor<'_> for RawText {
        type Value = Result<Option<Decimal>, RawError>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            DecVisitor.expecting(f)
        }
        fn visit_str<E: de::Error>(self, raw: &str) -> Result<Self::Value, E> {
            Ok(from_raw(raw))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{SecondsFormat, TimeZone, Utc};

    #[test]
    fn fast_timestamp_format_matches_chrono() {
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // 0000-01-01 .. 9999-12-31, microsecond precision.
            let us = (x.rem_euclid(315_537_897_600_000_000)) - 62_167_219_200_000_000;
            let t = Utc.timestamp_micros(us).single().expect("in range");
            let fast = super::timestamp::format_micros(&t).expect("4-digit year");
            assert_eq!(
                std::str::from_utf8(&fast).expect("ascii"),
                t.to_rfc3339_opts(SecondsFormat::Micros, true)
            );
        }
    }
}
