//! STUN and TURN (RFC 5389/8489, RFC 8656; classic RFC 3489) over UDP and TCP, and the
//! applications their vendor attributes and realms reveal.
//!
//! A message is a 20-byte header (type with the two top bits clear, length, magic cookie
//! 0x2112A442, transaction id) and attributes that must tile the announced length exactly. With
//! the cookie one message is enough; classic STUN (no cookie) also needs the answer carrying the
//! same transaction id. Over TCP a message may be framed by a 2-byte length (RFC 4571, as Microsoft
//! Teams does). After identification the following packets are still read for the realm and vendor
//! attributes, which often arrive in the TURN 401 answer or a later ICE check.
//!
//! Application rules, each from attributes only that vendor's stack sends (evidence in the nDPI
//! corpus, `F.out` naming the flow):
//! - Microsoft Teams/Skype, "Skype_TeamsCall": [MS-TURN]/[MS-ICE2] attributes MS-VERSION 0x8008,
//!   MS-SEQUENCE-NUMBER 0x8050, CANDIDATE-IDENTIFIER 0x8054, MS-SERVICE-QUALITY 0x8055,
//!   bandwidth-admission attributes 0x8056-0x8058, MS-IMPLEMENTATION-VERSION 0x8070,
//!   MS-MULTIPLEXED-TURN-SESSION-ID 0x8095 (`skype-conference-call.pcap`, `teams__first11pkts.pcap`,
//!   the TCP flow of `stun.pcap`: 0x8054 and 0x8070 in every ICE check).
//! - WhatsApp, "WhatsAppCall": the non-standard message types 0x0800-0x0805 and attributes
//!   0x4000-0x4007 its relays use (`stun_wa_call.pcapng`: Allocate with 0x4000 of 150 bytes,
//!   answers with 0x4002, types 0x0800/0x0804).
//! - TURN realm (also the flow's hostname, as nDPI reports it): `*.google.com` → "GoogleCall"
//!   (`turn.l.google.com` in `stun.pcap`, `stun_dtls_rtp.pcapng`), `signal.org` /
//!   `whispersystems.org` → "SignalVoip" (`stun_signal.pcapng`), `*facebook*` → "FacebookVoip"
//!   (`turner.facebook` in `stun.pcap`), `*.telegram.org` → "TelegramVoip".
//!
//! When DTLS handshake records follow on the flow (WebRTC's DTLS-SRTP), the protocol becomes "DTLS",
//! as nDPI reports it (`stun_zoom.pcapng`, `stun_dtls_rtp.pcapng`; no DTLS in the flows nDPI names STUN).
//!
//! GOOG-NETWORK-INFO (0xC057) is deliberately not a Google rule: every libwebrtc client sends it
//! (the Signal peer-to-peer flows of `stun_signal.pcapng` do).
//!
//! The ends that sent requests are recorded in `facts.stun_requesters`: they run a STUN client on
//! their socket, and the classifier teaches the application found here to those sockets, whose
//! other flows (ICE checks to public STUN servers, peer checks, DTLS, media) carry no realm or
//! vendor attribute of their own ([`crate::related`]). Only a request a side sent itself counts: a
//! response names its receiver as the asker, but anyone can send a response, and one forged
//! response towards a public STUN server would otherwise teach that server's socket an application
//! for every other host's flows to it. A STUN or TURN server only answers, so its socket is never
//! taught.

use super::{Dissector, Step};
use crate::facts::{Facts, NameSource};
use crate::view::{Dir, PacketView};

const MAGIC: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_REALM: u16 = 0x0014;
const ATTR_SOFTWARE: u16 = 0x8022;
/// Packets read after identification for realm and vendor attributes.
const EXTRACT_BUDGET: u32 = 16;
/// Packets without a decision (classic STUN waiting for its answer).
const PROBE_BUDGET: u32 = 4;

