//! BitTorrent: the peer-wire handshake, the extension-protocol handshake, uTP (BEP 29), DHT KRPC
//! (BEP 5) and the UDP tracker protocol (BEP 15).
//!
//! TCP: the handshake `\x13BitTorrent protocol` may follow an MSE/PE key exchange that chose
//! plaintext (`bittorrent_tcp_miss.pcapng`: five opaque packets, then the handshake from the
//! server), so the first packets are not required to match; the handshake is looked for at the
//! start of any of the first packets, and the BEP 10 extended handshake (`len, 20, 0, "d..."`) is
//! accepted too (it follows the handshake in the same capture, and a capture that starts after the
//! handshake still shows it). UDP: a DHT message is bencoded and says `1:y1:q|r|e`; uTP needs two
//! packets, one per direction, whose version-1 headers agree on the connection id.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

const HANDSHAKE: &[u8] = b"\x13BitTorrent protocol";
/// Payload packets to look at before giving up (MSE/PE key exchange takes 4-5).
const TCP_BUDGET: u32 = 10;
const UDP_BUDGET: u32 = 6;

#[derive(Debug, Default)]
pub struct BitTorrent {
    seen: u32,
    /// Connection id of the first uTP header per direction, and whether it was a SYN.
    utp: [Option<(u16, bool)>; 2],
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// BEP 10 extended handshake: 4-byte length, message id 20, extended id 0, a bencoded dictionary.
fn extended_handshake(p: &[u8]) -> bool {
    let Some(len) = be32(p, 0) else { return false };
    let len = len as usize;
    // The message may continue in later segments or be followed by others: the length only has to
    // be plausible. The dictionary's first key is a bencoded string: digits, then ':'.
    (3..=64 * 1024).contains(&len)
        && p.get(4..7) == Some(b"\x14\x00d")
        && p.get(7).is_some_and(u8::is_ascii_digit)
        && p.get(7..).is_some_and(|d| d.iter().take(4).any(|&c| c == b':'))
}

/// A DHT KRPC message (BEP 5): a bencoded dictionary carrying `1:y1:q`, `1:y1:r` or `1:y1:e`.
fn dht(p: &[u8]) -> bool {
    if p.len() < 12 || p.first() != Some(&b'd') || p.last() != Some(&b'e') {
        return false;
    }
    if p.starts_with(b"d1:ad2:id20:") || p.starts_with(b"d1:rd2:id20:") {
        return true;
    }
    let Some(second) = p.get(1) else { return false };
    second.is_ascii_digit() && [&b"1:y1:q"[..], b"1:y1:r", b"1:y1:e"].iter().any(|k| contains(p, k))
}

/// UDP tracker connect request (BEP 15): the protocol magic 0x41727101980 and action 0.
fn udp_tracker_connect(p: &[u8]) -> bool {
    p.len() == 16 && p.get(..12) == Some(b"\x00\x00\x04\x17\x27\x10\x19\x80\x00\x00\x00\x00")
}

/// The connection id of a plausible uTP header (BEP 29), and whether it is a SYN.
fn utp(p: &[u8]) -> Option<(u16, bool)> {
    let &b0 = p.first()?;
    let (kind, version) = (b0 >> 4, b0 & 0x0f);
    if version != 1 || kind > 4 || p.len() < 20 {
        return None;
    }
    // Walk the extension chain: each link is (next type, length); types are 0 (end), 1 (SACK), 2.
    let mut next = *p.get(1)?;
    let mut at = 20usize;
    let mut hops = 0;
    while next != 0 {
        if next > 4 || hops > 4 {
            return None;
        }
        next = *p.get(at)?;
        let len = *p.get(at + 1)? as usize;
        at = at.checked_add(2 + len)?;
        if at > p.len() {
            return None;
        }
        hops += 1;
    }
    // ST_DATA carries data; ST_STATE/ST_SYN/ST_FIN/ST_RESET carry none.
    if kind != 0 && at != p.len() || kind == 0 && at >= p.len() {
        return None;
    }
    Some((be16(p, 2)?, kind == 4))
}

impl BitTorrent {
    fn udp(&mut self, p: &[u8], dir: usize, facts: &mut Facts) -> Step {
        if dht(p) || udp_tracker_connect(p) {
            facts.protocol = Some("BitTorrent");
            return Step::Done;
        }
        if let Some((conn, syn)) = utp(p) {
            if self.utp_pairs(dir, conn, syn) {
                facts.protocol = Some("BitTorrent");
                return Step::Done;
            }
            return if self.seen >= UDP_BUDGET { Step::NotMine } else { Step::NeedMore };
        }
        Step::NotMine
    }

    /// BEP 29 connection ids: the initiator's SYN carries `id` and its later packets `id + 1`; the
    /// responder's packets carry `id`. So a SYN is answered with the same id from the other side,
    /// and mid-connection the two directions' ids differ by exactly one. Repeats from one side
    /// prove nothing (they did match Zoom's media headers).
    fn utp_pairs(&mut self, dir: usize, conn: u16, syn: bool) -> bool {
        let other = self.utp[1 - dir];
        let hit = other.is_some_and(|(oc, osyn)| {
            if osyn {
                conn == oc
            } else {
                !syn && (conn.wrapping_sub(oc) == 1 || oc.wrapping_sub(conn) == 1)
            }
        });
        if self.utp[dir].is_none() {
            self.utp[dir] = Some((conn, syn));
        }
        hit
    }

