//! Shared helpers for the runnable examples in `examples/examples/`.

/// The README's code blocks, compiled as doc-tests so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