#[derive(Debug, Default)]
pub struct Stun {
    identified: bool,
    seen: u32,
    /// Transaction id of a classic (cookie-less) message, waiting for the answer.
    classic_tid: Option<(Dir, [u8; 16])>,
    /// The DTLS handshake that follows ICE on WebRTC flows (either peer may be the DTLS client).
    dtls: super::dtls::DtlsHandshake,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

/// One STUN message: its type, whether it has the RFC 5389 cookie, and its header + attributes.
struct Msg<'a> {
    ty: u16,
    cookie: bool,
    /// Attributes padded to 4 bytes (RFC 5389); Microsoft's MS-TURN leaves them unpadded.
    padded: bool,
    bytes: &'a [u8],
}

impl<'a> Msg<'a> {
    /// Attributes as (type, value), stopping at the first malformed one.
    fn attrs(&self) -> impl Iterator<Item = (u16, &'a [u8])> + 'a {
        let b = self.bytes;
        let pad = if self.padded { 4 } else { 1 };
        let mut at = 20usize;
        std::iter::from_fn(move || {
            let t = be16(b, at)?;
            let len = be16(b, at + 2)? as usize;
            let v = b.get(at + 4..at + 4 + len)?;
            at += 4 + len.next_multiple_of(pad);
            Some((t, v))
        })
    }
}

/// Message types a classic (RFC 3489) peer sends: Binding and Shared Secret requests/answers.
fn classic_type(ty: u16) -> bool {
    matches!(ty, 0x0001 | 0x0101 | 0x0111 | 0x0002 | 0x0102 | 0x0112)
}

/// STUN methods: Binding .. ConnectionAttempt (RFC 5389, 8656, 6062) plus GOOG-PING (0x080) and
/// WhatsApp's 0x0800-0x0805 types.
fn known_type(ty: u16) -> bool {
    let method = (ty & 0x000f) | ((ty & 0x00e0) >> 1) | ((ty & 0x3e00) >> 2);
    (1..=0x00c).contains(&method) || method == 0x080 || (0x0800..=0x0805).contains(&ty)
}

/// The side that sent this message if it is a request (class 0b00) of a standard method (RFC 8489,
/// 8656, 6062) or GOOG-PING, whose classes are known. Responses and indications name nobody: see
/// the module doc.
fn requester(ty: u16, dir: Dir) -> Option<Dir> {
    if (0x0800..=0x0805).contains(&ty) || !known_type(ty) {
        return None; // WhatsApp's own types: their classes are not known
    }
    (ty & 0x0110 == 0).then_some(dir)
}

/// The STUN message at the start of `p`, if the header and attribute list are consistent.
fn parse(p: &[u8], tcp: bool) -> Option<Msg<'_>> {
    // Over TCP, RFC 4571 framing puts a 2-byte length first.
    if tcp && p.get(6..10) == Some(&MAGIC) && be16(p, 0).is_some_and(|l| l as usize + 2 <= p.len()) {
        if let Some(m) = parse(p.get(2..)?, false).or_else(|| parse_inner(p.get(2..)?, true)) {
            return Some(m);
        }
    }
    parse_inner(p, tcp)
}

fn parse_inner(p: &[u8], tcp: bool) -> Option<Msg<'_>> {
    let ty = be16(p, 0)?;
    let len = be16(p, 2)? as usize;
    let cookie = p.get(4..8)? == MAGIC;
    let end = 20 + len;
    // UDP: one message per datagram. TCP: the segment may hold more, or end mid-message.
    let bytes = if tcp { p.get(..end.min(p.len()))? } else { p };
    if ty & 0xc000 != 0 || (!tcp && end != p.len()) || (tcp && !cookie) {
        return None;
    }
    if !known_type(ty) || (!cookie && !classic_type(ty)) {
        return None;
    }
    // The attributes must tile the message exactly (when it is all here): padded, or unpadded as
    // MS-TURN sends them (`teams__first11pkts.pcap`: Allocate of 194 bytes, REALM of 10).
    let tiles = |m: &Msg<'_>| {
        let pad = if m.padded { 4 } else { 1 };
        let at: usize = 20 + m.attrs().map(|(_, v)| 4 + v.len().next_multiple_of(pad)).sum::<usize>();
        bytes.len() < end || at == end
    };
    let padded = Msg { ty, cookie, padded: true, bytes };
    if len & 3 == 0 && tiles(&padded) {
        return check_classic(padded);
    }
    let unpadded = Msg { padded: false, ..padded };
    if cookie && tiles(&unpadded) {
        return Some(unpadded);
    }
    None
}

