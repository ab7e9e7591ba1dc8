//! ClickHouse sink: batched inserts over the HTTP interface, through an on-disk spool, exactly once.
//!
//! # Tables
//! Created on first use in `database` (default "vigil"): `sessions`, `dns`, `blocks`, each a
//! `MergeTree() PARTITION BY toYYYYMMDD(<time>) ORDER BY (gateway_id, <time>, ...)`. Every row has
//! `gateway_id`, `batch_id` and `batch_row`. Times are `DateTime` (seconds, for partitioning and
//! the index) plus a `UInt64` `*_us` column with the full microseconds since the epoch. The DDL is
//! the subset ClickHouse 18.16 (Debian's package) understands as well as current releases: no
//! `DateTime64`, no `LowCardinality`, no `IPv6` type (addresses are `String`). Interim session
//! updates are rows with the same `id` and `interim = 1`: take the latest per id with
//! `argMax(col, last_seen_us)`.
//!
//! Columns added since a table was first released ([`Table::added_columns`]: the sessions'
//! application-layer details) are at the end of the DDL. A table an older vigil created lacks
//! them: before the first insert, the sink reads the table's columns from `system.columns` and
//! adds the missing ones with `ALTER TABLE ... ADD COLUMN` (18.16 has no `ADD COLUMN IF NOT
//! EXISTS`). Rows spooled by an older vigil omit them and get the defaults (NULL, 0, []).
//!
//! # Data path
//! [`ClickHouseHandle::try_send`] queues a record on a bounded channel (never blocks; a full
//! queue is a counted drop). A collector thread groups records per table into batches of up to
//! `batch_max` rows or `flush_interval` age, and **spools** each batch before anything is sent:
//! `spool_dir/<seq>-<table>.jsonl` (a header line, then one JSONEachRow row per line), written to
//! a temporary name, fsync'd, renamed, directory fsync'd. A sender thread delivers spool files
//! in sequence order with `POST /?query=INSERT INTO db.table FORMAT JSONEachRow&query_id=<batch_id>`
//! (credentials in the `X-ClickHouse-User` / `X-ClickHouse-Key` headers, never in the URL or the
//! logs) and deletes a file only after HTTP 200. While ClickHouse is unreachable or failing, it
//! retries the oldest file with exponential backoff (100 ms doubling to 30 s, jittered to 50–100 %
//! of the step) while new batches keep being spooled; they go out in order when it is back.
//! Files left by a previous run are replayed at start.
//!
//! # Guarantees
//! - **At least once, for every spooled row**: a batch is on disk (fsync'd) before it is sent and
//!   deleted only after ClickHouse acknowledged it. It survives ClickHouse restarts, network
//!   outages, and vigil's own restart or crash.
//! - **Exactly once** across ambiguous failures (the request may have reached ClickHouse but no
//!   answer came back, or an error came back): the file is marked ambiguous (so are all files found
//!   at start), and before re-sending it the sender (1) waits while a query with
//!   `query_id = batch_id` still runs on the server (the insert itself; ClickHouse also refuses a
//!   second query with a running id) and (2) counts the batch's rows with
//!   `WHERE gateway_id = .. AND <time> BETWEEN .. AND batch_id = ..` (served by the primary key):
//!   all there means delivered; none means re-send; some (an insert split into parts, not
//!   expected since a batch is far below `max_insert_block_size`) means re-send only the missing
//!   `batch_row`s. This relies on a MergeTree insert of one block becoming visible atomically (it
//!   is one part), and on the batch's rows not being deleted in between.
//! - **Not covered**, each counted in [`SinkStats`] and logged: records refused by a full queue
//!   (`dropped_full`); records still in memory (at most `flush_interval` of them) when vigil is
//!   killed; a batch that cannot be written to the spool (`spool_write_errors`, its rows in
//!   `rows_lost`); spool files dropped, oldest first, when the spool exceeds `spool_max_bytes`
//!   (`spool_evicted_files/rows`: a long outage keeps the newest data); a batch ClickHouse rejects
//!   as malformed (HTTP 400) three times in a row, moved to `spool_dir/rejected/` for a human
//!   (`rejected_batches/rows`) so that it does not block the queue.
//!
//! [`ClickHouseHandle::close`] stops intake, spools every queued record, then keeps delivering
//! for at most `close_timeout`; what is not delivered by then stays in the spool for the next run.

use crate::http::{self, HttpError, Url};
use crate::record::{rcode_name, rrtype_name, BlockRecord, DnsRecord, FlowRecord, Record};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use vigil_engine::Timestamp;

/// Settings of a [`ClickHouseSink`].
#[derive(Clone)]
pub struct ClickHouseConfig {
    /// ClickHouse's HTTP interface, `http://host:8123` (plain HTTP).
    pub url: String,
    /// Database of the tables; letters, digits and `_`.
    pub database: String,
    /// ClickHouse user; empty for the server's default user.
    pub user: String,
    /// Never logged (the Debug output hides it).
    pub password: String,
    /// This gateway's name, on every row.
    pub gateway_id: String,
    /// Rows per batch at most.
    pub batch_max: usize,
    /// A batch is sealed (spooled) when its first row is this old.
    pub flush_interval: Duration,
    pub spool_dir: PathBuf,
    /// Beyond it, the oldest spool files are dropped (counted, logged).
    pub spool_max_bytes: u64,
    /// Records queued between `try_send` and the collector.
    pub queue_capacity: usize,
    /// Connect timeout of a request.
    pub connect_timeout: Duration,
    /// Read/write timeout of a request.
    pub timeout: Duration,
    /// How long `close` keeps delivering the spool.
    pub close_timeout: Duration,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        ClickHouseConfig {
            url: "http://127.0.0.1:8123".into(),
            database: "vigil".into(),
            user: String::new(),
            password: String::new(),
            gateway_id: String::new(),
            batch_max: 5000,
            flush_interval: Duration::from_secs(1),
            spool_dir: PathBuf::from("/var/lib/vigil/spool/clickhouse"),
            spool_max_bytes: 1 << 30,
            queue_capacity: 65_536,
            connect_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(30),
            close_timeout: Duration::from_secs(5),
        }
    }
}

