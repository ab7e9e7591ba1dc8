//! The writer: a bounded queue in front of one thread that owns the read-write connection.
//!
//! # Durability and the loss window
//!
//! A record is *acknowledged* once the writer's transaction holding it has committed; the
//! `committed` counter counts those (in queue order: with one producer, `committed == n` means its
//! first `n` accepted records are stored).
//!
//! The database runs in WAL mode with `synchronous = NORMAL` by default:
//! - **vigil killed (kill -9, panic, OOM)**: every committed record survives (the WAL is in the
//!   OS page cache, SQLite recovers it at the next open). Lost: only what was not committed yet —
//!   the records in the queue and the batch being gathered, i.e. at most `flush_interval`
//!   (200 ms) of records plus any backlog the writer had. The crash test checks this.
//! - **OS crash or power loss**: NORMAL does not fsync each commit, only at WAL checkpoints
//!   (every ~1000 pages = 4 MiB of WAL), so the commits since the last checkpoint can also be
//!   lost; the database itself stays consistent. [`Synchronous::Full`] fsyncs every batch
//!   commit and shrinks that window to the queue and the open batch, for one fsync per batch.
//!
//! The packet path never waits on storage: [`SqliteSink::try_send`] fails (and counts the record
//! in `dropped`) when the queue is full.

use crate::packed::{self, PackState};
use crate::retention::{self, Retention, RetentionReport};
use crate::rows::{BlockRow, DnsRow, Record, SessionRow};
use crate::schema;
use crate::Error;
use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender, TrySendError};
use rusqlite::{params, Connection, OptionalExtension};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// SQLite's `synchronous` for the writer (see the module docs for what each one risks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    #[default]
    Normal,
    Full,
}

#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// Most records in one transaction.
    pub batch_max: usize,
    /// Longest a record waits in a batch being gathered before its transaction commits.
    pub flush_interval: Duration,
    /// Records the queue holds; past that, `try_send` drops.
    pub queue_capacity: usize,
    pub retention: Retention,
    /// How often the writer applies the retention (also once when it starts).
    pub retention_interval: Duration,
    pub synchronous: Synchronous,
}

impl Default for SinkOptions {
    fn default() -> Self {
        SinkOptions {
            batch_max: 1000,
            flush_interval: Duration::from_millis(200),
            queue_capacity: 65536,
            retention: Retention::default(),
            retention_interval: Duration::from_secs(3600),
            synchronous: Synchronous::Normal,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    dropped: AtomicU64,
    committed: AtomicU64,
    failed: AtomicU64,
    batches: AtomicU64,
}

/// A snapshot of the writer's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SinkStats {
    /// Records taken into the queue.
    pub accepted: u64,
    /// Records refused because the queue was full (or the writer had stopped).
    pub dropped: u64,
    /// Records stored by a committed transaction.
    pub committed: u64,
    /// Records whose transaction failed (logged); they are not stored.
    pub failed: u64,
    /// Transactions committed.
    pub batches: u64,
}

// The record variant is the hot one (boxing it would cost an allocation per record); the control
// variants are rare.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Rec(Record),
    Flush(Sender<()>),
    Close(Sender<()>),
    Retention(Sender<Result<RetentionReport, String>>),
    Pack(Sender<Result<usize, String>>),
}

/// The producers' handle. Cheap to clone; every clone feeds the same writer.
#[derive(Clone)]
pub struct SqliteSink {
    tx: Sender<Msg>,
    counters: Arc<Counters>,
}

impl SqliteSink {
    /// Open (create, migrate) the database and start the writer thread.
    pub fn open(path: impl AsRef<Path>, opts: SinkOptions) -> Result<(SqliteSink, JoinHandle<()>), Error> {
        let path = path.as_ref().to_path_buf();
        let sync = match opts.synchronous {
            Synchronous::Normal => "NORMAL",
            Synchronous::Full => "FULL",
        };
        let conn = schema::open_rw(&path, sync)?;
        let packed = PackState::load(&conn)?;
        let (tx, rx) = bounded(opts.queue_capacity.max(1));
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let handle = std::thread::Builder::new()
            .name("vigil-report".into())
            .spawn(move || Writer { conn, path, opts, counters: c, packed }.run(rx))?;
        Ok((SqliteSink { tx, counters }, handle))
    }