fn check_classic(m: Msg<'_>) -> Option<Msg<'_>> {
    let cookie = m.cookie;
    if !cookie && m.attrs().any(|(t, _)| t == 0 || (t > 0x0030 && !(0x8020..=0x8030).contains(&t))) {
        return None;
    }
    Some(m)
}

/// The application an attribute or realm points to (see the module documentation).
fn app_of(ty: u16, attr: u16, value: &[u8]) -> Option<&'static str> {
    if (0x0800..=0x0805).contains(&ty) {
        return Some("WhatsAppCall");
    }
    match attr {
        0x4000..=0x4007 => Some("WhatsAppCall"),
        0x8008 | 0x8050 | 0x8054..=0x8058 | 0x8070 | 0x8095 => Some("Skype_TeamsCall"),
        ATTR_REALM => {
            let realm = std::str::from_utf8(value).ok()?.trim_matches(['"', '\0', ' ']).to_ascii_lowercase();
            let under = |d: &str| realm == d || realm.ends_with(&format!(".{d}"));
            if under("google.com") {
                Some("GoogleCall")
            } else if under("signal.org") || under("whispersystems.org") {
                Some("SignalVoip")
            } else if realm.contains("facebook") {
                Some("FacebookVoip")
            } else if under("telegram.org") {
                Some("TelegramVoip")
            } else {
                None
            }
        }
        _ => None,
    }
}

/// A DTLS 1.0/1.2 handshake record (RFC 6347): content type 22, version 0xfeff or 0xfefd.
fn dtls_handshake(p: &[u8]) -> bool {
    p.len() >= 13 && p.first() == Some(&22) && matches!(p.get(1..3), Some([0xfe, 0xff | 0xfd]))
}

fn printable(v: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(v).ok()?.trim_end_matches('\0');
    (!s.is_empty() && s.len() <= 128 && s.chars().all(|c| !c.is_control())).then_some(s)
}

fn learn(m: &Msg<'_>, dir: Dir, facts: &mut Facts) {
    // The request's sender runs a STUN client (an ICE agent, a TURN client) on its socket, the
    // socket whose other flows belong to the same call (`crate::related`).
    if let Some(d) = requester(m.ty, dir) {
        facts.stun_requesters[d.index()] = true;
    }
    if facts.app_hint.is_none() {
        facts.app_hint = app_of(m.ty, 0, &[]);
    }
    for (t, v) in m.attrs() {
        if facts.app_hint.is_none() {
            facts.app_hint = app_of(m.ty, t, v);
        }
        match t {
            ATTR_REALM => {
                if let Some(r) = printable(v) {
                    facts.set_hostname(r.trim_matches('"'), NameSource::Protocol);
                }
            }
            ATTR_SOFTWARE => {
                let slot = if dir == Dir::ToServer { &mut facts.client_banner } else { &mut facts.server_banner };
                if slot.is_none() {
                    *slot = printable(v).map(str::to_owned);
                }
            }
            _ => {}
        }
    }
}

