//! The report queries, on a read-only connection: what `vigil sessions` / `vigil report` print and
//! the web API will serve. Times are microseconds since the epoch; ranges are [since, until).
//!
//! Sessions are selected by first_seen (a session belongs to the time it started), as are the
//! rollups, so `top` over any range equals a GROUP BY over the sessions that started in it.

use crate::packed;
use crate::rows::{BlockRow, DnsRow, SessionRow};
use crate::schema::{self, DAY_US, HOUR_US};
use crate::Error;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row};
use serde::Serialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::str::FromStr;
use vigil_engine::{L7Details, Timestamp};

/// An address or a network ("10.1.2.3", "10.1.0.0/16", "2001:db8::/32").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl FromStr for Cidr {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Parse(format!("bad address or network {s:?}"));
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
            None => max,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl Cidr {
    fn bits(ip: &IpAddr) -> (u128, u8) {
        match ip {
            IpAddr::V4(a) => (u32::from(*a) as u128, 32),
            IpAddr::V6(a) => (u128::from(*a), 128),
        }
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        let (net, width) = Self::bits(&self.addr);
        let (x, w) = Self::bits(ip);
        if w != width {
            return false;
        }
        if self.prefix == 0 {
            return true;
        }
        let shift = width - self.prefix;
        (net >> shift) == (x >> shift)
    }

    pub fn is_host(&self) -> bool {
        self.prefix == if self.addr.is_ipv4() { 32 } else { 128 }
    }

    /// For an IPv4 network, the text every member starts with ("10.1." for 10.1.0.0/16).
    fn v4_text_prefix(&self) -> Option<String> {
        let IpAddr::V4(a) = self.addr else { return None };
        let octets = (self.prefix / 8) as usize;
        if octets == 0 {
            return None;
        }
        let o = a.octets();
        Some(o[..octets].iter().map(|b| format!("{b}.")).collect())
    }
}

/// Which sessions `sessions()` returns (newest first).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionFilter {
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// The client (src): an address or a network.
    pub client: Option<Cidr>,
    pub app: Option<String>,
    pub category: Option<String>,
    /// Exact ("www.example.com"), or "*.example.com" for example.com and every name under it.
    pub hostname: Option<String>,
    pub verdict: Option<String>,
    pub limit: usize,
}

impl Default for SessionFilter {
    fn default() -> Self {
        SessionFilter {
            since: None,
            until: None,
            client: None,
            app: None,
            category: None,
            hostname: None,
            verdict: None,
            limit: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dim {
    Apps,
    Categories,
    Clients,
    Domains,
}

impl Dim {
    /// The `dim` value in the rollup tables.
    pub fn rollup_name(self) -> &'static str {
        schema::ROLLUP_DIMS[self.index()].0
    }
    fn index(self) -> usize {
        match self {
            Dim::Apps => 0,
            Dim::Categories => 1,
            Dim::Clients => 2,
            Dim::Domains => 3,
        }
    }
    fn session_expr(self) -> &'static str {
        schema::ROLLUP_DIMS[self.index()].1
    }
    /// The column heading of its key.
    pub fn key_name(self) -> &'static str {
        match self {
            Dim::Apps => "app",
            Dim::Categories => "category",
            Dim::Clients => "client",
            Dim::Domains => "domain",
        }
    }
}

impl FromStr for Dim {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s.trim_start_matches("top-") {
            "apps" | "app" => Dim::Apps,
            "categories" | "category" => Dim::Categories,
            "clients" | "client" => Dim::Clients,
            "domains" | "domain" => Dim::Domains,
            _ => return Err(Error::Parse(format!("unknown report {s:?}: apps, categories, clients or domains"))),
        })
    }
}

/// What `top` ranks by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TopBy {
    #[default]
    Bytes,
    Sessions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TopRow {
    /// None for sessions without one (an unidentified app, no hostname).
    pub key: Option<String>,
    pub sessions: u64,
    pub bytes: u64,
}

/// Blocks grouped by the rule that blocked them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockRuleRow {
    pub rule: Option<String>,
    pub action: String,
    pub blocks: u64,
    pub clients: u64,
    pub last: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DnsFilter {
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub client: Option<Cidr>,
    /// "example.com" (or "*.example.com"): that name and every name under it.
    pub query_suffix: Option<String>,
    pub limit: usize,
}

/// A read-only connection to the report database.
pub struct Reader {
    conn: Connection,
}

