//! JavaScript values → sdk-core types: strings, integers, milliseconds, exact decimals (strings),
//! timestamps (`Date` or RFC 3339 text), JSON metadata, and usage (canonical buckets or an
//! OpenAI/Anthropic/Gemini usage object, converted by sdk-core's adapters). Every error names the
//! field it is about, as sdk-core spells it (`event.tenant_id`, `config.flush_at`).

use std::time::Duration;

use agenttally::event::USAGE_BUCKETS;
use agenttally::pricing::adapters;
use agenttally::Usage;
use chrono::{DateTime, Utc};
use napi::bindgen_prelude::*;
use napi::{JsValue, ValueType};
use rust_decimal::Decimal;
use serde_json::{Map, Number, Value};

use crate::errors;

/// Integers up to this magnitude are exact in a JavaScript number.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Which error a wrong type becomes: a bad event field or a bad setting.
#[derive(Clone, Copy)]
pub enum Kind {
    Event,
    Config,
}

fn wrong(env: &Env, kind: Kind, field: &str, rule: impl std::fmt::Display) -> napi::Error {
    match kind {
        Kind::Event => errors::invalid(env, field, rule),
        Kind::Config => errors::config(env, field, rule),
    }
}

/// `undefined` and `null` both mean "not given".
fn absent(v: &Unknown<'_>) -> Result<bool> {
    Ok(matches!(
        v.get_type()?,
        ValueType::Undefined | ValueType::Null
    ))
}

/// The JavaScript type of `v` for error messages (`string`, `number`, `array`, `null`, ...).
pub fn type_name(v: &Unknown<'_>) -> &'static str {
    match v.get_type() {
        Ok(ValueType::Undefined) => "undefined",
        Ok(ValueType::Null) => "null",
        Ok(ValueType::Boolean) => "boolean",
        Ok(ValueType::Number) => "number",
        Ok(ValueType::String) => "string",
        Ok(ValueType::Symbol) => "symbol",
        Ok(ValueType::Function) => "function",
        Ok(ValueType::BigInt) => "bigint",
        Ok(ValueType::Object) if v.is_array().unwrap_or(false) => "array",
        Ok(ValueType::Object) => "object",
        _ => "value",
    }
}

/// The text of a value already known to be a string (no coercion: one call fewer per field).
fn read_string(v: &Unknown<'_>) -> Result<String> {
    String::from_unknown(*v)
}

/// A string, or `None` when not given.
pub fn opt_string(env: &Env, v: &Unknown<'_>, kind: Kind, field: &str) -> Result<Option<String>> {
    match v.get_type()? {
        ValueType::String => read_string(v).map(Some),
        ValueType::Undefined | ValueType::Null => Ok(None),
        _ => Err(wrong(
            env,
            kind,
            field,
            format!("must be a string, got {}", type_name(v)),
        )),
    }
}

/// A required string.
pub fn string(env: &Env, v: &Unknown<'_>, field: &str) -> Result<String> {
    match opt_string(env, v, Kind::Event, field)? {
        Some(s) => Ok(s),
        None => Err(errors::invalid(env, field, "is required")),
    }
}

/// A boolean, or `None` when not given.
pub fn opt_bool(env: &Env, v: &Unknown<'_>, kind: Kind, field: &str) -> Result<Option<bool>> {
    match v.get_type()? {
        ValueType::Boolean => bool::from_unknown(*v).map(Some),
        ValueType::Undefined | ValueType::Null => Ok(None),
        _ => Err(wrong(
            env,
            kind,
            field,
            format!("must be a boolean, got {}", type_name(v)),
        )),
    }
}

fn number(env: &Env, v: &Unknown<'_>, kind: Kind, field: &str) -> Result<Option<f64>> {
    match v.get_type()? {
        ValueType::Number => f64::from_unknown(*v).map(Some),
        ValueType::Undefined | ValueType::Null => Ok(None),
        _ => Err(wrong(
            env,
            kind,
            field,
            format!("must be a number, got {}", type_name(v)),
        )),
    }
}

/// An integer (negative values pass, so that sdk-core's validation names the field).
pub fn opt_int(env: &Env, v: &Unknown<'_>, kind: Kind, field: &str) -> Result<Option<i64>> {
    number(env, v, kind, field)?
        .map(|n| int(env, n, kind, field))
        .transpose()
}

/// A number that must be an integer exact in a JavaScript number.
pub fn int(env: &Env, n: f64, kind: Kind, field: &str) -> Result<i64> {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        Ok(n as i64)
    } else {
        Err(wrong(
            env,
            kind,
            field,
            format!("must be an integer, got {n}"),
        ))
    }
}

/// A count setting: a non-negative integer.
pub fn opt_count(env: &Env, v: &Unknown<'_>, setting: &str) -> Result<Option<usize>> {
    match opt_int(env, v, Kind::Config, setting)? {
        None => Ok(None),
        Some(n) => usize::try_from(n)
            .map(Some)
            .map_err(|_| errors::config(env, setting, format!("must be >= 0, got {n}"))),
    }
}

