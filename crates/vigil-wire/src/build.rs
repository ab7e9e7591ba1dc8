//! Builders for the packets vigil sends itself when a policy says **reject**: TCP resets to both
//! ends, ICMP/ICMPv6 port unreachable for other protocols (so a browser falls back from QUIC to TCP
//! at once instead of waiting for a timeout), and a small HTTP 403 block page for plain HTTP.
//!
//! Everything here is pure: bytes in, complete IP packets out, every length and checksum valid
//! (they go out through a raw socket, which adds nothing). Sending is the caller's business.
//!
//! Sequence numbers: RFC 9293 section 3.10.7 accepts a RST whose sequence number is in the receive
//! window, but RFC 5961 (which Linux implements) only acts at once on a RST whose sequence number is
//! *exactly* the next expected one (`RCV.NXT`); any other in-window RST just draws a challenge ACK.
//! So every RST here carries the exact next sequence number its receiver expects, derived from the
//! offending packet on the assumption that this packet is dropped (never reaches its destination).

use crate::checksum::fix_packet;
use crate::ipv4::Ipv4Packet;
use crate::ipv6::{self, Ipv6Packet};
use crate::tcp::{self, TcpSegment};
use crate::WireError;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// TTL / hop limit of built packets: the usual host default.
pub const HOP_LIMIT: u8 = 64;
/// RFC 1812 4.3.2.3: an IPv4 ICMP error should quote as much as fits in 576 bytes.
pub const ICMP4_MAX_LEN: usize = 576;
/// RFC 4443 2.4(c): an ICMPv6 error must not exceed the IPv6 minimum MTU.
pub const ICMP6_MAX_LEN: usize = 1280;
/// Largest block-page response (TCP payload): 1200 + 40 (IPv6) + 20 (TCP) fits the 1280 minimum
/// MTU, so it is one segment on any path.
pub const BLOCK_PAGE_MAX_LEN: usize = 1200;
/// Receive window advertised on the block-page segment (the client only needs room for its FIN).
const BLOCK_PAGE_WINDOW: u16 = 8192;

const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_ICMPV6: u8 = 58;

fn refuse(reason: &'static str) -> WireError {
    WireError::Malformed { layer: "build", reason }
}

/// The two packets answering one offending packet: one back to its sender, one on to its
/// destination (seen from the offending packet: sender = its source).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// To the offending packet's source (RST, or the block page), spoofed from its destination.
    pub to_sender: Vec<u8>,
    /// To the offending packet's destination (RST), spoofed from its source.
    pub to_destination: Vec<u8>,
}

impl Reply {
    /// Both packets, sender's first.
    pub fn packets(&self) -> [&[u8]; 2] {
        [&self.to_sender, &self.to_destination]
    }
}

/// An IP header with `len` unset (fixed later by `fix_packet`). Errors on mixed families.
fn ip_header(src: IpAddr, dst: IpAddr, proto: u8) -> Result<Vec<u8>, WireError> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            // version/IHL, TOS, total length, id 0, DF, TTL, protocol, checksum.
            let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, HOP_LIMIT, proto, 0, 0];
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            Ok(h)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            // version/traffic class/flow label, payload length, next header, hop limit.
            let mut h = vec![0x60, 0, 0, 0, 0, 0, proto, HOP_LIMIT];
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            Ok(h)
        }
        _ => Err(refuse("source and destination address families differ")),
    }
}