fn like_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// `col` is `name` or ends with ".name" ("*." in front of name is allowed and ignored).
fn suffix_clause(col: &str, name: &str, args: &mut Vec<Value>) -> String {
    let name = name.strip_prefix("*.").unwrap_or(name);
    args.push(Value::Text(name.to_string()));
    args.push(Value::Text(format!("%.{}", like_escape(name))));
    format!("({col} = ? COLLATE NOCASE OR {col} LIKE ? ESCAPE '\\')")
}

/// Adds the clause for a client filter on `col`; returns the network to check row by row when no
/// text range captures it (anything but a host or an IPv4 network on an octet boundary).
fn client_filter(col: &str, c: Option<&Cidr>, wh: &mut Vec<String>, args: &mut Vec<Value>) -> Option<Cidr> {
    let c = c?;
    if let Some(clause) = client_clause(col, c, args) {
        wh.push(clause);
    }
    (!c.is_host()).then_some(*c)
}

fn client_clause(col: &str, c: &Cidr, args: &mut Vec<Value>) -> Option<String> {
    if c.is_host() {
        args.push(Value::Text(c.addr.to_string()));
        return Some(format!("{col} = ?"));
    }
    let p = c.v4_text_prefix()?;
    // Every text starting with "10.1." sorts in ["10.1.", "10.1/") ('/' follows '.').
    let mut hi = p.clone();
    hi.pop();
    hi.push('/');
    args.push(Value::Text(p));
    args.push(Value::Text(hi));
    Some(format!("{col} >= ? AND {col} < ?"))
}

fn time_clauses(col: &str, since: Option<i64>, until: Option<i64>, wh: &mut Vec<String>, args: &mut Vec<Value>) {
    if let Some(s) = since {
        wh.push(format!("{col} >= ?"));
        args.push(Value::Integer(s));
    }
    if let Some(u) = until {
        wh.push(format!("{col} < ?"));
        args.push(Value::Integer(u));
    }
}

fn where_sql(wh: &[String]) -> String {
    if wh.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", wh.join(" AND "))
    }
}

fn ip(r: &Row<'_>, i: usize) -> rusqlite::Result<IpAddr> {
    let s: String = r.get(i)?;
    s.parse().map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e)))
}

fn json_list(r: &Row<'_>, i: usize) -> rusqlite::Result<Vec<String>> {
    let s: Option<String> = r.get(i)?;
    match s {
        None => Ok(Vec::new()),
        Some(s) => serde_json::from_str(&s)
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))),
    }
}

fn ts(r: &Row<'_>, i: usize) -> rusqlite::Result<Timestamp> {
    Ok(Timestamp::from_micros(r.get::<_, i64>(i)?.max(0) as u64))
}

fn session_row(r: &Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        id: r.get::<_, Option<i64>>(0)?.map(|v| v as u64),
        community_id: r.get(1)?,
        proto: r.get(2)?,
        src: ip(r, 3)?,
        sport: r.get(4)?,
        dst: ip(r, 5)?,
        dport: r.get(6)?,
        protocol: r.get(7)?,
        protocol_guessed: r.get(8)?,
        app: r.get(9)?,
        category: r.get(10)?,
        hostname: r.get(11)?,
        name_source: r.get(12)?,
        ja4: r.get(13)?,
        alpn: json_list(r, 14)?,
        alpn_selected: r.get(15)?,
        dpi_packets: r.get(16)?,
        packets_c2s: r.get::<_, i64>(17)? as u64,
        packets_s2c: r.get::<_, i64>(18)? as u64,
        bytes_c2s: r.get::<_, i64>(19)? as u64,
        bytes_s2c: r.get::<_, i64>(20)? as u64,
        first_seen: ts(r, 21)?,
        last_seen: ts(r, 22)?,
        verdict: r.get(23)?,
        rule: r.get(24)?,
        tcp_state: r.get(25)?,
        end_reason: r.get(26)?,
        offloaded: r.get(27)?,
        midstream: r.get(28)?,
        in_if: r.get(29)?,
        out_if: r.get(30)?,
        client_mac: r.get(31)?,
        interim: r.get(32)?,
        bytes_source: r.get(33)?,
        details: L7Details {
            tls_version: r.get(34)?,
            ech: r.get(35)?,
            cert_names: json_list(r, 36)?,
            http_method: r.get(37)?,
            http_path: r.get(38)?,
            user_agent: r.get(39)?,
            client_banner: r.get(40)?,
            server_banner: r.get(41)?,
            dhcp_hostname: r.get(42)?,
            dhcp_vendor_class: r.get(43)?,
        },
    })
}

