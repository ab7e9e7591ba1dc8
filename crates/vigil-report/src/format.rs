//! Output of the reports: an aligned text table (for people), CSV (RFC 4180: every field with a
//! comma, quote, CR or LF is quoted, quotes doubled, CRLF line ends) and JSON lines (one object
//! per row, with the replay field names: `dport`, `bytes_s2c`, `first_seen` in epoch seconds...).
//!
//! CSV columns are the JSON fields, in the same order and with the same names; lists (ALPN,
//! certificate names, DNS answers) are joined with ';', absent values are empty.

use crate::query::{BlockRuleRow, TopRow};
use crate::rows::{BlockRow, DnsRow, SessionRow};
use crate::time::format_rfc3339;
use serde::Serialize;
use vigil_engine::Timestamp;

/// A row type the formatters know how to lay out.
pub trait Tabular: Serialize {
    /// The CSV / JSON field names, in order.
    const FIELDS: &'static [&'static str];
    /// The columns of the text table.
    fn table_headers() -> Vec<&'static str>;
    fn table_cells(&self) -> Vec<String>;
}

fn time(t: Timestamp) -> String {
    format_rfc3339(t.micros() as i64)
}

fn opt(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".into())
}

/// 1234567 -> "1.2M" (powers of 1024 as K, M, G, T).
pub fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

fn endpoint(ip: &std::net::IpAddr, port: u16) -> String {
    match ip {
        std::net::IpAddr::V6(_) => format!("[{ip}]:{port}"),
        _ => format!("{ip}:{port}"),
    }
}

impl Tabular for SessionRow {
    const FIELDS: &'static [&'static str] = &[
        "id",
        "community_id",
        "proto",
        "src",
        "sport",
        "dst",
        "dport",
        "protocol",
        "protocol_guessed",
        "app",
        "category",
        "hostname",
        "name_source",
        "ja4",
        "alpn",
        "alpn_selected",
        "dpi_packets",
        "packets_c2s",
        "packets_s2c",
        "bytes_c2s",
        "bytes_s2c",
        "first_seen",
        "last_seen",
        "verdict",
        "rule",
        "tcp_state",
        "end_reason",
        "offloaded",
        "midstream",
        "in_if",
        "out_if",
        "client_mac",
        "interim",
        "bytes_source",
        "tls_version",
        "ech",
        "cert_names",
        "http_method",
        "http_path",
        "user_agent",
        "client_banner",
        "server_banner",
        "dhcp_hostname",
        "dhcp_vendor_class",
    ];
    fn table_headers() -> Vec<&'static str> {
        vec!["first_seen", "client", "server", "proto", "app", "hostname", "verdict", "bytes", "secs", "end"]
    }
    fn table_cells(&self) -> Vec<String> {
        let secs = self.last_seen.micros().saturating_sub(self.first_seen.micros()) as f64 / 1e6;
        vec![
            time(self.first_seen),
            endpoint(&self.src, self.sport),
            endpoint(&self.dst, self.dport),
            format!("{}/{}", self.proto, self.protocol),
            opt(&self.app),
            opt(&self.hostname),
            self.verdict.clone(),
            human_bytes(self.bytes()),
            format!("{secs:.1}"),
            if self.interim { "running".into() } else { opt(&self.end_reason) },
        ]
    }
}

impl Tabular for TopRow {
    const FIELDS: &'static [&'static str] = &["key", "sessions", "bytes"];
    fn table_headers() -> Vec<&'static str> {
        vec!["key", "sessions", "bytes"]
    }
    fn table_cells(&self) -> Vec<String> {
        vec![self.key.clone().unwrap_or_else(|| "(none)".into()), self.sessions.to_string(), human_bytes(self.bytes)]
    }
}

