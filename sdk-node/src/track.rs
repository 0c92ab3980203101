//! `client.track(event)` in one crossing. A napi-rs method call costs more than sdk-core's whole
//! `track()` (unwrapping `this` and guarding borrows, then a type check and two calls per string
//! argument), so `track` is a plain N-API function bound to one client instead, and the event
//! arrives packed:
//!
//! - its strings as one string (`text`), concatenated in slot order: one read for all of them;
//! - per field a tag in a `Float64Array` shared with `index.js` at construction (`slots`),
//!   numbers and canonical usage buckets beside them: no call at all to read them;
//! - what does not fit (metadata, a provider's usage object, a value of an unexpected type) as
//!   arguments, converted by `convert` as any other value is, which also makes their errors.
//!
//! JavaScript only sorts values by type; every rule stays in `convert` and sdk-core. The layout
//! below is mirrored in `index.js` (`S_*` there).

// The N-API calls of this module are made directly (napi-rs has no zero-cost form of a function
// with a data pointer); each `unsafe` block says what it relies on.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::ffi::c_void;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use agenttally::{EventBuilder, EventType, Usage};
use napi::bindgen_prelude::*;
use napi::{sys, Env, JsValue, ValueType};

use crate::client::{drop_off_thread, rule_of, tier};
use crate::convert::{self, Kind};
use crate::errors;

// Tags of the string fields (slots 0..=12, in this order in `text`): 0 absent, n + 1 a string
// of n UTF-16 code units, -1 another type (the value is `odd[slot]`). TIMESTAMP also -2: a
// Date, its time value in TIMESTAMP_MS.
const EVENT_TYPE: usize = 0;
const TENANT_ID: usize = 1;
const CORRELATION_ID: usize = 2;
const USER_ID: usize = 3;
const AGENT_ID: usize = 4;
const WORKFLOW_ID: usize = 5;
const COST_USD: usize = 6;
const PROVIDER: usize = 7;
const MODEL: usize = 8;
const TASK_TYPE: usize = 9;
const ERROR_CODE: usize = 10;
const SERVICE_TIER: usize = 11;
const TIMESTAMP: usize = 12;
const STRINGS: usize = 13;
// DURATION_MS, QUEUE_MS: 0 absent, 1 a number (in *_VALUE), -1 another type.
const DURATION_MS: usize = 13;
const QUEUE_MS: usize = 14;
// SUCCESS: 0 absent, 1 true, 2 false, -1 another type.
const SUCCESS: usize = 15;
// USAGE: 1 canonical buckets in USAGE_BUCKETS.. (USAGE_BUCKETS order); otherwise usage, if
// given, is the `usage` argument.
const USAGE: usize = 16;
const DURATION_VALUE: usize = 17;
const QUEUE_VALUE: usize = 18;
const TIMESTAMP_MS: usize = 19;
const USAGE_BUCKETS: usize = 20;
/// The length of `slots`.
pub const SLOTS: usize = 27;

const DATE: f64 = -2.0;
const ODD: f64 = -1.0;

/// What the function bound to one client holds (its N-API data pointer).
struct Tracker {
    /// `None` only while being dropped.
    client: Option<agenttally::Client>,
    slots: Float64Array,
    /// The UTF-8 bytes of `text`, reused; taken out while in use, so a nested call (a metadata
    /// getter calling `track`) gets its own.
    buf: Cell<Vec<u8>>,
}

impl Drop for Tracker {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            drop_off_thread(c);
        }
    }
}

/// The `track` function of `client`, reading the `slots` it is given (length `SLOTS`).
pub fn function<'env>(
    env: &'env Env,
    client: agenttally::Client,
    slots: Float64Array,
) -> Result<Unknown<'env>> {
    if slots.len() != SLOTS {
        return Err(errors::internal(
            env,
            format!("track slots: expected {SLOTS}, got {}", slots.len()),
        ));
    }
    let data = Box::into_raw(Box::new(Tracker {
        client: Some(client),
        slots,
        buf: Cell::new(Vec::with_capacity(256)),
    }));
    let mut f = ptr::null_mut();
    let name = "track";
    // SAFETY: `env` is the live environment of this call; `data` is a valid `Tracker` that the
    // finalizer added below frees when the function is collected (or the environment ends),
    // and nothing else frees it. On failure the box is reclaimed here and never handed out.
    unsafe {
        let mut status = sys::napi_create_function(
            env.raw(),
            name.as_ptr().cast(),
            name.len() as isize,
            Some(call),
            data.cast(),
            &mut f,
        );
        if status == sys::Status::napi_ok {
            status = sys::napi_add_finalizer(
                env.raw(),
                f,
                data.cast(),
                Some(finalize),
                ptr::null_mut(),
                ptr::null_mut(),
            );
        }
        if status != sys::Status::napi_ok {
            drop(Box::from_raw(data));
            return Err(errors::internal(
                env,
                format!("creating the track function: status {status}"),
            ));
        }
        Unknown::from_napi_value(env.raw(), f)
    }
}