impl std::fmt::Debug for ClickHouseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClickHouseConfig")
            .field("url", &self.url)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &if self.password.is_empty() { "" } else { "<hidden>" })
            .field("gateway_id", &self.gateway_id)
            .field("batch_max", &self.batch_max)
            .field("flush_interval", &self.flush_interval)
            .field("spool_dir", &self.spool_dir)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    #[error("clickhouse config: {0}")]
    Config(String),
    #[error("clickhouse spool {0}: {1}")]
    Spool(PathBuf, io::Error),
    #[error("clickhouse: {0}")]
    Http(#[from] HttpError),
    /// ClickHouse answered with an error status.
    #[error("clickhouse: HTTP {status}: {body}")]
    Server { status: u16, body: String },
    #[error("clickhouse: unexpected answer {0:?}")]
    Unexpected(String),
    #[error("clickhouse: thread: {0}")]
    Thread(io::Error),
}

impl ClickHouseError {
    /// The failed request may have changed data on the server.
    fn ambiguous(&self) -> bool {
        match self {
            ClickHouseError::Http(e) => e.ambiguous(),
            ClickHouseError::Server { .. } | ClickHouseError::Unexpected(_) => true,
            _ => false,
        }
    }
    /// ClickHouse said the table or database does not exist (UNKNOWN_TABLE, UNKNOWN_DATABASE):
    /// "Code: 60, e.displayText() = ..." from 18.16, "Code: 60. DB::Exception: ..." from current
    /// releases.
    fn missing_table(&self) -> bool {
        let ClickHouseError::Server { body, .. } = self else { return false };
        ["Code: 60,", "Code: 60.", "Code: 81,", "Code: 81."].iter().any(|p| body.starts_with(p))
    }
}

/// The tables the sink writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Table {
    Sessions,
    Dns,
    Blocks,
}

impl Table {
    pub const ALL: [Table; 3] = [Table::Sessions, Table::Dns, Table::Blocks];

    pub fn name(self) -> &'static str {
        match self {
            Table::Sessions => "sessions",
            Table::Dns => "dns",
            Table::Blocks => "blocks",
        }
    }
    fn from_name(s: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == s)
    }
    /// The `DateTime` column of the partition key and the index.
    fn time_column(self) -> &'static str {
        match self {
            Table::Sessions => "first_seen",
            Table::Dns | Table::Blocks => "ts",
        }
    }
    fn of(rec: &Record) -> Table {
        match rec {
            Record::Flow(_) => Table::Sessions,
            Record::Dns(_) => Table::Dns,
            Record::Block(_) => Table::Blocks,
        }
    }

    /// Columns added to the table after its first release, in order, with their types: last in
    /// [`Table::create_sql`], and added to an existing table that lacks them.
    pub fn added_columns(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Table::Sessions => &[
                ("tls_version", "Nullable(String)"),
                ("ech", "UInt8"),
                ("cert_names", "Array(String)"),
                ("http_method", "Nullable(String)"),
                ("http_path", "Nullable(String)"),
                ("user_agent", "Nullable(String)"),
                ("client_banner", "Nullable(String)"),
                ("server_banner", "Nullable(String)"),
                ("dhcp_hostname", "Nullable(String)"),
                ("dhcp_vendor_class", "Nullable(String)"),
            ],
            Table::Dns | Table::Blocks => &[],
        }
    }

    /// `ALTER TABLE` adding those of [`Table::added_columns`] that are not in `have` (the table's
    /// column names); None when none is missing.
    pub fn add_columns_sql(self, db: &str, have: &HashSet<&str>) -> Option<String> {
        let adds: Vec<String> = self
            .added_columns()
            .iter()
            .filter(|(name, _)| !have.contains(name))
            .map(|(name, ty)| format!("ADD COLUMN {name} {ty}"))
            .collect();
        (!adds.is_empty()).then(|| format!("ALTER TABLE {db}.{} {}", self.name(), adds.join(", ")))
    }

    /// `CREATE TABLE IF NOT EXISTS`, valid on ClickHouse 18.16 and current releases.
    pub fn create_sql(self, db: &str) -> String {
        let base = match self {
            Table::Sessions => {
                "id UInt64, interim UInt8, \
                 first_seen DateTime, first_seen_us UInt64, last_seen DateTime, last_seen_us UInt64, \
                 proto String, src String, sport UInt16, dst String, dport UInt16, \
                 protocol String, protocol_guessed UInt8, app Nullable(String), category Nullable(String), \
                 hostname Nullable(String), name_source Nullable(String), ja4 Nullable(String), \
                 alpn Array(String), alpn_selected Nullable(String), dpi_packets Nullable(UInt32), \
                 packets_c2s UInt64, packets_s2c UInt64, bytes_c2s UInt64, bytes_s2c UInt64, \
                 verdict String, rule Nullable(String), tcp_state Nullable(String), end_reason String, \
                 offloaded UInt8, midstream UInt8, community_id String, \
                 in_if Nullable(String), out_if Nullable(String), client_mac Nullable(String)"
            }
            Table::Dns => {
                "ts DateTime, ts_us UInt64, flow_id UInt64, client String, sport UInt16, \
                 server String, dport UInt16, query String, qtype UInt16, qtype_name String, \
                 rcode UInt8, rcode_name String, answers Array(String), latency_us Nullable(UInt64)"
            }
            Table::Blocks => {
                "ts DateTime, ts_us UInt64, flow_id UInt64, proto String, client String, sport UInt16, \
                 server String, dport UInt16, rule Nullable(String), action String, reason String, \
                 protocol Nullable(String), hostname Nullable(String), app Nullable(String), \
                 category Nullable(String)"
            }
        };
        let mut cols = base.to_string();
        for (name, ty) in self.added_columns() {
            cols.push_str(&format!(", {name} {ty}"));
        }
        let order = match self {
            Table::Sessions => "(gateway_id, first_seen, id)",
            Table::Dns => "(gateway_id, ts, client)",
            Table::Blocks => "(gateway_id, ts, client)",
        };
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{} (gateway_id String, batch_id String, batch_row UInt32, {cols}) \
             ENGINE = MergeTree() PARTITION BY toYYYYMMDD({}) ORDER BY {order}",
            self.name(),
            self.time_column()
        )
    }
}

