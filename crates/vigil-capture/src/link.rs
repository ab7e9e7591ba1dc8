//! Link-layer decapsulation: find the IPv4/IPv6 packet inside a captured frame.
//!
//! Everything here works on indices so that the reader can hand out a borrowed slice of its own
//! buffer afterwards. No function in this module can panic: every access is bounds-checked.

/// Link-layer header types (LINKTYPE_* values) understood by [`extract`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// LINKTYPE_ETHERNET (1), with 802.1Q/802.1ad tags, PPPoE session, MPLS and LLC/SNAP.
    Ethernet,
    /// LINKTYPE_RAW (101) and the DLT_RAW values 12 and 14: IPv4 or IPv6 by version nibble.
    Raw,
    /// LINKTYPE_IPV4 (228).
    Ipv4,
    /// LINKTYPE_IPV6 (229).
    Ipv6,
    /// LINKTYPE_NULL (0) and LINKTYPE_LOOP (108): 4-byte address family, either byte order.
    Null,
    /// LINKTYPE_LINUX_SLL (113): 16-byte Linux cooked header.
    LinuxSll,
    /// LINKTYPE_LINUX_SLL2 (276): 20-byte Linux cooked v2 header.
    LinuxSll2,
}

impl Link {
    /// Maps the link-layer type field (pcap header or pcapng IDB; only the low 16 bits are the
    /// type, pcap keeps FCS information in the upper bits) to a supported [`Link`].
    pub(crate) fn from_link_type(link_type: u32) -> Option<Link> {
        Some(match link_type & 0xFFFF {
            1 => Link::Ethernet,
            12 | 14 | 101 => Link::Raw,
            228 => Link::Ipv4,
            229 => Link::Ipv6,
            0 | 108 => Link::Null,
            113 => Link::LinuxSll,
            276 => Link::LinuxSll2,
            _ => return None,
        })
    }
}

/// Outcome of [`extract`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Extracted {
    /// The IP packet is `frame[start..start + len]` (`len >= 1`).
    Ip { v6: bool, start: usize, len: usize },
    /// A frame that does not carry IP (ARP, LLDP, STP, ...).
    NonIp,
    /// The capture stopped before the link-layer headers ended (or right at the IP header).
    Truncated,
}

enum Found {
    Ip { v6: bool, at: usize },
    NonIp,
    Truncated,
}

