//! sdk-core's `Error` mapped onto the Python exception classes of `agenttally._errors` (defined
//! in Python so that `ValidationError` can also be a `ValueError` and `TimeoutError` the builtin
//! one). Every exception carries `kind` and `field` attributes beside its message.

use agenttally::{Error, ErrorKind};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn class_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid | ErrorKind::TooLarge | ErrorKind::Decode => "ValidationError",
        ErrorKind::Config => "ConfigError",
        ErrorKind::Pricing => "PricingError",
        ErrorKind::QueueFull => "QueueFullError",
        ErrorKind::Closed => "ClosedError",
        ErrorKind::Io => "DeliveryError",
        ErrorKind::Timeout => "TimeoutError",
        _ => "AgentTallyError",
    }
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Invalid => "invalid",
        ErrorKind::TooLarge => "too_large",
        ErrorKind::Decode => "decode",
        ErrorKind::Config => "config",
        ErrorKind::Pricing => "pricing",
        ErrorKind::QueueFull => "queue_full",
        ErrorKind::Closed => "closed",
        ErrorKind::Io => "io",
        ErrorKind::Timeout => "timeout",
        _ => "other",
    }
}

/// The Python exception for `e`.
pub fn to_py(e: Error) -> PyErr {
    Python::attach(|py| build(py, e.kind(), e.field(), &e.to_string()))
}

/// A `ValidationError` about `field` (a path as sdk-core names it, e.g. `event.usage`).
pub fn invalid(field: &str, rule: impl std::fmt::Display) -> PyErr {
    to_py(Error::invalid(field, rule.to_string()))
}

/// A `ConfigError` about `setting`.
pub fn config(setting: &str, rule: impl std::fmt::Display) -> PyErr {
    to_py(Error::config(setting, rule.to_string()))
}

fn build(py: Python<'_>, kind: ErrorKind, field: Option<&str>, message: &str) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let module = ERRORS.get_or_try_init(py, || {
            PyModule::import(py, "agenttally._errors").map(Bound::unbind)
        })?;
        let cls = module.bind(py).getattr(class_name(kind))?;
        let exc = cls.call1((message,))?;
        exc.setattr("kind", kind_name(kind))?;
        exc.setattr("field", field)?;
        Ok(PyErr::from_value(exc))
    })();
    // Only a broken installation (no agenttally._errors) gets here; say what failed.
    made.unwrap_or_else(|import_error| import_error)
}
