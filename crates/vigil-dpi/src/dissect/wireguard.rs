//! WireGuard handshake initiation/response and transport messages.
//!
//! Every message starts with a 1-byte type and three reserved zero bytes; the types have fixed sizes
//! (initiation 148, response 92, cookie reply 64) or a 16-byte-aligned size (transport, at least 32:
//! 16-byte header plus the AEAD tag). Four fixed bytes and a size are not enough on their own, so a
//! flow is WireGuard only when the session indexes agree across packets: a response names the
//! initiator's sender index, or transport packets keep one receiver index with a rising counter.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

/// Packets without a decision before giving up.
const BUDGET: u32 = 8;

#[derive(Debug, Default)]
pub struct WireGuard {
    /// Sender index of the last initiation, per direction.
    init_sender: [Option<u32>; 2],
    /// Receiver index and counter of the last transport packet, per direction.
    transport: [Option<(u32, u64)>; 2],
    /// Transport packets per direction that continued the previous one (same index, higher counter).
    chained: [u32; 2],
    seen: u32,
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn le64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

/// The message type when `p` has a valid WireGuard shape.
fn msg_type(p: &[u8]) -> Option<u8> {
    let (&t, rest) = p.split_first()?;
    if rest.get(..3)? != [0, 0, 0] {
        return None;
    }
    let ok = match t {
        1 => p.len() == 148,
        2 => p.len() == 92,
        3 => p.len() == 64,
        4 => p.len() >= 32 && p.len() & 15 == 0,
        _ => false,
    };
    ok.then_some(t)
}

impl Dissector for WireGuard {
    fn name(&self) -> &'static str {
        "wireguard"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if !pkt.is_udp() || pkt.payload.is_empty() {
            return Step::NeedMore;
        }
        let p = pkt.payload;
        let Some(t) = msg_type(p) else { return Step::NotMine };
        let d = pkt.dir.index();
        let o = 1 - d;
        self.seen += 1;
        let found = match t {
            1 => {
                self.init_sender[d] = le32(p, 4);
                false
            }
            // A response echoes the initiator's sender index as its receiver index.
            2 => self.init_sender[o].is_some() && le32(p, 8) == self.init_sender[o],
            3 => false,
            _ => {
                let (Some(idx), Some(ctr)) = (le32(p, 4), le64(p, 8)) else { return Step::NotMine };
                if let Some((pidx, pctr)) = self.transport[d] {
                    if pidx == idx && ctr > pctr && ctr - pctr < 1 << 16 {
                        self.chained[d] += 1;
                    }
                }
                self.transport[d] = Some((idx, ctr));
                let both = self.transport[o].is_some() && self.chained[0] + self.chained[1] >= 1;
                both || self.chained[d] >= 2
            }
        };
        if found {
            facts.protocol = Some("WireGuard");
            return Step::Done;
        }
        if self.seen >= BUDGET {
            Step::NotMine
        } else {
            Step::NeedMore
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::testutil::packet;
    use crate::view::Dir;
    use vigil_wire::L4Proto;

    fn pv(dir: Dir, payload: &[u8]) -> PacketView<'_> {
        packet(L4Proto::Udp, dir, ([10, 9, 0, 1], 43462), ([10, 9, 0, 2], 51820), payload)
    }

    fn msg(t: u8, len: usize, idx: u32, word2: u64) -> Vec<u8> {
        let mut v = vec![0x5a; len];
        v[..4].copy_from_slice(&[t, 0, 0, 0]);
        v[4..8].copy_from_slice(&idx.to_le_bytes());
        v[8..16].copy_from_slice(&word2.to_le_bytes());
        v
    }

    fn run(pkts: &[(Dir, Vec<u8>)]) -> (Step, Facts) {
        let mut d = WireGuard::default();
        let mut f = Facts::default();
        let mut last = Step::NeedMore;
        for (dir, p) in pkts {
            last = d.on_packet(&pv(*dir, p), &mut f);
            if last != Step::NeedMore {
                break;
            }
        }
        (last, f)
    }

    #[test]
    fn handshake_from_corpus() {
        // wireguard.pcap, flow 10.9.0.1:43462 -> 10.9.0.2:51820: initiation sender d837d030, response
        // sender 06f47dab receiver d837d030.
        let init = msg(1, 148, u32::from_le_bytes([0xd8, 0x37, 0xd0, 0x30]), 0x1122);
        let mut resp = msg(2, 92, u32::from_le_bytes([0x06, 0xf4, 0x7d, 0xab]), 0);
        resp[8..12].copy_from_slice(&[0xd8, 0x37, 0xd0, 0x30]);
        let (s, f) = run(&[(Dir::ToServer, init), (Dir::ToClient, resp)]);
        assert_eq!(s, Step::Done);
        assert_eq!(f.protocol, Some("WireGuard"));
    }

    #[test]
    fn transport_only_flow() {
        // wireguard.pcap flow 139.162.192.157:51820: transport packets with receiver be40698d, counters 0x6b, 0x6c.
        let (s, f) = run(&[
            (Dir::ToServer, msg(4, 800, 0x8d6940be, 0x6b)),
            (Dir::ToServer, msg(4, 144, 0x8d6940be, 0x6c)),
            (Dir::ToClient, msg(4, 96, 0x5e61a66d, 0x70)),
        ]);
        assert_eq!(s, Step::Done);
        assert_eq!(f.protocol, Some("WireGuard"));
    }

    #[test]
    fn unrelated_indexes_are_not_wireguard() {
        let mut pkts = Vec::new();
        for i in 0..10u32 {
            pkts.push((Dir::ToServer, msg(4, 64, 1000 + i, 5)));
        }
        let (s, _) = run(&pkts);
        assert_eq!(s, Step::NotMine);
        let (s, _) = run(&[(Dir::ToServer, msg(1, 148, 1, 0)), (Dir::ToClient, msg(2, 92, 2, 99))]);
        assert_ne!(s, Step::Done);
    }

    #[test]
    fn other_protocols_are_not_mine() {
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01";
        assert_eq!(run(&[(Dir::ToServer, dns.to_vec())]).0, Step::NotMine);
        let mut quic = vec![0xc3, 0, 0, 0, 1];
        quic.resize(1200, 0);
        assert_eq!(run(&[(Dir::ToServer, quic)]).0, Step::NotMine);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        for n in 0..2000usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed as usize) % 200;
            let mut p: Vec<u8> = (0..len).map(|i| (seed >> (i % 56)) as u8).collect();
            if n % 2 == 0 && len >= 4 {
                p[..4].copy_from_slice(&[(n % 5) as u8, 0, 0, 0]);
            }
            let mut d = WireGuard::default();
            let mut f = Facts::default();
            let _ = d.on_packet(&pv(Dir::ToServer, &p), &mut f);
            let _ = d.on_packet(&pv(Dir::ToClient, &p), &mut f);
        }
    }
}
