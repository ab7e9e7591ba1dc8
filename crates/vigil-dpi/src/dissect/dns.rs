//! DNS over UDP and TCP (and mDNS on 5353, LLMNR on 5355): queries, answers (A, AAAA, CNAME,
//! HTTPS/SVCB address hints), rcode.
//!
//! DNS is an early candidate for every UDP flow, so a message must parse completely (header
//! sanity, every question and record within bounds, no trailing bytes off the well-known ports)
//! before the flow is called DNS; random payloads fail within a packet or two. Once identified the
//! dissector keeps answering `Identified` so that every response on the flow teaches the DNS cache
//! (the classifier drains `facts.dns.answers` after each packet).

use super::{Dissector, Step};
use crate::facts::{DnsAnswer, DnsFacts, Facts, NameSource};
use crate::view::PacketView;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Longest name (RFC 1035: 255 octets on the wire).
const MAX_NAME: usize = 255;
/// Compression pointers followed per name before giving up (loop protection on top of the
/// "pointers only go backwards" rule).
const MAX_HOPS: usize = 32;
/// Answers kept per message (bounds allocation on hostile responses).
const MAX_ANSWERS: usize = 64;
/// Records per message accepted as plausible.
const MAX_RECORDS: usize = 512;
/// TCP bytes buffered per direction while a length-prefixed message is incomplete.
const MAX_TCP_BUF: usize = 16 * 1024;

/// Why a message did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DnsError {
    #[error("message truncated")]
    Truncated,
    #[error("implausible header")]
    Header,
    #[error("bad name encoding")]
    Name,
    #[error("compression loop")]
    Loop,
    #[error("implausible record")]
    Record,
    #[error("trailing bytes after the last record")]
    Trailing,
}

fn u16_at(b: &[u8], off: usize) -> Result<u16, DnsError> {
    let s = b.get(off..off.checked_add(2).ok_or(DnsError::Truncated)?).ok_or(DnsError::Truncated)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Result<u32, DnsError> {
    let s = b.get(off..off.checked_add(4).ok_or(DnsError::Truncated)?).ok_or(DnsError::Truncated)?;
    Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// Reads a (possibly compressed) name at `off`; returns the offset just after it in place. The
/// name goes to `out` when given (labels joined by '.', bytes outside printable ASCII escaped).
pub fn read_name(msg: &[u8], off: usize, mut out: Option<&mut String>) -> Result<usize, DnsError> {
    let mut pos = off;
    let mut end = None;
    let mut hops = 0;
    let mut wire_len = 0usize;
    // Pointers must go strictly backwards from the lowest position visited: no loops possible.
    let mut floor = off;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated)?;
        match len & 0xc0 {
            0x00 => {
                if len == 0 {
                    return Ok(end.unwrap_or(pos + 1));
                }
                let label = msg.get(pos + 1..pos + 1 + usize::from(len)).ok_or(DnsError::Truncated)?;
                wire_len += 1 + label.len();
                if wire_len > MAX_NAME {
                    return Err(DnsError::Name);
                }
                if let Some(out) = out.as_deref_mut() {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    for &b in label {
                        if b.is_ascii_graphic() && b != b'.' && b != b'\\' {
                            out.push(char::from(b));
                        } else {
                            out.push_str(&format!("\\{b:03}"));
                        }
                    }
                }
                pos += 1 + label.len();
            }
            0xc0 => {
                let target = usize::from(u16_at(msg, pos)? & 0x3fff);
                hops += 1;
                if target >= floor || hops > MAX_HOPS {
                    return Err(DnsError::Loop);
                }
                end.get_or_insert(pos + 2);
                floor = target;
                pos = target;
            }
            _ => return Err(DnsError::Name), // 0x40/0x80: obsolete or reserved label types
        }
    }
}

/// Class values seen in practice (IN, CH, HS, NONE, ANY); mDNS sets the top bit (cache flush /
/// unicast response).
fn plausible_class(class: u16) -> bool {
    matches!(class & 0x7fff, 1 | 3 | 4 | 254 | 255)
}

/// One parsed message: facts plus whether it consumed exactly its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub facts: DnsFacts,
    /// Questions in the message (mDNS responses often carry none).
    pub questions: u16,
    /// Name of the first answer, for messages without a question (mDNS announcements).
    pub first_answer_name: Option<String>,
    /// The records ended exactly at the end of the message.
    pub exact: bool,
}

