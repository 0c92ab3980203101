//! The run helper: one agent run's `agent.started` → provider calls → outcome, sharing a
//! correlation id, with duration from a monotonic clock and the summed cost of its calls.

/// Placeholder until the run helper lands.
#[derive(Debug)]
pub struct Run;