impl Tabular for DnsRow {
    const FIELDS: &'static [&'static str] = &[
        "ts",
        "proto",
        "client",
        "sport",
        "server",
        "dport",
        "query",
        "qtype",
        "rcode",
        "answers",
        "latency_us",
        "flow_id",
    ];
    fn table_headers() -> Vec<&'static str> {
        vec!["ts", "client", "server", "query", "qtype", "rcode", "answers", "latency_ms"]
    }
    fn table_cells(&self) -> Vec<String> {
        vec![
            time(self.ts),
            self.client.to_string(),
            self.server.to_string(),
            self.query.clone(),
            self.qtype.to_string(),
            self.rcode.to_string(),
            if self.answers.is_empty() { "-".into() } else { self.answers.join(",") },
            self.latency_us.map_or("-".into(), |us| format!("{:.1}", us as f64 / 1000.0)),
        ]
    }
}

impl Tabular for BlockRow {
    const FIELDS: &'static [&'static str] = &[
        "ts", "flow_id", "client", "sport", "server", "dport", "proto", "rule", "action", "reason", "protocol",
        "hostname", "app", "category",
    ];
    fn table_headers() -> Vec<&'static str> {
        vec!["ts", "client", "server", "proto", "rule", "action", "hostname", "app"]
    }
    fn table_cells(&self) -> Vec<String> {
        vec![
            time(self.ts),
            endpoint(&self.client, self.sport),
            endpoint(&self.server, self.dport),
            self.proto.clone(),
            opt(&self.rule),
            self.action.clone(),
            opt(&self.hostname),
            opt(&self.app),
        ]
    }
}

impl Tabular for BlockRuleRow {
    const FIELDS: &'static [&'static str] = &["rule", "action", "blocks", "clients", "last"];
    fn table_headers() -> Vec<&'static str> {
        vec!["rule", "action", "blocks", "clients", "last"]
    }
    fn table_cells(&self) -> Vec<String> {
        vec![
            self.rule.clone().unwrap_or_else(|| "(default)".into()),
            self.action.clone(),
            self.blocks.to_string(),
            self.clients.to_string(),
            time(self.last),
        ]
    }
}

fn is_numeric(s: &str) -> bool {
    let s = s.trim_end_matches(['K', 'M', 'G', 'T']);
    !s.is_empty() && s.parse::<f64>().is_ok()
}

/// An aligned text table with a header line; numeric columns are right-aligned.
pub fn format_table<T: Tabular>(rows: &[T]) -> String {
    let headers = T::table_headers();
    let cells: Vec<Vec<String>> = rows.iter().map(|r| r.table_cells()).collect();
    let mut width: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    let mut numeric = vec![!cells.is_empty(); headers.len()];
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            width[i] = width[i].max(c.chars().count());
            numeric[i] &= is_numeric(c);
        }
    }
    let line = |vals: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, v) in vals.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = width[i].saturating_sub(v.chars().count());
            if numeric[i] {
                s.extend(std::iter::repeat_n(' ', pad));
                s.push_str(v);
            } else {
                s.push_str(v);
                if i + 1 < width.len() {
                    s.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        s.truncate(s.trim_end().len());
        s.push('\n');
        s
    };
    let mut out = line(&mut headers.iter().copied());
    for row in &cells {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// One CSV field, quoted when RFC 4180 requires it.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn csv_value(v: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a.iter().map(|x| csv_value(Some(x))).collect::<Vec<_>>().join(";"),
        Some(other) => other.to_string(),
    }
}

/// CSV with a header line of the JSON field names; CRLF line ends.
pub fn format_csv<T: Tabular>(rows: &[T]) -> String {
    let mut out = T::FIELDS.iter().map(|f| csv_field(f)).collect::<Vec<_>>().join(",");
    out.push_str("\r\n");
    for r in rows {
        let v = serde_json::to_value(r).unwrap_or_default();
        let line: Vec<String> = T::FIELDS.iter().map(|f| csv_field(&csv_value(v.get(*f)))).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

/// JSON lines: one object per row.
pub fn format_jsonl<T: Serialize>(rows: &[T]) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str(&serde_json::to_string(r).unwrap_or_default());
        out.push('\n');
    }
    out
}