// ---- Rows ----

fn secs(ts: Timestamp) -> u32 {
    (ts.micros() / 1_000_000).min(u32::MAX as u64) as u32
}

#[derive(Serialize)]
struct Common<'a> {
    gateway_id: &'a str,
    batch_id: &'a str,
    batch_row: u32,
}

#[derive(Serialize)]
struct SessionRow<'a> {
    #[serde(flatten)]
    c: Common<'a>,
    id: u64,
    interim: u8,
    first_seen: u32,
    first_seen_us: u64,
    last_seen: u32,
    last_seen_us: u64,
    proto: &'a str,
    src: String,
    sport: u16,
    dst: String,
    dport: u16,
    protocol: &'a str,
    protocol_guessed: u8,
    app: Option<&'a str>,
    category: Option<&'a str>,
    hostname: Option<&'a str>,
    name_source: Option<&'a str>,
    ja4: Option<&'a str>,
    alpn: &'a [String],
    alpn_selected: Option<&'a str>,
    dpi_packets: Option<u32>,
    packets_c2s: u64,
    packets_s2c: u64,
    bytes_c2s: u64,
    bytes_s2c: u64,
    verdict: String,
    rule: Option<&'a str>,
    tcp_state: Option<vigil_engine::TcpState>,
    end_reason: vigil_engine::EndReason,
    offloaded: u8,
    midstream: u8,
    community_id: &'a str,
    in_if: Option<&'a str>,
    out_if: Option<&'a str>,
    client_mac: Option<&'a str>,
    tls_version: Option<&'a str>,
    ech: u8,
    cert_names: &'a [String],
    http_method: Option<&'a str>,
    http_path: Option<&'a str>,
    user_agent: Option<&'a str>,
    client_banner: Option<&'a str>,
    server_banner: Option<&'a str>,
    dhcp_hostname: Option<&'a str>,
    dhcp_vendor_class: Option<&'a str>,
}

#[derive(Serialize)]
struct DnsRow<'a> {
    #[serde(flatten)]
    c: Common<'a>,
    ts: u32,
    ts_us: u64,
    flow_id: u64,
    client: String,
    sport: u16,
    server: String,
    dport: u16,
    query: &'a str,
    qtype: u16,
    qtype_name: String,
    rcode: u8,
    rcode_name: String,
    answers: &'a [String],
    latency_us: Option<u64>,
}

#[derive(Serialize)]
struct BlockRow<'a> {
    #[serde(flatten)]
    c: Common<'a>,
    ts: u32,
    ts_us: u64,
    flow_id: u64,
    proto: &'a str,
    client: String,
    sport: u16,
    server: String,
    dport: u16,
    rule: Option<&'a str>,
    action: String,
    reason: &'a str,
    protocol: Option<&'a str>,
    hostname: Option<&'a str>,
    app: Option<&'a str>,
    category: Option<&'a str>,
}

fn session_row<'a>(c: Common<'a>, r: &'a FlowRecord) -> SessionRow<'a> {
    let d = &r.details;
    SessionRow {
        c,
        id: r.id,
        interim: r.interim as u8,
        first_seen: secs(r.first_seen),
        first_seen_us: r.first_seen.micros(),
        last_seen: secs(r.last_seen),
        last_seen_us: r.last_seen.micros(),
        proto: &r.proto,
        src: r.src.to_string(),
        sport: r.sport,
        dst: r.dst.to_string(),
        dport: r.dport,
        protocol: &r.protocol,
        protocol_guessed: r.protocol_guessed as u8,
        app: r.app.as_deref(),
        category: r.category.as_deref(),
        hostname: r.hostname.as_deref(),
        name_source: r.name_source.as_deref(),
        ja4: r.ja4.as_deref(),
        alpn: &r.alpn,
        alpn_selected: r.alpn_selected.as_deref(),
        dpi_packets: r.dpi_packets,
        packets_c2s: r.packets_c2s,
        packets_s2c: r.packets_s2c,
        bytes_c2s: r.bytes_c2s,
        bytes_s2c: r.bytes_s2c,
        verdict: r.verdict.to_string(),
        rule: r.rule.as_deref(),
        tcp_state: r.tcp_state,
        end_reason: r.end_reason,
        offloaded: r.offloaded as u8,
        midstream: r.midstream as u8,
        community_id: &r.community_id,
        in_if: r.in_if.as_deref(),
        out_if: r.out_if.as_deref(),
        client_mac: r.client_mac.as_deref(),
        tls_version: d.tls_version.as_deref(),
        ech: d.ech as u8,
        cert_names: &d.cert_names,
        http_method: d.http_method.as_deref(),
        http_path: d.http_path.as_deref(),
        user_agent: d.user_agent.as_deref(),
        client_banner: d.client_banner.as_deref(),
        server_banner: d.server_banner.as_deref(),
        dhcp_hostname: d.dhcp_hostname.as_deref(),
        dhcp_vendor_class: d.dhcp_vendor_class.as_deref(),
    }
}

