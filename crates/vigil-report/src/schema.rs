//! The database layout and its migrations.
//!
//! The schema version is SQLite's `PRAGMA user_version`. [`MIGRATIONS`] are applied in order, each
//! in its own transaction together with the version bump, so a crash mid-migration leaves the
//! previous version intact. A database newer than this build knows is refused, never touched.
//!
//! Times are INTEGER microseconds since the epoch, addresses TEXT (their usual notation), lists
//! (ALPN, DNS answers) JSON text, booleans 0/1. A session id (u64) is stored bit-cast to i64.

use crate::Error;
use rusqlite::Connection;

/// One hour / one day in microseconds: the rollup buckets.
pub const HOUR_US: i64 = 3_600_000_000;
pub const DAY_US: i64 = 24 * HOUR_US;

/// The rollup dimensions as stored in `rollup_*.dim`, with the sessions column each one groups by.
pub const ROLLUP_DIMS: [(&str, &str); 4] = [
    ("app", "COALESCE(app, '')"),
    ("category", "COALESCE(category, '')"),
    ("client", "src"),
    ("domain", "COALESCE(hostname, '')"),
];

/// Migration `i` brings the database from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the raw tables and the indexes of the report queries.
    r#"
    CREATE TABLE sessions (
        id               INTEGER,            -- the engine's session id; NULL when it had none
        community_id     TEXT,
        proto            TEXT    NOT NULL,
        src              TEXT    NOT NULL,   -- the client
        sport            INTEGER NOT NULL,
        dst              TEXT    NOT NULL,
        dport            INTEGER NOT NULL,
        protocol         TEXT    NOT NULL,
        protocol_guessed INTEGER NOT NULL DEFAULT 0,
        app              TEXT,
        category         TEXT,
        hostname         TEXT,
        name_source      TEXT,
        ja4              TEXT,
        alpn             TEXT,               -- JSON array
        alpn_selected    TEXT,
        dpi_packets      INTEGER,
        packets_c2s      INTEGER NOT NULL,
        packets_s2c      INTEGER NOT NULL,
        bytes_c2s        INTEGER NOT NULL,
        bytes_s2c        INTEGER NOT NULL,
        first_seen       INTEGER NOT NULL,   -- microseconds since the epoch
        last_seen        INTEGER NOT NULL,
        verdict          TEXT    NOT NULL,
        rule             TEXT,
        tcp_state        TEXT,
        end_reason       TEXT,
        offloaded        INTEGER NOT NULL DEFAULT 0,
        midstream        INTEGER NOT NULL DEFAULT 0,
        in_if            TEXT,
        out_if           TEXT,
        client_mac       TEXT,
        interim          INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX sessions_first_seen ON sessions(first_seen);
    CREATE INDEX sessions_src ON sessions(src, first_seen);
    CREATE INDEX sessions_app ON sessions(app, first_seen);
    CREATE INDEX sessions_verdict ON sessions(verdict, first_seen);
    -- Only sessions still running (an interim row waiting for its next update or final record):
    -- the writer's upsert finds them here, and the index stays as small as the live-session count.
    CREATE INDEX sessions_live ON sessions(id, first_seen) WHERE interim = 1;

    CREATE TABLE dns (
        ts         INTEGER NOT NULL,
        client     TEXT    NOT NULL,
        sport      INTEGER NOT NULL,
        server     TEXT    NOT NULL,
        dport      INTEGER NOT NULL,
        query      TEXT    NOT NULL,
        qtype      INTEGER NOT NULL,
        rcode      INTEGER NOT NULL,
        answers    TEXT    NOT NULL,        -- JSON array
        latency_us INTEGER,
        flow_id    INTEGER NOT NULL         -- the session's id, 0 when unknown
    );
    CREATE INDEX dns_ts ON dns(ts);
    CREATE INDEX dns_client ON dns(client, ts);

    CREATE TABLE blocks (
        ts       INTEGER NOT NULL,
        flow_id  INTEGER NOT NULL,
        client   TEXT    NOT NULL,
        sport    INTEGER NOT NULL,
        server   TEXT    NOT NULL,
        dport    INTEGER NOT NULL,
        proto    TEXT    NOT NULL,
        rule     TEXT,
        action   TEXT    NOT NULL,
        reason   TEXT    NOT NULL,
        protocol TEXT,
        hostname TEXT,
        app      TEXT,
        category TEXT
    );
    CREATE INDEX blocks_ts ON blocks(ts);
    CREATE INDEX blocks_rule ON blocks(rule, ts);
    "#,
    // 2: hourly and daily rollups of sessions by app, category, client and domain, backfilled from
    // the sessions already stored. A session counts in the bucket of its first_seen, with the
    // bytes of its latest record; the writer keeps them in step (see writer.rs).
    r#"
    CREATE TABLE rollup_hourly (
        hour     INTEGER NOT NULL,           -- microseconds, start of the hour (UTC)
        dim      TEXT    NOT NULL,           -- 'app', 'category', 'client', 'domain'
        key      TEXT    NOT NULL,           -- '' when the session had none
        sessions INTEGER NOT NULL,
        bytes    INTEGER NOT NULL,
        PRIMARY KEY (dim, hour, key)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_daily (
        day      INTEGER NOT NULL,           -- microseconds, start of the day (UTC)
        dim      TEXT    NOT NULL,
        key      TEXT    NOT NULL,
        sessions INTEGER NOT NULL,
        bytes    INTEGER NOT NULL,
        PRIMARY KEY (dim, day, key)
    ) WITHOUT ROWID;
    "#,
    // 3: where a session's counts come from ("vigil" or "conntrack").
    "ALTER TABLE sessions ADD COLUMN bytes_source TEXT;",
    // 4: the transport of a DNS message ("udp", "tcp").
    "ALTER TABLE dns ADD COLUMN proto TEXT NOT NULL DEFAULT 'udp';",
    // 5: closed rollup buckets packed into one blob per (dim, bucket) of small key ids, the ids,
    // and the deltas that reach a bucket after it was packed (see packed.rs); the writer packs
    // existing buckets a slice at a time. Blocks by rule read (ts, rule, action, client) from an
    // index alone (it replaces blocks_ts).
    r#"
    CREATE TABLE rollup_keys (
        dim  TEXT    NOT NULL,
        id   INTEGER NOT NULL,               -- dense per dim, reused once no blob refers to it
        key  TEXT    NOT NULL,
        last INTEGER NOT NULL,               -- start of the newest bucket packed with this key
        PRIMARY KEY (dim, id)
    ) WITHOUT ROWID;
    CREATE UNIQUE INDEX rollup_keys_key ON rollup_keys(dim, key);
    CREATE TABLE rollup_packed (
        dim   TEXT    NOT NULL,
        span  INTEGER NOT NULL,              -- bucket length, microseconds (an hour or a day)
        start INTEGER NOT NULL,              -- microseconds, start of the bucket (UTC)
        data  BLOB    NOT NULL,
        UNIQUE (dim, span, start)
    );
    CREATE TABLE rollup_late (
        dim      TEXT    NOT NULL,
        span     INTEGER NOT NULL,
        start    INTEGER NOT NULL,
        key      TEXT    NOT NULL,
        sessions INTEGER NOT NULL,
        bytes    INTEGER NOT NULL,
        PRIMARY KEY (dim, span, start, key)
    ) WITHOUT ROWID;
    CREATE INDEX blocks_ts_rule ON blocks(ts, rule, action, client);
    DROP INDEX blocks_ts;
    "#,
    // 6: the application-layer details some sessions carry: negotiated TLS version, ECH offered,
    // certificate names (JSON array, NULL when none), HTTP request method/path and User-Agent,
    // client/server banners (SSH), DHCP client hostname and vendor class. NULL (ech 0) in older rows.
    r#"
    ALTER TABLE sessions ADD COLUMN tls_version TEXT;
    ALTER TABLE sessions ADD COLUMN ech INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sessions ADD COLUMN cert_names TEXT;
    ALTER TABLE sessions ADD COLUMN http_method TEXT;
    ALTER TABLE sessions ADD COLUMN http_path TEXT;
    ALTER TABLE sessions ADD COLUMN user_agent TEXT;
    ALTER TABLE sessions ADD COLUMN client_banner TEXT;
    ALTER TABLE sessions ADD COLUMN server_banner TEXT;
    ALTER TABLE sessions ADD COLUMN dhcp_hostname TEXT;
    ALTER TABLE sessions ADD COLUMN dhcp_vendor_class TEXT;
    "#,
];

/// The version this build writes and reads.
pub const LATEST: u32 = MIGRATIONS.len() as u32;

pub fn user_version(conn: &Connection) -> Result<u32, Error> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))? as u32)
}

