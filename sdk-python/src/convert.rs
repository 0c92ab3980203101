//! Python values → sdk-core types: durations (seconds or `timedelta`), exact decimals, JSON
//! metadata, timestamps, and usage (canonical buckets or an OpenAI/Anthropic/Gemini usage object,
//! converted by sdk-core's adapters). Errors name the field they are about.

use std::str::FromStr;
use std::time::Duration;

use agenttally::event::USAGE_BUCKETS;
use agenttally::pricing::adapters;
use agenttally::Usage;
use chrono::{DateTime, FixedOffset, Utc};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyDelta, PyDeltaAccess, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use rust_decimal::Decimal;
use serde_json::{Map, Number, Value};

use crate::errors;

/// A duration setting or timeout: seconds (int or float) or a `datetime.timedelta`.
/// `saturate` turns a value too large for a `Duration` (or `inf`) into `Duration::MAX`, for
/// timeouts, where "wait as long as it takes" is meaningful; settings report it instead.
pub fn duration(obj: &Bound<'_, PyAny>, field: &str, saturate: bool) -> PyResult<Duration> {
    let secs: f64 = if let Ok(delta) = obj.cast::<PyDelta>() {
        let whole = i64::from(delta.get_days()) * 86_400 + i64::from(delta.get_seconds());
        if whole >= 0 {
            let d = Duration::from_secs(whole.unsigned_abs())
                + Duration::from_micros(u64::from(delta.get_microseconds().unsigned_abs()));
            return Ok(d);
        }
        -1.0
    } else if obj.is_instance_of::<PyBool>() {
        return Err(errors::config(
            field,
            "must be seconds (int or float) or a timedelta, got bool",
        ));
    } else if obj.is_instance_of::<PyInt>() || obj.is_instance_of::<PyFloat>() {
        obj.extract::<f64>()?
    } else {
        return Err(errors::config(
            field,
            format!(
                "must be seconds (int or float) or a timedelta, got {}",
                type_name(obj)
            ),
        ));
    };
    if secs.is_nan() || secs < 0.0 {
        return Err(errors::config(
            field,
            format!("must be >= 0 seconds, got {secs}"),
        ));
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(d) => Ok(d),
        Err(_) if saturate => Ok(Duration::MAX),
        Err(_) => Err(errors::config(
            field,
            format!("is too large: {secs} seconds"),
        )),
    }
}

/// Money: a `decimal.Decimal`, an `int` or a decimal string, converted exactly. A float is
/// refused: it has already lost the exact value.
pub fn decimal(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<Decimal> {
    if obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyBool>() {
        return Err(errors::invalid(
            field,
            format!(
                "must be a decimal.Decimal, int or decimal string (a float is not exact), got {}",
                type_name(obj)
            ),
        ));
    }
    let text = obj.str()?.to_string();
    Decimal::from_str_exact(text.trim())
        .or_else(|_| Decimal::from_scientific(text.trim()))
        .map_err(|e| {
            errors::invalid(
                field,
                format!("must be a decimal number, got `{text}` ({e})"),
            )
        })
}

/// A timezone-aware `datetime`, in UTC.
pub fn timestamp(obj: &Bound<'_, PyAny>, field: &str) -> PyResult<DateTime<Utc>> {
    match obj.extract::<DateTime<FixedOffset>>() {
        Ok(t) => Ok(t.with_timezone(&Utc)),
        Err(_) => Err(errors::invalid(
            field,
            format!("must be a timezone-aware datetime, got {}", describe(obj)),
        )),
    }
}

/// A JSON value from plain Python data: None, bool, int, float, str, Decimal, list/tuple, and
/// dicts with str keys. `path` names the position in errors (`event.metadata.key[2]`).
pub fn json(obj: &Bound<'_, PyAny>, path: &str) -> PyResult<Value> {
    if obj.is_none() {
        return Ok(Value::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        return Ok(Value::Bool(b.is_true()));
    }
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(Value::String(s.to_cow()?.into_owned()));
    }
    if obj.is_instance_of::<PyInt>() {
        if let Ok(n) = obj.extract::<i64>() {
            return Ok(Value::Number(n.into()));
        }
        if let Ok(n) = obj.extract::<u64>() {
            return Ok(Value::Number(n.into()));
        }
        return number_from_text(&obj.str()?.to_string(), path);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        let v = f.value();
        return Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| errors::invalid(path, format!("must be a finite number, got {v}")));
    }
    if let Ok(d) = obj.cast::<PyDict>() {
        return Ok(Value::Object(object(d, path)?));
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return l
            .iter()
            .enumerate()
            .map(|(i, item)| json(&item, &format!("{path}[{i}]")))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return t
            .iter()
            .enumerate()
            .map(|(i, item)| json(&item, &format!("{path}[{i}]")))
            .collect::<PyResult<Vec<_>>>()
            .map(Value::Array);
    }
    if type_name(obj) == "Decimal" {
        return number_from_text(&obj.str()?.to_string(), path);
    }
    Err(errors::invalid(
        path,
        format!(
            "must be JSON data (None, bool, int, float, str, Decimal, list, tuple or dict), got {}",
            type_name(obj)
        ),
    ))
}

/// A JSON object from a dict with str keys.
pub fn object(d: &Bound<'_, PyDict>, path: &str) -> PyResult<Map<String, Value>> {
    let mut m = Map::new();
    for (k, v) in d.iter() {
        let Ok(key) = k.cast::<PyString>() else {
            return Err(errors::invalid(
                path,
                format!("keys must be str, got {}", type_name(&k)),
            ));
        };
        let key = key.to_cow()?.into_owned();
        let value = json(&v, &format!("{path}.{key}"))?;
        m.insert(key, value);
    }
    Ok(m)
}