const SESSION_SELECT: &str = "SELECT id, community_id, proto, src, sport, dst, dport, protocol, protocol_guessed, \
    app, category, hostname, name_source, ja4, alpn, alpn_selected, dpi_packets, packets_c2s, packets_s2c, \
    bytes_c2s, bytes_s2c, first_seen, last_seen, verdict, rule, tcp_state, end_reason, offloaded, midstream, \
    in_if, out_if, client_mac, interim, bytes_source, tls_version, ech, cert_names, http_method, http_path, \
    user_agent, client_banner, server_banner, dhcp_hostname, dhcp_vendor_class FROM sessions";

const BLOCK_SELECT: &str = "SELECT ts, flow_id, client, sport, server, dport, proto, rule, action, reason, protocol, \
    hostname, app, category FROM blocks";

fn block_row(r: &Row<'_>) -> rusqlite::Result<BlockRow> {
    Ok(BlockRow {
        ts: ts(r, 0)?,
        flow_id: r.get::<_, i64>(1)? as u64,
        client: ip(r, 2)?,
        sport: r.get(3)?,
        server: ip(r, 4)?,
        dport: r.get(5)?,
        proto: r.get(6)?,
        rule: r.get(7)?,
        action: r.get(8)?,
        reason: r.get(9)?,
        protocol: r.get(10)?,
        hostname: r.get(11)?,
        app: r.get(12)?,
        category: r.get(13)?,
    })
}

const DNS_SELECT: &str =
    "SELECT ts, client, sport, server, dport, query, qtype, rcode, answers, latency_us, flow_id, proto FROM dns";

fn dns_row(r: &Row<'_>) -> rusqlite::Result<DnsRow> {
    Ok(DnsRow {
        ts: ts(r, 0)?,
        client: ip(r, 1)?,
        sport: r.get(2)?,
        server: ip(r, 3)?,
        dport: r.get(4)?,
        query: r.get(5)?,
        qtype: r.get(6)?,
        rcode: r.get(7)?,
        answers: json_list(r, 8)?,
        latency_us: r.get::<_, Option<i64>>(9)?.map(|v| v.max(0) as u64),
        flow_id: r.get::<_, i64>(10)? as u64,
        proto: r.get(11)?,
    })
}

/// Sessions and bytes per key over the parts of a top query: by key id for packed buckets, by
/// key for the rest (keys with an id are moved over before ranking).
#[derive(Default)]
struct Sums {
    /// The largest id of the dimension's keys.
    max_id: u64,
    by_id: Vec<(i64, i64)>,
    by_key: HashMap<String, (i64, i64), foldhash::fast::RandomState>,
}

/// A key to rank: its id, or its text when it has none yet.
enum KeyRef {
    Id(u64),
    Text(String),
}

impl Sums {
    /// Adds the `(key, sessions, bytes)` rows a query returns.
    fn add_rows(&mut self, mut rows: rusqlite::Rows<'_>) -> Result<(), Error> {
        while let Some(r) = rows.next()? {
            let key = r.get_ref(0)?.as_str().map_err(|e| Error::Corrupt(format!("rollup key: {e}")))?;
            let (s, b): (i64, Option<i64>) = (r.get(1)?, r.get(2)?);
            let t = match self.by_key.get_mut(key) {
                Some(t) => t,
                None => self.by_key.entry(key.to_owned()).or_default(),
            };
            t.0 += s;
            t.1 += b.unwrap_or(0);
        }
        Ok(())
    }