unsafe extern "C" fn finalize(_env: sys::napi_env, data: *mut c_void, _hint: *mut c_void) {
    // SAFETY: `data` is the box made in `function`, finalized once.
    drop(unsafe { Box::from_raw(data.cast::<Tracker>()) });
}

/// `track(text, usage, metadata, odd, eventId?)`: returns the event's id or throws. `eventId`
/// (a UUID text) replaces the generated id: an event sent again with the same id is stored once.
unsafe extern "C" fn call(
    raw_env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let mut argc = 5;
    let mut argv = [ptr::null_mut(); 5];
    let mut data = ptr::null_mut();
    // SAFETY: N-API calls this with a live env and callback info; `argv` has room for `argc`.
    let status = unsafe {
        sys::napi_get_cb_info(
            raw_env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            ptr::null_mut(),
            &mut data,
        )
    };
    let env = Env::from_raw(raw_env);
    if status != sys::Status::napi_ok || data.is_null() {
        let error = errors::internal(
            &env,
            format!("track: reading the arguments: status {status}"),
        );
        // SAFETY: `raw_env` is live; the exception stays pending for the caller.
        unsafe { napi::JsError::from(error).throw_into(raw_env) };
        return ptr::null_mut();
    }
    // SAFETY: `data` is the `Tracker` of this function, alive while the function is.
    let tracker = unsafe { &*data.cast::<Tracker>() };
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the arguments are values of this call's scope.
        // (N-API fills the arguments not passed with `undefined`.)
        let [text, usage, metadata, odd, event_id] =
            argv.map(|v| unsafe { Unknown::from_napi_value(raw_env, v) });
        track(&env, tracker, text?, usage?, metadata?, odd?, event_id?)
    }));
    let error = match outcome {
        Ok(Ok(id)) => return id,
        Ok(Err(e)) => e,
        Err(_) => errors::internal(&env, "track panicked"),
    };
    // SAFETY: `raw_env` is live; throwing leaves the exception pending for the caller.
    unsafe { napi::JsError::from(error).throw_into(raw_env) };
    ptr::null_mut()
}

/// One event's string fields, cut out of `text`.
type Strings = [Option<String>; STRINGS];

