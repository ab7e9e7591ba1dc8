//! NetBIOS over TCP/IP (RFC 1002): name service (UDP 137), datagram service (UDP 138) and
//! session service (TCP 139). Names are "first-level encoded" (each byte as two letters A-P);
//! the decoded name (trailing spaces and the type suffix removed) is reported as the hostname,
//! as nDPI does. SMB inside a datagram or session is noted as the app hint "SMBv1"/"SMBv23"
//! (nDPI: "NetBIOS.SMBv1"); SMB directly on TCP 445 is the SMB dissector's flow.

use super::{Dissector, Step};
use crate::facts::{Facts, NameSource};
use crate::view::PacketView;

/// Packets a TCP 139 session is watched for SMB after the session request.
const MAX_WAIT: u8 = 6;

/// The 16 raw bytes of a first-level encoded NetBIOS name (length byte 32, 32 letters A-P).
fn raw_name(p: &[u8], off: usize) -> Option<[u8; 16]> {
    if *p.get(off)? != 32 {
        return None;
    }
    let enc = p.get(off + 1..off + 33)?;
    let mut raw = [0u8; 16];
    for (slot, pair) in raw.iter_mut().zip(enc.chunks_exact(2)) {
        let (hi, lo) = (pair[0].wrapping_sub(b'A'), pair[1].wrapping_sub(b'A'));
        if hi > 15 || lo > 15 {
            return None;
        }
        *slot = hi << 4 | lo;
    }
    Some(raw)
}

/// Decodes a first-level encoded NetBIOS name at `off`. Returns the name without padding and
/// suffix ("*" for the wildcard); None when it is not printable.
pub fn decode_name(p: &[u8], off: usize) -> Option<String> {
    let raw = raw_name(p, off)?;
    if raw[0] == b'*' {
        return Some("*".to_owned());
    }
    let name = raw.get(..15)?;
    let name: String = name.iter().map(|&b| char::from(b)).collect();
    let name = name.trim_end_matches([' ', '\0']);
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_graphic() || c == ' ')).then(|| name.to_owned())
}

/// Which SMB dialect family a payload carries at `off`.
pub fn smb_kind(p: &[u8], off: usize) -> Option<&'static str> {
    match p.get(off..off + 4)? {
        b"\xffSMB" => Some("SMBv1"),
        b"\xfeSMB" | b"\xfdSMB" => Some("SMBv23"),
        _ => None,
    }
}

/// Name service: a DNS-like header whose first name is NetBIOS-encoded.
fn name_service(p: &[u8]) -> Option<String> {
    let flags = u16::from_be_bytes([*p.get(2)?, *p.get(3)?]);
    let opcode = (flags >> 11) & 0xf;
    if !matches!(opcode, 0 | 5 | 6 | 7 | 8 | 9) {
        return None;
    }
    let counts: Vec<u16> =
        (0..4).filter_map(|i| Some(u16::from_be_bytes([*p.get(4 + 2 * i)?, *p.get(5 + 2 * i)?]))).collect();
    if counts.len() != 4 || counts.iter().map(|&c| usize::from(c)).sum::<usize>() == 0 || counts.iter().any(|&c| c > 16)
    {
        return None;
    }
    decode_name(p, 12)
}

/// Datagram service: direct (unique/group) and broadcast datagrams carry source and destination
/// names; returns the source name and the SMB kind of the user data.
fn datagram_service(p: &[u8]) -> Option<(String, Option<&'static str>)> {
    let msg_type = *p.first()?;
    if !(0x10..=0x16).contains(&msg_type) {
        return None;
    }
    if msg_type > 0x12 {
        return Some((String::new(), None)); // error / query messages: no names worth keeping
    }
    let source = decode_name(p, 14)?;
    // Source name: 34 bytes (length, 32, terminator); destination the same, then user data.
    let dest_off = 14 + 34;
    // The destination may be a special name such as "\x01\x02__MSBROWSE__\x02\x01".
    raw_name(p, dest_off)?;
    Some((source, smb_kind(p, dest_off + 34)))
}

#[derive(Debug, Default)]
pub struct Netbios {
    /// TCP: a session request was seen; later session messages may reveal SMB.
    session: bool,
    waited: u8,
}

impl Netbios {
    fn on_tcp(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if self.session {
            if facts.app_hint.is_none() && p.first() == Some(&0x00) {
                if let Some(kind) = smb_kind(p, 4) {
                    facts.app_hint = Some(kind);
                    return Step::Done;
                }
            }
            self.waited += 1;
            return if self.waited >= MAX_WAIT { Step::Done } else { Step::Identified };
        }
        // Session request (0x81) with called and calling names; the called name is the server.
        let len = p.get(1..4).map(|l| (usize::from(l[0] & 1) << 16) | usize::from(l[1]) << 8 | usize::from(l[2]));
        if p.first() == Some(&0x81) && len == p.len().checked_sub(4) && pkt.has_port(139) {
            if let Some(called) = decode_name(p, 4) {
                facts.protocol = Some("NetBIOS");
                facts.set_hostname(&called, NameSource::Protocol);
                self.session = true;
                return Step::Identified;
            }
        }
        Step::NotMine
    }
}

