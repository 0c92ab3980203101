//! Node bindings for `agenttally`: the addon `agenttally.<platform>.node`. The binding is thin by
//! rule: it converts types, calls sdk-core and maps errors; defaults, validation and logic live
//! in sdk-core. The JavaScript layer (`index.js`, `index.mjs`) adds the option objects,
//! `client.run(...)`, `AgentTallyError` and the exit hook.

mod client;
mod convert;
mod errors;
mod pricing;
mod track;

use napi_derive::napi;

/// The sdk-core version the addon was built from.
#[napi]
pub const VERSION: &str = agenttally::VERSION;

/// The exit flush budget in milliseconds when `exitTimeout` is not given (sdk-core's default).
#[napi]
pub const EXIT_TIMEOUT_MS: u32 = agenttally::client::defaults::EXIT_TIMEOUT.as_millis() as u32;
