//! The collector's settings and their defaults, in one place. The CLI (`main.rs`) maps flags and
//! environment variables onto `ServerConfig`; tests build it directly.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::TimeDelta;

use crate::store::writer::WriterConfig;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_LISTEN_ADDR: ([u8; 4], u16) = ([127, 0, 0, 1], 8080);
pub const DEFAULT_DATA_DIR: &str = "./agenttally-data";
/// Raw events are kept this many days (whole day partitions are dropped after it).
pub const DEFAULT_RAW_RETENTION_DAYS: u32 = 30;
/// Hourly rollups are kept this many days; daily rollups are kept.
pub const DEFAULT_HOURLY_RETENTION_DAYS: u32 = 90;
/// Events stamped further in the future than this are rejected (sender clock skew).
pub const DEFAULT_MAX_FUTURE_HOURS: i64 = 24;
/// How long a commit group lingers for more requests once none are waiting. Zero: commit as soon
/// as the channel is dry; requests arriving during a commit form the next group.
pub const DEFAULT_COMMIT_INTERVAL: Duration = Duration::ZERO;
pub const DEFAULT_MAX_COMMIT_EVENTS: usize = 5_000;
/// Requests waiting for the writer; beyond it handlers wait `ENQUEUE_TIMEOUT`, then answer 503.
pub const DEFAULT_QUEUE_CAPACITY: usize = 1_024;
pub const ENQUEUE_TIMEOUT: Duration = Duration::from_secs(5);
pub const ACK_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_POOL_SIZE: usize = 8;
/// Writer tasks committing groups concurrently, one connection each: while one waits for its
/// commit (fsync) or a rollup row lock, another inserts, so PostgreSQL can use a second core.
pub const DEFAULT_WRITERS: usize = 2;
/// Days of partitions created ahead of need around today: today-8 .. today+2.
pub const PARTITIONS_BEHIND_DAYS: i64 = 8;
pub const PARTITIONS_AHEAD_DAYS: i64 = 2;
/// How often retention and partition upkeep run.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(3_600);

/// Everything `Server::start` needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub database_url: String,
    pub raw_retention_days: u32,
    pub hourly_retention_days: u32,
    pub max_future: TimeDelta,
    pub commit_interval: Duration,
    pub max_commit_events: usize,
    pub queue_capacity: usize,
    pub pool_size: usize,
    pub writers: usize,
}

impl ServerConfig {
    /// Defaults for everything but the database.
    pub fn new(database_url: impl Into<String>) -> Self {
        ServerConfig {
            listen: SocketAddr::from(DEFAULT_LISTEN_ADDR),
            database_url: database_url.into(),
            raw_retention_days: DEFAULT_RAW_RETENTION_DAYS,
            hourly_retention_days: DEFAULT_HOURLY_RETENTION_DAYS,
            max_future: TimeDelta::hours(DEFAULT_MAX_FUTURE_HOURS),
            commit_interval: DEFAULT_COMMIT_INTERVAL,
            max_commit_events: DEFAULT_MAX_COMMIT_EVENTS,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            pool_size: DEFAULT_POOL_SIZE,
            writers: DEFAULT_WRITERS,
        }
    }

    pub(crate) fn writer(&self) -> WriterConfig {
        WriterConfig {
            commit_interval: self.commit_interval,
            max_commit_events: self.max_commit_events,
            queue_capacity: self.queue_capacity,
            enqueue_timeout: ENQUEUE_TIMEOUT,
            ack_timeout: ACK_TIMEOUT,
            writers: self.writers,
        }
    }
}
