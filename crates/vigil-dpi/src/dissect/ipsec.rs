//! IPsec over UDP: IKEv1/IKEv2 (ISAKMP header, UDP 500 or 4500 behind the non-ESP marker) and
//! ESP-in-UDP (RFC 3948) on port 4500. ESP as IP protocol 50 is named by the classifier itself.
//!
//! The ISAKMP header is 28 bytes: two SPIs (the initiator's never zero), next payload, version
//! (major 1 or 2, minor 0), exchange type, flags, message id and a length that covers the whole
//! datagram; that exactness is what makes one packet enough. ESP has no such field (SPI and
//! sequence number, then ciphertext), so it is only accepted on port 4500 and only when two packets
//! of one direction share the SPI with a rising sequence number.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

const NAT_T_PORT: u16 = 4500;
const BUDGET: u32 = 6;

#[derive(Debug, Default)]
pub struct Ipsec {
    /// SPI and sequence number of the last ESP packet, per direction.
    esp: [Option<(u32, u32)>; 2],
    seen: u32,
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// True when `p` is one whole IKE message.
fn ike(p: &[u8]) -> bool {
    let (Some(hdr), Some(len)) = (p.get(..28), be32(p, 24)) else { return false };
    if hdr[..8] == [0; 8] || len as usize != p.len() {
        return false;
    }
    let (next, version, exchange, flags) = (hdr[16], hdr[17], hdr[18], hdr[19]);
    match version {
        // IKEv1 (RFC 2408/2409): Main, Aggressive, Informational, Quick Mode, New Group; payloads 1-13,
        // NAT-D/NAT-OA 20/21 and their drafts 130/131.
        0x10 => {
            matches!(exchange, 1..=5 | 32 | 33) && matches!(next, 1..=13 | 20 | 21 | 130 | 131) && flags & 0xf8 == 0
        }
        // IKEv2 (RFC 7296): IKE_SA_INIT, IKE_AUTH, CREATE_CHILD_SA, INFORMATIONAL, IKE_INTERMEDIATE;
        // first payload 33-48 or 53 (SKF); flags use only bits 3-5.
        0x20 => matches!(exchange, 34..=37 | 43) && matches!(next, 33..=48 | 53) && flags & 0xc7 == 0,
        _ => false,
    }
}

impl Dissector for Ipsec {
    fn name(&self) -> &'static str {
        "ipsec"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if !pkt.is_udp() {
            return Step::NotMine;
        }
        let p = pkt.payload;
        if p.is_empty() {
            return Step::NeedMore;
        }
        self.seen += 1;
        let nat_t = pkt.has_port(NAT_T_PORT);
        let found = if nat_t && p == [0xff] {
            // NAT-keepalive (RFC 3948): says nothing yet.
            false
        } else if nat_t && p.get(..4) == Some(&[0; 4]) {
            if !ike(&p[4..]) {
                return Step::NotMine;
            }
            true
        } else if ike(p) {
            true
        } else if nat_t {
            let (Some(spi), Some(seq)) = (be32(p, 0), be32(p, 4)) else { return Step::NotMine };
            // SPIs 1-255 are reserved; the payload is at least IV/ICV-sized.
            if spi < 256 || seq == 0 || p.len() < 8 + 16 {
                return Step::NotMine;
            }
            let d = pkt.dir.index();
            let chained = matches!(self.esp[d], Some((s, q)) if s == spi && seq > q && seq - q < 64);
            self.esp[d] = Some((spi, seq));
            chained
        } else {
            return Step::NotMine;
        };
        if found {
            facts.protocol = Some("IPSec");
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
    use crate::dissect::testutil::{hex, packet};
    use crate::view::Dir;
    use vigil_wire::L4Proto;

    fn pv(dir: Dir, port: u16, payload: &[u8]) -> PacketView<'_> {
        packet(L4Proto::Udp, dir, ([10, 2, 3, 2], port), ([10, 3, 4, 4], port), payload)
    }

    /// esp.pcapng, 10.2.3.2:500: IKEv2 IKE_SA_INIT header (length 358), body padded.
    fn sa_init() -> Vec<u8> {
        let mut p = hex("05ac0f4d122013f40000000000000000212022080000000000000166220000300000002c01010004");
        p.resize(358, 0);
        p
    }

    fn run(port: u16, pkts: &[(Dir, Vec<u8>)]) -> (Step, Facts) {
        let mut d = Ipsec::default();
        let mut f = Facts::default();
        let mut last = Step::NeedMore;
        for (dir, p) in pkts {
            last = d.on_packet(&pv(*dir, port, p), &mut f);
            if last != Step::NeedMore {
                break;
            }
        }
        (last, f)
    }

    #[test]
    fn ikev2_on_500_and_4500() {
        let (s, f) = run(500, &[(Dir::ToServer, sa_init())]);
        assert_eq!(s, Step::Done);
        assert_eq!(f.protocol, Some("IPSec"));
        let mut nat = vec![0, 0, 0, 0];
        nat.extend(sa_init());
        assert_eq!(run(4500, &[(Dir::ToServer, vec![0xff]), (Dir::ToServer, nat)]).0, Step::Done);
    }

    #[test]
    fn wrong_length_is_not_ike() {
        let mut p = sa_init();
        p.push(0);
        assert_eq!(run(500, &[(Dir::ToServer, p)]).0, Step::NotMine);
    }

    #[test]
    fn esp_in_udp_needs_a_sequence() {
        let esp = |seq: u32| {
            let mut p = vec![0xc0, 0x01, 0x02, 0x03];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0x77; 64]);
            p
        };
        assert_eq!(run(4500, &[(Dir::ToServer, esp(1)), (Dir::ToServer, esp(2))]).0, Step::Done);
        assert_eq!(run(4501, &[(Dir::ToServer, esp(1)), (Dir::ToServer, esp(2))]).0, Step::NotMine);
        assert_ne!(run(4500, &[(Dir::ToServer, esp(9)), (Dir::ToServer, esp(2))]).0, Step::Done);
    }

    #[test]
    fn negatives() {
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01";
        assert_eq!(run(53, &[(Dir::ToServer, dns.to_vec())]).0, Step::NotMine);
        let mut quic = vec![0xc3, 0, 0, 0, 1];
        quic.resize(1200, 0);
        assert_eq!(run(443, &[(Dir::ToServer, quic)]).0, Step::NotMine);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let base = sa_init();
        let mut seed = 0xdeadbeefcafef00du64;
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut p = base.clone();
            let i = (seed as usize) % 40;
            p[i] ^= (seed >> 32) as u8;
            p.truncate((seed >> 40) as usize % (p.len() + 1));
            for port in [500, 4500] {
                let mut d = Ipsec::default();
                let mut f = Facts::default();
                let _ = d.on_packet(&pv(Dir::ToServer, port, &p), &mut f);
                let _ = d.on_packet(&pv(Dir::ToServer, port, &p), &mut f);
            }
        }
    }
}