fn track(
    env: &Env,
    t: &Tracker,
    text: Unknown<'_>,
    usage: Unknown<'_>,
    metadata: Unknown<'_>,
    odd: Unknown<'_>,
    event_id: Unknown<'_>,
) -> Result<sys::napi_value> {
    // Everything JavaScript packed is read before any conversion that can run JavaScript (a
    // metadata getter may call `track` again, which reuses the slots).
    let mut s = [0.0; SLOTS];
    s.copy_from_slice(&t.slots);
    let mut strings = strings(env, t, &text, &s)?;
    let odd_value = |slot: usize| -> Result<Unknown<'_>> {
        if odd.get_type()? != ValueType::Object {
            return Err(errors::internal(
                env,
                "track: a value of another type went missing",
            ));
        }
        odd.coerce_to_object()?.get_element(slot as u32)
    };
    let mut string = |slot: usize, field: &str| -> Result<Option<String>> {
        if s[slot] == ODD {
            convert::opt_string(env, &odd_value(slot)?, Kind::Event, field)
        } else {
            Ok(strings[slot].take())
        }
    };
    let required = |v: Option<String>, field: &str| {
        v.ok_or_else(|| errors::invalid(env, field, "is required"))
    };

    // The order of the checks is the order of the first error an event with several reports.
    let event_type: EventType =
        required(string(EVENT_TYPE, "event.event_type")?, "event.event_type")?
            .parse()
            .map_err(|e| errors::invalid(env, "event.event_type", rule_of(e)))?;
    let tenant_id = required(string(TENANT_ID, "event.tenant_id")?, "event.tenant_id")?;
    let success = match s[SUCCESS] {
        ODD => convert::opt_bool(env, &odd_value(SUCCESS)?, Kind::Event, "event.success")?,
        1.0 => Some(true),
        2.0 => Some(false),
        _ => None,
    };
    let correlation_id = string(CORRELATION_ID, "event.correlation_id")?;
    let user_id = string(USER_ID, "event.user_id")?;
    let agent_id = string(AGENT_ID, "event.agent_id")?;
    let workflow_id = string(WORKFLOW_ID, "event.workflow_id")?;
    let cost_usd = match s[COST_USD] {
        ODD => convert::opt_decimal(env, &odd_value(COST_USD)?, "event.cost_usd")?,
        _ => match string(COST_USD, "event.cost_usd")? {
            Some(v) => Some(convert::decimal(env, &v, "event.cost_usd")?),
            None => None,
        },
    };
    let provider = string(PROVIDER, "event.provider")?;
    let usage = event_usage(env, &s, &usage, provider.as_deref())?;
    let model = string(MODEL, "event.model")?;
    let task_type = string(TASK_TYPE, "event.task_type")?;
    let error_code = string(ERROR_CODE, "event.error_code")?;
    let timestamp = match s[TIMESTAMP] {
        ODD => convert::opt_timestamp(env, &odd_value(TIMESTAMP)?, "event.timestamp")?,
        DATE => Some(convert::timestamp_millis(
            env,
            s[TIMESTAMP_MS],
            "event.timestamp",
        )?),
        _ => match string(TIMESTAMP, "event.timestamp")? {
            Some(v) => Some(convert::timestamp_text(env, &v, "event.timestamp")?),
            None => None,
        },
    };
    let service_tier = match string(SERVICE_TIER, "event.service_tier")? {
        Some(v) => Some(tier(env, &v, "event.service_tier")?),
        None => None,
    };
    // Set as given (negative included) so that sdk-core's validation names the field.
    let int = |slot: usize, value: usize, field: &str| -> Result<Option<i64>> {
        match s[slot] {
            ODD => convert::opt_int(env, &odd_value(slot)?, Kind::Event, field),
            1.0 => convert::int(env, s[value], Kind::Event, field).map(Some),
            _ => Ok(None),
        }
    };
    let duration_ms = int(DURATION_MS, DURATION_VALUE, "event.duration_ms")?;
    let queue_ms = int(QUEUE_MS, QUEUE_VALUE, "event.queue_ms")?;
    let metadata = match metadata.get_type()? {
        ValueType::Undefined | ValueType::Null => None,
        _ => Some(convert::object(env, &metadata, "event.metadata")?),
    };
    let event_id = match convert::opt_string(env, &event_id, Kind::Event, "event.event_id")? {
        Some(v) => Some(
            uuid::Uuid::parse_str(&v)
                .map_err(|_| errors::invalid(env, "event.event_id", "must be a UUID"))?,
        ),
        None => None,
    };

    // The builder for what it derives (a given cost is `reported`; timestamps are truncated to
    // microseconds), plain fields set in place: the event is moved once, not once per field.
    let mut b = EventBuilder::new(event_type, tenant_id);
    if let Some(v) = cost_usd {
        b = b.cost_usd(v);
    }
    if let Some(v) = timestamp {
        b = b.timestamp(v);
    }
    let mut event = b.build_unchecked();
    event.success = success.unwrap_or(true);
    if let Some(v) = correlation_id {
        event.correlation_id = v;
    }
    event.user_id = user_id;
    event.agent_id = agent_id;
    event.workflow_id = workflow_id;
    event.provider = provider;
    event.usage = usage;
    event.model = model;
    event.task_type = task_type;
    event.error_code = error_code;
    event.service_tier = service_tier;
    event.duration_ms = duration_ms;
    event.queue_ms = queue_ms;
    if let Some(m) = metadata {
        event.metadata = m;
    }
    if let Some(v) = event_id {
        event.id = v;
    }
    let id = event.id;
    t.client
        .as_ref()
        .ok_or_else(|| {
            errors::to_js(
                env,
                agenttally::Error::Closed("the client is shut down".into()),
            )
        })?
        .track(event)
        .map_err(|e| errors::to_js(env, e))?;
    let mut text = [0u8; 36];
    let id = id.hyphenated().encode_lower(&mut text);
    Ok(env.create_string_latin1(id.as_bytes())?.raw())
}

