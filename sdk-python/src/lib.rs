//! python bindings for `agenttally`. The binding layer is thin by rule: it converts types, calls
//! sdk-core and maps errors; defaults, validation and logic all live in sdk-core.

pub use agenttally::VERSION;