/// A duration in milliseconds (fractions allowed). `saturate` makes `Infinity` (and values too
/// large for a `Duration`) "as long as it takes", for timeouts; settings report them instead.
pub fn opt_millis(
    env: &Env,
    v: &Unknown<'_>,
    setting: &str,
    saturate: bool,
) -> Result<Option<Duration>> {
    let Some(ms) = number(env, v, Kind::Config, setting)? else {
        return Ok(None);
    };
    if ms.is_nan() || ms < 0.0 {
        return Err(errors::config(
            env,
            setting,
            format!("must be >= 0 milliseconds, got {ms}"),
        ));
    }
    match Duration::try_from_secs_f64(ms / 1000.0) {
        Ok(d) => Ok(Some(d)),
        Err(_) if saturate => Ok(Some(Duration::MAX)),
        Err(_) => Err(errors::config(
            env,
            setting,
            format!("is too large: {ms} milliseconds"),
        )),
    }
}

/// Money: a decimal string, converted exactly. A number is refused: it is binary floating point
/// and has already lost the exact value.
pub fn opt_decimal(env: &Env, v: &Unknown<'_>, field: &str) -> Result<Option<Decimal>> {
    match v.get_type()? {
        ValueType::String => decimal(env, &read_string(v)?, field).map(Some),
        ValueType::Undefined | ValueType::Null => Ok(None),
        _ => Err(errors::invalid(
            env,
            field,
            format!(
                "must be a decimal string such as \"0.0042\" (a number is not exact), got {}",
                type_name(v)
            ),
        )),
    }
}

/// Money from its decimal text, exactly.
pub fn decimal(env: &Env, text: &str, field: &str) -> Result<Decimal> {
    let t = text.trim();
    Decimal::from_str_exact(t)
        .or_else(|_| Decimal::from_scientific(t))
        .map_err(|e| {
            errors::invalid(
                env,
                field,
                format!("must be a decimal string, got `{text}` ({e})"),
            )
        })
}

/// A point in time: a `Date` or RFC 3339 text with an offset.
pub fn opt_timestamp(env: &Env, v: &Unknown<'_>, field: &str) -> Result<Option<DateTime<Utc>>> {
    match v.get_type()? {
        ValueType::Undefined | ValueType::Null => Ok(None),
        ValueType::String => timestamp_text(env, &read_string(v)?, field).map(Some),
        ValueType::Object if v.is_date()? => {
            // A Date's number value is its time in milliseconds since the epoch (NaN if invalid).
            timestamp_millis(env, v.coerce_to_number()?.get_double()?, field).map(Some)
        }
        _ => Err(errors::invalid(
            env,
            field,
            format!("must be a Date or RFC 3339 text, got {}", type_name(v)),
        )),
    }
}

/// A point in time from RFC 3339 text with an offset.
pub fn timestamp_text(env: &Env, text: &str, field: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            errors::invalid(
                env,
                field,
                format!("must be a Date or RFC 3339 text with an offset, got `{text}` ({e})"),
            )
        })
}

/// A point in time from a Date's time value (milliseconds since the epoch, NaN if invalid).
pub fn timestamp_millis(env: &Env, ms: f64, field: &str) -> Result<DateTime<Utc>> {
    let whole = ms.floor();
    let nanos = ((ms - whole) * 1e6).round() as u32;
    (whole.is_finite() && whole.abs() <= MAX_SAFE_INTEGER)
        .then(|| DateTime::from_timestamp_millis(whole as i64))
        .flatten()
        .map(|t| t + chrono::Duration::nanoseconds(i64::from(nanos)))
        .ok_or_else(|| errors::invalid(env, field, "must be a valid Date, got Invalid Date"))
}

/// A JSON value from plain data: null, boolean, number, string, arrays and plain objects.
/// `undefined` object members are left out, as `JSON.stringify` does. `path` names the position
/// in errors (`event.metadata.key[2]`).
pub fn json(env: &Env, v: &Unknown<'_>, path: &str) -> Result<Value> {
    match v.get_type()? {
        ValueType::Null => Ok(Value::Null),
        ValueType::Boolean => Ok(Value::Bool(bool::from_unknown(*v)?)),
        ValueType::String => Ok(Value::String(read_string(v)?)),
        ValueType::Number => {
            let n = f64::from_unknown(*v)?;
            json_number(n).ok_or_else(|| {
                errors::invalid(env, path, format!("must be a finite number, got {n}"))
            })
        }
        ValueType::Object if v.is_array()? => {
            let arr = v.coerce_to_object()?;
            let len = arr.get_array_length()?;
            let mut out = Vec::with_capacity(len as usize);
            for i in 0..len {
                let item: Unknown<'_> = arr.get_element(i)?;
                out.push(json(env, &item, &format!("{path}[{i}]"))?);
            }
            Ok(Value::Array(out))
        }
        ValueType::Object if !v.is_date()? => Ok(Value::Object(object(env, v, path)?)),
        _ => Err(errors::invalid(
            env,
            path,
            format!(
                "must be JSON data (null, boolean, number, string, array or plain object), got {}",
                type_name(v)
            ),
        )),
    }
}