fn be16(f: &[u8], at: usize) -> Option<u16> {
    let b = f.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86DD;
const ETH_VLAN: u16 = 0x8100;
const ETH_QINQ: u16 = 0x88A8;
const ETH_QINQ_OLD1: u16 = 0x9100;
const ETH_QINQ_OLD2: u16 = 0x9200;
const ETH_PPPOE_SESSION: u16 = 0x8864;
const ETH_MPLS_UC: u16 = 0x8847;
const ETH_MPLS_MC: u16 = 0x8848;
const PPP_IPV4: u16 = 0x0021;
const PPP_IPV6: u16 = 0x0057;

/// BSD address-family values for IPv6 as written by the various OSes (Linux 10, NetBSD/OpenBSD
/// 24, FreeBSD 28, Darwin 30). AF_INET is 2 everywhere.
const AF_INET6_ALL: [u32; 4] = [10, 24, 28, 30];

/// Locates the IP packet in `frame` for link type `link`, and trims trailing link-layer bytes
/// (Ethernet padding, FCS) using the IP length field when that field is consistent.
pub(crate) fn extract(link: Link, frame: &[u8]) -> Extracted {
    let found = match link {
        Link::Ethernet => match be16(frame, 12) {
            Some(et) => ethertype(frame, 14, et),
            None => Found::Truncated,
        },
        Link::Raw => by_version_nibble(frame, 0),
        Link::Ipv4 => Found::Ip { v6: false, at: 0 },
        Link::Ipv6 => Found::Ip { v6: true, at: 0 },
        Link::Null => match frame.get(..4) {
            Some(h) => {
                let le = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                let be = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                if le == 2 || be == 2 {
                    Found::Ip { v6: false, at: 4 }
                } else if AF_INET6_ALL.contains(&le) || AF_INET6_ALL.contains(&be) {
                    Found::Ip { v6: true, at: 4 }
                } else {
                    Found::NonIp
                }
            }
            None => Found::Truncated,
        },
        Link::LinuxSll => match (frame.len() >= 16, be16(frame, 14)) {
            (true, Some(proto)) => ethertype(frame, 16, proto),
            _ => Found::Truncated,
        },
        Link::LinuxSll2 => match (frame.len() >= 20, be16(frame, 0)) {
            (true, Some(proto)) => ethertype(frame, 20, proto),
            _ => Found::Truncated,
        },
    };
    match found {
        Found::NonIp => Extracted::NonIp,
        Found::Truncated => Extracted::Truncated,
        Found::Ip { v6, at } => match frame.get(at..) {
            Some(ip) if !ip.is_empty() => Extracted::Ip { v6, start: at, len: ip_len(v6, ip) },
            _ => Extracted::Truncated,
        },
    }
}

fn by_version_nibble(frame: &[u8], at: usize) -> Found {
    match frame.get(at).map(|b| b >> 4) {
        None => Found::Truncated,
        Some(4) => Found::Ip { v6: false, at },
        Some(6) => Found::Ip { v6: true, at },
        Some(_) => Found::NonIp,
    }
}

/// Follows an ethertype chain starting with `et`, whose payload begins at `off`.
fn ethertype(f: &[u8], mut off: usize, mut et: u16) -> Found {
    // Every iteration consumes at least 4 bytes, so this terminates; the bound is belt and braces.
    for _ in 0..64 {
        match et {
            ETH_IPV4 => return Found::Ip { v6: false, at: off },
            ETH_IPV6 => return Found::Ip { v6: true, at: off },
            ETH_VLAN | ETH_QINQ | ETH_QINQ_OLD1 | ETH_QINQ_OLD2 => {
                // 2 bytes TCI, 2 bytes inner ethertype.
                match be16(f, off + 2) {
                    Some(inner) => {
                        et = inner;
                        off += 4;
                    }
                    None => return Found::Truncated,
                }
            }
            ETH_PPPOE_SESSION => {
                // ver/type (0x11), code (0 = session data), session id, length, PPP protocol.
                let (Some(&vt), Some(&code), Some(proto)) = (f.get(off), f.get(off + 1), be16(f, off + 6)) else {
                    return Found::Truncated;
                };
                if vt != 0x11 || code != 0 {
                    return Found::NonIp;
                }
                return match proto {
                    PPP_IPV4 => Found::Ip { v6: false, at: off + 8 },
                    PPP_IPV6 => Found::Ip { v6: true, at: off + 8 },
                    _ => Found::NonIp,
                };
            }
            ETH_MPLS_UC | ETH_MPLS_MC => {
                // Pop labels up to bottom-of-stack, then guess IPv4/IPv6 from the version nibble
                // (anything else, e.g. a pseudowire control word, is not IP).
                loop {
                    let Some(&b) = f.get(off + 2) else { return Found::Truncated };
                    if f.len() < off + 4 {
                        return Found::Truncated;
                    }
                    off += 4;
                    if b & 1 == 1 {
                        return by_version_nibble(f, off);
                    }
                }
            }
            len if len < 0x0600 => {
                // IEEE 802.3 length field: LLC. Only SNAP with an encapsulated ethertype
                // (OUI 00-00-00 or 00-00-F8) can carry IP; STP, CDP, NetBIOS etc. cannot.
                match (f.get(off..off + 6), be16(f, off + 6)) {
                    (Some([0xAA, 0xAA, 0x03, 0x00, 0x00, 0x00 | 0xF8]), Some(inner)) => {
                        et = inner;
                        off += 8;
                    }
                    _ => return Found::NonIp,
                }
            }
            _ => return Found::NonIp,
        }
    }
    Found::NonIp
}

/// Length of the IP packet at the start of `ip` (non-empty): the IP length field if it is
/// plausible and shorter than the captured bytes (the rest is padding/FCS), else everything.
/// A zero length field (TSO-offloaded IPv4 captured on the sender, IPv6 jumbogram) keeps all.
fn ip_len(v6: bool, ip: &[u8]) -> usize {
    let version = ip[0] >> 4;
    let claimed = if !v6 && version == 4 {
        be16(ip, 2).map(usize::from).filter(|&t| t >= 20)
    } else if v6 && version == 6 {
        be16(ip, 4).filter(|&p| p != 0).map(|p| 40 + usize::from(p))
    } else {
        None
    };
    match claimed {
        Some(n) if n < ip.len() => n,
        _ => ip.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(payload: usize) -> Vec<u8> {
        let total = 20 + payload;
        let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        p.extend((0..payload).map(|i| i as u8));
        p
    }

    fn ipv6(payload: usize) -> Vec<u8> {
        let mut p = vec![0x60, 0, 0, 0, (payload >> 8) as u8, payload as u8, 17, 64];
        p.extend([0u8; 32]);
        p.extend((0..payload).map(|i| i as u8));
        p
    }

    fn eth(et: u16, rest: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2];
        f.extend(et.to_be_bytes());
        f.extend(rest);
        f
    }

    #[track_caller]
    fn ip_at(link: Link, frame: &[u8], v6: bool, start: usize, len: usize) {
        assert_eq!(extract(link, frame), Extracted::Ip { v6, start, len });
    }

    #[test]
    fn ethernet_plain_padding_and_fcs_trimmed() {
        let ip = ipv4(8); // 28 bytes, padded to the 60-byte minimum + 4 FCS
        let mut f = eth(ETH_IPV4, &ip);
        f.resize(64, 0xEE);
        ip_at(Link::Ethernet, &f, false, 14, 28);
        let ip6 = ipv6(10);
        ip_at(Link::Ethernet, &eth(ETH_IPV6, &ip6), true, 14, 50);
    }

    #[test]
    fn ethernet_vlan_stacks() {
        let ip = ipv4(4);
        let mut rest = vec![0x00, 0x0A]; // outer 802.1ad TCI
        rest.extend(ETH_VLAN.to_be_bytes());
        rest.extend([0x00, 0x14]); // inner 802.1Q TCI
        rest.extend(ETH_IPV4.to_be_bytes());
        rest.extend(&ip);
        ip_at(Link::Ethernet, &eth(ETH_QINQ, &rest), false, 22, 24);
        // Three tags, IPv6 inside.
        let ip6 = ipv6(0);
        let mut rest = vec![];
        for et in [ETH_VLAN, ETH_VLAN, ETH_IPV6] {
            rest.extend([0, 1]);
            rest.extend(et.to_be_bytes());
        }
        rest.extend(&ip6);
        ip_at(Link::Ethernet, &eth(ETH_QINQ_OLD1, &rest), true, 26, 40);
        // Tag cut short.
        assert_eq!(extract(Link::Ethernet, &eth(ETH_VLAN, &[0, 1, 0x08])), Extracted::Truncated);
    }

    #[test]
    fn ethernet_pppoe_mpls_snap() {
        let ip = ipv4(4);
        let mut pppoe = vec![0x11, 0x00, 0x12, 0x34, 0x00, 26, 0x00, 0x21];
        pppoe.extend(&ip);
        ip_at(Link::Ethernet, &eth(ETH_PPPOE_SESSION, &pppoe), false, 22, 24);
        pppoe[7] = 0x57;
        pppoe.truncate(8);
        pppoe.extend(ipv6(2));
        ip_at(Link::Ethernet, &eth(ETH_PPPOE_SESSION, &pppoe), true, 22, 42);
        pppoe[7] = 0x21;
        pppoe[6] = 0xC0; // LCP (0xC021)
        assert_eq!(extract(Link::Ethernet, &eth(ETH_PPPOE_SESSION, &pppoe)), Extracted::NonIp);
        assert_eq!(extract(Link::Ethernet, &eth(ETH_PPPOE_SESSION, &[0x11, 0])), Extracted::Truncated);

        let mut mpls = vec![0, 0, 0x10, 64, 0, 0, 0x21, 64]; // two labels, second has S bit
        mpls.extend(&ip);
        ip_at(Link::Ethernet, &eth(ETH_MPLS_UC, &mpls), false, 22, 24);
        assert_eq!(extract(Link::Ethernet, &eth(ETH_MPLS_UC, &[0, 0, 0x10, 64, 0, 0])), Extracted::Truncated);

        let mut snap = vec![0xAA, 0xAA, 0x03, 0, 0, 0, 0x08, 0x00];
        snap.extend(&ip);
        ip_at(Link::Ethernet, &eth(snap.len() as u16, &snap), false, 22, 24);
        // STP: LLC 42 42 03
        assert_eq!(extract(Link::Ethernet, &eth(38, &[0x42, 0x42, 0x03, 0, 0, 0, 0, 0])), Extracted::NonIp);
    }

    #[test]
    fn ethernet_non_ip_and_short() {
        assert_eq!(extract(Link::Ethernet, &eth(0x0806, &[0; 28])), Extracted::NonIp); // ARP
        assert_eq!(extract(Link::Ethernet, &eth(0x88CC, &[0; 28])), Extracted::NonIp); // LLDP
        assert_eq!(extract(Link::Ethernet, &[0; 13]), Extracted::Truncated);
        assert_eq!(extract(Link::Ethernet, &eth(ETH_IPV4, &[])), Extracted::Truncated);
        // One byte of IP is still an (extremely short) IP packet for the pipeline.
        ip_at(Link::Ethernet, &eth(ETH_IPV4, &[0x45]), false, 14, 1);
    }

    #[test]
    fn raw_null_sll() {
        let ip = ipv4(3);
        let ip6 = ipv6(3);
        ip_at(Link::Raw, &ip, false, 0, 23);
        ip_at(Link::Raw, &ip6, true, 0, 43);
        assert_eq!(extract(Link::Raw, &[0x20, 1, 2]), Extracted::NonIp);
        assert_eq!(extract(Link::Raw, &[]), Extracted::Truncated);
        ip_at(Link::Ipv4, &ip, false, 0, 23);
        ip_at(Link::Ipv6, &ip6, true, 0, 43);

        for (hdr, v6) in [
            ([2, 0, 0, 0], false),
            ([0, 0, 0, 2], false),
            ([30, 0, 0, 0], true),
            ([0, 0, 0, 24], true),
            ([28, 0, 0, 0], true),
            ([0, 0, 0, 10], true),
        ] {
            let mut f = hdr.to_vec();
            f.extend(if v6 { &ip6 } else { &ip });
            ip_at(Link::Null, &f, v6, 4, if v6 { 43 } else { 23 });
        }
        assert_eq!(extract(Link::Null, &[7, 0, 0, 0, 0x45]), Extracted::NonIp);
        assert_eq!(extract(Link::Null, &[2, 0, 0]), Extracted::Truncated);

        let mut sll = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0];
        sll.extend(ETH_IPV6.to_be_bytes());
        sll.extend(&ip6);
        ip_at(Link::LinuxSll, &sll, true, 16, 43);
        sll[14..16].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(extract(Link::LinuxSll, &sll), Extracted::NonIp);
        assert_eq!(extract(Link::LinuxSll, &sll[..15]), Extracted::Truncated);

        let mut sll2 = ETH_IPV4.to_be_bytes().to_vec();
        sll2.extend([0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0]);
        sll2.extend(&ip);
        ip_at(Link::LinuxSll2, &sll2, false, 20, 23);
        assert_eq!(extract(Link::LinuxSll2, &sll2[..19]), Extracted::Truncated);
    }

    #[test]
    fn ip_length_field_rules() {
        // Claimed length larger than captured: keep what was captured (truncated packet).
        let mut ip = ipv4(100);
        ip.truncate(60);
        assert_eq!(ip_len(false, &ip), 60);
        // TSO: total length 0 → keep everything.
        let mut ip = ipv4(10);
        ip[2] = 0;
        ip[3] = 0;
        ip.extend([0; 6]);
        assert_eq!(ip_len(false, &ip), 36);
        // Jumbogram/zero payload length → keep everything.
        let mut ip6 = ipv6(4);
        ip6[4] = 0;
        ip6[5] = 0;
        assert_eq!(ip_len(true, &ip6), 44);
        // Wrong version nibble: no trimming.
        let mut ip = ipv4(10);
        ip[0] = 0x65;
        ip.extend([0; 6]);
        assert_eq!(ip_len(false, &ip), 36);
    }

    #[test]
    fn link_type_mapping() {
        for (lt, l) in [
            (1, Link::Ethernet),
            (101, Link::Raw),
            (12, Link::Raw),
            (14, Link::Raw),
            (228, Link::Ipv4),
            (229, Link::Ipv6),
            (0, Link::Null),
            (108, Link::Null),
            (113, Link::LinuxSll),
            (276, Link::LinuxSll2),
            (0x1000_0001, Link::Ethernet), // FCS-length bits in the upper half of a pcap header
        ] {
            assert_eq!(Link::from_link_type(lt), Some(l), "{lt}");
        }
        for lt in [105, 127, 9, 239, 0xFFFF] {
            assert_eq!(Link::from_link_type(lt), None, "{lt}");
        }
    }
}