/// One TCP segment in an IPv4 or IPv6 packet: data offset 5 (no options), urgent pointer 0,
/// lengths and checksums complete.
pub fn tcp_segment(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    window: u16,
    payload: &[u8],
) -> Result<Vec<u8>, WireError> {
    let mut p = ip_header(src.ip(), dst.ip(), PROTO_TCP)?;
    p.reserve(tcp::MIN_HEADER_LEN + payload.len());
    p.extend_from_slice(&src.port().to_be_bytes());
    p.extend_from_slice(&dst.port().to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[5 << 4, flags]);
    p.extend_from_slice(&window.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
    p.extend_from_slice(payload);
    fix_packet(&mut p)?;
    Ok(p)
}

/// A RST (window 0); RST|ACK acknowledging `ack` when given (needed to reset a peer in SYN-SENT,
/// which only accepts a RST that acknowledges its SYN).
pub fn tcp_rst(src: SocketAddr, dst: SocketAddr, seq: u32, ack: Option<u32>) -> Result<Vec<u8>, WireError> {
    match ack {
        Some(a) => tcp_segment(src, dst, seq, a, tcp::RST | tcp::ACK, 0, &[]),
        None => tcp_segment(src, dst, seq, 0, tcp::RST, 0, &[]),
    }
}

/// The parts of an offending TCP packet the replies are computed from.
struct TcpFacts {
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    flags: u8,
    /// Payload length as sent (from the IP length, so a truncated capture still counts right).
    len: u32,
}

impl TcpFacts {
    /// Sequence space the packet occupies: payload plus one each for SYN and FIN.
    fn seq_len(&self) -> u32 {
        self.len + u32::from(self.flags & tcp::SYN != 0) + u32::from(self.flags & tcp::FIN != 0)
    }
}

fn tcp_facts(packet: &[u8]) -> Result<TcpFacts, WireError> {
    let (src, dst, proto, l4, l4_wire_len) = match packet.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(packet)?;
            if ip.frag_offset() != 0 || ip.more_fragments() {
                return Err(refuse("fragmented TCP: the payload length is unknown"));
            }
            let l4_wire = ip.wire_len().saturating_sub(ip.header_len());
            (IpAddr::V4(ip.src()), IpAddr::V4(ip.dst()), ip.protocol(), ip.payload(), l4_wire)
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(packet)?;
            let upper = ip.upper_layer()?;
            if upper.fragmented {
                return Err(refuse("fragmented TCP: the payload length is unknown"));
            }
            let l4_start = upper.payload.as_ptr() as usize - packet.as_ptr() as usize;
            let l4_wire = ip.wire_len().saturating_sub(l4_start);
            (IpAddr::V6(ip.src()), IpAddr::V6(ip.dst()), upper.protocol, upper.payload, l4_wire)
        }
        Some(v) => return Err(WireError::NotIp(v)),
        None => return Err(WireError::Truncated { layer: "ip", needed: 1, available: 0 }),
    };
    if proto != PROTO_TCP {
        return Err(refuse("not a TCP packet"));
    }
    if !unicast(src) || !unicast(dst) {
        return Err(refuse("TCP between non-unicast addresses"));
    }
    let seg = TcpSegment::new_checked(l4)?;
    if seg.flags() & tcp::RST != 0 {
        return Err(refuse("never answer a RST")); // RFC 9293 3.10.7.1
    }
    let len = l4_wire_len.saturating_sub(seg.header_len());
    Ok(TcpFacts {
        src: SocketAddr::new(src, seg.src_port()),
        dst: SocketAddr::new(dst, seg.dst_port()),
        seq: seg.seq(),
        ack: seg.ack(),
        flags: seg.flags(),
        len: u32::try_from(len).map_err(|_| refuse("TCP payload too long"))?,
    })
}

/// Resets both ends of the connection an offending TCP packet belongs to (the packet itself is
/// dropped). For a packet source→destination with seq S, ack A, payload length L:
///
/// - to the sender, from the destination: RST|ACK with seq = A when the packet has ACK (A is what
///   the sender expects next from its peer: its `RCV.NXT`), else seq 0 (a SYN: the sender is in
///   SYN-SENT and checks only the ACK), and ack = S + L (+1 for SYN, +1 for FIN), the sequence space
///   the packet used — which is also what SYN-SENT requires a RST to acknowledge;
/// - to the destination, from the sender: RST with seq = S, which is the destination's `RCV.NXT`
///   since it never received this packet. For a SYN the destination has no connection and a
///   listener ignores it; it is built anyway so callers always get two packets.
pub fn reject_tcp(packet: &[u8]) -> Result<Reply, WireError> {
    let f = tcp_facts(packet)?;
    let seq_to_sender = if f.flags & tcp::ACK != 0 { f.ack } else { 0 };
    let to_sender = tcp_rst(f.dst, f.src, seq_to_sender, Some(f.seq.wrapping_add(f.seq_len())))?;
    let to_destination = tcp_rst(f.src, f.dst, f.seq, None)?;
    Ok(Reply { to_sender, to_destination })
}

