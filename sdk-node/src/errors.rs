//! sdk-core's `Error` as a JavaScript error with a stable `code` and the `field` it is about.
//! The JavaScript layer gives these errors the `AgentTallyError` prototype; building the object
//! here keeps the message, code and field exactly as sdk-core made them.

use agenttally::{Error, ErrorKind};
use napi::bindgen_prelude::*;
use napi::JsValue;

/// The stable `code` of an error kind (documented in docs/node.md).
pub fn code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid | ErrorKind::TooLarge | ErrorKind::Decode => "VALIDATION",
        ErrorKind::Config => "CONFIG",
        ErrorKind::Pricing => "PRICING",
        ErrorKind::QueueFull => "QUEUE_FULL",
        ErrorKind::Closed => "CLOSED",
        ErrorKind::Io => "IO",
        ErrorKind::Timeout => "TIMEOUT",
        _ => "INTERNAL",
    }
}

/// The JavaScript error for `e`: `message` as sdk-core wrote it, `code`, and `field` (or null).
pub fn to_js(env: &Env, e: Error) -> napi::Error {
    let made = (|| -> Result<napi::Error> {
        let error = napi::Error::new(code(e.kind()), e.to_string());
        let mut obj = napi::JsError::from(error)
            .into_unknown(*env)
            .coerce_to_object()?;
        obj.set_named_property("field", e.field())?;
        Ok(napi::Error::from(obj.to_unknown()))
    })();
    // Only a tearing-down environment fails to build the object; the plain error still says what.
    made.unwrap_or_else(|_| napi::Error::new(Status::GenericFailure, e.to_string()))
}

/// A `VALIDATION` error about `field` (a path as sdk-core names it, e.g. `event.usage`).
pub fn invalid(env: &Env, field: &str, rule: impl std::fmt::Display) -> napi::Error {
    to_js(env, Error::invalid(field, rule.to_string()))
}

/// A `CONFIG` error about `setting`.
pub fn config(env: &Env, setting: &str, rule: impl std::fmt::Display) -> napi::Error {
    to_js(env, Error::config(setting, rule.to_string()))
}

/// An `INTERNAL` error: the binding broke its own contract (a bug), not the caller.
pub fn internal(env: &Env, message: impl std::fmt::Display) -> napi::Error {
    let made = (|| -> Result<napi::Error> {
        let error = napi::Error::new("INTERNAL", format!("internal: {message}"));
        let mut obj = napi::JsError::from(error)
            .into_unknown(*env)
            .coerce_to_object()?;
        obj.set_named_property("field", Null)?;
        Ok(napi::Error::from(obj.to_unknown()))
    })();
    made.unwrap_or_else(|_| napi::Error::new(Status::GenericFailure, message.to_string()))
}