    /// The `limit` largest, ties broken by key.
    fn top(mut self, conn: &Connection, dim: Dim, limit: usize, by: TopBy) -> Result<Vec<TopRow>, Error> {
        let name = dim.rollup_name();
        let mut cands: Vec<(i64, i64, KeyRef)> = Vec::new();
        {
            let mut id_of = conn.prepare_cached("SELECT id FROM rollup_keys WHERE dim = ?1 AND key = ?2")?;
            for (key, (s, b)) in std::mem::take(&mut self.by_key) {
                match id_of.query_row(rusqlite::params![name, key], |r| r.get::<_, i64>(0)).optional()? {
                    Some(id) if (0..=self.max_id as i64).contains(&id) => {
                        let i = id as usize;
                        if i >= self.by_id.len() {
                            self.by_id.resize(i + 1, (0, 0));
                        }
                        self.by_id[i].0 += s;
                        self.by_id[i].1 += b;
                    }
                    _ => cands.push((s, b, KeyRef::Text(key))),
                }
            }
        }
        cands.extend(self.by_id.iter().enumerate().map(|(id, &(s, b))| (s, b, KeyRef::Id(id as u64))));
        cands.retain(|c| c.0 > 0);
        let metric = |c: &(i64, i64, KeyRef)| match by {
            TopBy::Bytes => (c.1.max(0), c.0),
            TopBy::Sessions => (c.0, c.1.max(0)),
        };
        if limit == 0 || cands.is_empty() {
            return Ok(Vec::new());
        }
        if limit < cands.len() {
            // Every candidate tied with the limit-th one, so the key decides among them.
            cands.select_nth_unstable_by(limit - 1, |a, b| metric(b).cmp(&metric(a)));
            let edge = metric(&cands[limit - 1]);
            cands.retain(|c| metric(c) >= edge);
        }
        let mut key_of = conn.prepare_cached("SELECT key FROM rollup_keys WHERE dim = ?1 AND id = ?2")?;
        let mut rows = Vec::with_capacity(cands.len());
        for c in cands {
            let m = metric(&c);
            let key = match c.2 {
                KeyRef::Text(k) => k,
                KeyRef::Id(id) => key_of
                    .query_row(rusqlite::params![name, id as i64], |r| r.get(0))
                    .optional()?
                    .ok_or_else(|| Error::Corrupt(format!("packed rollup: no {name} key with id {id}")))?,
            };
            rows.push(((m, key), c.0, c.1));
        }
        rows.sort_unstable_by(|a, b| b.0 .0.cmp(&a.0 .0).then_with(|| a.0 .1.cmp(&b.0 .1)));
        rows.truncate(limit);
        Ok(rows
            .into_iter()
            .map(|((_, key), s, b)| TopRow {
                key: (!key.is_empty()).then_some(key),
                sessions: s as u64,
                bytes: b.max(0) as u64,
            })
            .collect())
    }
}

/// Sessions that started in [lo, hi) (under an hour), straight from the sessions table. By
/// time: for GROUP BY src the planner would otherwise walk all of sessions_src.
fn raw_part(conn: &Connection, dim: Dim, lo: i64, hi: i64, sums: &mut Sums) -> Result<(), Error> {
    let mut st = conn.prepare_cached(&format!(
        "SELECT {}, COUNT(*), SUM(bytes_c2s + bytes_s2c) FROM sessions INDEXED BY sessions_first_seen \
         WHERE first_seen >= ?1 AND first_seen < ?2 GROUP BY 1",
        dim.session_expr()
    ))?;
    sums.add_rows(st.query(rusqlite::params![lo, hi])?)?;
    Ok(())
}

/// The buckets of `level` starting in [lo, hi): packed blobs plus their late deltas where packed,
/// rollup rows elsewhere (normally just the last hour or day).
fn bucket_parts(
    conn: &Connection,
    dim: Dim,
    level: packed::Level,
    lo: i64,
    hi: i64,
    sums: &mut Sums,
) -> Result<(), Error> {
    let (span, table, col) = level;
    let name = dim.rollup_name();
    let mut packed_starts = Vec::new();
    {
        let mut st = conn.prepare_cached(
            "SELECT start, data FROM rollup_packed WHERE dim = ?1 AND span = ?2 AND start >= ?3 AND start < ?4 \
             ORDER BY start",
        )?;
        let mut rows = st.query(rusqlite::params![name, span, lo, hi])?;
        while let Some(r) = rows.next()? {
            packed_starts.push(r.get::<_, i64>(0)?);
            let data = r.get_ref(1)?.as_blob().map_err(|e| Error::Corrupt(format!("packed rollup: {e}")))?;
            packed::add_into(data, sums.max_id, &mut sums.by_id)?;
        }
    }
    if !packed_starts.is_empty() {
        let mut st = conn.prepare_cached(
            "SELECT key, sessions, bytes FROM rollup_late WHERE dim = ?1 AND span = ?2 AND start >= ?3 AND start < ?4",
        )?;
        sums.add_rows(st.query(rusqlite::params![name, span, lo, hi])?)?;
    }
    let mut st = conn.prepare_cached(&format!(
        "SELECT key, sessions, bytes FROM {table} WHERE dim = ?1 AND {col} >= ?2 AND {col} < ?3"
    ))?;
    let mut from = lo;
    for start in packed_starts.into_iter().chain([hi]) {
        if from < start {
            sums.add_rows(st.query(rusqlite::params![name, from, start])?)?;
        }
        from = from.max(start + span);
    }
    Ok(())
}

