//! The delivery client: `track()` validates and enqueues without blocking; a background worker
//! batches, compresses and sends to the collector with retries, spooling to disk when asked.

/// Placeholder until the client lands.
#[derive(Debug)]
pub struct Client;
/// Placeholder until the client lands.
#[derive(Debug)]
pub struct ClientBuilder;
/// Placeholder until the client lands.
#[derive(Debug)]
pub enum OverflowPolicy {}
/// Placeholder until the client lands.
#[derive(Debug)]
pub struct Stats;