    /// Queue a record for storage. Never blocks: false (and `dropped` + 1) when the queue is full
    /// or the writer has stopped.
    pub fn try_send(&self, rec: impl Into<Record>) -> bool {
        match self.tx.try_send(Msg::Rec(rec.into())) {
            Ok(()) => {
                self.counters.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Records stored by committed transactions so far.
    pub fn committed(&self) -> u64 {
        self.counters.committed.load(Ordering::Acquire)
    }

    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Records waiting in the queue.
    pub fn queue_len(&self) -> usize {
        self.tx.len()
    }

    pub fn stats(&self) -> SinkStats {
        let c = &self.counters;
        SinkStats {
            accepted: c.accepted.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            committed: c.committed.load(Ordering::Acquire),
            failed: c.failed.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
        }
    }

    /// Wait until everything queued before this call is committed (blocks: not for the packet
    /// path). False when the writer has stopped.
    pub fn flush(&self) -> bool {
        let (ack, done) = bounded(1);
        self.tx.send(Msg::Flush(ack)).is_ok() && done.recv().is_ok()
    }

    /// Apply the retention now (after committing what is queued), in the writer thread.
    pub fn run_retention(&self) -> Result<RetentionReport, Error> {
        let (ack, done) = bounded(1);
        let stopped = || Error::Parse("report writer has stopped".into());
        self.tx.send(Msg::Retention(ack)).map_err(|_| stopped())?;
        done.recv().map_err(|_| stopped())?.map_err(Error::Parse)
    }

    /// Pack every closed rollup bucket not packed yet (the writer also does it a little at a
    /// time every minute). Returns how many buckets it packed.
    pub fn pack_now(&self) -> Result<usize, Error> {
        let (ack, done) = bounded(1);
        let stopped = || Error::Parse("report writer has stopped".into());
        self.tx.send(Msg::Pack(ack)).map_err(|_| stopped())?;
        done.recv().map_err(|_| stopped())?.map_err(Error::Parse)
    }

    /// Clean shutdown: commit everything queued so far and stop the writer. Records other clones
    /// send afterwards are dropped. False when the writer had already stopped.
    pub fn flush_and_close(self) -> bool {
        let (ack, done) = bounded(1);
        self.tx.send(Msg::Close(ack)).is_ok() && done.recv().is_ok()
    }
}

struct Writer {
    conn: Connection,
    path: PathBuf,
    opts: SinkOptions,
    counters: Arc<Counters>,
    packed: PackState,
}

/// How often the writer packs closed rollup buckets, and for how long at most each time. With
/// more to do (a database from before packing existed), the next slice comes a second later.
const PACK_INTERVAL: Duration = Duration::from_secs(60);
const PACK_BUDGET: Duration = Duration::from_millis(100);
const PACK_CATCH_UP: Duration = Duration::from_secs(1);

impl Writer {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<Record> = Vec::with_capacity(self.opts.batch_max);
        let mut next_retention = Instant::now();
        let mut next_pack = Instant::now();
        loop {
            if Instant::now() >= next_retention {
                if let Err(e) = self.retention() {
                    log::error!("report retention failed: {e}");
                }
                next_retention = Instant::now() + self.opts.retention_interval;
            }
            if Instant::now() >= next_pack {
                let (_, more) = self.pack(Some(PACK_BUDGET)).unwrap_or_else(|e| {
                    log::error!("report rollup packing failed: {e}");
                    (0, false)
                });
                next_pack = Instant::now() + if more { PACK_CATCH_UP } else { PACK_INTERVAL };
            }
            let first = match rx.recv_deadline(next_retention.min(next_pack)) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut control = None;
            match first {
                Msg::Rec(r) => batch.push(r),
                m => control = Some(m),
            }
            if control.is_none() {
                let deadline = Instant::now() + self.opts.flush_interval;
                while batch.len() < self.opts.batch_max {
                    match rx.recv_deadline(deadline) {
                        Ok(Msg::Rec(r)) => batch.push(r),
                        Ok(m) => {
                            control = Some(m);
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            self.commit(&mut batch);
            match control {
                None => {}
                Some(Msg::Flush(ack)) => {
                    let _ = ack.send(());
                }
                Some(Msg::Close(ack)) => {
                    let _ = ack.send(());
                    return;
                }
                Some(Msg::Retention(ack)) => {
                    let _ = ack.send(self.retention().map_err(|e| e.to_string()));
                }
                Some(Msg::Pack(ack)) => {
                    let _ = ack.send(self.pack(None).map(|(n, _)| n).map_err(|e| e.to_string()));
                }
                Some(Msg::Rec(_)) => unreachable!("records go to the batch"),
            }
        }
        self.commit(&mut batch);
    }

    fn retention(&mut self) -> Result<RetentionReport, Error> {
        let now = vigil_engine::Timestamp::now().micros() as i64;
        let report = retention::apply(&mut self.conn, &self.path, &self.opts.retention, now)?;
        if report.rollups_deleted > 0 {
            self.packed = PackState::load(&self.conn)?;
        }
        if report.deleted_anything() {
            log::info!("report retention: {report:?}");
        }
        Ok(report)
    }

    /// Pack closed buckets: how many, and whether the budget ran out with more to do.
    fn pack(&mut self, budget: Option<Duration>) -> Result<(usize, bool), Error> {
        let now = vigil_engine::Timestamp::now().micros() as i64;
        let (n, more) = packed::pack_due(&mut self.conn, &mut self.packed, now, budget).inspect_err(|_| {
            // Ids handed out in the transaction that failed were not stored.
            if let Ok(state) = PackState::load(&self.conn) {
                self.packed = state;
            }
        })?;
        if n > 0 {
            log::debug!("report: packed {n} closed rollup buckets");
        }
        Ok((n, more))
    }

    fn commit(&mut self, batch: &mut Vec<Record>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        match write_batch(&mut self.conn, batch, &self.packed) {
            Ok(()) => {
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters.committed.fetch_add(n, Ordering::Release);
            }
            Err(e) => {
                self.counters.failed.fetch_add(n, Ordering::Relaxed);
                log::error!("report writer: a batch of {n} records was not stored: {e}");
            }
        }
        batch.clear();
    }
}

/// Rollup deltas of one batch: (level in packed::LEVELS, bucket, dim index, key) -> (sessions, bytes).
type RollupDeltas = HashMap<(usize, i64, usize, String), (i64, i64)>;

fn add_delta(acc: &mut RollupDeltas, first_seen: i64, dim: usize, key: &str, sessions: i64, bytes: i64) {
    if sessions == 0 && bytes == 0 {
        return;
    }
    for (level, (span, _, _)) in packed::LEVELS.iter().enumerate() {
        let e = acc.entry((level, first_seen.div_euclid(*span) * span, dim, key.to_string())).or_default();
        e.0 += sessions;
        e.1 += bytes;
    }
}

/// The rollup keys of a session, in [`schema::ROLLUP_DIMS`] order.
fn rollup_keys(s: &SessionRow) -> [String; 4] {
    [
        s.app.clone().unwrap_or_default(),
        s.category.clone().unwrap_or_default(),
        s.src.to_string(),
        s.hostname.clone().unwrap_or_default(),
    ]
}

const SESSION_COLS: &str = "id, community_id, proto, src, sport, dst, dport, protocol, protocol_guessed, app, \
    category, hostname, name_source, ja4, alpn, alpn_selected, dpi_packets, packets_c2s, packets_s2c, bytes_c2s, \
    bytes_s2c, first_seen, last_seen, verdict, rule, tcp_state, end_reason, offloaded, midstream, in_if, out_if, \
    client_mac, interim, bytes_source, tls_version, ech, cert_names, http_method, http_path, user_agent, \
    client_banner, server_banner, dhcp_hostname, dhcp_vendor_class";

fn session_params(s: &SessionRow) -> Vec<Box<dyn rusqlite::ToSql + '_>> {
    let d = &s.details;
    vec![
        Box::new(s.id.map(|v| v as i64)),
        Box::new(s.community_id.as_deref()),
        Box::new(s.proto.as_str()),
        Box::new(s.src.to_string()),
        Box::new(s.sport),
        Box::new(s.dst.to_string()),
        Box::new(s.dport),
        Box::new(s.protocol.as_str()),
        Box::new(s.protocol_guessed),
        Box::new(s.app.as_deref()),
        Box::new(s.category.as_deref()),
        Box::new(s.hostname.as_deref()),
        Box::new(s.name_source.as_deref()),
        Box::new(s.ja4.as_deref()),
        Box::new(serde_json::to_string(&s.alpn).unwrap_or_else(|_| "[]".into())),
        Box::new(s.alpn_selected.as_deref()),
        Box::new(s.dpi_packets),
        Box::new(s.packets_c2s as i64),
        Box::new(s.packets_s2c as i64),
        Box::new(s.bytes_c2s as i64),
        Box::new(s.bytes_s2c as i64),
        Box::new(s.first_seen.micros() as i64),
        Box::new(s.last_seen.micros() as i64),
        Box::new(s.verdict.as_str()),
        Box::new(s.rule.as_deref()),
        Box::new(s.tcp_state.as_deref()),
        Box::new(s.end_reason.as_deref()),
        Box::new(s.offloaded),
        Box::new(s.midstream),
        Box::new(s.in_if.as_deref()),
        Box::new(s.out_if.as_deref()),
        Box::new(s.client_mac.as_deref()),
        Box::new(s.interim),
        Box::new(s.bytes_source.as_deref()),
        Box::new(d.tls_version.as_deref()),
        Box::new(d.ech),
        // NULL rather than "[]": most sessions have none.
        Box::new((!d.cert_names.is_empty()).then(|| serde_json::to_string(&d.cert_names).unwrap_or_default())),
        Box::new(d.http_method.as_deref()),
        Box::new(d.http_path.as_deref()),
        Box::new(d.user_agent.as_deref()),
        Box::new(d.client_banner.as_deref()),
        Box::new(d.server_banner.as_deref()),
        Box::new(d.dhcp_hostname.as_deref()),
        Box::new(d.dhcp_vendor_class.as_deref()),
    ]
}

/// The stored interim row a session record replaces.
struct Live {
    rowid: i64,
    keys: [String; 4],
    bytes: i64,
}

/// Write one batch in one transaction: sessions upserted (an interim row of the same id and
/// first_seen is replaced), DNS and blocks appended, rollups adjusted.
///
/// Rollups: a session counts once, in the hour/day of its first_seen, with the bytes of its latest
/// record (interim or final). An update adds its byte delta; when an update changes a session's
/// app, category, client or hostname, the session moves from the old key to the new one. So the
/// rollups always equal a GROUP BY over the sessions table, running sessions included.
///
/// A delta for a bucket already packed also goes to `rollup_late` (see packed.rs).
pub(crate) fn write_batch(conn: &mut Connection, batch: &[Record], packed: &PackState) -> Result<(), Error> {
    let tx = conn.transaction()?;
    let mut deltas = RollupDeltas::new();
    {
        let ncols = SESSION_COLS.split(',').count();
        let placeholders = (1..=ncols).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
        let mut insert =
            tx.prepare_cached(&format!("INSERT INTO sessions ({SESSION_COLS}) VALUES ({placeholders})"))?;
        let sets = SESSION_COLS.split(',').enumerate().map(|(i, c)| format!("{} = ?{}", c.trim(), i + 1));
        let mut update = tx.prepare_cached(&format!(
            "UPDATE sessions SET {} WHERE rowid = ?{}",
            sets.collect::<Vec<_>>().join(", "),
            ncols + 1
        ))?;
        let mut find_live = tx.prepare_cached(
            "SELECT rowid, COALESCE(app, ''), COALESCE(category, ''), src, COALESCE(hostname, ''), \
             bytes_c2s + bytes_s2c FROM sessions WHERE id = ?1 AND first_seen = ?2 AND interim = 1",
        )?;
        let mut insert_dns = tx.prepare_cached(
            "INSERT INTO dns (ts, client, sport, server, dport, query, qtype, rcode, answers, latency_us, flow_id, proto) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        let mut insert_block = tx.prepare_cached(
            "INSERT INTO blocks (ts, flow_id, client, sport, server, dport, proto, rule, action, reason, protocol, \
             hostname, app, category) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )?;
        for rec in batch {
            match rec {
                Record::Session(s) => {
                    let first_seen = s.first_seen.micros() as i64;
                    let live = match s.id {
                        Some(id) => find_live
                            .query_row(params![id as i64, first_seen], |r| {
                                Ok(Live {
                                    rowid: r.get(0)?,
                                    keys: [r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
                                    bytes: r.get(5)?,
                                })
                            })
                            .optional()?,
                        None => None,
                    };
                    let mut p = session_params(s);
                    let keys = rollup_keys(s);
                    let bytes = s.bytes() as i64;
                    match live {
                        None => {
                            insert.execute(rusqlite::params_from_iter(p.iter()))?;
                            for (dim, key) in keys.iter().enumerate() {
                                add_delta(&mut deltas, first_seen, dim, key, 1, bytes);
                            }
                        }
                        Some(old) => {
                            p.push(Box::new(old.rowid));
                            update.execute(rusqlite::params_from_iter(p.iter()))?;
                            for (dim, key) in keys.iter().enumerate() {
                                if *key == old.keys[dim] {
                                    add_delta(&mut deltas, first_seen, dim, key, 0, bytes - old.bytes);
                                } else {
                                    add_delta(&mut deltas, first_seen, dim, &old.keys[dim], -1, -old.bytes);
                                    add_delta(&mut deltas, first_seen, dim, key, 1, bytes);
                                }
                            }
                        }
                    }
                }
                Record::Dns(d) => insert_dns_row(&mut insert_dns, d)?,
                Record::Block(b) => insert_block_row(&mut insert_block, b)?,
            }
        }
        let mut ups = packed::LEVELS
            .iter()
            .map(|(_, table, col)| {
                tx.prepare_cached(&format!(
                    "INSERT INTO {table} (dim, {col}, key, sessions, bytes) VALUES (?1, ?2, ?3, ?4, ?5) \
                     ON CONFLICT (dim, {col}, key) DO UPDATE SET sessions = sessions + excluded.sessions, \
                     bytes = bytes + excluded.bytes"
                ))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut up_late = tx.prepare_cached(
            "INSERT INTO rollup_late (dim, span, start, key, sessions, bytes) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (dim, span, start, key) DO UPDATE SET sessions = sessions + excluded.sessions, \
             bytes = bytes + excluded.bytes",
        )?;
        for ((level, bucket, dim, key), (sessions, bytes)) in deltas {
            if sessions == 0 && bytes == 0 {
                continue;
            }
            let span = packed::LEVELS[level].0;
            let dim = schema::ROLLUP_DIMS[dim].0;
            ups[level].execute(params![dim, bucket, key, sessions, bytes])?;
            if packed.contains(span, bucket) {
                up_late.execute(params![dim, span, bucket, key, sessions, bytes])?;
            }
        }
    }
    tx.commit()?;
    Ok(())
}

fn insert_dns_row(stmt: &mut rusqlite::CachedStatement<'_>, d: &DnsRow) -> Result<(), Error> {
    stmt.execute(params![
        d.ts.micros() as i64,
        d.client.to_string(),
        d.sport,
        d.server.to_string(),
        d.dport,
        d.query,
        d.qtype,
        d.rcode,
        serde_json::to_string(&d.answers).unwrap_or_else(|_| "[]".into()),
        d.latency_us.map(|v| v as i64),
        d.flow_id as i64,
        d.proto,
    ])?;
    Ok(())
}

fn insert_block_row(stmt: &mut rusqlite::CachedStatement<'_>, b: &BlockRow) -> Result<(), Error> {
    stmt.execute(params![
        b.ts.micros() as i64,
        b.flow_id as i64,
        b.client.to_string(),
        b.sport,
        b.server.to_string(),
        b.dport,
        b.proto,
        b.rule,
        b.action,
        b.reason,
        b.protocol,
        b.hostname,
        b.app,
        b.category,
    ])?;
    Ok(())
}