/// Answers a client's HTTP request packet (client→server, seq S, ack A, payload length L) with a
/// 403 block page instead of a bare reset, so a person sees why the site is blocked.
///
/// `to_sender` goes to the client as if from the server: one segment carrying the whole response
/// with seq = A, ack = S + L and PSH|ACK|FIN, so the client reads the page then a clean EOF.
/// `to_destination` is a RST to the server (seq S, its `RCV.NXT` since the request was dropped).
/// Only this packet's payload is acknowledged: with a request spread over several segments, call
/// it on the last one. The response is at most [`BLOCK_PAGE_MAX_LEN`] bytes (the body is cut on a
/// character boundary if needed), one segment under any MTU; clients accept it even above the
/// MSS they announced. The packet must carry ACK (an established connection), else there is no A.
pub fn http_block_page(packet: &[u8], body: &str) -> Result<Reply, WireError> {
    let f = tcp_facts(packet)?;
    if f.flags & tcp::ACK == 0 || f.flags & tcp::SYN != 0 {
        return Err(refuse("block page needs a request on an established connection"));
    }
    let response = http_403(body);
    let ack = f.seq.wrapping_add(f.seq_len());
    let flags = tcp::PSH | tcp::ACK | tcp::FIN;
    let to_sender = tcp_segment(f.dst, f.src, f.ack, ack, flags, BLOCK_PAGE_WINDOW, &response)?;
    let to_destination = tcp_rst(f.src, f.dst, f.seq, None)?;
    Ok(Reply { to_sender, to_destination })
}

/// The 403 response bytes, body truncated so the whole stays within [`BLOCK_PAGE_MAX_LEN`].
fn http_403(body: &str) -> Vec<u8> {
    let head = |n: usize| {
        format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {n}\r\n\
             Connection: close\r\nCache-Control: no-store\r\n\r\n"
        )
    };
    // Budget with the longest Content-Length the cap allows, then cut on a char boundary.
    let budget = BLOCK_PAGE_MAX_LEN.saturating_sub(head(BLOCK_PAGE_MAX_LEN).len());
    let mut end = body.len().min(budget);
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    let body = &body[..end];
    let mut out = head(body.len()).into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// Escaped-text budgets keep the page well under the response cap, so it is never truncated
/// mid-tag (a DNS name is at most 253 bytes).
const RULE_BUDGET: usize = 200;
const HOST_BUDGET: usize = 400;

/// A small plain HTML page: "Blocked by policy rule «rule»: host" (host omitted when empty), with
/// both HTML-escaped and cut (with "…") if very long so the page always fits one segment.
pub fn block_page_html(rule: &str, host: &str) -> String {
    let rule = escape_html(rule, RULE_BUDGET);
    let what = if host.is_empty() { String::new() } else { format!(": {}", escape_html(host, HOST_BUDGET)) };
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Blocked</title></head>\n\
         <body><h1>Blocked</h1><p>Blocked by policy rule \u{ab}{rule}\u{bb}{what}</p></body></html>\n"
    )
}

/// HTML-escapes `s` (text and attribute safe), stopping before the output exceeds `budget` bytes.
fn escape_html(s: &str, budget: usize) -> String {
    let mut out = String::with_capacity(s.len().min(budget));
    for c in s.chars() {
        let esc = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' => "&quot;",
            '\'' => "&#39;",
            _ => "",
        };
        let add = if esc.is_empty() { c.len_utf8() } else { esc.len() };
        if out.len() + add > budget {
            out.push('\u{2026}');
            break;
        }
        if esc.is_empty() {
            out.push(c);
        } else {
            out.push_str(esc);
        }
    }
    out
}

/// A unicast address that may be answered: not unspecified, multicast or limited broadcast
/// (subnet broadcasts cannot be told from here; routers drop them anyway).
fn unicast(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(a) => !(a.is_unspecified() || a.is_multicast() || a == Ipv4Addr::BROADCAST),
        IpAddr::V6(a) => !(a.is_unspecified() || a.is_multicast()),
    }
}

/// ICMPv4 error types (RFC 792/1122): destination unreachable, source quench, redirect, time
/// exceeded, parameter problem.
fn is_icmp4_error(msg_type: u8) -> bool {
    matches!(msg_type, 3 | 4 | 5 | 11 | 12)
}