fn dns_row<'a>(c: Common<'a>, d: &'a DnsRecord) -> DnsRow<'a> {
    DnsRow {
        c,
        ts: secs(d.ts),
        ts_us: d.ts.micros(),
        flow_id: d.flow_id,
        client: d.client.to_string(),
        sport: d.sport,
        server: d.server.to_string(),
        dport: d.dport,
        query: &d.query,
        qtype: d.qtype,
        qtype_name: rrtype_name(d.qtype),
        rcode: d.rcode,
        rcode_name: rcode_name(d.rcode.into()),
        answers: &d.answers,
        latency_us: d.latency_us,
    }
}

fn block_row<'a>(c: Common<'a>, b: &'a BlockRecord) -> BlockRow<'a> {
    BlockRow {
        c,
        ts: secs(b.ts),
        ts_us: b.ts.micros(),
        flow_id: b.flow_id,
        proto: &b.proto,
        client: b.client.to_string(),
        sport: b.sport,
        server: b.server.to_string(),
        dport: b.dport,
        rule: b.rule.as_deref(),
        action: b.action.to_string(),
        reason: &b.reason,
        protocol: b.protocol.as_deref(),
        hostname: b.hostname.as_deref(),
        app: b.app.as_deref(),
        category: b.category.as_deref(),
    }
}

/// The record's time in the table's time column, seconds.
fn record_secs(rec: &Record) -> u32 {
    match rec {
        Record::Flow(f) => secs(f.first_seen),
        Record::Dns(d) => secs(d.ts),
        Record::Block(b) => secs(b.ts),
    }
}

/// One JSONEachRow line (with its newline) for `rec`.
fn write_row(out: &mut Vec<u8>, c: Common<'_>, rec: &Record) {
    let res = match rec {
        Record::Flow(f) => serde_json::to_writer(&mut *out, &session_row(c, f)),
        Record::Dns(d) => serde_json::to_writer(&mut *out, &dns_row(c, d)),
        Record::Block(b) => serde_json::to_writer(&mut *out, &block_row(c, b)),
    };
    // Serializing these plain structs into a Vec cannot fail.
    debug_assert!(res.is_ok());
    out.push(b'\n');
}

// ---- Spool ----

/// First line of a spool file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Header {
    v: u32,
    table: Table,
    batch_id: String,
    rows: u32,
    min_ts: u32,
    max_ts: u32,
}

#[derive(Debug, Clone)]
struct SpoolFile {
    path: PathBuf,
    bytes: u64,
    header: Header,
    /// A previous attempt may have reached ClickHouse: check before re-sending.
    ambiguous: bool,
    /// Consecutive HTTP 400 answers.
    rejections: u32,
}

fn spool_name(seq: u64, table: Table) -> String {
    format!("{seq:020}-{}.jsonl", table.name())
}

fn parse_spool_name(name: &str) -> Option<(u64, Table)> {
    let stem = name.strip_suffix(".jsonl")?;
    let (seq, table) = stem.split_once('-')?;
    if seq.len() != 20 {
        return None;
    }
    Some((seq.parse().ok()?, Table::from_name(table)?))
}

fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Writes a spool file durably: temporary name, fsync, rename, directory fsync.
fn write_spool_file(dir: &Path, name: &str, header: &Header, rows: &[u8]) -> io::Result<u64> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = File::create(&tmp)?;
    let mut head = serde_json::to_vec(header).map_err(io::Error::other)?;
    head.push(b'\n');
    f.write_all(&head)?;
    f.write_all(rows)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, &path)?;
    fsync_dir(dir)?;
    Ok((head.len() + rows.len()) as u64)
}

/// Reads a spool file: its header and its rows.
fn read_spool_file(path: &Path) -> io::Result<(Header, Vec<u8>)> {
    let data = fs::read(path)?;
    let nl = data.iter().position(|&b| b == b'\n').ok_or_else(|| io::Error::other("no header line"))?;
    let header: Header = serde_json::from_slice(&data[..nl]).map_err(io::Error::other)?;
    Ok((header, data[nl + 1..].to_vec()))
}

/// Counters, updated by the threads.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    dropped_full: AtomicU64,
    rows_spooled: AtomicU64,
    batches_spooled: AtomicU64,
    rows_sent: AtomicU64,
    batches_sent: AtomicU64,
    batches_found_present: AtomicU64,
    batches_partial: AtomicU64,
    send_failures: AtomicU64,
    spool_write_errors: AtomicU64,
    rows_lost: AtomicU64,
    spool_evicted_files: AtomicU64,
    spool_evicted_rows: AtomicU64,
    rejected_batches: AtomicU64,
    rejected_rows: AtomicU64,
}

/// A snapshot of a sink's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// `try_send` calls.
    pub received: u64,
    /// Refused by a full queue.
    pub dropped_full: u64,
    pub rows_spooled: u64,
    pub batches_spooled: u64,
    /// Rows ClickHouse acknowledged (including batches found already present).
    pub rows_sent: u64,
    pub batches_sent: u64,
    /// Batches found already in ClickHouse when checked after an ambiguous failure.
    pub batches_found_present: u64,
    /// Batches found partly in ClickHouse: only their missing rows were sent.
    pub batches_partial: u64,
    /// Failed delivery attempts (each retried).
    pub send_failures: u64,
    /// Batches that could not be written to the spool; their rows are in `rows_lost`.
    pub spool_write_errors: u64,
    pub rows_lost: u64,
    /// Spool files dropped (oldest first) to stay within `spool_max_bytes`.
    pub spool_evicted_files: u64,
    pub spool_evicted_rows: u64,
    /// Batches ClickHouse refused as malformed, moved to `spool_dir/rejected/`.
    pub rejected_batches: u64,
    pub rejected_rows: u64,
    /// Spool files waiting now, and their size.
    pub spool_files: u64,
    pub spool_bytes: u64,
}

