//! The rows the store keeps. Their serde field names are those of `vigil replay --format jsonl`
//! (the engine's `FlowRecord`), so `serde_json` of a [`SessionRow`] reads like a replay line.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use vigil_engine::{BlockRecord, DnsRecord, FlowRecord, L7Details, Timestamp};

/// One session (a flow, both directions). `id` identifies the session across its interim updates
/// and its final record; rows without an id are never merged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRow {
    #[serde(default)]
    pub id: Option<u64>,
    #[serde(default)]
    pub community_id: Option<String>,
    pub proto: String,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub protocol: String,
    #[serde(default)]
    pub protocol_guessed: bool,
    pub app: Option<String>,
    pub category: Option<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub name_source: Option<String>,
    pub ja4: Option<String>,
    #[serde(default)]
    pub alpn: Vec<String>,
    #[serde(default)]
    pub alpn_selected: Option<String>,
    #[serde(default)]
    pub dpi_packets: Option<u32>,
    pub packets_c2s: u64,
    pub packets_s2c: u64,
    pub bytes_c2s: u64,
    pub bytes_s2c: u64,
    /// Seconds since the epoch in JSON (as in replay), microseconds in the database.
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// "allow", "block", "reject", "mark" or "undecided".
    pub verdict: String,
    pub rule: Option<String>,
    pub tcp_state: Option<String>,
    /// "fin", "rst", "timeout", "eviction", "shutdown"; None for an interim update.
    pub end_reason: Option<String>,
    pub offloaded: bool,
    pub midstream: bool,
    #[serde(default)]
    pub in_if: Option<String>,
    #[serde(default)]
    pub out_if: Option<String>,
    #[serde(default)]
    pub client_mac: Option<String>,
    /// An update of a session still running; the final record (interim = false) replaces it.
    #[serde(default)]
    pub interim: bool,
    /// Where the counts come from: "vigil" (every packet passed through vigil) or "conntrack"
    /// (an offloaded flow, the kernel's accounting).
    #[serde(default)]
    pub bytes_source: Option<String>,
    /// The application-layer details only some sessions have (the engine's `FlowRecord` fields of
    /// the same names). After the older fields, so that CSV columns keep their positions; every
    /// one written, absent ones as null, false or [] (the CSV has a column for each).
    #[serde(flatten, serialize_with = "L7Details::serialize_all")]
    pub details: L7Details,
}

impl SessionRow {
    pub fn bytes(&self) -> u64 {
        self.bytes_c2s.saturating_add(self.bytes_s2c)
    }
}

/// The snake_case name serde gives a unit enum variant ("fin", "syn_sent", ...).
fn enum_name<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::new(),
    }
}

impl From<&FlowRecord> for SessionRow {
    fn from(r: &FlowRecord) -> Self {
        SessionRow {
            // 0: a record from before session ids (an old replay line).
            id: (r.id != 0).then_some(r.id),
            community_id: (!r.community_id.is_empty()).then(|| r.community_id.clone()),
            proto: r.proto.clone(),
            src: r.src,
            sport: r.sport,
            dst: r.dst,
            dport: r.dport,
            protocol: r.protocol.to_string(),
            protocol_guessed: r.protocol_guessed,
            app: r.app.as_deref().map(String::from),
            category: r.category.as_deref().map(String::from),
            hostname: r.hostname.as_deref().map(String::from),
            name_source: r.name_source.clone(),
            ja4: r.ja4.as_deref().map(String::from),
            alpn: r.alpn.clone(),
            alpn_selected: r.alpn_selected.clone(),
            dpi_packets: r.dpi_packets,
            packets_c2s: r.packets_c2s,
            packets_s2c: r.packets_s2c,
            bytes_c2s: r.bytes_c2s,
            bytes_s2c: r.bytes_s2c,
            first_seen: r.first_seen,
            last_seen: r.last_seen,
            verdict: r.verdict.to_string(),
            rule: r.rule.as_deref().map(String::from),
            tcp_state: r.tcp_state.as_ref().map(enum_name),
            // An interim update has no end yet (the engine fills in "timeout").
            end_reason: (!r.interim).then(|| enum_name(&r.end_reason)),
            offloaded: r.offloaded,
            midstream: r.midstream,
            in_if: r.in_if.clone(),
            out_if: r.out_if.clone(),
            client_mac: r.client_mac.clone(),
            interim: r.interim,
            bytes_source: (!r.bytes_source.is_empty()).then(|| r.bytes_source.clone()),
            details: r.details.clone(),
        }
    }
}

