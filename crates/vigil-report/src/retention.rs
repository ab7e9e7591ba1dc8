//! Keeping the database within its limits: an age cap and a disk-space cap.
//!
//! - Age: sessions whose last_seen, DNS and block rows whose ts, and rollup buckets that end,
//!   before now − `max_age_days` are deleted.
//! - Size: while the pages in use exceed the cap (`max_bytes`, else `max_share_of_disk` of the
//!   filesystem holding the database), the oldest rows are deleted in chunks — the oldest chunk
//!   of sessions, and DNS and blocks up to the same time, so all three keep the same horizon. The
//!   rollups are small and stay (top reports keep their history); the age cap trims them. The
//!   WAL file (checkpointed at ~4 MiB) is not counted.
//!
//! Then `PRAGMA incremental_vacuum` hands the freed pages back to the filesystem. Deletes run in
//! chunks of their own transactions, so a reader never waits and the writer's pause is short.

use crate::packed;
use crate::schema::{DAY_US, ROLLUP_DIMS};
use crate::Error;
use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Retention {
    pub max_age_days: Option<u32>,
    /// Largest share of the database's filesystem the database may take, e.g. 0.10.
    pub max_share_of_disk: Option<f64>,
    /// An absolute cap in bytes; takes precedence over `max_share_of_disk` (tests, small disks).
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    pub sessions_deleted: u64,
    pub dns_deleted: u64,
    pub blocks_deleted: u64,
    pub rollups_deleted: u64,
    /// Bytes of pages in use after the run.
    pub used_bytes: u64,
    /// The size cap in force, if any.
    pub cap_bytes: Option<u64>,
}

impl RetentionReport {
    pub fn deleted_anything(&self) -> bool {
        self.sessions_deleted + self.dns_deleted + self.blocks_deleted + self.rollups_deleted > 0
    }
}

const CHUNK: i64 = 10_000;

/// Bytes of the pages holding data (the file size less its free pages).
pub fn used_bytes(conn: &Connection) -> Result<u64, Error> {
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    Ok(((pages - free).max(0) * page_size) as u64)
}

/// Total size of the filesystem holding `dir`.
pub fn filesystem_bytes(dir: &Path) -> Result<u64, Error> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Error::Parse(format!("path with a NUL byte: {}", dir.display())))?;
    // SAFETY: statvfs fills the zeroed struct; `c` is a valid NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error().into());
    }
    Ok(st.f_blocks as u64 * st.f_frsize as u64)
}

/// The size cap for a database at `db_path`, if any.
pub fn cap_bytes(db_path: &Path, r: &Retention) -> Result<Option<u64>, Error> {
    if let Some(b) = r.max_bytes {
        return Ok(Some(b));
    }
    let Some(share) = r.max_share_of_disk else { return Ok(None) };
    let dir = match db_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    Ok(Some((filesystem_bytes(dir)? as f64 * share.clamp(0.0, 1.0)) as u64))
}

/// Delete, chunk by chunk, the rows of `table` that `cond` (with ?1 = the cutoff) selects.
fn delete_chunked(conn: &mut Connection, table: &str, cond: &str, cutoff: i64) -> Result<u64, Error> {
    let sql = format!("DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} WHERE {cond} LIMIT {CHUNK})");
    let mut total = 0u64;
    loop {
        let tx = conn.transaction()?;
        let n = tx.execute(&sql, params![cutoff])?;
        tx.commit()?;
        total += n as u64;
        if (n as i64) < CHUNK {
            return Ok(total);
        }
    }
}

/// Delete the oldest hour of hourly rollups and the oldest day of daily ones. Returns the rows
/// deleted.
fn delete_oldest_rollups(conn: &mut Connection) -> Result<u64, Error> {
    let tx = conn.transaction()?;
    let mut n = 0;
    for (span, table, col) in packed::LEVELS {
        let oldest: Option<i64> = tx.query_row(&format!("SELECT MIN({col}) FROM {table}"), [], |r| r.get(0))?;
        let Some(oldest) = oldest else { continue };
        n += tx.execute(&format!("DELETE FROM {table} WHERE {col} = ?1"), [oldest])? as u64;
        delete_packed(&tx, span, oldest)?;
    }
    packed::forget_unused_keys(&tx)?;
    tx.commit()?;
    Ok(n)
}