struct SpoolState {
    files: BTreeMap<u64, SpoolFile>,
    bytes: u64,
    in_flight: Option<u64>,
    /// The collector has spooled everything and exited.
    collector_done: bool,
    /// Set by close: stop delivering at this instant.
    deadline: Option<Instant>,
}

struct Shared {
    cfg: ClickHouseConfig,
    state: Mutex<SpoolState>,
    cond: Condvar,
    counters: Counters,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, SpoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

// ---- HTTP client ----

/// A ClickHouse HTTP client: queries for checks, health and tests.
#[derive(Clone)]
pub struct Client {
    url: Url,
    user: String,
    password: String,
    connect_timeout: Duration,
    timeout: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("url", &self.url).field("user", &self.user).finish_non_exhaustive()
    }
}

impl Client {
    pub fn new(cfg: &ClickHouseConfig) -> Result<Client, ClickHouseError> {
        Ok(Client {
            url: Url::parse(&cfg.url)?,
            user: cfg.user.clone(),
            password: cfg.password.clone(),
            connect_timeout: cfg.connect_timeout,
            timeout: cfg.timeout,
        })
    }

    fn timeouts(&self) -> http::Timeouts {
        http::Timeouts { connect: self.connect_timeout, io: self.timeout }
    }

    fn post(&self, params: &[(&str, &str)], body: &[u8]) -> Result<http::Response, HttpError> {
        let mut headers = Vec::with_capacity(2);
        if !self.user.is_empty() {
            headers.push(("X-ClickHouse-User", self.user.as_str()));
            headers.push(("X-ClickHouse-Key", self.password.as_str()));
        }
        http::request(&self.url, "POST", "/", params, &headers, body, self.timeouts())
    }

    fn ok(resp: http::Response) -> Result<String, ClickHouseError> {
        if resp.status == 200 {
            Ok(resp.text())
        } else {
            let mut body = resp.text();
            body.truncate(body.char_indices().nth(500).map_or(body.len(), |(i, _)| i));
            Err(ClickHouseError::Server { status: resp.status, body })
        }
    }

    /// Runs a query (sent as the body); its output as text.
    pub fn query(&self, sql: &str) -> Result<String, ClickHouseError> {
        Self::ok(self.post(&[], sql.as_bytes())?)
    }

    /// Inserts JSONEachRow rows into `table` (`db.name`); `query_id` names the insert.
    pub fn insert(&self, table: &str, query_id: &str, rows: &[u8]) -> Result<(), ClickHouseError> {
        let q = format!("INSERT INTO {table} FORMAT JSONEachRow");
        Self::ok(self.post(&[("query", &q), ("query_id", query_id)], rows)?).map(drop)
    }

    /// `GET /ping` answered `Ok.`.
    pub fn ping(&self) -> bool {
        http::request(&self.url, "GET", "/ping", &[], &[], b"", self.timeouts())
            .is_ok_and(|r| r.status == 200 && r.text() == "Ok.")
    }

    fn count(&self, sql: &str) -> Result<u64, ClickHouseError> {
        let out = self.query(sql)?;
        out.parse().map_err(|_| ClickHouseError::Unexpected(out))
    }
}

/// A ClickHouse string literal.
pub fn sql_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

// ---- The sink ----

/// Starts ClickHouse sinks.
pub struct ClickHouseSink;

/// The sending side of a running sink.
pub struct ClickHouseHandle {
    tx: Option<Sender<Record>>,
    shared: Arc<Shared>,
    collector: Option<JoinHandle<()>>,
    sender: Option<JoinHandle<()>>,
}

impl ClickHouseSink {
    /// Checks the config, opens the spool (queueing files left by a previous run first) and
    /// starts the collector and sender threads. Does not need ClickHouse to be up.
    pub fn start(cfg: ClickHouseConfig) -> Result<ClickHouseHandle, ClickHouseError> {
        if cfg.database.is_empty() || !cfg.database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(ClickHouseError::Config(format!("database {:?}: letters, digits and _ only", cfg.database)));
        }
        if cfg.batch_max == 0 || cfg.batch_max > 1_000_000 {
            // One batch must stay one insert block (max_insert_block_size is 1048576) for the
            // atomicity the exactly-once check relies on.
            return Err(ClickHouseError::Config("batch_max must be 1..=1000000".into()));
        }
        let client = Client::new(&cfg)?;
        fs::create_dir_all(&cfg.spool_dir).map_err(|e| ClickHouseError::Spool(cfg.spool_dir.clone(), e))?;
        let (files, bytes, next_seq) = scan_spool(&cfg.spool_dir)?;
        if !files.is_empty() {
            log::info!("clickhouse: {} spooled batches ({} bytes) from a previous run to deliver", files.len(), bytes);
        }
        let start_us = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_micros() as u64;
        let (tx, rx) = crossbeam_channel::bounded(cfg.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            cfg,
            state: Mutex::new(SpoolState { files, bytes, in_flight: None, collector_done: false, deadline: None }),
            cond: Condvar::new(),
            counters: Counters::default(),
        });
        let s = shared.clone();
        let collector = std::thread::Builder::new()
            .name("vigil-ch-batch".into())
            .spawn(move || Collector { shared: s, next_seq, start_us, batches: BTreeMap::new() }.run(rx))
            .map_err(ClickHouseError::Thread)?;
        let s = shared.clone();
        let sender = std::thread::Builder::new()
            .name("vigil-ch-send".into())
            .spawn(move || Deliverer::new(s, client).run())
            .map_err(ClickHouseError::Thread)?;
        Ok(ClickHouseHandle { tx: Some(tx), shared, collector: Some(collector), sender: Some(sender) })
    }
}