/// One DNS transaction seen by the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsRow {
    pub ts: Timestamp,
    /// "udp" or "tcp".
    #[serde(default = "udp_name")]
    pub proto: String,
    pub client: IpAddr,
    #[serde(default)]
    pub sport: u16,
    pub server: IpAddr,
    #[serde(default)]
    pub dport: u16,
    pub query: String,
    pub qtype: u16,
    pub rcode: u8,
    #[serde(default)]
    pub answers: Vec<String>,
    #[serde(default)]
    pub latency_us: Option<u64>,
    /// The session the message belongs to (0: unknown).
    #[serde(default)]
    pub flow_id: u64,
}

fn udp_name() -> String {
    "udp".into()
}

impl From<&DnsRecord> for DnsRow {
    fn from(r: &DnsRecord) -> Self {
        DnsRow {
            ts: r.ts,
            proto: r.proto.clone(),
            client: r.client,
            sport: r.sport,
            server: r.server,
            dport: r.dport,
            query: r.query.clone(),
            qtype: r.qtype,
            rcode: r.rcode,
            answers: r.answers.clone(),
            latency_us: r.latency_us,
            flow_id: r.flow_id,
        }
    }
}

/// One blocked (or rejected) connection attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockRow {
    pub ts: Timestamp,
    /// The session blocked (0: unknown).
    #[serde(default)]
    pub flow_id: u64,
    pub client: IpAddr,
    pub sport: u16,
    pub server: IpAddr,
    pub dport: u16,
    pub proto: String,
    pub rule: Option<String>,
    /// "block" or "reject".
    pub action: String,
    /// "policy" (a rule), "default" (the policy default) or "revoked" (a reload or a schedule).
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub protocol: Option<String>,
    pub hostname: Option<String>,
    pub app: Option<String>,
    pub category: Option<String>,
}

impl From<&BlockRecord> for BlockRow {
    fn from(r: &BlockRecord) -> Self {
        BlockRow {
            ts: r.ts,
            flow_id: r.flow_id,
            client: r.client,
            sport: r.sport,
            server: r.server,
            dport: r.dport,
            proto: r.proto.clone(),
            rule: r.rule.as_deref().map(String::from),
            action: r.action.to_string(),
            reason: r.reason.clone(),
            protocol: r.protocol.as_deref().map(String::from),
            hostname: r.hostname.as_deref().map(String::from),
            app: r.app.as_deref().map(String::from),
            category: r.category.as_deref().map(String::from),
        }
    }
}

/// What the writer stores.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Boxed: a session row is much larger than the others, and the queue's slots are as large
    /// as the largest variant.
    Session(Box<SessionRow>),
    Dns(DnsRow),
    Block(BlockRow),
}

impl From<SessionRow> for Record {
    fn from(r: SessionRow) -> Self {
        Record::Session(Box::new(r))
    }
}
impl From<DnsRow> for Record {
    fn from(r: DnsRow) -> Self {
        Record::Dns(r)
    }
}
impl From<BlockRow> for Record {
    fn from(r: BlockRow) -> Self {
        Record::Block(r)
    }
}
impl From<&FlowRecord> for Record {
    fn from(r: &FlowRecord) -> Self {
        Record::Session(Box::new(SessionRow::from(r)))
    }
}
impl From<&DnsRecord> for Record {
    fn from(r: &DnsRecord) -> Self {
        Record::Dns(DnsRow::from(r))
    }
}
impl From<&BlockRecord> for Record {
    fn from(r: &BlockRecord) -> Self {
        Record::Block(BlockRow::from(r))
    }
}