/// The backfill of migration 2 (rollups from the sessions already there).
fn backfill_rollups(conn: &Connection) -> Result<(), Error> {
    for (bucket, table, col) in crate::packed::LEVELS {
        for (dim, expr) in ROLLUP_DIMS {
            conn.execute_batch(&format!(
                "INSERT INTO {table} ({col}, dim, key, sessions, bytes)
                 SELECT (first_seen / {bucket}) * {bucket}, '{dim}', {expr}, COUNT(*), SUM(bytes_c2s + bytes_s2c)
                 FROM sessions GROUP BY 1, 3"
            ))?;
        }
    }
    Ok(())
}

/// Bring the database up to `target` (normally [`LATEST`]). Returns the version found.
pub fn migrate_to(conn: &mut Connection, target: u32) -> Result<u32, Error> {
    let found = user_version(conn)?;
    if found > LATEST {
        return Err(Error::TooNew { found, supported: LATEST });
    }
    for v in found..target.min(LATEST) {
        let tx = conn.transaction()?;
        tx.execute_batch(MIGRATIONS[v as usize])?;
        if v == 1 {
            backfill_rollups(&tx)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {}", v + 1))?;
        tx.commit()?;
        log::info!("report database migrated to schema version {}", v + 1);
    }
    Ok(found)
}

/// Open (creating if needed) the database for writing: incremental auto-vacuum on a new file,
/// WAL, the given synchronous level, and the schema brought up to date.
pub fn open_rw(path: &std::path::Path, synchronous: &str) -> Result<Connection, Error> {
    let mut conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    if pages == 0 {
        // Only possible before the first table exists.
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL")?;
    }
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        log::warn!("report database: journal_mode is {mode}, not wal");
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {synchronous};
         PRAGMA cache_size = -65536;
         PRAGMA temp_store = MEMORY;"
    ))?;
    migrate_to(&mut conn, LATEST)?;
    Ok(conn)
}

/// Open an existing database read-only for the queries.
pub fn open_ro(path: &std::path::Path) -> Result<Connection, Error> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch("PRAGMA mmap_size = 1073741824; PRAGMA cache_size = -65536; PRAGMA temp_store = MEMORY;")?;
    let found = user_version(&conn)?;
    if found > LATEST {
        return Err(Error::TooNew { found, supported: LATEST });
    }
    if found < LATEST {
        return Err(Error::TooOld { found, expected: LATEST });
    }
    Ok(conn)
}