/// How strictly to parse: a flow on DNS's own ports gets the benefit of the doubt for a
/// snaplen-truncated tail; elsewhere every byte must make sense.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    WellKnownPort,
    Anywhere,
}

/// Parses a DNS message (no TCP length prefix).
pub fn parse_message(msg: &[u8], strict: Strictness, mdns: bool) -> Result<Parsed, DnsError> {
    let id = u16_at(msg, 0)?;
    let flags = u16_at(msg, 2)?;
    let qd = u16_at(msg, 4)?;
    let an = u16_at(msg, 6)?;
    let ns = u16_at(msg, 8)?;
    let ar = u16_at(msg, 10)?;
    let is_response = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let rcode = (flags & 0xf) as u8;
    if !matches!(opcode, 0 | 2 | 4 | 5) || flags & 0x0040 != 0 {
        return Err(DnsError::Header);
    }
    let total = usize::from(qd) + usize::from(an) + usize::from(ns) + usize::from(ar);
    // Each question takes at least 5 bytes, each record at least 11.
    let min_len = 12 + 5 * usize::from(qd) + 11 * (total - usize::from(qd));
    if total == 0 || total > MAX_RECORDS || min_len > msg.len() && strict == Strictness::Anywhere {
        return Err(DnsError::Header);
    }
    if !mdns {
        // Unicast DNS: exactly one question (RFC 9619) and a query carries no answers or rcode.
        if qd != 1 && !(is_response && qd == 0 && opcode != 0) {
            return Err(DnsError::Header);
        }
        if !is_response && (rcode != 0 || an > 0 && opcode == 0) {
            return Err(DnsError::Header);
        }
    } else if opcode != 0 || rcode != 0 {
        return Err(DnsError::Header);
    }
    let mut p = Parsed {
        facts: DnsFacts { id, is_response, rcode: is_response.then_some(rcode), ..DnsFacts::default() },
        questions: qd,
        ..Parsed::default()
    };
    let mut off = 12;
    for i in 0..qd {
        let mut name = String::new();
        off = read_name(msg, off, (i == 0).then_some(&mut name))?;
        let qtype = u16_at(msg, off)?;
        let class = u16_at(msg, off + 2)?;
        if !plausible_class(class) || qtype == 0 {
            return Err(DnsError::Record);
        }
        off += 4;
        if i == 0 {
            p.facts.query = Some(name);
            p.facts.qtype = Some(qtype);
        }
    }
    let answers = usize::from(an);
    for i in 0..total - usize::from(qd) {
        match parse_record(msg, off, i < answers, &mut p) {
            Ok(next) => off = next,
            // A truncated capture of a real response on port 53: keep what parsed.
            Err(DnsError::Truncated) if strict == Strictness::WellKnownPort && i > 0 => return Ok(p),
            Err(e) => return Err(e),
        }
    }
    p.exact = off == msg.len();
    if !p.exact && strict == Strictness::Anywhere {
        return Err(DnsError::Trailing);
    }
    Ok(p)
}

/// Parses one resource record at `off`; answers worth remembering go to `p`.
fn parse_record(msg: &[u8], off: usize, in_answer: bool, p: &mut Parsed) -> Result<usize, DnsError> {
    let mut owner = String::new();
    let off = read_name(msg, off, Some(&mut owner))?;
    let rtype = u16_at(msg, off)?;
    let class = u16_at(msg, off + 2)?;
    let ttl = u32_at(msg, off + 4)?;
    let rdlen = usize::from(u16_at(msg, off + 8)?);
    let rstart = off + 10;
    let rdata = msg.get(rstart..rstart + rdlen).ok_or(DnsError::Truncated)?;
    // OPT (41) uses the class field for the UDP payload size.
    if rtype != 41 && !plausible_class(class) {
        return Err(DnsError::Record);
    }
    if in_answer && p.first_answer_name.is_none() {
        p.first_answer_name = Some(owner.clone());
    }
    let keep = in_answer && p.facts.answers.len() < MAX_ANSWERS;
    match rtype {
        1 | 28 => {
            let addr = match rdata.len() {
                4 => IpAddr::V4(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3])),
                16 => {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(rdata);
                    IpAddr::V6(Ipv6Addr::from(a))
                }
                _ => return Err(DnsError::Record),
            };
            if (rtype == 1) != addr.is_ipv4() {
                return Err(DnsError::Record);
            }
            if keep {
                p.facts.answers.push(DnsAnswer::Addr { name: owner, addr, ttl });
            }
        }
        5 => {
            let mut target = String::new();
            let end = read_name(msg, rstart, Some(&mut target))?;
            if end != rstart + rdlen {
                return Err(DnsError::Record);
            }
            if keep {
                p.facts.answers.push(DnsAnswer::Cname { name: owner, target, ttl });
            }
        }
        64 | 65 if keep => svcb_hints(msg, rstart, rdlen, &owner, ttl, p),
        _ => {}
    }
    Ok(rstart + rdlen)
}