impl Dissector for Netbios {
    fn name(&self) -> &'static str {
        "netbios"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if pkt.payload.is_empty() {
            return if self.session { Step::Identified } else { Step::NeedMore };
        }
        if pkt.is_tcp() {
            return self.on_tcp(pkt, facts);
        }
        let p = pkt.payload;
        if pkt.has_port(137) {
            if let Some(name) = name_service(p) {
                facts.protocol = Some("NetBIOS");
                facts.set_hostname(&name, NameSource::Protocol);
                return Step::Done;
            }
        }
        if pkt.has_port(138) {
            if let Some((source, smb)) = datagram_service(p) {
                facts.protocol = Some("NetBIOS");
                facts.set_hostname(&source, NameSource::Protocol);
                if smb.is_some() {
                    facts.app_hint = smb;
                }
                return Step::Done;
            }
        }
        Step::NotMine
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::*;
    use crate::view::Dir;
    use vigil_wire::L4Proto;

    const QUERY: &[u8] = include_bytes!("../../tests/fixtures/netbios/ns_query.bin");
    const STATUS: &[u8] = include_bytes!("../../tests/fixtures/netbios/ns_status_response.bin");
    const BROWSE: &[u8] = include_bytes!("../../tests/fixtures/netbios/dgm_browse.bin");

    fn udp(p: &[u8], dir: Dir, port: u16) -> (Vec<Step>, Facts) {
        let mut facts = Facts::default();
        (run_l4(&mut Netbios::default(), L4Proto::Udp, &[(dir, p)], port, &mut facts), facts)
    }

    #[test]
    fn real_name_service_and_datagrams() {
        let (steps, facts) = udp(QUERY, Dir::ToServer, 137);
        assert_eq!(steps, [Step::Done]);
        assert_eq!(facts.protocol, Some("NetBIOS"));
        assert_eq!(facts.hostname.as_deref(), Some("xstream_hy"));
        let (_, facts) = udp(STATUS, Dir::ToClient, 137);
        assert_eq!(facts.hostname.as_deref(), Some("*"));
        let (steps, facts) = udp(BROWSE, Dir::ToServer, 138);
        assert_eq!(steps, [Step::Done]);
        assert_eq!(facts.hostname.as_deref(), Some("nvr9"));
        assert_eq!(facts.app_hint, Some("SMBv1"));
    }

    #[test]
    fn session_request_then_smb() {
        let mut req = vec![0x81, 0, 0, 68];
        for name in [&b"FILESRV        \x20"[..], b"CLIENT         \x00"] {
            req.push(32);
            for &b in name {
                req.extend_from_slice(&[b'A' + (b >> 4), b'A' + (b & 15)]);
            }
            req.push(0);
        }
        let smb = b"\x00\x00\x00\x20\xffSMBr\x00\x00\x00\x00";
        let mut facts = Facts::default();
        let steps = run(&mut Netbios::default(), &[(Dir::ToServer, &req), (Dir::ToServer, smb)], 139, &mut facts);
        assert_eq!(steps, [Step::Identified, Step::Done]);
        assert_eq!(facts.hostname.as_deref(), Some("filesrv"));
        assert_eq!(facts.app_hint, Some("SMBv1"));
    }

    #[test]
    fn others_are_not_mine() {
        let dns = include_bytes!("../../tests/fixtures/dns/query_a.bin");
        assert_eq!(udp(dns, Dir::ToServer, 137).0, [Step::NotMine]);
        assert_eq!(udp(QUERY, Dir::ToServer, 53).0, [Step::NotMine]);
        let smb2 = include_bytes!("../../tests/fixtures/smb/smb2_negotiate.bin");
        let mut facts = Facts::default();
        assert_eq!(run(&mut Netbios::default(), &[(Dir::ToServer, smb2)], 445, &mut facts), [Step::NotMine]);
        assert_not_mine_on_random(|| Box::new(Netbios::default()), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Netbios::default()), &[QUERY, STATUS], 137);
        hostile(|| Box::new(Netbios::default()), &[BROWSE], 138);
        hostile(|| Box::new(Netbios::default()), &[b"\x81\x00\x00\x44 EGEJEMEFFDFCFGCACACACACACACACACA\x00"], 139);
    }
}
