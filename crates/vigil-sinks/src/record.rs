//! What the sinks take: one enum over the engine's records.
//!
//! The one place that maps the engine's types onto the sinks' input: [`Record`] holds
//! [`FlowRecord`] (final and interim session records), [`DnsRecord`] and [`BlockRecord`] boxed as
//! the engine's [`Event`] has them, so [`Record::from_event`] moves them without a copy and a
//! queued record is 16 bytes (bounded channels allocate all their slots up front).

use vigil_engine::Event;
pub use vigil_engine::{BlockRecord, DnsRecord, FlowRecord};

/// One record for the sinks.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    Flow(Box<FlowRecord>),
    Dns(Box<DnsRecord>),
    Block(Box<BlockRecord>),
}

impl Record {
    /// The record an engine event carries, if any (`Revoke` and `Release` carry none).
    pub fn from_event(ev: Event) -> Option<Record> {
        match ev {
            Event::FlowEnd(f) | Event::FlowUpdate(f) => Some(Record::Flow(f)),
            Event::Dns(d) => Some(Record::Dns(d)),
            Event::Block(b) => Some(Record::Block(b)),
            Event::Revoke(_) | Event::Release { .. } => None,
        }
    }
}

impl From<FlowRecord> for Record {
    fn from(f: FlowRecord) -> Self {
        Record::Flow(Box::new(f))
    }
}
impl From<DnsRecord> for Record {
    fn from(d: DnsRecord) -> Self {
        Record::Dns(Box::new(d))
    }
}
impl From<BlockRecord> for Record {
    fn from(b: BlockRecord) -> Self {
        Record::Block(Box::new(b))
    }
}

/// DNS type number as text, as Suricata writes it; unknown types as their number.
pub fn rrtype_name(t: u16) -> String {
    let s = match t {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        13 => "HINFO",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        35 => "NAPTR",
        39 => "DNAME",
        41 => "OPT",
        43 => "DS",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        50 => "NSEC3",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        252 => "AXFR",
        255 => "ANY",
        257 => "CAA",
        _ => return t.to_string(),
    };
    s.to_string()
}

/// DNS response code as text, as Suricata writes it; unknown codes as their number.
pub fn rcode_name(r: u16) -> String {
    let s = match r {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        6 => "YXDOMAIN",
        7 => "YXRRSET",
        8 => "NXRRSET",
        9 => "NOTAUTH",
        10 => "NOTZONE",
        _ => return r.to_string(),
    };
    s.to_string()
}