/// HTTPS/SVCB (RFC 9460): ipv4hint (4) and ipv6hint (6) addresses become address answers for
/// the record's owner; malformed parameters are skipped, not fatal (the record is still DNS).
fn svcb_hints(msg: &[u8], rstart: usize, rdlen: usize, owner: &str, ttl: u32, p: &mut Parsed) {
    let end = rstart + rdlen;
    let Ok(mut off) = read_name(msg, rstart + 2, None) else { return };
    while off + 4 <= end {
        let (Ok(key), Ok(len)) = (u16_at(msg, off), u16_at(msg, off + 2)) else { return };
        let vstart = off + 4;
        let vend = vstart + usize::from(len);
        let Some(value) = msg.get(vstart..vend.min(end)).filter(|_| vend <= end) else { return };
        let width = match key {
            4 => 4,
            6 => 16,
            _ => 0,
        };
        if width != 0 && value.len() % width == 0 {
            for chunk in value.chunks_exact(width) {
                if p.facts.answers.len() >= MAX_ANSWERS {
                    return;
                }
                let addr = if width == 4 {
                    IpAddr::V4(Ipv4Addr::new(chunk[0], chunk[1], chunk[2], chunk[3]))
                } else {
                    let mut a = [0u8; 16];
                    a.copy_from_slice(chunk);
                    IpAddr::V6(Ipv6Addr::from(a))
                };
                p.facts.answers.push(DnsAnswer::Addr { name: owner.to_owned(), addr, ttl });
            }
        }
        off = vend;
    }
}

#[derive(Debug, Default)]
pub struct Dns {
    identified: bool,
    /// Messages that failed to parse since identification (a flow that turns to garbage stops).
    bad: u8,
    /// TCP: bytes of an incomplete length-prefixed message, per direction.
    tcp_buf: [Vec<u8>; 2],
}

impl Dns {
    fn protocol(pkt: &PacketView<'_>) -> &'static str {
        if pkt.has_port(5353) {
            "MDNS"
        } else if pkt.has_port(5355) {
            "LLMNR"
        } else {
            "DNS"
        }
    }

    fn strictness(pkt: &PacketView<'_>) -> Strictness {
        if pkt.has_port(53) || pkt.has_port(5353) || pkt.has_port(5355) {
            Strictness::WellKnownPort
        } else {
            Strictness::Anywhere
        }
    }

    /// Handles one complete message; returns false when it is not DNS.
    fn on_message(&mut self, msg: &[u8], pkt: &PacketView<'_>, facts: &mut Facts) -> bool {
        let mdns = pkt.has_port(5353);
        let Ok(parsed) = parse_message(msg, Self::strictness(pkt), mdns) else { return false };
        if !self.identified {
            facts.protocol = Some(Self::protocol(pkt));
            self.identified = true;
        }
        let name = parsed.facts.query.clone().or(parsed.first_answer_name);
        if let Some(name) = name {
            facts.set_hostname(&name, NameSource::Dns);
        }
        facts.dns = Some(parsed.facts);
        true
    }

    fn on_tcp(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let dir = pkt.dir.index();
        let mut buf = std::mem::take(&mut self.tcp_buf[dir]);
        let room = MAX_TCP_BUF.saturating_sub(buf.len());
        buf.extend_from_slice(pkt.payload.get(..room).unwrap_or(pkt.payload));
        let mut off = 0;
        let mut ok = true;
        let mut any = false;
        while let Ok(len) = u16_at(&buf, off) {
            let len = usize::from(len);
            if len < 12 {
                ok = false;
                break;
            }
            let Some(msg) = buf.get(off + 2..off + 2 + len) else {
                if !self.identified && !pkt.has_port(53) {
                    ok = false; // off DNS's port a first segment must hold a whole message
                }
                break;
            };
            if !self.on_message(msg, pkt, facts) {
                ok = false;
                break;
            }
            any = true;
            off += 2 + len;
        }
        if ok {
            let rest = buf.get(off..).unwrap_or_default();
            if buf.len() < MAX_TCP_BUF {
                self.tcp_buf[dir] = rest.to_vec();
            }
        }
        self.verdict(ok, any)
    }

    fn verdict(&mut self, ok: bool, any: bool) -> Step {
        match (self.identified, ok) {
            (false, false) => Step::NotMine,
            (false, true) => Step::NeedMore,
            (true, true) => {
                if any {
                    self.bad = 0;
                }
                Step::Identified
            }
            (true, false) => {
                self.bad += 1;
                if self.bad >= 4 {
                    Step::Done
                } else {
                    Step::Identified
                }
            }
        }
    }
}

impl Dissector for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        // NetBIOS name service speaks DNS's wire format; it is NetBIOS's flow.
        if !self.identified && (pkt.has_port(137) || pkt.has_port(138)) {
            return Step::NotMine;
        }
        if pkt.payload.is_empty() {
            return if self.identified { Step::Identified } else { Step::NeedMore };
        }
        if pkt.is_tcp() {
            return self.on_tcp(pkt, facts);
        }
        let ok = self.on_message(pkt.payload, pkt, facts);
        self.verdict(ok, ok)
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::*;
    use crate::view::Dir;
    use vigil_wire::L4Proto;