/// Delete the packed blobs and late deltas of the `span` buckets starting at or before `last`.
fn delete_packed(tx: &rusqlite::Transaction<'_>, span: i64, last: i64) -> Result<(), Error> {
    for table in ["rollup_packed", "rollup_late"] {
        tx.execute(&format!("DELETE FROM {table} WHERE span = ?1 AND start <= ?2"), params![span, last])?;
    }
    Ok(())
}

/// Apply `r` at time `now_us`.
pub fn apply(conn: &mut Connection, db_path: &Path, r: &Retention, now_us: i64) -> Result<RetentionReport, Error> {
    let mut rep = RetentionReport::default();
    if let Some(days) = r.max_age_days {
        let cutoff = now_us - days as i64 * DAY_US;
        // first_seen <= last_seen: the first_seen index finds the candidates.
        rep.sessions_deleted += delete_chunked(conn, "sessions", "first_seen < ?1 AND last_seen < ?1", cutoff)?;
        rep.dns_deleted += delete_chunked(conn, "dns", "ts < ?1", cutoff)?;
        rep.blocks_deleted += delete_chunked(conn, "blocks", "ts < ?1", cutoff)?;
        let tx = conn.transaction()?;
        for (span, table, col) in packed::LEVELS {
            for (dim, _) in ROLLUP_DIMS {
                rep.rollups_deleted += tx.execute(
                    &format!("DELETE FROM {table} WHERE dim = ?1 AND {col} <= ?2"),
                    params![dim, cutoff - span],
                )? as u64;
            }
            delete_packed(&tx, span, cutoff - span)?;
        }
        packed::forget_unused_keys(&tx)?;
        tx.commit()?;
    }
    rep.cap_bytes = cap_bytes(db_path, r)?;
    if let Some(cap) = rep.cap_bytes {
        while used_bytes(conn)? > cap {
            // A chunk of about 1% of the sessions (rowids grow with time), 100..50 000 rows.
            let span: i64 =
                conn.query_row("SELECT COALESCE(MAX(rowid) - MIN(rowid) + 1, 0) FROM sessions", [], |row| row.get(0))?;
            let chunk = (span / 100).clamp(100, 50_000);
            let mut cutoff: Option<i64> = None;
            for (table, col) in [("sessions", "first_seen"), ("dns", "ts"), ("blocks", "ts")] {
                let nth: Option<i64> = conn
                    .query_row(
                        &format!("SELECT {col} FROM {table} ORDER BY {col} LIMIT 1 OFFSET ?1"),
                        [chunk - 1],
                        |row| row.get(0),
                    )
                    .optional()?;
                let t = match nth {
                    Some(t) => t + 1,
                    // Fewer rows than a chunk: all of them.
                    None => match conn
                        .query_row(&format!("SELECT MAX({col}) FROM {table}"), [], |row| row.get::<_, Option<i64>>(0))?
                    {
                        Some(max) => max + 1,
                        None => continue,
                    },
                };
                cutoff = Some(cutoff.map_or(t, |c: i64| c.min(t)));
            }
            let Some(cutoff) = cutoff else {
                // No raw rows left: the rollups alone are over the cap; drop their oldest bucket.
                let n = delete_oldest_rollups(conn)?;
                if n == 0 {
                    break;
                }
                rep.rollups_deleted += n;
                continue;
            };
            let s = delete_chunked(conn, "sessions", "first_seen < ?1", cutoff)?;
            let d = delete_chunked(conn, "dns", "ts < ?1", cutoff)?;
            let b = delete_chunked(conn, "blocks", "ts < ?1", cutoff)?;
            rep.sessions_deleted += s;
            rep.dns_deleted += d;
            rep.blocks_deleted += b;
            if s + d + b == 0 {
                break;
            }
        }
    }
    if rep.deleted_anything() {
        // Frees one page per result row: step it to the end.
        let mut stmt = conn.prepare("PRAGMA incremental_vacuum")?;
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        drop(rows);
        drop(stmt);
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    }
    conn.execute_batch("PRAGMA optimize;")?;
    rep.used_bytes = used_bytes(conn)?;
    Ok(rep)
}