fn ceil_to(t: i64, step: i64) -> i64 {
    (t + step - 1).div_euclid(step) * step
}
fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

impl Reader {
    /// Open an existing report database read-only (it must be at this build's schema version).
    pub fn open(path: impl AsRef<Path>) -> Result<Reader, Error> {
        Ok(Reader { conn: schema::open_ro(path.as_ref())? })
    }

    /// The underlying connection (for ad-hoc queries and tests).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Sessions matching `f`, newest (by first_seen) first.
    pub fn sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRow>, Error> {
        let mut wh = Vec::new();
        let mut args = Vec::new();
        time_clauses("first_seen", f.since, f.until, &mut wh, &mut args);
        let check_client = client_filter("src", f.client.as_ref(), &mut wh, &mut args);
        for (col, v) in [("app", &f.app), ("category", &f.category), ("verdict", &f.verdict)] {
            if let Some(v) = v {
                wh.push(format!("{col} = ?"));
                args.push(Value::Text(v.clone()));
            }
        }
        if let Some(h) = &f.hostname {
            if h.starts_with("*.") {
                wh.push(suffix_clause("hostname", h, &mut args));
            } else {
                wh.push("hostname = ? COLLATE NOCASE".into());
                args.push(Value::Text(h.clone()));
            }
        }
        let sql = format!("{SESSION_SELECT}{} ORDER BY first_seen DESC", where_sql(&wh));
        self.collect(sql, args, f.limit, check_client, session_row, |s| s.src)
    }

