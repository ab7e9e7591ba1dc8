//! vigil's report store: sessions, DNS transactions and blocks in an embedded SQLite database,
//! written off the packet path by one batching writer thread, and the report queries over it.
//!
//! - [`SqliteSink`] (writer.rs): a bounded queue that never blocks its producers, one writer
//!   thread, one transaction per batch, WAL. `committed` counts what is durable against a process
//!   crash (see the writer's docs for the loss window).
//! - [`schema`]: tables, indexes, hourly/daily rollups and ordered migrations (`user_version`).
//! - [`packed`]: closed rollup buckets packed into blobs, so month-long top reports stay fast.
//! - [`retention`]: age and disk-share caps, applied by the writer hourly and at open.
//! - [`query`]: the report queries on a read-only connection (the CLI and the web API).
//! - [`format`]: table, CSV (RFC 4180) and JSON lines output.

pub mod format;
pub mod packed;
pub mod query;
pub mod retention;
mod rows;
pub mod schema;
pub mod time;
mod writer;

pub use query::{BlockRuleRow, Cidr, Dim, DnsFilter, Reader, SessionFilter, TopRow};
pub use retention::{Retention, RetentionReport};
pub use rows::{BlockRow, DnsRow, Record, SessionRow};
pub use time::{parse_since, parse_time};
pub use writer::{SinkOptions, SinkStats, SqliteSink, Synchronous};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("report database has schema version {found}, newer than this vigil supports ({supported})")]
    TooNew { found: u32, supported: u32 },
    #[error("report database has schema version {found}, expected {expected}: let the writer (vigil run) migrate it")]
    TooOld { found: u32, expected: u32 },
    #[error("bad value in the report database: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Parse(String),
}