/// Lists the spool: complete files by sequence (all ambiguous: a previous run may have sent
/// them), their total size, the next sequence number. Removes unfinished temporary files.
fn scan_spool(dir: &Path) -> Result<(BTreeMap<u64, SpoolFile>, u64, u64), ClickHouseError> {
    let err = |e| ClickHouseError::Spool(dir.to_path_buf(), e);
    let mut files = BTreeMap::new();
    let mut bytes = 0;
    let mut next_seq = 0;
    for entry in fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.ends_with(".jsonl.tmp") {
            // Never completed, so never queued: its rows were still in memory when vigil stopped.
            let _ = fs::remove_file(&path);
            continue;
        }
        let Some((seq, table)) = parse_spool_name(&name) else { continue };
        next_seq = next_seq.max(seq + 1);
        match read_spool_file(&path) {
            Ok((header, _)) if header.table == table => {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                bytes += size;
                files.insert(seq, SpoolFile { path, bytes: size, header, ambiguous: true, rejections: 0 });
            }
            Ok(_) | Err(_) => {
                log::error!("clickhouse: spool file {} is unreadable: moved to rejected/", path.display());
                let _ = reject(dir, &path);
            }
        }
    }
    Ok((files, bytes, next_seq))
}

fn reject(dir: &Path, path: &Path) -> io::Result<()> {
    let rejected = dir.join("rejected");
    fs::create_dir_all(&rejected)?;
    fs::rename(path, rejected.join(path.file_name().unwrap_or_default()))
}

impl ClickHouseHandle {
    /// Queues a record; never blocks. False (and counted in `dropped_full`) when the queue is
    /// full or the sink is closing.
    pub fn try_send(&self, rec: Record) -> bool {
        let c = &self.shared.counters;
        c.received.fetch_add(1, Ordering::Relaxed);
        let ok = match &self.tx {
            Some(tx) => match tx.try_send(rec) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !ok {
            let n = c.dropped_full.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                log::warn!("clickhouse: queue full: {n} records dropped so far");
            }
        }
        ok
    }

    pub fn stats(&self) -> SinkStats {
        stats(&self.shared)
    }

    /// Stops intake, spools every queued record, delivers for at most `close_timeout`, and
    /// leaves what is not delivered in the spool. Returns the final counters.
    pub fn close(mut self) -> SinkStats {
        self.shutdown();
        self.stats()
    }

    fn shutdown(&mut self) {
        self.tx = None;
        if let Some(c) = self.collector.take() {
            let _ = c.join();
        }
        {
            let mut st = self.shared.lock();
            st.deadline = Some(Instant::now() + self.shared.cfg.close_timeout);
        }
        self.shared.cond.notify_all();
        if let Some(s) = self.sender.take() {
            let _ = s.join();
        }
    }
}

impl Drop for ClickHouseHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn stats(shared: &Shared) -> SinkStats {
    let c = &shared.counters;
    let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let (spool_files, spool_bytes) = {
        let st = shared.lock();
        (st.files.len() as u64, st.bytes)
    };
    SinkStats {
        received: l(&c.received),
        dropped_full: l(&c.dropped_full),
        rows_spooled: l(&c.rows_spooled),
        batches_spooled: l(&c.batches_spooled),
        rows_sent: l(&c.rows_sent),
        batches_sent: l(&c.batches_sent),
        batches_found_present: l(&c.batches_found_present),
        batches_partial: l(&c.batches_partial),
        send_failures: l(&c.send_failures),
        spool_write_errors: l(&c.spool_write_errors),
        rows_lost: l(&c.rows_lost),
        spool_evicted_files: l(&c.spool_evicted_files),
        spool_evicted_rows: l(&c.spool_evicted_rows),
        rejected_batches: l(&c.rejected_batches),
        rejected_rows: l(&c.rejected_rows),
        spool_files,
        spool_bytes,
    }
}

// ---- Collector: records -> batches -> spool ----

struct Collector {
    shared: Arc<Shared>,
    next_seq: u64,
    start_us: u64,
    /// Open batches: first record's arrival, records.
    batches: BTreeMap<Table, (Instant, Vec<Record>)>,
}