/// Integers stay integers (up to 2^53, exact in a JS number); other numbers are floats.
fn json_number(n: f64) -> Option<Value> {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        Some(Value::Number(Number::from(n as i64)))
    } else {
        Number::from_f64(n).map(Value::Number)
    }
}

/// A JSON object from a plain object's own enumerable string keys.
pub fn object(env: &Env, v: &Unknown<'_>, path: &str) -> Result<Map<String, Value>> {
    if v.get_type()? != ValueType::Object || v.is_array()? {
        return Err(errors::invalid(
            env,
            path,
            format!("must be a plain object, got {}", type_name(v)),
        ));
    }
    let obj = v.coerce_to_object()?;
    let mut m = Map::new();
    for key in Object::keys(&obj)? {
        let item: Unknown<'_> = obj.get_named_property(&key)?;
        if item.get_type()? == ValueType::Undefined {
            continue;
        }
        let value = json(env, &item, &format!("{path}.{key}"))?;
        m.insert(key, value);
    }
    Ok(m)
}

/// Usage from an object of canonical buckets, or a provider's usage (the `usage` of an OpenAI,
/// Anthropic or Gemini SDK response, as the SDK returns it) converted by sdk-core's adapters.
/// The adapter is picked by `provider` when it names one, else by the keys present.
pub fn usage(env: &Env, v: &Unknown<'_>, provider: Option<&str>, field: &str) -> Result<Usage> {
    if absent(v)? {
        return Ok(Usage::default());
    }
    let value = object(env, v, field)?;
    if let Some(u) = canonical_fast(&value) {
        return Ok(u);
    }
    if value.keys().all(|k| USAGE_BUCKETS.contains(&k.as_str())) {
        return canonical(env, value, field);
    }
    provider_usage(env, &Value::Object(value), provider)
}

/// Canonical bucket names with non-negative integer values: read without serde. Anything else
/// (`None`) takes the general path, which also produces the error messages.
fn canonical_fast(value: &Map<String, Value>) -> Option<Usage> {
    let mut buckets = [0u64; 7];
    for (k, v) in value {
        let i = USAGE_BUCKETS.iter().position(|b| b == k)?;
        *buckets.get_mut(i)? = v.as_u64()?;
    }
    Some(from_buckets(buckets))
}

/// `Usage` from its buckets in the order of `USAGE_BUCKETS`.
fn from_buckets(buckets: [u64; 7]) -> Usage {
    // USAGE_BUCKETS lists the buckets in wire order, the order of `Usage`'s fields.
    let [input, cached, write, write_1h, output, reasoning, requests] = buckets;
    Usage {
        input_tokens: input,
        cached_input_tokens: cached,
        cache_write_tokens: write,
        cache_write_1h_tokens: write_1h,
        output_tokens: output,
        reasoning_tokens: reasoning,
        requests,
    }
}

/// Usage from numbers in the order of `USAGE_BUCKETS` (read in JavaScript from an object of
/// canonical buckets), held to the rule of the object form: non-negative integers.
pub fn usage_numbers(env: &Env, numbers: [f64; 7], field: &str) -> Result<Usage> {
    let mut buckets = [0u64; 7];
    for ((bucket, n), name) in buckets.iter_mut().zip(numbers).zip(USAGE_BUCKETS) {
        if (0.0..=MAX_SAFE_INTEGER).contains(&n) && n.fract() == 0.0 {
            *bucket = n as u64;
        } else {
            // Shown as the object form's error shows it (a JSON number).
            let shown = json_number(n).map_or_else(|| n.to_string(), |v| v.to_string());
            return Err(errors::invalid(
                env,
                &format!("{field}.{name}"),
                format!("must be a non-negative integer, got {shown}"),
            ));
        }
    }
    Ok(from_buckets(buckets))
}

fn canonical(env: &Env, value: Map<String, Value>, field: &str) -> Result<Usage> {
    // Bucket by bucket, so that an error names the bucket that broke the rule.
    let mut total = Usage::default();
    for (k, v) in value {
        let one: Usage =
            serde_json::from_value(Value::Object(Map::from_iter([(k.clone(), v.clone())])))
                .map_err(|_| {
                    errors::invalid(
                        env,
                        &format!("{field}.{k}"),
                        format!("must be a non-negative integer, got {v}"),
                    )
                })?;
        total = total.add(&one);
    }
    Ok(total)
}

fn provider_usage(env: &Env, value: &Value, provider: Option<&str>) -> Result<Usage> {
    adapters::provider_shaped(provider, value).map_err(|e| errors::to_js(env, e))
}