    fn tcp(&mut self, p: &[u8], facts: &mut Facts) -> Step {
        if p.starts_with(HANDSHAKE) || extended_handshake(p) {
            facts.protocol = Some("BitTorrent");
            return Step::Done;
        }
        if self.seen >= TCP_BUDGET {
            Step::NotMine
        } else {
            Step::NeedMore
        }
    }
}

impl Dissector for BitTorrent {
    fn name(&self) -> &'static str {
        "bittorrent"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if pkt.payload.is_empty() {
            return Step::NeedMore;
        }
        self.seen += 1;
        if pkt.is_udp() {
            self.udp(pkt.payload, pkt.dir.index(), facts)
        } else if pkt.is_tcp() {
            self.tcp(pkt.payload, facts)
        } else {
            Step::NotMine
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
        packet(l4, dir, ([192, 168, 1, 5], 40959), ([82, 243, 113, 43], 64969), payload)
    }

    fn run(l4: L4Proto, pkts: &[(Dir, &[u8])]) -> (Step, Facts) {
        let mut d = BitTorrent::default();
        let mut f = Facts::default();
        let mut last = Step::NeedMore;
        for (dir, p) in pkts {
            last = d.on_packet(&pv(l4, *dir, p), &mut f);
            if last != Step::NeedMore {
                break;
            }
        }
        (last, f)
    }

    #[test]
    fn dht_query() {
        let q = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe";
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, q)]).1.protocol, Some("BitTorrent"));
        let r = b"d2:ip6:\x01\x02\x03\x04\x05\x061:rd2:id20:abcdefghij0123456789e1:t2:aa1:y1:re";
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToClient, r)]).0, Step::Done);
    }

    #[test]
    fn utp_from_corpus() {
        // bittorrent_utp.pcap, 127.0.0.1:49861 <-> :33333: SYN id 0x4567, STATE id 0x4567, DATA id 0x4568.
        let syn = hex("41004567ed639296000000000010000023c60000");
        let state = hex("21004567ed6393410000000000100000456723c6");
        let (s, f) = run(L4Proto::Udp, &[(Dir::ToServer, &syn), (Dir::ToClient, &state)]);
        assert_eq!(s, Step::Done);
        assert_eq!(f.protocol, Some("BitTorrent"));
        // The other flow: SYN, then STATE with a 2-type extension (len 8) .
        let syn = hex("4100530210eeb2f00000000000000000e7f50000");
        let state = hex("2102530206ff3f5f7fffffff0000f00049c7e7f500080000000000000000");
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, &syn), (Dir::ToClient, &state)]).0, Step::Done);
    }

    #[test]
    fn tcp_handshake_after_opaque_packets() {
        let mut hs = HANDSHAKE.to_vec();
        hs.extend_from_slice(&[0; 8]);
        hs.extend_from_slice(&[7; 40]);
        let junk = [0x5au8; 200];
        let pk: Vec<(Dir, &[u8])> = vec![(Dir::ToServer, &junk), (Dir::ToClient, &junk), (Dir::ToClient, &hs)];
        assert_eq!(run(L4Proto::Tcp, &pk).1.protocol, Some("BitTorrent"));
        // bittorrent_tcp_miss.pcapng: extended handshake 000000ce 14 00 "d12:complete_ago".
        let mut ext = hex("000000ce1400");
        ext.extend_from_slice(b"d12:complete_agoi-1e1:md11:lt_donthavei7ee");
        assert_eq!(run(L4Proto::Tcp, &[(Dir::ToServer, &ext)]).0, Step::Done);
    }

    #[test]
    fn negatives() {
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01";
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, dns)]).0, Step::NotMine);
        let tls = hex("16030100ab010000a70303f1f318c3e72492ca306f3789eaff28710f00dcc8987c96a6ad43679b79");
        let many: Vec<(Dir, &[u8])> = (0..12).map(|_| (Dir::ToServer, &tls[..])).collect();
        assert_eq!(run(L4Proto::Tcp, &many).0, Step::NotMine);
        // zoom2.pcap: Zoom media headers look like uTP ST_DATA with one id, repeated by one side.
        let z = hex("010003c84ac4528718cda2b8477a1b899f33830000000000000002006f613f006f613f00000040e6");
        assert_ne!(run(L4Proto::Udp, &[(Dir::ToServer, &z), (Dir::ToServer, &z), (Dir::ToServer, &z)]).0, Step::Done);
        // Unrelated uTP-looking headers with different connection ids.
        let a = hex("41001000ed639296000000000010000023c60000");
        let b = hex("21009000ed6393410000000000100000456723c6");
        assert_ne!(run(L4Proto::Udp, &[(Dir::ToServer, &a), (Dir::ToClient, &b)]).0, Step::Done);
        let mut quic = vec![0xc3, 0, 0, 0, 1];
        quic.resize(1200, 0);
        assert_eq!(run(L4Proto::Udp, &[(Dir::ToServer, &quic)]).0, Step::NotMine);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let base = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe".to_vec();
        let mut seed = 0x2545f4914f6cdd1du64;
        for n in 0..3000usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut p = if n % 2 == 0 { base.clone() } else { hex("2102530206ff3f5f7fffffff0000f00049c7e7f500080000") };
            let i = (seed as usize) % p.len();
            p[i] ^= (seed >> 32) as u8;
            p.truncate((seed >> 40) as usize % (p.len() + 1));
            for l4 in [L4Proto::Udp, L4Proto::Tcp] {
                let mut d = BitTorrent::default();
                let mut f = Facts::default();
                let _ = d.on_packet(&pv(l4, Dir::ToServer, &p), &mut f);
                let _ = d.on_packet(&pv(l4, Dir::ToClient, &p), &mut f);
            }
        }
    }
}