impl Dissector for Stun {
    fn name(&self) -> &'static str {
        "stun"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if pkt.payload.is_empty() {
            return Step::NeedMore;
        }
        if !pkt.is_udp() && !pkt.is_tcp() {
            return Step::NotMine;
        }
        self.seen += 1;
        let msg = parse(pkt.payload, pkt.is_tcp());
        if self.identified {
            // Media and DTLS share the flow: only STUN messages teach more.
            if let Some(m) = msg {
                learn(&m, pkt.dir, facts);
            } else if dtls_handshake(pkt.payload) {
                // WebRTC: after ICE the flow carries DTLS(-SRTP); nDPI then names the flow DTLS,
                // keeping the application STUN revealed. Its ClientHello gives SNI/ALPN/JA4.
                facts.protocol = Some("DTLS");
                self.dtls.on_client_datagram(pkt.payload, facts);
                self.dtls.on_server_datagram(pkt.payload, facts);
            }
            let dtls_pending = facts.protocol == Some("DTLS") && !self.dtls.client_done();
            let complete = facts.app_hint.is_some() && facts.hostname.is_some() && !dtls_pending;
            return if complete || self.seen >= EXTRACT_BUDGET { Step::Done } else { Step::Identified };
        }
        let Some(m) = msg else { return Step::NotMine };
        let tid: [u8; 16] = m.bytes.get(4..20).and_then(|t| t.try_into().ok()).unwrap_or_default();
        let confirmed = m.cookie
            || match self.classic_tid {
                Some((d, t)) => d != pkt.dir && t == tid,
                None => false,
            };
        if !confirmed {
            if self.classic_tid.is_none() {
                self.classic_tid = Some((pkt.dir, tid));
            }
            return if self.seen >= PROBE_BUDGET { Step::NotMine } else { Step::NeedMore };
        }
        self.identified = true;
        facts.protocol = Some("STUN");
        learn(&m, pkt.dir, facts);
        if facts.app_hint.is_some() && facts.hostname.is_some() {
            Step::Done
        } else {
            Step::Identified
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::testutil::{hex, packet};
    use vigil_wire::L4Proto;

    fn pv(l4: L4Proto, dir: Dir, payload: &[u8]) -> PacketView<'_> {
        packet(l4, dir, ([192, 168, 12, 169], 38123), ([31, 13, 86, 54], 3478), payload)
    }

    use crate::dissect::testutil::stun_message as msg;

    fn run(l4: L4Proto, pkts: &[(Dir, Vec<u8>)]) -> (Step, Facts) {
        let mut d = Stun::default();
        let mut f = Facts::default();
        let mut last = Step::NeedMore;
        for (dir, p) in pkts {
            last = d.on_packet(&pv(l4, *dir, p), &mut f);
            if matches!(last, Step::NotMine | Step::Done) {
                break;
            }
        }
        (last, f)
    }

    #[test]
    fn binding_request_from_corpus() {
        // stun_signal.pcapng: 20-byte Binding Request to 172.253.121.127:19302.
        let p = hex("000100002112a442000102030405060708090a0b");
        let (s, f) = run(L4Proto::Udp, &[(Dir::ToServer, p)]);
        assert_eq!(s, Step::Identified);
        assert_eq!(f.protocol, Some("STUN"));
        assert_eq!(f.app_hint, None);
    }

    #[test]
    fn realm_names_the_app_and_host() {
        // stun.pcap: Allocate, then the 401 answer with REALM "turner.facebook".
        let alloc = msg(0x0003, &[(0x0019, &[17, 0, 0, 0])]);
        let err = msg(0x0113, &[(0x0009, &[0, 0, 4, 1]), (0x0015, b"nonce-nonce"), (0x0014, b"turner.facebook")]);
        let (s, f) = run(L4Proto::Udp, &[(Dir::ToServer, alloc), (Dir::ToClient, err)]);
        assert_eq!(s, Step::Done);
        assert_eq!(f.app_hint, Some("FacebookVoip"));
        assert_eq!(f.hostname.as_deref(), Some("turner.facebook"));
        let err = msg(0x0113, &[(0x0014, b"signal.org"), (0x8022, b"None")]);
        let (_, f) = run(L4Proto::Udp, &[(Dir::ToClient, err)]);
        assert_eq!(f.app_hint, Some("SignalVoip"));
        assert_eq!(f.server_banner.as_deref(), Some("None"));
        let (_, f) = run(L4Proto::Udp, &[(Dir::ToClient, msg(0x0113, &[(0x0014, b"turn.l.google.com")]))]);
        assert_eq!(f.app_hint, Some("GoogleCall"));
        let (_, f) = run(L4Proto::Udp, &[(Dir::ToClient, msg(0x0113, &[(0x0014, b"notgoogle.com.evil")]))]);
        assert_eq!(f.app_hint, None);
    }