/// The port unreachable answering `original` (IPv4 or IPv6), from its destination to its source:
/// ICMP type 3 code 3 quoting the original up to 576 bytes in all (RFC 792 needs the IP header
/// and 8 bytes; RFC 1812 asks for as much as fits), or ICMPv6 type 1 code 4 quoting up to 1280
/// bytes in all (RFC 4443). The receiving stack matches the quote to its socket, which then fails
/// with ECONNREFUSED.
///
/// Refused (RFC 1122 3.2.2, RFC 1812 4.3.2.7, RFC 4443 2.4(e)), to avoid error storms: ICMP error
/// messages (or ICMP whose type cannot be read), non-initial fragments, packets to a multicast or
/// broadcast destination, and packets from an address that does not name one host.
pub fn icmp_unreachable(original: &[u8]) -> Result<Vec<u8>, WireError> {
    match original.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(original)?;
            check_answerable(ip.src().into(), ip.dst().into())?;
            if ip.frag_offset() != 0 {
                return Err(refuse("not the first fragment"));
            }
            if ip.protocol() == PROTO_ICMP {
                match ip.payload().first() {
                    Some(&t) if !is_icmp4_error(t) => {}
                    Some(_) => return Err(refuse("never answer an ICMP error with an ICMP error")),
                    None => return Err(refuse("ICMP message without a type")),
                }
            }
            let quote = &original[..ip.total_len()];
            let quote = &quote[..quote.len().min(ICMP4_MAX_LEN - 20 - 8)];
            let mut p = ip_header(ip.dst().into(), ip.src().into(), PROTO_ICMP)?;
            p.extend_from_slice(&[3, 3, 0, 0, 0, 0, 0, 0]); // port unreachable, checksum, unused
            p.extend_from_slice(quote);
            fix_packet(&mut p)?;
            Ok(p)
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(original)?;
            check_answerable(ip.src().into(), ip.dst().into())?;
            let upper = ip.upper_layer()?;
            if upper.later_fragment {
                return Err(refuse("not the first fragment"));
            }
            if upper.protocol == PROTO_ICMPV6 {
                match upper.payload.first() {
                    Some(&t) if t >= 128 => {} // informational (echo...)
                    Some(_) => return Err(refuse("never answer an ICMPv6 error with an ICMPv6 error")),
                    None => return Err(refuse("ICMPv6 message without a type")),
                }
            }
            let end = ip.wire_len().min(original.len());
            let quote = &original[..end.min(ICMP6_MAX_LEN - ipv6::HEADER_LEN - 8)];
            let mut p = ip_header(ip.dst().into(), ip.src().into(), PROTO_ICMPV6)?;
            p.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]); // port unreachable, checksum, unused
            p.extend_from_slice(quote);
            fix_packet(&mut p)?;
            Ok(p)
        }
        Some(v) => Err(WireError::NotIp(v)),
        None => Err(WireError::Truncated { layer: "ip", needed: 1, available: 0 }),
    }
}

