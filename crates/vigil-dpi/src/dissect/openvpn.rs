//! OpenVPN control channel over UDP and TCP (TCP adds a 2-byte packet length).
//!
//! Every control packet is `opcode<<3 | key_id`, an 8-byte session id, then, depending on the
//! configuration, nothing (plain), an HMAC of 16-64 bytes plus packet id and time (`tls-auth`), or
//! packet id, time and a 32-byte HMAC before an encrypted body (`tls-crypt`). The header size is not
//! announced, so each layout is tried. A hard reset must have an exact plain/tls-auth shape (empty
//! ack list, message packet id 0) or a tls-crypt shape (small packet id); the flow is OpenVPN when
//! the peer's hard reset answers it (acknowledging the client's session id where that is visible),
//! or when two more control packets of the same direction repeat the reset's session id (captures
//! of one direction only, as in `openvpn.pcap`).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

const HARD_RESET_CLIENT_V2: u8 = 7;
const HARD_RESET_SERVER_V2: u8 = 8;
const HARD_RESET_CLIENT_V3: u8 = 10;
const CONTROL_V1: u8 = 4;
const ACK_V1: u8 = 5;
const SOFT_RESET_V1: u8 = 3;
const CONTROL_WKC_V1: u8 = 11;
/// HMAC sizes of `tls-auth` digests: MD5, SHA1, SHA256, SHA384, SHA512.
const HMAC_SIZES: [usize; 5] = [16, 20, 32, 48, 64];
const BUDGET: u32 = 8;

/// Where the ack list starts after the session id, or that the body is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Plain or `tls-auth`: bytes of HMAC + packet id + time before the ack list (0 when plain).
    Clear(usize),
    /// `tls-crypt`: packet id, time, HMAC, then ciphertext.
    Crypt,
}

#[derive(Debug, Clone, Copy)]
struct Reset {
    dir: usize,
    sid: [u8; 8],
    layout: Layout,
    /// Later control packets of the same direction with the same session id.
    followers: u32,
}

#[derive(Debug, Default)]
pub struct OpenVpn {
    reset: Option<Reset>,
    seen: u32,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// Packet id and time as a fresh session sends them: a small id and a non-zero time.
fn fresh_replay_fields(b: &[u8], at: usize) -> bool {
    matches!((be32(b, at), be32(b, at + 4)), (Some(1..=16), Some(t)) if t != 0)
}

/// Offset just past the ack list (and the remote session id when acks are present).
fn after_acks(b: &[u8], at: usize) -> Option<(usize, u8)> {
    let n = *b.get(at)?;
    if n > 8 {
        return None;
    }
    let end = at + 1 + 4 * n as usize + if n > 0 { 8 } else { 0 };
    (end <= b.len()).then_some((end, n))
}

/// The layout of a hard reset body (`b` starts at the session id).
fn reset_layout(op: u8, b: &[u8]) -> Option<Layout> {
    if b.len() < 8 + 1 + 4 {
        return None;
    }
    for h in std::iter::once(0).chain(HMAC_SIZES.iter().map(|h| h + 8)) {
        let at = 8 + h;
        if h > 0 && !fresh_replay_fields(b, 8 + h - 8) {
            continue;
        }
        let Some((end, _acks)) = after_acks(b, at) else { continue };
        // The message packet id of the first reset is 0; V2 resets carry at most a short
        // early-negotiation TLV after it.
        if be32(b, end) == Some(0) && b.len() >= end + 4 && b.len() <= end + 4 + 16 {
            return Some(Layout::Clear(h));
        }
    }
    // tls-crypt: packet id and time first, 32-byte HMAC, then at least ack count and message id
    // encrypted; V3 client resets append a wrapped client key.
    let min = 8 + 8 + 32 + 5;
    let max = if op == HARD_RESET_CLIENT_V3 { 8 + 8 + 32 + 5 + 1024 } else { 8 + 8 + 32 + 5 + 16 };
    (fresh_replay_fields(b, 8) && (min..=max).contains(&b.len())).then_some(Layout::Crypt)
}

/// Opcode, key id and body of one OpenVPN packet.
fn split<'a>(pkt: &PacketView<'a>) -> Option<(u8, u8, &'a [u8])> {
    let p = if pkt.is_tcp() {
        let len = u16::from_be_bytes(pkt.payload.get(..2)?.try_into().ok()?) as usize;
        pkt.payload.get(2..2 + len)?
    } else {
        pkt.payload
    };
    let (&b0, body) = p.split_first()?;
    (body.len() >= 8).then_some((b0 >> 3, b0 & 7, body))
}

impl OpenVpn {
    fn step(&mut self, pkt: &PacketView<'_>) -> Option<bool> {
        let (op, key, body) = split(pkt)?;
        let d = pkt.dir.index();
        let sid: [u8; 8] = body.get(..8)?.try_into().ok()?;
        let is_reset = matches!(op, HARD_RESET_CLIENT_V2 | HARD_RESET_CLIENT_V3 | HARD_RESET_SERVER_V2);
        match self.reset {
            None => {
                if !is_reset || key != 0 {
                    return None;
                }
                let layout = reset_layout(op, body)?;
                self.reset = Some(Reset { dir: d, sid, layout, followers: 0 });
                Some(false)
            }
            Some(ref mut r) if r.dir == d => {
                let control = matches!(op, CONTROL_V1 | ACK_V1 | SOFT_RESET_V1 | CONTROL_WKC_V1) || is_reset;
                if control && sid == r.sid {
                    r.followers += 1;
                }
                Some(r.followers >= 2)
            }
            Some(r) => {
                if op != HARD_RESET_SERVER_V2 || key != 0 {
                    // Data or anything else from the peer before its reset: keep waiting.
                    return Some(false);
                }
                match (r.layout, reset_layout(op, body)) {
                    (Layout::Clear(h), Some(Layout::Clear(h2))) if h == h2 => {
                        // The server acknowledges the client's reset: remote session id after its acks.
                        let (end, n) = after_acks(body, 8 + h)?;
                        (n > 0 && body.get(end - 8..end) == Some(&r.sid[..])).then_some(true)
                    }
                    (Layout::Crypt, Some(Layout::Crypt)) => Some(true),
                    _ => None,
                }
            }
        }
    }
}

