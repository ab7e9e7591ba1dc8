//! RTP and RTCP (RFC 3550) over UDP.
//!
//! An RTP header is version 2, a payload type, a sequence number and an SSRC; a single header is
//! too easy to hit by chance, so a flow is RTP only after three packets of one direction keep the
//! SSRC and payload type with sequence numbers that advance by small steps. RTCP packets (types
//! 200-207) carry a length in 32-bit words that must fit the datagram; two with the same sender
//! SSRC make an RTCP flow. STUN and DTLS packets multiplexed on the same 5-tuple (RFC 7983 first
//! byte ranges 0-3 and 20-63) are skipped rather than disqualifying. SRTP is not told apart: its
//! header is RTP's (nDPI's "SRTP" label comes from the STUN/DTLS context of the flow).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

/// Packets without a decision before giving up.
const BUDGET: u32 = 10;
/// Consecutive RTP packets of one stream needed.
const RTP_RUN: u32 = 3;

#[derive(Debug, Clone, Copy)]
struct Stream {
    ssrc: u32,
    pt: u8,
    seq: u16,
    run: u32,
}

#[derive(Debug, Default)]
pub struct Rtp {
    streams: [Option<Stream>; 2],
    rtcp_ssrc: Option<u32>,
    seen: u32,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

/// (payload type, sequence number, SSRC) of a well-formed RTP packet.
fn rtp(p: &[u8]) -> Option<(u8, u16, u32)> {
    let &b0 = p.first()?;
    let b1 = *p.get(1)?;
    if b0 >> 6 != 2 {
        return None;
    }
    let pt = b1 & 0x7f;
    // Static audio/video types and the dynamic range; 72-76 would collide with RTCP.
    if !(pt <= 34 || (96..=127).contains(&pt)) {
        return None;
    }
    let cc = (b0 & 0x0f) as usize;
    let mut hdr = 12 + 4 * cc;
    if b0 & 0x10 != 0 {
        let words = be16(p, hdr + 2)? as usize;
        hdr += 4 + 4 * words;
    }
    let pad = if b0 & 0x20 != 0 { *p.last()? as usize } else { 0 };
    if hdr > p.len() || (b0 & 0x20 != 0 && (pad == 0 || hdr + pad > p.len())) {
        return None;
    }
    Some((pt, be16(p, 2)?, be32(p, 8)?))
}

/// Sender SSRC of a well-formed RTCP compound packet (all parts version 2, lengths tiling it).
fn rtcp(p: &[u8]) -> Option<u32> {
    let first_type = *p.get(1)?;
    // A compound packet starts with a report (SR/RR), RFC 3550 section 6.1; reduced-size RTCP
    // (RFC 5506) may start with feedback.
    if !matches!(first_type, 200 | 201 | 205 | 206) {
        return None;
    }
    let mut at = 0usize;
    let mut parts = 0;
    while at < p.len() && parts <= 16 {
        let (Some(&b0), Some(&t), Some(words)) = (p.get(at), p.get(at + 1), be16(p, at + 2)) else { break };
        if b0 >> 6 != 2 || !(200..=207).contains(&t) {
            break;
        }
        at += 4 + 4 * words as usize;
        parts += 1;
    }
    // The parts tile the datagram, or SRTCP's index and authentication tag (4 + 4..=16 bytes)
    // follow the last one.
    let rest = p.len().checked_sub(at)?;
    if parts == 0 || !(rest == 0 || (8..=20).contains(&rest)) {
        return None;
    }
    let first_len = 4 + 4 * be16(p, 2)? as usize;
    (first_len >= 8 && first_len <= p.len()).then(|| be32(p, 4)).flatten()
}

impl Dissector for Rtp {
    fn name(&self) -> &'static str {
        "rtp"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if !pkt.is_udp() {
            return Step::NotMine;
        }
        let p = pkt.payload;
        let Some(&b0) = p.first() else { return Step::NeedMore };
        self.seen += 1;
        let give_up = self.seen >= BUDGET;
        if let Some(ssrc) = rtcp(p) {
            if self.rtcp_ssrc == Some(ssrc) {
                facts.protocol = Some("RTCP");
                return Step::Done;
            }
            self.rtcp_ssrc = Some(ssrc);
            return if give_up { Step::NotMine } else { Step::NeedMore };
        }
        let Some((pt, seq, ssrc)) = rtp(p) else {
            // STUN or DTLS sharing the 5-tuple.
            let muxed = b0 <= 3 || (20..=63).contains(&b0);
            return if muxed && !give_up { Step::NeedMore } else { Step::NotMine };
        };
        let d = pkt.dir.index();
        let next = match self.streams[d] {
            Some(s) if s.ssrc == ssrc && s.pt == pt && (1..=16).contains(&seq.wrapping_sub(s.seq)) => {
                Stream { seq, run: s.run + 1, ..s }
            }
            // Out of order or a second stream: start counting again from this packet.
            _ => Stream { ssrc, pt, seq, run: 1 },
        };
        self.streams[d] = Some(next);
        if next.run >= RTP_RUN {
            facts.protocol = Some("RTP");
            return Step::Done;
        }
        if give_up {
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
        packet(L4Proto::Udp, dir, ([192, 168, 1, 2], 30000), ([212, 242, 33, 36], 40392), payload)
    }

