//! Python bindings for `agenttally`: the extension module `agenttally._native`. The binding is
//! thin by rule: it converts types, calls sdk-core and maps errors; defaults, validation and
//! logic live in sdk-core. The pure-Python layer (`python/agenttally`) adds context managers,
//! the decorator, async wrappers and the fork and exit hooks.

mod client;
mod convert;
mod errors;
mod pricing;

use pyo3::prelude::*;

/// `gil_used`: the fork hook relies on the GIL serialising `os.fork()` with the client's lock.
#[pymodule(gil_used = true)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("VERSION", agenttally::VERSION)?;
    m.add_class::<client::Client>()?;
    m.add_class::<client::Run>()?;
    m.add_class::<client::Stats>()?;
    m.add_class::<client::Dropped>()?;
    m.add_class::<pricing::PriceBook>()?;
    m.add_class::<pricing::Cost>()?;
    m.add_class::<pricing::SavingsSummary>()?;
    m.add_class::<pricing::SavingsReport>()?;
    m.add_function(wrap_pyfunction!(client::after_fork_in_child, m)?)?;
    Ok(())
}