    #[test]
    fn microsoft_and_whatsapp_attributes() {
        // skype-conference-call.pcap: ICE check with CANDIDATE-IDENTIFIER and MS-IMPLEMENTATION-VERSION.
        let ice = msg(
            0x0001,
            &[(0x0006, b"gppe:zWyk"), (0x0024, &[1; 4]), (0x802a, &[2; 8]), (0x8054, &[0]), (0x8070, &[0, 0, 0, 3])],
        );
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, ice.clone())]).1.app_hint, Some("Skype_TeamsCall"));
        // Over TCP with RFC 4571 framing (stun.pcap, 10.77.110.51:41588 -> :42000).
        let mut framed = (ice.len() as u16).to_be_bytes().to_vec();
        framed.extend(&ice);
        let (_, f) = run(L4Proto::Tcp, &[(Dir::ToServer, framed)]);
        assert_eq!((f.protocol, f.app_hint), (Some("STUN"), Some("Skype_TeamsCall")));
        // stun_wa_call.pcapng: Allocate with attribute 0x4000 (150 bytes); type 0x0800.
        let wa = msg(0x0003, &[(0x4000, &[9; 150]), (0x0016, &[0; 8])]);
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, wa)]).1.app_hint, Some("WhatsAppCall"));
        let wa = msg(0x0800, &[(0x0016, &[0; 8])]);
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, wa)]).1.app_hint, Some("WhatsAppCall"));
    }

    #[test]
    fn ms_turn_unpadded_allocate() {
        // teams__first11pkts.pcap, 192.168.1.6:50016 -> 52.114.250.141:3478: MS-TURN Allocate, length
        // 194 (not a multiple of 4), attributes unpadded, MS-VERSION 0x8008 and 0x8055/0x8095.
        let text = include_str!("../../tests/fixtures/stun/teams_allocate_ms_turn.hex");
        let p = hex(text.trim());
        assert_eq!(p.len(), 214);
        let (s, f) = run(L4Proto::Udp, &[(Dir::ToServer, p)]);
        assert_eq!((s, f.protocol, f.app_hint), (Step::Identified, Some("STUN"), Some("Skype_TeamsCall")));
        // The binary REALM is not taken as a hostname.
        assert_eq!(f.hostname, None);
    }

    #[test]
    fn dtls_after_ice_names_the_flow_dtls() {
        // stun.pcap, 192.168.12.169:49153 -> 142.250.82.99:3478: ICE check, then a DTLS ClientHello.
        let ice = msg(0x0001, &[(0x0006, b"VUAk6Ay7hvuLnLGO:tyGu"), (0xc057, &[0, 1, 0, 0])]);
        let mut hello = hex("16feff0000000000000000008c010000800000000000000080fefd");
        hello.resize(153, 0);
        let (s, f) = run(L4Proto::Udp, &[(Dir::ToServer, ice), (Dir::ToServer, hello)]);
        assert_eq!((s, f.protocol, f.app_hint), (Step::Identified, Some("DTLS"), None));
    }

    #[test]
    fn requesters_are_the_stun_clients() {
        // A TURN client: Allocate request, then the server's 401 (stun_signal.pcapng).
        let alloc = msg(0x0003, &[(0x0019, &[17, 0, 0, 0])]);
        let err = msg(0x0113, &[(0x0014, b"signal.org")]);
        let (_, f) = run(L4Proto::Udp, &[(Dir::ToServer, alloc), (Dir::ToClient, err.clone())]);
        assert_eq!(f.stun_requesters, [true, false]);
        // An answer alone names nobody: anyone can send one (towards a public STUN server, say).
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToClient, err.clone())]).1.stun_requesters, [false, false]);
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, err)]).1.stun_requesters, [false, false]);
        // ICE: both peers check (a Binding request from the flow's server too).
        let check = msg(0x0001, &[(0x0006, b"a:b")]);
        let (_, f) = run(L4Proto::Udp, &[(Dir::ToServer, check.clone()), (Dir::ToClient, check)]);
        assert_eq!(f.stun_requesters, [true, true]);
        // A server's Data indication (TURN) and WhatsApp's own types (classes unknown) name nobody.
        let data = msg(0x0017, &[(0x0013, b"media")]);
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToClient, data)]).1.stun_requesters, [false, false]);
        let wa = msg(0x0800, &[(0x0016, &[0; 8])]);
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToClient, wa)]).1.stun_requesters, [false, false]);
    }

    #[test]
    fn classic_stun_needs_the_answer() {
        let mut req = hex("00010008");
        req.extend_from_slice(&[0x11; 16]);
        req.extend_from_slice(&hex("0003000400000000"));
        let mut resp = hex("0101000c");
        resp.extend_from_slice(&[0x11; 16]);
        resp.extend_from_slice(&hex("000100080001123401020304"));
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, req.clone())]).0, Step::NeedMore);
        let (s, f) = run(L4Proto::Udp, &[(Dir::ToServer, req), (Dir::ToClient, resp.clone())]);
        assert_eq!((s, f.protocol), (Step::Identified, Some("STUN")));
        let mut other = resp;
        other[4] = 0x22;
        let mut req2 = hex("00010000");
        req2.extend_from_slice(&[0x11; 16]);
        assert_ne!(run(L4Proto::Udp, &[(Dir::ToServer, req2), (Dir::ToClient, other)]).1.protocol, Some("STUN"));
    }

    #[test]
    fn negatives() {
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01";
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, dns.to_vec())]).0, Step::NotMine);
        let tls = hex("16030100ab010000a70303f1f318c3e72492ca306f3789eaff28710f00dcc8987c96a6ad43679b79");
        assert_eq!(run(L4Proto::Tcp, &[(Dir::ToServer, tls)]).0, Step::NotMine);
        let mut quic = vec![0xc3, 0, 0, 0, 1];
        quic.resize(1200, 0);
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, quic)]).0, Step::NotMine);
        // Discord IP discovery: type 1 and a length, but not STUN's.
        let mut disc = hex("000100460000ace3");
        disc.resize(74, 0);
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, disc)]).0, Step::NotMine);
        // Bad attribute tiling.
        let mut bad = msg(0x0001, &[(0x0006, b"abcd")]);
        bad[23] = 9;
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, bad)]).0, Step::NotMine);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let base = msg(0x0113, &[(0x0009, &[0, 0, 4, 1]), (0x0014, b"turner.facebook"), (0x8022, b"x")]);
        let mut seed = 0x1234_5678_9abc_def1u64;
        for _ in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut p = base.clone();
            let i = (seed as usize) % p.len();
            p[i] ^= (seed >> 32) as u8;
            p.truncate((seed >> 40) as usize % (p.len() + 1));
            for l4 in [L4Proto::Udp, L4Proto::Tcp] {
                let mut d = Stun::default();
                let mut f = Facts::default();
                let _ = d.on_packet(&pv(l4, Dir::ToServer, &p), &mut f);
                let _ = d.on_packet(&pv(l4, Dir::ToClient, &p), &mut f);
            }
        }
    }
}