fn check_answerable(src: IpAddr, dst: IpAddr) -> Result<(), WireError> {
    if !unicast(dst) {
        return Err(refuse("never answer a multicast or broadcast packet"));
    }
    if !unicast(src) {
        return Err(refuse("source does not name one host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checksum::verify_packet;
    use crate::{parse_l3, L4Proto};
    use std::net::Ipv6Addr;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn tcp_fields(p: &[u8]) -> (u32, u32, u8) {
        let info = parse_l3(p).unwrap();
        let l4 = &p[p.len() - info.payload.len() - 20..];
        let seg = TcpSegment::new_checked(l4).unwrap();
        (seg.seq(), seg.ack(), seg.flags())
    }

    const C4: &str = "198.18.1.2:40000";
    const S4: &str = "198.18.2.2:80";
    const C6: &str = "[fd76:1::2]:40000";
    const S6: &str = "[fd76:2::2]:80";

    #[test]
    fn tcp_segment_v4_and_v6_parse_back() {
        for (c, s) in [(C4, S4), (C6, S6)] {
            let p = tcp_segment(sa(c), sa(s), 1000, 2000, tcp::PSH | tcp::ACK, 512, b"hello").unwrap();
            assert!(verify_packet(&p));
            let info = parse_l3(&p).unwrap();
            assert_eq!(info.l4, L4Proto::Tcp);
            assert_eq!((info.src, info.dst), (sa(c).ip(), sa(s).ip()));
            assert_eq!((info.src_port, info.dst_port), (40000, 80));
            assert_eq!(info.payload, b"hello");
            assert_eq!(info.wire_len, p.len());
            assert_eq!(tcp_fields(&p), (1000, 2000, tcp::PSH | tcp::ACK));
            if c == C4 {
                assert_eq!(p.len(), 20 + 20 + 5);
                assert_eq!((p[6], p[8], &p[4..6]), (0x40, 64, &[0u8, 0][..])); // DF, TTL, id 0
            } else {
                assert_eq!(p.len(), 40 + 20 + 5);
                assert_eq!(p[7], 64);
            }
        }
    }

    #[test]
    fn mixed_families_are_an_error() {
        assert!(tcp_segment(sa(C4), sa(S6), 0, 0, 0, 0, &[]).is_err());
        assert!(tcp_rst(sa(C6), sa(S4), 0, None).is_err());
    }

    #[test]
    fn rst_flags() {
        let p = tcp_rst(sa(C4), sa(S4), 7, None).unwrap();
        assert_eq!(tcp_fields(&p), (7, 0, tcp::RST));
        let p = tcp_rst(sa(C6), sa(S6), 7, Some(9)).unwrap();
        assert_eq!(tcp_fields(&p), (7, 9, tcp::RST | tcp::ACK));
        assert!(verify_packet(&p));
    }

    #[test]
    fn reject_data_segment_v4_and_v6() {
        for (c, s) in [(C4, S4), (C6, S6)] {
            let req = tcp_segment(sa(c), sa(s), 0xffff_fff0, 5000, tcp::PSH | tcp::ACK, 100, &[b'x'; 32]).unwrap();
            let r = reject_tcp(&req).unwrap();
            for p in r.packets() {
                assert!(verify_packet(p));
                assert!(parse_l3(p).unwrap().payload.is_empty());
            }
            let back = parse_l3(&r.to_sender).unwrap();
            assert_eq!((back.src, back.dst, back.src_port, back.dst_port), (sa(s).ip(), sa(c).ip(), 80, 40000));
            // seq = A; ack = S + L wrapped.
            assert_eq!(tcp_fields(&r.to_sender), (5000, 0x10, tcp::RST | tcp::ACK));
            let on = parse_l3(&r.to_destination).unwrap();
            assert_eq!((on.src, on.dst, on.src_port, on.dst_port), (sa(c).ip(), sa(s).ip(), 40000, 80));
            assert_eq!(tcp_fields(&r.to_destination), (0xffff_fff0, 0, tcp::RST));
        }
    }

    #[test]
    fn reject_syn_and_fin() {
        for (c, s) in [(C4, S4), (C6, S6)] {
            let syn = tcp_segment(sa(c), sa(s), 100, 0, tcp::SYN, 64240, &[]).unwrap();
            let r = reject_tcp(&syn).unwrap();
            assert_eq!(tcp_fields(&r.to_sender), (0, 101, tcp::RST | tcp::ACK));
            assert_eq!(tcp_fields(&r.to_destination), (100, 0, tcp::RST));
            let fin = tcp_segment(sa(c), sa(s), 100, 77, tcp::FIN | tcp::ACK, 64240, b"ab").unwrap();
            let r = reject_tcp(&fin).unwrap();
            assert_eq!(tcp_fields(&r.to_sender), (77, 103, tcp::RST | tcp::ACK));
        }
    }

    #[test]
    fn reject_counts_the_wire_length_of_a_truncated_capture() {
        let req = tcp_segment(sa(C4), sa(S4), 10, 20, tcp::ACK, 100, &[0; 1000]).unwrap();
        let r = reject_tcp(&req[..100]).unwrap();
        assert_eq!(tcp_fields(&r.to_sender), (20, 1010, tcp::RST | tcp::ACK));
    }

    #[test]
    fn reject_refuses_rst_non_tcp_and_garbage() {
        let rst = tcp_rst(sa(C4), sa(S4), 1, None).unwrap();
        assert!(reject_tcp(&rst).is_err());
        let udp = crate::packet::tests_support::ipv4_udp(b"x");
        assert!(reject_tcp(&udp).is_err());
        assert!(reject_tcp(&[]).is_err());
        assert!(reject_tcp(&[0x45, 0, 0]).is_err());
    }

    #[test]
    fn block_page_v4_and_v6() {
        let body = block_page_html("no-social", "example.com");
        for (c, s) in [(C4, S4), (C6, S6)] {
            let get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
            let req = tcp_segment(sa(c), sa(s), 1000, 9000, tcp::PSH | tcp::ACK, 100, get).unwrap();
            let r = http_block_page(&req, &body).unwrap();
            assert!(verify_packet(&r.to_sender) && verify_packet(&r.to_destination));
            let page = parse_l3(&r.to_sender).unwrap();
            assert_eq!((page.src, page.dst, page.src_port, page.dst_port), (sa(s).ip(), sa(c).ip(), 80, 40000));
            let text = std::str::from_utf8(page.payload).unwrap();
            assert!(text.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{text}");
            assert!(text.contains(&format!("Content-Length: {}\r\n", body.len())));
            assert!(text.contains("Connection: close\r\nCache-Control: no-store\r\n\r\n"));
            assert!(text.ends_with(&body));
            assert_eq!(tcp_fields(&r.to_sender), (9000, 1000 + get.len() as u32, tcp::PSH | tcp::ACK | tcp::FIN));
            assert_eq!(tcp_fields(&r.to_destination), (1000, 0, tcp::RST));
        }
    }

    #[test]
    fn block_page_truncates_long_bodies_on_char_boundaries() {
        let req = tcp_segment(sa(C6), sa(S6), 1, 2, tcp::ACK, 100, b"GET /").unwrap();
        let body = "é".repeat(2000);
        let r = http_block_page(&req, &body).unwrap();
        let payload = parse_l3(&r.to_sender).unwrap().payload;
        assert!(payload.len() <= BLOCK_PAGE_MAX_LEN && payload.len() > BLOCK_PAGE_MAX_LEN - 10);
        let text = std::str::from_utf8(payload).unwrap();
        let (head, sent) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", sent.len())));
        assert!(r.to_sender.len() <= ICMP6_MAX_LEN); // IPv6 minimum MTU
    }

    #[test]
    fn block_page_needs_an_established_connection() {
        let syn = tcp_segment(sa(C4), sa(S4), 1, 0, tcp::SYN, 100, &[]).unwrap();
        assert!(http_block_page(&syn, "x").is_err());
    }

    #[test]
    fn page_escapes_and_stays_small() {
        let page = block_page_html("a<b>&\"c'", "<script>x</script>.example");
        assert!(page.contains("Blocked by policy rule \u{ab}a&lt;b&gt;&amp;&quot;c&#39;\u{bb}: &lt;script&gt;"));
        assert!(!page.contains("<script>"));
        assert!(!block_page_html("r", "").contains("\u{bb}:"));
        let huge = block_page_html(&"<".repeat(5000), &"&".repeat(5000));
        assert!(huge.len() < 900, "{}", huge.len());
        assert!(huge.contains("&lt;\u{2026}") && !huge.contains("&l\u{2026}"));
        assert!(http_403(&huge).len() <= BLOCK_PAGE_MAX_LEN);
    }

    fn udp_v6(dst: Ipv6Addr, payload_len: usize) -> Vec<u8> {
        let mut p = ip_header(IpAddr::V6("fd76:1::2".parse().unwrap()), IpAddr::V6(dst), 17).unwrap();
        p.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb, 0, 0, 0, 0]);
        p.resize(p.len() + payload_len, 0xab);
        fix_packet(&mut p).unwrap();
        p
    }

    #[test]
    fn icmp4_port_unreachable_quotes_up_to_576() {
        let mut small = crate::packet::tests_support::ipv4_udp(b"hello");
        fix_packet(&mut small).unwrap();
        let r = icmp_unreachable(&small).unwrap();
        assert!(verify_packet(&r));
        let info = parse_l3(&r).unwrap();
        assert_eq!(info.l4, L4Proto::Icmp);
        assert_eq!((info.src.to_string().as_str(), info.dst.to_string().as_str()), ("10.0.0.2", "10.0.0.1"));
        assert_eq!((r[20], r[21]), (3, 3));
        assert_eq!(info.payload, &small[..]); // whole original quoted
        assert_eq!(crate::checksum::finish(crate::checksum::sum(&r[20..], 0)), 0);

        let mut big = crate::packet::tests_support::ipv4_udp(&[7; 1400]);
        fix_packet(&mut big).unwrap();
        let r = icmp_unreachable(&big).unwrap();
        assert_eq!(r.len(), ICMP4_MAX_LEN);
        assert_eq!(parse_l3(&r).unwrap().payload, &big[..548]);
        assert!(verify_packet(&r));
    }

    #[test]
    fn icmp6_port_unreachable_quotes_up_to_1280() {
        let small = udp_v6("fd76:2::2".parse().unwrap(), 10);
        let r = icmp_unreachable(&small).unwrap();
        assert!(verify_packet(&r));
        let info = parse_l3(&r).unwrap();
        assert_eq!(info.l4, L4Proto::Icmpv6);
        assert_eq!((info.src.to_string().as_str(), info.dst.to_string().as_str()), ("fd76:2::2", "fd76:1::2"));
        assert_eq!((r[40], r[41]), (1, 4));
        assert_eq!(info.payload, &small[..]);
        // Independent check of the ICMPv6 checksum over its pseudo-header.
        let mut pseudo = r[8..40].to_vec();
        pseudo.extend_from_slice(&((r.len() - 40) as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(crate::checksum::finish(crate::checksum::sum(&r[40..], crate::checksum::sum(&pseudo, 0))), 0);

        let big = udp_v6("fd76:2::2".parse().unwrap(), 1400);
        let r = icmp_unreachable(&big).unwrap();
        assert_eq!(r.len(), ICMP6_MAX_LEN);
        assert_eq!(parse_l3(&r).unwrap().payload, &big[..1232]);
        assert!(verify_packet(&r));
    }

    #[test]
    fn icmp_refuses_errors_multicast_broadcast_and_fragments() {
        // An ICMP port unreachable is not answered; an echo request is.
        let mut udp = crate::packet::tests_support::ipv4_udp(b"q");
        fix_packet(&mut udp).unwrap();
        let err4 = icmp_unreachable(&udp).unwrap();
        assert!(icmp_unreachable(&err4).is_err());
        let mut echo = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        echo.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        assert!(icmp_unreachable(&echo).is_ok());
        let err6 = icmp_unreachable(&udp_v6("fd76:2::2".parse().unwrap(), 4)).unwrap();
        assert!(icmp_unreachable(&err6).is_err());

        assert!(icmp_unreachable(&udp_v6("ff02::1".parse().unwrap(), 4)).is_err());
        let mut mc = udp.clone();
        mc[16..20].copy_from_slice(&[224, 0, 0, 251]);
        assert!(icmp_unreachable(&mc).is_err());
        mc[16..20].copy_from_slice(&[255, 255, 255, 255]);
        assert!(icmp_unreachable(&mc).is_err());
        let mut unspec = udp.clone();
        unspec[12..16].copy_from_slice(&[0, 0, 0, 0]);
        assert!(icmp_unreachable(&unspec).is_err());
        let mut frag = udp.clone();
        frag[6..8].copy_from_slice(&[0, 0x10]);
        assert!(icmp_unreachable(&frag).is_err());
        assert!(icmp_unreachable(&[]).is_err());
        assert!(icmp_unreachable(&[0x60; 10]).is_err());
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let seeds = [
            tcp_segment(sa(C4), sa(S4), 1, 2, tcp::ACK, 3, b"GET / HTTP/1.1\r\n").unwrap(),
            tcp_segment(sa(C6), sa(S6), 1, 2, tcp::ACK, 3, b"GET / HTTP/1.1\r\n").unwrap(),
            udp_v6("fd76:2::2".parse().unwrap(), 20),
        ];
        let mut x: u64 = 0x2545f4914f6cdd1d;
        for seed in seeds {
            for len in 0..=seed.len() {
                let _ = (reject_tcp(&seed[..len]), icmp_unreachable(&seed[..len]), http_block_page(&seed[..len], "b"));
            }
            for _ in 0..5000 {
                let mut m = seed.clone();
                for _ in 0..3 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x as usize) % m.len();
                    m[i] = (x >> 32) as u8;
                }
                let _ = (reject_tcp(&m), icmp_unreachable(&m), http_block_page(&m, "b"));
            }
        }
    }
}