impl Dissector for OpenVpn {
    fn name(&self) -> &'static str {
        "openvpn"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if pkt.payload.is_empty() {
            return Step::NeedMore;
        }
        if !pkt.is_udp() && !pkt.is_tcp() {
            return Step::NotMine;
        }
        self.seen += 1;
        match self.step(pkt) {
            None => Step::NotMine,
            Some(true) => {
                facts.protocol = Some("OpenVPN");
                Step::Done
            }
            Some(false) if self.seen >= BUDGET => Step::NotMine,
            Some(false) => Step::NeedMore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::testutil::{hex, packet};
    use crate::view::Dir;
    use vigil_wire::L4Proto;

    fn pv(l4: L4Proto, dir: Dir, payload: &[u8]) -> PacketView<'_> {
        packet(l4, dir, ([10, 0, 0, 1], 39772), ([10, 0, 0, 2], 1194), payload)
    }

    fn run(l4: L4Proto, pkts: &[(Dir, Vec<u8>)]) -> Step {
        let mut d = OpenVpn::default();
        let mut f = Facts::default();
        for (dir, p) in pkts {
            let s = d.on_packet(&pv(l4, *dir, p), &mut f);
            if s != Step::NeedMore {
                if s == Step::Done {
                    assert_eq!(f.protocol, Some("OpenVPN"));
                }
                return s;
            }
        }
        Step::NeedMore
    }

    #[test]
    fn plain_udp_reset_and_reply() {
        // openvpn.pcap, 3.111.166.78:51146 <-> 85.134.13.165:1194.
        let c = hex("3839fded2daa10a4370000000000");
        let s = hex("409421917de7267729010000000039fded2daa10a43700000000");
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, c), (Dir::ToClient, s)]), Step::Done);
    }

    #[test]
    fn tls_auth_sha1_udp() {
        // openvpn.pcap, 192.168.43.12:41507 <-> 139.59.151.137:13680 (20-byte HMAC).
        let c = hex("38b02ccff1b5f0174fc091666e3b124bada39173317b939722d1fe63be0000000157a1c15f0000000000");
        let s = hex(concat!(
            "40f77fc2efdbe23f57dec4c8d5654d0723bf8c0be54138563270cfae130000000157a1c15f01",
            "00000000b02ccff1b5f0174f00000000"
        ));
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, c), (Dir::ToClient, s)]), Step::Done);
    }

    #[test]
    fn tcp_plain() {
        // openvpn.pcap, 10.181.235.122:39772 <-> 10.251.71.30:1194.
        let c = hex("000e38507a28a78275788d0000000000");
        let s = hex("001a409ad747beb24d8a1b0100000000507a28a78275788d00000000");
        assert_eq!(run(L4Proto::Tcp, &[(Dir::ToServer, c), (Dir::ToClient, s)]), Step::Done);
    }

    #[test]
    fn one_direction_only() {
        // openvpn.pcap, 192.168.75.18:60201 -> 166.161.181.18:443: reset, then ACKs with the same sid.
        let r = hex("38334857703d96db390000000000");
        let a1 = hex("28334857703d96db390100000000d31c3a6964602fa0");
        let a2 = hex("28334857703d96db390100000001d31c3a6964602fa0");
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, r), (Dir::ToServer, a1), (Dir::ToServer, a2)]), Step::Done);
    }

    #[test]
    fn wrong_echo_is_not_openvpn() {
        let c = hex("3839fded2daa10a4370000000000");
        let s = hex("409421917de7267729010000000011111111111111110000000000");
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, c), (Dir::ToClient, s)]), Step::NotMine);
    }

    #[test]
    fn negatives() {
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01";
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, dns.to_vec())]), Step::NotMine);
        let tls = hex("16030100ab010000a70303f1f318c3e72492ca306f3789eaff28710f00dcc8987c96a6ad43679b79");
        assert_eq!(run(L4Proto::Tcp, &[(Dir::ToServer, tls)]), Step::NotMine);
        let mut quic = vec![0xc3, 0, 0, 0, 1];
        quic.resize(1200, 0);
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, quic)]), Step::NotMine);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let base = hex("40f77fc2efdbe23f57dec4c8d5654d0723bf8c0be54138563270cfae130000000157a1c15f0100000000b02c");
        let mut seed = 0x853c49e6748fea9bu64;
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut p = base.clone();
            let i = (seed as usize) % p.len();
            p[i] ^= (seed >> 32) as u8;
            p.truncate((seed >> 40) as usize % (p.len() + 1));
            for l4 in [L4Proto::Udp, L4Proto::Tcp] {
                let mut d = OpenVpn::default();
                let mut f = Facts::default();
                let _ = d.on_packet(&pv(l4, Dir::ToServer, &p), &mut f);
                let _ = d.on_packet(&pv(l4, Dir::ToClient, &p), &mut f);
                let _ = d.on_packet(&pv(l4, Dir::ToServer, &p), &mut f);
            }
        }
    }
}