fn number_from_text(text: &str, path: &str) -> PyResult<Value> {
    // arbitrary_precision keeps the decimal text exactly.
    Number::from_str(text)
        .map(Value::Number)
        .map_err(|_| errors::invalid(path, format!("must be a finite number, got `{text}`")))
}

/// Usage from a dict of canonical buckets, or a provider's usage (an SDK response's `usage`
/// object, or its dict) converted by sdk-core's adapters. The adapter is picked by `provider`
/// when it names one, else by the keys the usage has.
pub fn usage(obj: &Bound<'_, PyAny>, provider: Option<&str>) -> PyResult<Usage> {
    const FIELD: &str = "event.usage";
    if let Ok(d) = obj.cast::<PyDict>() {
        if let Some(u) = canonical_fast(d)? {
            return Ok(u);
        }
        let value = object(d, FIELD)?;
        if value.keys().all(|k| USAGE_BUCKETS.contains(&k.as_str())) {
            return canonical(value);
        }
        return provider_usage(&Value::Object(value), provider);
    }
    // Pydantic models (OpenAI, Anthropic and google-genai SDKs), then other common shapes.
    let dumped = if obj.hasattr("model_dump")? {
        obj.call_method0("model_dump")?
    } else if obj.hasattr("to_dict")? {
        obj.call_method0("to_dict")?
    } else if obj.hasattr("__dict__")? {
        obj.getattr("__dict__")?
    } else {
        return Err(errors::invalid(
            FIELD,
            format!(
                "must be a dict of token counts or a provider SDK usage object, got {}",
                type_name(obj)
            ),
        ));
    };
    let Ok(d) = dumped.cast::<PyDict>() else {
        return Err(errors::invalid(
            FIELD,
            format!("{} did not convert to a dict", type_name(obj)),
        ));
    };
    provider_usage(&Value::Object(object(d, FIELD)?), provider)
}

/// The hot path of `track(usage={...})`: canonical bucket names with plain int values, read
/// without building JSON. Anything else (`None` here) takes the general path, which also
/// produces the error messages.
fn canonical_fast(d: &Bound<'_, PyDict>) -> PyResult<Option<Usage>> {
    let mut buckets = [0u64; 7];
    for (k, v) in d.iter() {
        let Ok(k) = k.cast::<PyString>() else {
            return Ok(None);
        };
        let k = k.to_cow()?;
        let Some(i) = USAGE_BUCKETS.iter().position(|b| *b == k) else {
            return Ok(None);
        };
        if v.is_instance_of::<PyBool>() || !v.is_instance_of::<PyInt>() {
            return Ok(None);
        }
        match (v.extract::<u64>(), buckets.get_mut(i)) {
            (Ok(n), Some(slot)) => *slot = n,
            _ => return Ok(None),
        }
    }
    // USAGE_BUCKETS lists the buckets in wire order, the order of `Usage`'s fields.
    let [input, cached, write, write_1h, output, reasoning, requests] = buckets;
    Ok(Some(Usage {
        input_tokens: input,
        cached_input_tokens: cached,
        cache_write_tokens: write,
        cache_write_1h_tokens: write_1h,
        output_tokens: output,
        reasoning_tokens: reasoning,
        requests,
    }))
}

fn canonical(value: Map<String, Value>) -> PyResult<Usage> {
    // Decode bucket by bucket so that an error names the bucket that broke the rule.
    let mut total = Usage::default();
    for (k, v) in value {
        let one: Usage =
            serde_json::from_value(Value::Object(Map::from_iter([(k.clone(), v.clone())])))
                .map_err(|_| {
                    errors::invalid(
                        &format!("event.usage.{k}"),
                        format!("must be a non-negative integer, got {v}"),
                    )
                })?;
        total = total.add(&one);
    }
    Ok(total)
}

fn provider_usage(value: &Value, provider: Option<&str>) -> PyResult<Usage> {
    adapters::provider_shaped(provider, value).map_err(errors::to_py)
}

/// A short description for error messages: the type and, for small values, the repr.
pub fn describe(obj: &Bound<'_, PyAny>) -> String {
    match obj.repr() {
        Ok(r) if r.to_string().len() <= 60 => format!("{} {}", type_name(obj), r),
        _ => type_name(obj),
    }
}

/// The Python type name of `obj`.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "object".into())
}

/// An explicit event id: a `uuid.UUID` or its string form (not the nil UUID, which means
/// "assign one").
pub fn event_id(obj: &Bound<'_, PyAny>) -> PyResult<uuid::Uuid> {
    const FIELD: &str = "event.id";
    let text = if let Ok(s) = obj.cast::<PyString>() {
        s.to_cow()?.into_owned()
    } else if type_name(obj) == "UUID" {
        obj.str()?.to_cow()?.into_owned()
    } else {
        return Err(errors::invalid(
            FIELD,
            format!("must be a UUID (uuid.UUID or str), got {}", type_name(obj)),
        ));
    };
    match uuid::Uuid::parse_str(&text) {
        Ok(id) if !id.is_nil() => Ok(id),
        Ok(_) => Err(errors::invalid(FIELD, "must not be the nil UUID")),
        Err(e) => Err(errors::invalid(
            FIELD,
            format!("must be a UUID, got `{text}` ({e})"),
        )),
    }
}