    const QUERY: &[u8] = include_bytes!("../../tests/fixtures/dns/query_a.bin");
    const RESPONSE: &[u8] = include_bytes!("../../tests/fixtures/dns/response_a_cname.bin");
    const MDNS: &[u8] = include_bytes!("../../tests/fixtures/dns/mdns_ptr_query.bin");
    const NULLQ: &[u8] = include_bytes!("../../tests/fixtures/dns/iodine_null_query.bin");
    const NULLR: &[u8] = include_bytes!("../../tests/fixtures/dns/iodine_null_response.bin");

    fn udp(pkts: &[(Dir, &[u8])], port: u16) -> (Vec<Step>, Facts) {
        let mut facts = Facts::default();
        let steps = run_l4(&mut Dns::default(), L4Proto::Udp, pkts, port, &mut facts);
        (steps, facts)
    }

    #[test]
    fn real_query_and_response() {
        let (steps, facts) = udp(&[(Dir::ToServer, QUERY), (Dir::ToClient, RESPONSE)], 53);
        assert_eq!(steps, [Step::Identified, Step::Identified]);
        assert_eq!(facts.protocol, Some("DNS"));
        assert_eq!(facts.hostname.as_deref(), Some("captive.apple.com"));
        assert_eq!(facts.name_source, Some(NameSource::Dns));
        let dns = facts.dns.expect("dns facts");
        assert!(dns.is_response);
        assert_eq!(dns.query.as_deref(), Some("captive.apple.com"));
        assert_eq!(dns.qtype, Some(1));
        assert_eq!(dns.rcode, Some(0));
        assert_eq!(dns.id, 0xfba6);
        let addrs: Vec<_> = dns
            .answers
            .iter()
            .filter_map(|a| match a {
                DnsAnswer::Addr { addr, .. } => Some(addr.to_string()),
                _ => None,
            })
            .collect();
        assert!(addrs.contains(&"17.253.53.201".to_owned()), "{:?}", dns.answers);
        assert!(dns.answers.iter().any(|a| matches!(a, DnsAnswer::Cname { name, .. } if name == "captive.apple.com")));
    }

    #[test]
    fn mdns_and_llmnr_are_named() {
        let (steps, facts) = udp(&[(Dir::ToServer, MDNS)], 5353);
        assert_eq!(steps, [Step::Identified]);
        assert_eq!(facts.protocol, Some("MDNS"));
        assert_eq!(facts.hostname.as_deref(), Some("_spotify-connect._tcp.local"));
        let (_, facts) = udp(&[(Dir::ToServer, QUERY)], 5355);
        assert_eq!(facts.protocol, Some("LLMNR"));
    }

