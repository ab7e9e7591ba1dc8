//! Internet checksums (RFC 1071) and the fix-up applied before a rewritten packet is reinjected.
//!
//! The kernel marks a reinjected payload CHECKSUM_NONE, so every checksum in it must be complete:
//! a packet that arrived with a partial (offloaded) checksum cannot be passed back as is.

use crate::ipv4::Ipv4Packet;
use crate::ipv6::Ipv6Packet;
use crate::WireError;

/// One's-complement sum of `data` folded into 16 bits, starting from `initial`.
pub fn sum(data: &[u8], initial: u32) -> u32 {
    let mut acc = u64::from(initial);
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(*last) << 8;
    }
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u32
}

pub fn finish(acc: u32) -> u16 {
    !(acc as u16)
}

/// Rewrites the length fields and every checksum of an IPv4 or IPv6 packet whose bytes changed:
/// IPv4 total length and header checksum, IPv6 payload length, UDP length and the TCP/UDP
/// checksum over the pseudo-header. ICMP/ICMPv6 checksums are recomputed too.
pub fn fix_packet(pkt: &mut [u8]) -> Result<(), WireError> {
    let len = pkt.len();
    match pkt.first().map(|b| b >> 4) {
        Some(4) => {
            let ip = Ipv4Packet::new_checked(pkt)?;
            let hl = ip.header_len();
            let proto = ip.protocol();
            let later_fragment = ip.frag_offset() != 0 || ip.more_fragments();
            let total =
                u16::try_from(len).map_err(|_| WireError::Malformed { layer: "ipv4", reason: "longer than 65535" })?;
            pkt[2..4].copy_from_slice(&total.to_be_bytes());
            pkt[10] = 0;
            pkt[11] = 0;
            let c = finish(sum(&pkt[..hl], 0));
            pkt[10..12].copy_from_slice(&c.to_be_bytes());
            if later_fragment {
                return Ok(()); // the L4 checksum covers all fragments: not ours to recompute
            }
            let mut pseudo = [0u8; 12];
            pseudo[..8].copy_from_slice(&pkt[12..20]);
            pseudo[9] = proto;
            let l4_len = (len - hl) as u32;
            pseudo[10..12].copy_from_slice(&(l4_len as u16).to_be_bytes());
            fix_l4(&mut pkt[hl..], proto, sum(&pseudo, 0))
        }
        Some(6) => {
            let ip = Ipv6Packet::new_checked(pkt)?;
            let upper = ip.upper_layer()?;
            if upper.fragmented {
                return Err(WireError::Malformed { layer: "ipv6", reason: "cannot rewrite a fragment" });
            }
            let proto = upper.protocol;
            let l4_start = upper.payload.as_ptr() as usize - pkt.as_ptr() as usize;
            let plen = u16::try_from(len - crate::ipv6::HEADER_LEN)
                .map_err(|_| WireError::Malformed { layer: "ipv6", reason: "longer than 65575" })?;
            pkt[4..6].copy_from_slice(&plen.to_be_bytes());
            let l4_len = (len - l4_start) as u32;
            let mut pseudo = [0u8; 40];
            pseudo[..32].copy_from_slice(&pkt[8..40]);
            pseudo[32..36].copy_from_slice(&l4_len.to_be_bytes());
            pseudo[39] = proto;
            fix_l4(&mut pkt[l4_start..], proto, sum(&pseudo, 0))
        }
        Some(v) => Err(WireError::NotIp(v)),
        None => Err(WireError::Truncated { layer: "ip", needed: 1, available: 0 }),
    }
}

fn fix_l4(l4: &mut [u8], proto: u8, pseudo: u32) -> Result<(), WireError> {
    let (at, with_pseudo) = match proto {
        6 => {
            crate::need("tcp", l4, crate::tcp::MIN_HEADER_LEN)?;
            (16, true)
        }
        17 => {
            crate::need("udp", l4, crate::udp::HEADER_LEN)?;
            let ulen =
                u16::try_from(l4.len()).map_err(|_| WireError::Malformed { layer: "udp", reason: "too long" })?;
            l4[4..6].copy_from_slice(&ulen.to_be_bytes());
            (6, true)
        }
        1 => {
            crate::need("icmp", l4, 4)?;
            (2, false)
        }
        58 => {
            crate::need("icmpv6", l4, 4)?;
            (2, true)
        }
        _ => return Ok(()),
    };
    l4[at] = 0;
    l4[at + 1] = 0;
    let mut c = finish(sum(l4, if with_pseudo { pseudo } else { 0 }));
    if proto == 17 && c == 0 {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones
    }
    l4[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// True when the packet's IPv4 header and TCP/UDP checksums verify (used by tests and diagnostics).
pub fn verify_packet(pkt: &[u8]) -> bool {
    let mut copy = pkt.to_vec();
    fix_packet(&mut copy).is_ok() && copy == pkt
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3 example bytes sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(sum(&data, 0), 0xddf2);
    }

    #[test]
    fn known_ipv4_header_checksum() {
        // A widely used textbook header: checksum 0xb861.
        let mut hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8,
            0x00, 0xc7,
        ];
        let c = finish(sum(&hdr, 0));
        assert_eq!(c, 0xb861);
        hdr[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(finish(sum(&hdr, 0)), 0);
    }

    #[test]
    fn fix_then_verify_udp_v4_and_resized_payload() {
        let mut p = crate::packet::tests_support::ipv4_udp(b"hello world");
        fix_packet(&mut p).unwrap();
        assert!(verify_packet(&p));
        // Grow the payload: lengths follow.
        p.extend_from_slice(b"!!");
        fix_packet(&mut p).unwrap();
        let info = crate::parse_l3(&p).unwrap();
        assert_eq!(info.payload, b"hello world!!");
        assert!(verify_packet(&p));
        // A valid checksum sums to zero with its pseudo-header: check independently.
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[12..20]);
        pseudo.extend_from_slice(&[0, 17, 0, (p.len() - 20) as u8]);
        assert_eq!(finish(sum(&p[20..], sum(&pseudo, 0))), 0);
    }

    #[test]
    fn fix_tcp_v6() {
        let mut p = vec![0x60, 0, 0, 0, 0, 0, 6, 64];
        p.extend_from_slice(&[0xfd; 16]);
        p.extend_from_slice(&[0xfe; 16]);
        let mut tcp = vec![0u8; 20];
        tcp[12] = 5 << 4;
        p.extend_from_slice(&tcp);
        p.extend_from_slice(b"GET / HTTP/1.1\r\n");
        fix_packet(&mut p).unwrap();
        assert!(verify_packet(&p));
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&p[8..40]);
        pseudo.extend_from_slice(&((p.len() - 40) as u32).to_be_bytes());
        pseudo.extend_from_slice(&[0, 0, 0, 6]);
        assert_eq!(finish(sum(&p[40..], sum(&pseudo, 0))), 0);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(fix_packet(&mut []).is_err());
        assert!(fix_packet(&mut [0x45, 0, 0]).is_err());
        assert!(fix_packet(&mut [0x15; 40]).is_err());
    }
}