impl Collector {
    fn run(mut self, rx: Receiver<Record>) {
        let interval = self.shared.cfg.flush_interval;
        loop {
            let now = Instant::now();
            let wait = self.batches.values().map(|(t, _)| (*t + interval).saturating_duration_since(now)).min();
            match rx.recv_timeout(wait.unwrap_or(interval)) {
                Ok(rec) => {
                    let table = Table::of(&rec);
                    let batch = self.batches.entry(table).or_insert_with(|| (Instant::now(), Vec::new()));
                    batch.1.push(rec);
                    if batch.1.len() >= self.shared.cfg.batch_max {
                        self.seal(table);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = Instant::now();
            let due: Vec<Table> =
                self.batches.iter().filter(|(_, (t, _))| now >= *t + interval).map(|(k, _)| *k).collect();
            for t in due {
                self.seal(t);
            }
        }
        let open: Vec<Table> = self.batches.keys().copied().collect();
        for t in open {
            self.seal(t);
        }
        self.shared.lock().collector_done = true;
        self.shared.cond.notify_all();
    }

    /// Writes the table's open batch to the spool and queues it for delivery.
    fn seal(&mut self, table: Table) {
        let Some((_, recs)) = self.batches.remove(&table) else { return };
        if recs.is_empty() {
            return;
        }
        let cfg = &self.shared.cfg;
        let c = &self.shared.counters;
        let seq = self.next_seq;
        self.next_seq += 1;
        let batch_id = format!("{}-{}-{seq}", cfg.gateway_id, self.start_us);
        let mut rows = Vec::with_capacity(recs.len() * 512);
        let (mut min_ts, mut max_ts) = (u32::MAX, 0);
        for (i, rec) in recs.iter().enumerate() {
            let t = record_secs(rec);
            min_ts = min_ts.min(t);
            max_ts = max_ts.max(t);
            write_row(&mut rows, Common { gateway_id: &cfg.gateway_id, batch_id: &batch_id, batch_row: i as u32 }, rec);
        }
        let header = Header { v: 1, table, batch_id, rows: recs.len() as u32, min_ts, max_ts };
        let name = spool_name(seq, table);
        let size = match write_spool_file(&cfg.spool_dir, &name, &header, &rows) {
            Ok(n) => n,
            Err(e) => {
                c.spool_write_errors.fetch_add(1, Ordering::Relaxed);
                c.rows_lost.fetch_add(recs.len() as u64, Ordering::Relaxed);
                log::error!("clickhouse: cannot spool a batch of {} {} rows: {e}: rows lost", recs.len(), table.name());
                let _ = fs::remove_file(cfg.spool_dir.join(format!("{name}.tmp")));
                return;
            }
        };
        c.rows_spooled.fetch_add(recs.len() as u64, Ordering::Relaxed);
        c.batches_spooled.fetch_add(1, Ordering::Relaxed);
        let path = cfg.spool_dir.join(&name);
        let mut st = self.shared.lock();
        st.files.insert(seq, SpoolFile { path, bytes: size, header, ambiguous: false, rejections: 0 });
        st.bytes += size;
        // Over the cap: drop the oldest files, except the one being sent and the one just written.
        while st.bytes > cfg.spool_max_bytes {
            let in_flight = st.in_flight;
            let Some(victim) = st.files.keys().copied().find(|&s| Some(s) != in_flight && s != seq) else { break };
            let f = st.files.remove(&victim).expect("listed");
            st.bytes -= f.bytes;
            let _ = fs::remove_file(&f.path);
            c.spool_evicted_files.fetch_add(1, Ordering::Relaxed);
            c.spool_evicted_rows.fetch_add(u64::from(f.header.rows), Ordering::Relaxed);
            log::error!(
                "clickhouse: spool over {} bytes: dropped the oldest batch {} ({} {} rows)",
                cfg.spool_max_bytes,
                f.path.display(),
                f.header.rows,
                f.header.table.name()
            );
        }
        drop(st);
        self.shared.cond.notify_all();
    }
}

// ---- Deliverer: spool -> ClickHouse ----

/// What a delivery found.
enum Delivered {
    Sent,
    AlreadyPresent,
    Partial(u64),
}

struct Backoff {
    step: Duration,
    rng: u64,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(30);

    fn new() -> Self {
        let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
            ^ (u64::from(std::process::id()) << 32);
        Backoff { step: Self::MIN, rng: seed | 1 }
    }
    fn reset(&mut self) {
        self.step = Self::MIN;
    }
    /// The next wait: the current step jittered to 50-100 %; the step doubles up to the cap.
    fn next_wait(&mut self) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let step = self.step;
        self.step = (self.step * 2).min(Self::MAX);
        let half = step / 2;
        half + Duration::from_nanos(self.rng % (half.as_nanos() as u64 + 1))
    }
}

struct Deliverer {
    shared: Arc<Shared>,
    client: Client,
    schema_ready: bool,
    backoff: Backoff,
}

impl Deliverer {
    fn new(shared: Arc<Shared>, client: Client) -> Self {
        Deliverer { shared, client, schema_ready: false, backoff: Backoff::new() }
    }

    fn run(mut self) {
        let mut failing_since: Option<Instant> = None;
        loop {
            // The oldest file, or wait for one; exit when all is delivered after close.
            let (seq, file) = {
                let mut st = self.shared.lock();
                loop {
                    if st.deadline.is_some_and(|d| Instant::now() >= d) {
                        return;
                    }
                    if let Some((&seq, f)) = st.files.iter().next() {
                        let f = f.clone();
                        st.in_flight = Some(seq);
                        break (seq, f);
                    }
                    if st.collector_done {
                        return;
                    }
                    st = match st.deadline {
                        Some(d) => self.shared.cond.wait_timeout(st, d.saturating_duration_since(Instant::now())),
                        None => self.shared.cond.wait_timeout(st, Duration::from_secs(1)),
                    }
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                }
            };
            let result = self.deliver(&file);
            let c = &self.shared.counters;
            let mut st = self.shared.lock();
            st.in_flight = None;
            match result {
                Ok(how) => {
                    let rows = u64::from(file.header.rows);
                    match how {
                        Delivered::Sent => {}
                        Delivered::AlreadyPresent => {
                            c.batches_found_present.fetch_add(1, Ordering::Relaxed);
                            log::info!("clickhouse: batch {} was already delivered", file.header.batch_id);
                        }
                        Delivered::Partial(n) => {
                            c.batches_partial.fetch_add(1, Ordering::Relaxed);
                            log::warn!(
                                "clickhouse: batch {} was partly delivered: sent its {n} missing rows",
                                file.header.batch_id
                            );
                        }
                    }
                    c.rows_sent.fetch_add(rows, Ordering::Relaxed);
                    c.batches_sent.fetch_add(1, Ordering::Relaxed);
                    if let Some(f) = st.files.remove(&seq) {
                        st.bytes -= f.bytes;
                    }
                    drop(st);
                    if let Err(e) = fs::remove_file(&file.path) {
                        // Left behind, it would be re-checked (and found present) at next start.
                        log::warn!("clickhouse: remove {}: {e}", file.path.display());
                    }
                    if let Some(t) = failing_since.take() {
                        log::info!("clickhouse: delivering again after {:.1?}", t.elapsed());
                    }
                    self.backoff.reset();
                }
                Err(e) => {
                    c.send_failures.fetch_add(1, Ordering::Relaxed);
                    if e.missing_table() {
                        self.schema_ready = false;
                    }
                    let mut rejected = false;
                    if let Some(f) = st.files.get_mut(&seq) {
                        f.ambiguous |= e.ambiguous();
                        if matches!(e, ClickHouseError::Server { status: 400, .. }) {
                            f.rejections += 1;
                            rejected = f.rejections >= 3;
                        } else {
                            f.rejections = 0;
                        }
                    }
                    if rejected {
                        if let Some(f) = st.files.remove(&seq) {
                            st.bytes -= f.bytes;
                        }
                        drop(st);
                        c.rejected_batches.fetch_add(1, Ordering::Relaxed);
                        c.rejected_rows.fetch_add(u64::from(file.header.rows), Ordering::Relaxed);
                        log::error!(
                            "clickhouse: batch {} refused 3 times ({e}): moved to {}/rejected/",
                            file.header.batch_id,
                            self.shared.cfg.spool_dir.display()
                        );
                        if let Err(e) = reject(&self.shared.cfg.spool_dir, &file.path) {
                            log::error!("clickhouse: move {} to rejected/: {e}", file.path.display());
                        }
                        continue;
                    }
                    if failing_since.is_none() {
                        failing_since = Some(Instant::now());
                        log::warn!("clickhouse: {e}; spooling and retrying");
                    } else {
                        log::debug!("clickhouse: {e}");
                    }
                    let mut wait = self.backoff.next_wait();
                    if let Some(d) = st.deadline {
                        wait = wait.min(d.saturating_duration_since(Instant::now()));
                    }
                    // Wakes early only for close (the deadline check above the next pick).
                    let until = Instant::now() + wait;
                    while Instant::now() < until {
                        let left = until.saturating_duration_since(Instant::now());
                        let (g, _) = self.shared.cond.wait_timeout(st, left).unwrap_or_else(|p| p.into_inner());
                        st = g;
                        if let Some(d) = st.deadline {
                            if Instant::now() >= d {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }

    fn ensure_schema(&mut self) -> Result<(), ClickHouseError> {
        if self.schema_ready {
            return Ok(());
        }
        let db = &self.shared.cfg.database;
        self.client.query(&format!("CREATE DATABASE IF NOT EXISTS {db}"))?;
        for t in Table::ALL {
            self.client.query(&t.create_sql(db))?;
        }
        for t in Table::ALL {
            self.add_missing_columns(t)?;
        }
        self.schema_ready = true;
        Ok(())
    }

    /// The table's column names, from `system.columns`.
    fn columns(&self, t: Table) -> Result<String, ClickHouseError> {
        self.client.query(&format!(
            "SELECT name FROM system.columns WHERE database = {} AND table = {}",
            sql_str(&self.shared.cfg.database),
            sql_str(t.name())
        ))
    }

    /// Adds the [`Table::added_columns`] a table created by an older vigil lacks.
    fn add_missing_columns(&self, t: Table) -> Result<(), ClickHouseError> {
        if t.added_columns().is_empty() {
            return Ok(());
        }
        let db = &self.shared.cfg.database;
        let out = self.columns(t)?;
        let have: HashSet<&str> = out.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        if have.is_empty() {
            // The table exists (just created if not): its columns are not visible to this user.
            log::warn!("clickhouse: cannot list the columns of {db}.{}: not checking for missing ones", t.name());
            return Ok(());
        }
        let Some(alter) = t.add_columns_sql(db, &have) else { return Ok(()) };
        if let Err(e) = self.client.query(&alter) {
            // Another gateway may have added them in the meantime.
            let out = self.columns(t)?;
            let have: HashSet<&str> = out.lines().map(str::trim).collect();
            if t.add_columns_sql(db, &have).is_some() {
                return Err(e);
            }
        }
        log::info!("clickhouse: {db}.{} was made by an older vigil: {alter}", t.name());
        Ok(())
    }

    fn deliver(&mut self, file: &SpoolFile) -> Result<Delivered, ClickHouseError> {
        let shared = self.shared.clone();
        let cfg = &shared.cfg;
        let (header, rows) = read_spool_file(&file.path).map_err(|e| ClickHouseError::Spool(file.path.clone(), e))?;
        self.ensure_schema()?;
        let h = &header;
        let table = format!("{}.{}", cfg.database, h.table.name());
        let mut body = rows;
        let mut partial = None;
        if file.ambiguous {
            let bid = sql_str(&h.batch_id);
            let running = self.client.count(&format!("SELECT count() FROM system.processes WHERE query_id = {bid}"))?;
            if running > 0 {
                return Err(ClickHouseError::Unexpected(format!("insert of batch {} still running", h.batch_id)));
            }
            let filter = format!(
                "gateway_id = {} AND {tc} >= toDateTime({}) AND {tc} <= toDateTime({}) AND batch_id = {bid}",
                sql_str(&cfg.gateway_id),
                h.min_ts,
                h.max_ts,
                tc = h.table.time_column(),
            );
            let present = self.client.count(&format!("SELECT count() FROM {table} WHERE {filter}"))?;
            if present >= u64::from(h.rows) {
                return Ok(Delivered::AlreadyPresent);
            }
            if present > 0 {
                let out = self.client.query(&format!("SELECT DISTINCT batch_row FROM {table} WHERE {filter}"))?;
                let have: HashSet<usize> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
                let mut rest = Vec::with_capacity(body.len());
                let mut missing = 0;
                for (i, line) in body.split_inclusive(|&b| b == b'\n').enumerate() {
                    if !have.contains(&i) {
                        rest.extend_from_slice(line);
                        missing += 1;
                    }
                }
                body = rest;
                partial = Some(missing);
            }
        }
        self.client.insert(&table, &h.batch_id, &body)?;
        Ok(match partial {
            Some(n) => Delivered::Partial(n),
            None => Delivered::Sent,
        })
    }
}

#[cfg(test)]
mod tests;