    /// Runs `sql` (a SELECT ... ORDER BY, without LIMIT) and keeps up to `limit` rows whose
    /// address is in `check_client` when there is one (then SQLite cannot apply the LIMIT).
    fn collect<T>(
        &self,
        mut sql: String,
        mut args: Vec<Value>,
        limit: usize,
        check_client: Option<Cidr>,
        row: fn(&Row<'_>) -> rusqlite::Result<T>,
        addr: fn(&T) -> IpAddr,
    ) -> Result<Vec<T>, Error> {
        if check_client.is_none() {
            sql.push_str(" LIMIT ?");
            args.push(Value::Integer(limit as i64));
        }
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        let mut out = Vec::new();
        while out.len() < limit {
            let Some(r) = rows.next()? else { break };
            let t = row(r)?;
            if check_client.is_none_or(|c| c.contains(&addr(&t))) {
                out.push(t);
            }
        }
        Ok(out)
    }

    /// The `limit` largest keys of `dim` by bytes, over sessions that started in [since, until).
    pub fn top(&self, dim: Dim, since: i64, until: i64, limit: usize) -> Result<Vec<TopRow>, Error> {
        self.top_by(dim, since, until, limit, TopBy::Bytes)
    }

    /// As [`Reader::top`], ranked by bytes or by sessions (ties by key). Whole days come from
    /// the daily rollups, whole hours from the hourly ones, and the partial hours at either end
    /// (the current hour, typically) from the sessions table. Closed buckets are read as their
    /// packed blobs and summed by key id into an array (packed.rs); the rest is summed by key.
    /// One read transaction: every part sees the same snapshot.
    pub fn top_by(&self, dim: Dim, since: i64, until: i64, limit: usize, by: TopBy) -> Result<Vec<TopRow>, Error> {
        let tx = self.conn.unchecked_transaction()?;
        let max_id: Option<i64> =
            tx.query_row("SELECT MAX(id) FROM rollup_keys WHERE dim = ?1", [dim.rollup_name()], |r| r.get(0))?;
        let mut sums = Sums { max_id: max_id.unwrap_or(0).max(0) as u64, ..Default::default() };
        if since < until {
            let (h1, h2) = (ceil_to(since, HOUR_US), floor_to(until, HOUR_US));
            if h1 >= h2 {
                raw_part(&tx, dim, since, until, &mut sums)?;
            } else {
                if since < h1 {
                    raw_part(&tx, dim, since, h1, &mut sums)?;
                }
                if h2 < until {
                    raw_part(&tx, dim, h2, until, &mut sums)?;
                }
                let (d1, d2) = (ceil_to(h1, DAY_US), floor_to(h2, DAY_US));
                if d1 < d2 {
                    if h1 < d1 {
                        bucket_parts(&tx, dim, packed::HOURLY, h1, d1, &mut sums)?;
                    }
                    bucket_parts(&tx, dim, packed::DAILY, d1, d2, &mut sums)?;
                    if d2 < h2 {
                        bucket_parts(&tx, dim, packed::HOURLY, d2, h2, &mut sums)?;
                    }
                } else {
                    bucket_parts(&tx, dim, packed::HOURLY, h1, h2, &mut sums)?;
                }
            }
        }
        sums.top(&tx, dim, limit, by)
    }

    /// Blocks in [since, until), newest first.
    pub fn blocked(&self, since: i64, until: i64, limit: usize) -> Result<Vec<BlockRow>, Error> {
        let mut stmt =
            self.conn.prepare(&format!("{BLOCK_SELECT} WHERE ts >= ?1 AND ts < ?2 ORDER BY ts DESC LIMIT ?3"))?;
        let rows = stmt.query_map(rusqlite::params![since, until, limit as i64], block_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Blocks in [since, until) grouped by rule and action, most blocks first (then the most
    /// recent). Counted here over the (ts, rule, action, client) index: SQLite's COUNT(DISTINCT)
    /// per group sorts every row again.
    pub fn blocked_by_rule(&self, since: i64, until: i64, limit: usize) -> Result<Vec<BlockRuleRow>, Error> {
        /// A (rule, action) group: blocks, distinct clients, newest block.
        struct Group {
            rule: Option<String>,
            action: String,
            blocks: u64,
            clients: std::collections::HashSet<String, foldhash::fast::RandomState>,
            last: i64,
        }
        // A handful of rules: a list compared by reference, no allocation per row.
        let mut groups: Vec<Group> = Vec::new();
        let mut st = self.conn.prepare_cached(
            "SELECT rule, action, client, ts FROM blocks INDEXED BY blocks_ts_rule WHERE ts >= ?1 AND ts < ?2",
        )?;
        let mut rows = st.query(rusqlite::params![since, until])?;
        let bad = |e: rusqlite::types::FromSqlError| Error::Corrupt(format!("blocks: {e}"));
        while let Some(r) = rows.next()? {
            let rule = r.get_ref(0)?.as_str_or_null().map_err(bad)?;
            let action = r.get_ref(1)?.as_str_or_null().map_err(bad)?.unwrap_or_default();
            let client = r.get_ref(2)?.as_str().map_err(bad)?;
            let ts: i64 = r.get(3)?;
            let g = match groups.iter().position(|g| g.rule.as_deref() == rule && g.action == action) {
                Some(i) => &mut groups[i],
                None => {
                    groups.push(Group {
                        rule: rule.map(str::to_owned),
                        action: action.to_owned(),
                        blocks: 0,
                        clients: Default::default(),
                        last: ts,
                    });
                    groups.last_mut().expect("just pushed")
                }
            };
            g.blocks += 1;
            g.last = g.last.max(ts);
            if !g.clients.contains(client) {
                g.clients.insert(client.to_owned());
            }
        }
        let mut out: Vec<BlockRuleRow> = groups
            .into_iter()
            .map(|g| BlockRuleRow {
                rule: g.rule,
                action: g.action,
                blocks: g.blocks,
                clients: g.clients.len() as u64,
                last: Timestamp::from_micros(g.last.max(0) as u64),
            })
            .collect();
        out.sort_by(|a, b| b.blocks.cmp(&a.blocks).then(b.last.cmp(&a.last)).then_with(|| a.rule.cmp(&b.rule)));
        out.truncate(limit);
        Ok(out)
    }

    /// DNS transactions matching `f`, newest first.
    pub fn dns(&self, f: &DnsFilter) -> Result<Vec<DnsRow>, Error> {
        let mut wh = Vec::new();
        let mut args = Vec::new();
        time_clauses("ts", f.since, f.until, &mut wh, &mut args);
        let check_client = client_filter("client", f.client.as_ref(), &mut wh, &mut args);
        if let Some(q) = &f.query_suffix {
            wh.push(suffix_clause("query", q, &mut args));
        }
        let sql = format!("{DNS_SELECT}{} ORDER BY ts DESC", where_sql(&wh));
        self.collect(sql, args, f.limit, check_client, dns_row, |d| d.client)
    }
}