/// Usage: canonical buckets from the slots, or the `usage` argument converted as any usage is.
fn event_usage(
    env: &Env,
    s: &[f64; SLOTS],
    usage: &Unknown<'_>,
    provider: Option<&str>,
) -> Result<Option<Usage>> {
    if !matches!(usage.get_type()?, ValueType::Undefined | ValueType::Null) {
        return convert::usage(env, usage, provider, "event.usage").map(Some);
    }
    if s[USAGE] != 1.0 {
        return Ok(None);
    }
    let mut numbers = [0.0; 7];
    numbers.copy_from_slice(&s[USAGE_BUCKETS..USAGE_BUCKETS + 7]);
    convert::usage_numbers(env, numbers, "event.usage").map(Some)
}

/// The string fields, cut out of `text` by their lengths in UTF-16 code units (JavaScript's
/// `length`): the bytes are read once, and no separator can collide with a field's content.
fn strings(env: &Env, t: &Tracker, text: &Unknown<'_>, s: &[f64; SLOTS]) -> Result<Strings> {
    let mut lens = [None; STRINGS];
    let mut units = 0usize;
    for (len, &tag) in lens.iter_mut().zip(&s[..STRINGS]) {
        if tag >= 1.0 && tag.fract() == 0.0 && tag <= f64::from(u32::MAX) {
            let n = tag as usize - 1;
            units += n;
            *len = Some(n);
        }
    }
    if units == 0 {
        return Ok(Default::default());
    }
    if text.get_type()? != ValueType::String {
        return Err(errors::internal(
            env,
            "track: the event's text is not a string",
        ));
    }
    // A UTF-16 code unit is at most 3 bytes of UTF-8 (a surrogate pair, 2 units, is 4).
    let mut buf = t.buf.take();
    buf.resize(units * 3 + 1, 0);
    let mut written = 0;
    // SAFETY: `buf` has `buf.len()` writable bytes; N-API writes at most that many, NUL
    // included, and reports how many it wrote before the NUL.
    let status = unsafe {
        sys::napi_get_value_string_utf8(
            env.raw(),
            text.raw(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut written,
        )
    };
    let cut = if status == sys::Status::napi_ok {
        buf.get(..written)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(|text| cut(text, &lens))
    } else {
        None
    };
    t.buf.set(buf);
    cut.ok_or_else(|| {
        errors::internal(
            env,
            "track: the event's strings did not match their lengths",
        )
    })
}

/// `text` cut into the strings of `lens` (UTF-16 code units). V8 writes a lone surrogate as
/// U+FFFD (one unit, as it was); a surrogate pair that only concatenation made (a lone high
/// surrogate ending one field, a lone low one opening the next) is written back as the two
/// U+FFFD each field alone would have been.
fn cut(text: &str, lens: &[Option<usize>; STRINGS]) -> Option<Strings> {
    let mut out: Strings = Default::default();
    if text.len() == lens.iter().flatten().sum::<usize>() {
        // As many bytes as units: all ASCII, one byte per unit.
        let mut at = 0;
        for (slot, len) in out.iter_mut().zip(lens) {
            if let Some(n) = *len {
                *slot = Some(text.get(at..at + n)?.to_owned());
                at += n;
            }
        }
        return Some(out);
    }
    let mut chars = text.chars();
    let mut split_pair = false;
    for (slot, len) in out.iter_mut().zip(lens) {
        let Some(n) = *len else { continue };
        let mut field = String::with_capacity(n);
        let mut left = n;
        if split_pair && left > 0 {
            field.push(char::REPLACEMENT_CHARACTER);
            left -= 1;
            split_pair = false;
        }
        while left > 0 {
            let c = chars.next()?;
            if c.len_utf16() <= left {
                field.push(c);
                left -= c.len_utf16();
            } else {
                field.push(char::REPLACEMENT_CHARACTER);
                left = 0;
                split_pair = true;
            }
        }
        *slot = Some(field);
    }
    (chars.next().is_none() && !split_pair).then_some(out)
}