    fn pkt(pt: u8, seq: u16, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&(seq as u32 * 160).to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    fn run(pkts: &[Vec<u8>]) -> (Step, Facts) {
        let mut d = Rtp::default();
        let mut f = Facts::default();
        let mut last = Step::NeedMore;
        for p in pkts {
            last = d.on_packet(&pv(Dir::ToServer, p), &mut f);
            if last != Step::NeedMore {
                break;
            }
        }
        (last, f)
    }

    #[test]
    fn audio_stream() {
        // sip.pcap 192.168.1.2:30000 -> 212.242.33.36:40392: PCMU (type 0), one SSRC.
        let (s, f) = run(&[pkt(0, 100, 0xdeadbeef), pkt(0, 101, 0xdeadbeef), pkt(0, 102, 0xdeadbeef)]);
        assert_eq!(s, Step::Done);
        assert_eq!(f.protocol, Some("RTP"));
        // A STUN check in between does not break it.
        let stun = b"\x00\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl".to_vec();
        assert_eq!(run(&[pkt(111, 7, 1), stun, pkt(111, 8, 1), pkt(111, 9, 1)]).0, Step::Done);
    }

    #[test]
    fn rtcp_reports() {
        let rr = |n: u8| {
            vec![
                0x81, 201, 0, 7, 0, 0, 0x12, 0x34, 0, 0, 0, 9, n, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                0,
            ]
        };
        let (s, f) = run(&[rr(1), rr(2)]);
        assert_eq!((s, f.protocol), (Step::Done, Some("RTCP")));
    }

    #[test]
    fn inconsistent_headers_are_not_rtp() {
        let (s, _) =
            run(&[pkt(0, 100, 1), pkt(0, 101, 2), pkt(0, 5000, 2), pkt(8, 5001, 2), pkt(0, 7, 9), pkt(0, 1, 1)]);
        assert_ne!(s, Step::Done);
        let mut seed = 0x9e3779b97f4a7c15u64;
        let random: Vec<Vec<u8>> = (0..12)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (0..100).map(|i| (seed >> (i % 57)) as u8).collect()
            })
            .collect();
        assert_ne!(run(&random).0, Step::Done);
    }

    #[test]
    fn other_protocols_are_not_mine() {
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01";
        assert_eq!(run(&[dns.to_vec()]).0, Step::NotMine);
        let mut quic = vec![0xc3, 0, 0, 0, 1];
        quic.resize(1200, 0);
        assert_eq!(run(&[quic]).0, Step::NotMine);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let base = pkt(96, 1, 7);
        let mut seed = 0x0ddc0ffeebadf00du64;
        for _ in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut p = base.clone();
            let i = (seed as usize) % 16;
            p[i] ^= (seed >> 32) as u8;
            p.truncate((seed >> 40) as usize % (p.len() + 1));
            let mut d = Rtp::default();
            let mut f = Facts::default();
            let _ = d.on_packet(&pv(Dir::ToServer, &p), &mut f);
            let _ = d.on_packet(&pv(Dir::ToServer, &p), &mut f);
        }
    }
}