    #[test]
    fn tunnel_names_and_other_ports() {
        let (steps, facts) = udp(&[(Dir::ToServer, NULLQ), (Dir::ToClient, NULLR)], 53);
        assert_eq!(steps, [Step::Identified, Step::Identified]);
        assert_eq!(facts.hostname.as_deref(), Some("vaaaakardli.pirate.sea"));
        assert_eq!(facts.dns.and_then(|d| d.qtype), Some(10));
        // The same query to an unusual port is still DNS: it parses exactly.
        let (steps, _) = udp(&[(Dir::ToServer, QUERY)], 5300);
        assert_eq!(steps, [Step::Identified]);
    }

    #[test]
    fn tcp_with_length_prefix_split() {
        let mut framed = (RESPONSE.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(RESPONSE);
        let mut q = (QUERY.len() as u16).to_be_bytes().to_vec();
        q.extend_from_slice(QUERY);
        let (a, b) = framed.split_at(50);
        let mut facts = Facts::default();
        let steps =
            run(&mut Dns::default(), &[(Dir::ToServer, &q), (Dir::ToClient, a), (Dir::ToClient, b)], 53, &mut facts);
        assert_eq!(steps, [Step::Identified, Step::Identified, Step::Identified]);
        assert!(facts.dns.expect("dns").is_response);
    }

    #[test]
    fn https_record_hints_become_addresses() {
        // Response for "a.io" HTTPS: priority 1, target ".", alpn h2, ipv4hint 1.2.3.4, ipv6hint ::1.
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        m.extend_from_slice(b"\x01a\x02io\x00\x00\x41\x00\x01");
        let mut rdata = vec![0, 1, 0];
        rdata.extend_from_slice(&[0, 1, 0, 3, 2, b'h', b'2']);
        rdata.extend_from_slice(&[0, 4, 0, 4, 1, 2, 3, 4]);
        rdata.extend_from_slice(&[0, 6, 0, 16]);
        rdata.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        m.extend_from_slice(&[0xc0, 12, 0, 65, 0, 1, 0, 0, 1, 0]);
        m.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        m.extend_from_slice(&rdata);
        let p = parse_message(&m, Strictness::Anywhere, false).expect("parses");
        assert_eq!(p.facts.qtype, Some(65));
        assert_eq!(
            p.facts.answers,
            [
                DnsAnswer::Addr { name: "a.io".into(), addr: "1.2.3.4".parse().unwrap(), ttl: 256 },
                DnsAnswer::Addr { name: "a.io".into(), addr: "::1".parse().unwrap(), ttl: 256 },
            ]
        );
    }

    #[test]
    fn compression_loops_and_bad_labels() {
        // Pointer to itself, pointer forward, reserved label type, overlong name.
        let mut m = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
        assert_eq!(parse_message(&m, Strictness::WellKnownPort, false), Err(DnsError::Loop));
        assert_eq!(read_name(&[0xc0, 2, 0xc0, 0], 0, None), Err(DnsError::Loop));
        assert_eq!(read_name(&[0x40, 0], 0, None), Err(DnsError::Name));
        let mut long = Vec::new();
        for _ in 0..5 {
            long.push(63u8);
            long.extend_from_slice(&[b'a'; 63]);
        }
        long.push(0);
        assert_eq!(read_name(&long, 0, None), Err(DnsError::Name));
        // Backward pointer chains are fine.
        let mut out = String::new();
        assert_eq!(read_name(b"\x01b\x00\x01a\xc0\x00", 3, Some(&mut out)), Ok(7));
        assert_eq!(out, "a.b");
    }

    #[test]
    fn others_are_not_mine() {
        let ntp = include_bytes!("../../tests/fixtures/ntp/ntpv4.bin");
        let ssdp = include_bytes!("../../tests/fixtures/ssdp/msearch.bin");
        let dhcp = include_bytes!("../../tests/fixtures/dhcp/discover.bin");
        for p in [&ntp[..], ssdp, dhcp] {
            assert_eq!(udp(&[(Dir::ToServer, p)], 40000).0, [Step::NotMine]);
        }
        // NetBIOS name service shares the wire format but not the flow.
        let nbns = include_bytes!("../../tests/fixtures/netbios/ns_query.bin");
        assert_eq!(udp(&[(Dir::ToServer, nbns)], 137).0, [Step::NotMine]);
        assert_not_mine_on_random(|| Box::new(Dns::default()), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Dns::default()), &[QUERY, RESPONSE, MDNS, NULLR], 53);
    }
}
