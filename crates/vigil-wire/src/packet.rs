//! One pass over an L3 packet: addresses, L4 protocol, ports and the application payload.

use crate::icmp::IcmpMessage;
use crate::ipv4::Ipv4Packet;
use crate::ipv6::Ipv6Packet;
use crate::tcp::TcpSegment;
use crate::udp::UdpDatagram;
use crate::WireError;
use std::net::IpAddr;

/// The L4 protocols vigil tracks by ports or ids; anything else is tracked by protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Other(u8),
}

impl L4Proto {
    pub fn from_number(n: u8) -> Self {
        match n {
            6 => L4Proto::Tcp,
            17 => L4Proto::Udp,
            1 => L4Proto::Icmp,
            58 => L4Proto::Icmpv6,
            n => L4Proto::Other(n),
        }
    }
    pub fn number(self) -> u8 {
        match self {
            L4Proto::Tcp => 6,
            L4Proto::Udp => 17,
            L4Proto::Icmp => 1,
            L4Proto::Icmpv6 => 58,
            L4Proto::Other(n) => n,
        }
    }
    /// Lower-case name as used in configs and reports: the IANA keyword ("tcp", "udp", "icmp",
    /// "igmp", "gre", "esp", "ospf", "sctp"...; "icmpv6" for 58), "ip-N" for unnamed numbers.
    pub fn name(self) -> std::borrow::Cow<'static, str> {
        match self {
            L4Proto::Tcp => "tcp".into(),
            L4Proto::Udp => "udp".into(),
            L4Proto::Icmp => "icmp".into(),
            L4Proto::Icmpv6 => "icmpv6".into(),
            L4Proto::Other(n) => match IP_PROTOCOL_NAMES.iter().find(|(num, _)| *num == n) {
                Some((_, name)) => (*name).into(),
                None => format!("ip-{n}").into(),
            },
        }
    }
    /// Parses a config name (a name [`L4Proto::name`] prints, or a common alias), "ip-N" or a
    /// protocol number.
    pub fn from_name(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        Some(match s.as_str() {
            "tcp" => L4Proto::Tcp,
            "udp" => L4Proto::Udp,
            "icmp" => L4Proto::Icmp,
            "icmpv6" | "ipv6-icmp" | "icmp6" => L4Proto::Icmpv6,
            "ospfigp" => L4Proto::Other(89),
            "ipv4" | "ipencap" => L4Proto::Other(4),
            other => match IP_PROTOCOL_NAMES.iter().find(|(_, name)| *name == other) {
                Some(&(n, _)) => L4Proto::Other(n),
                None => L4Proto::from_number(other.strip_prefix("ip-").unwrap_or(other).parse().ok()?),
            },
        })
    }
}

/// Names of the other IP protocols a gateway commonly forwards (IANA "Assigned Internet Protocol
/// Numbers" keywords, lower case; "ospf" and "ipip" as admins write them), so that reports and
/// configs say "igmp" rather than "ip-2".
const IP_PROTOCOL_NAMES: &[(u8, &str)] = &[
    (2, "igmp"),
    (4, "ipip"),
    (33, "dccp"),
    (41, "ipv6"),
    (46, "rsvp"),
    (47, "gre"),
    (50, "esp"),
    (51, "ah"),
    (88, "eigrp"),
    (89, "ospf"),
    (103, "pim"),
    (112, "vrrp"),
    (115, "l2tp"),
    (132, "sctp"),
    (136, "udplite"),
];

/// What the pipeline needs from one packet. Ports are 0 where the protocol has none; for ICMP
/// echo the identifier stands in for both ports so that pings form flows.
#[derive(Debug, Clone, Copy)]
pub struct PacketInfo<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub l4: L4Proto,
    pub src_port: u16,
    pub dst_port: u16,
    /// TCP flags, when TCP.
    pub tcp_flags: Option<u8>,
    pub tcp_seq: u32,
    /// Application bytes (TCP/UDP payload; ICMP body; whole L4 for others). Empty for later fragments.
    pub payload: &'a [u8],
    /// Length of the IP packet as the header says (what crossed the wire, even if truncated here).
    pub wire_len: usize,
    /// A non-first fragment: addresses are known, ports are not.
    pub later_fragment: bool,
}

/// Parses an IPv4 or IPv6 packet (decided by the version nibble).
pub fn parse_l3(buf: &[u8]) -> Result<PacketInfo<'_>, WireError> {
    let Some(&first) = buf.first() else {
        return Err(WireError::Truncated { layer: "ip", needed: 1, available: 0 });
    };
    match first >> 4 {
        4 => {
            let ip = Ipv4Packet::new_checked(buf)?;
            let later = ip.frag_offset() != 0;
            let l4 = L4Proto::from_number(ip.protocol());
            let base = PacketInfo {
                src: ip.src().into(),
                dst: ip.dst().into(),
                l4,
                src_port: 0,
                dst_port: 0,
                tcp_flags: None,
                tcp_seq: 0,
                payload: &[],
                wire_len: ip.wire_len(),
                later_fragment: later,
            };
            if later {
                Ok(base)
            } else {
                parse_l4(base, ip.payload(), false)
            }
        }
        6 => {
            let ip = Ipv6Packet::new_checked(buf)?;
            let upper = ip.upper_layer()?;
            let base = PacketInfo {
                src: ip.src().into(),
                dst: ip.dst().into(),
                l4: L4Proto::from_number(upper.protocol),
                src_port: 0,
                dst_port: 0,
                tcp_flags: None,
                tcp_seq: 0,
                payload: &[],
                wire_len: ip.wire_len(),
                later_fragment: upper.later_fragment,
            };
            if upper.later_fragment {
                Ok(base)
            } else {
                parse_l4(base, upper.payload, true)
            }
        }
        v => Err(WireError::NotIp(v)),
    }
}

fn parse_l4<'a>(mut info: PacketInfo<'a>, l4: &'a [u8], v6: bool) -> Result<PacketInfo<'a>, WireError> {
    match info.l4 {
        L4Proto::Tcp => {
            let seg = TcpSegment::new_checked(l4)?;
            info.src_port = seg.src_port();
            info.dst_port = seg.dst_port();
            info.tcp_flags = Some(seg.flags());
            info.tcp_seq = seg.seq();
            info.payload = seg.payload();
        }
        L4Proto::Udp => {
            let dgram = UdpDatagram::new_checked(l4)?;
            info.src_port = dgram.src_port();
            info.dst_port = dgram.dst_port();
            info.payload = dgram.payload();
        }
        L4Proto::Icmp | L4Proto::Icmpv6 => {
            let msg = IcmpMessage::new_checked(l4)?;
            if let Some(id) = msg.echo_id(v6) {
                info.src_port = id;
                info.dst_port = id;
            }
            info.payload = msg.payload();
        }
        L4Proto::Other(_) => info.payload = l4,
    }
    Ok(info)
}

#[cfg(test)]
pub(crate) mod tests_support {
    pub(crate) fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
        super::tests::ipv4_udp(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 17, 0, 0];
        p.extend_from_slice(&[10, 0, 0, 1, 10, 0, 0, 2]);
        let ulen = 8 + payload.len();
        p.extend_from_slice(&[0x30, 0x39, 0, 53, (ulen >> 8) as u8, ulen as u8, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    #[test]
    fn parses_ipv4_udp() {
        let p = ipv4_udp(b"hello");
        let info = parse_l3(&p).unwrap();
        assert_eq!(info.l4, L4Proto::Udp);
        assert_eq!((info.src_port, info.dst_port), (12345, 53));
        assert_eq!(info.payload, b"hello");
        assert_eq!(info.wire_len, 33);
        assert_eq!(info.src.to_string(), "10.0.0.1");
    }

    #[test]
    fn parses_ipv6_tcp_through_ext_header() {
        let mut p = vec![0x60, 0, 0, 0, 0, 28, 0, 64];
        p.extend_from_slice(&[0xfd; 16]);
        p.extend_from_slice(&[0xfe; 16]);
        // hop-by-hop: next=tcp, len 0 (8 bytes)
        p.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]);
        let mut tcp = vec![0u8; 20];
        tcp[0..2].copy_from_slice(&443u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&51000u16.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = crate::tcp::SYN | crate::tcp::ACK;
        p.extend_from_slice(&tcp);
        let info = parse_l3(&p).unwrap();
        assert_eq!(info.l4, L4Proto::Tcp);
        assert_eq!(info.src_port, 443);
        assert_eq!(info.tcp_flags, Some(0x12));
        assert!(info.payload.is_empty());
    }

    #[test]
    fn later_fragment_has_no_ports() {
        let mut p = ipv4_udp(b"xx");
        p[6] = 0x00;
        p[7] = 0x10; // offset 16*8
        let info = parse_l3(&p).unwrap();
        assert!(info.later_fragment);
        assert_eq!(info.src_port, 0);
    }

    #[test]
    fn icmp_echo_id_forms_ports() {
        let mut p = vec![0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2];
        p.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
        let info = parse_l3(&p).unwrap();
        assert_eq!(info.l4, L4Proto::Icmp);
        assert_eq!(info.src_port, 0x1234);
    }

    #[test]
    fn hostile_inputs_never_panic() {
        let seeds: Vec<Vec<u8>> = vec![ipv4_udp(b"abc"), {
            let mut p = vec![0x60, 0, 0, 0, 0, 8, 44, 64];
            p.extend_from_slice(&[0; 32]);
            p.extend_from_slice(&[17, 0, 0, 0, 0, 0, 0, 0]);
            p
        }];
        let mut x: u64 = 0x9e3779b97f4a7c15;
        for seed in seeds {
            for len in 0..=seed.len() {
                let _ = parse_l3(&seed[..len]);
            }
            for _ in 0..20000 {
                let mut m = seed.clone();
                for _ in 0..3 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let i = (x as usize) % m.len();
                    m[i] = (x >> 32) as u8;
                }
                let _ = parse_l3(&m);
            }
        }
    }

    #[test]
    fn l4_names_round_trip() {
        for p in [L4Proto::Tcp, L4Proto::Udp, L4Proto::Icmp, L4Proto::Icmpv6, L4Proto::Other(132), L4Proto::Other(99)] {
            assert_eq!(L4Proto::from_name(&p.name()), Some(p));
        }
        assert_eq!(L4Proto::from_name("17"), Some(L4Proto::Udp));
        assert_eq!(L4Proto::from_name("bogus"), None);
    }

    #[test]
    fn every_ip_protocol_number_round_trips_and_common_ones_have_names() {
        for n in 0..=255u8 {
            let p = L4Proto::from_number(n);
            assert_eq!(L4Proto::from_name(&p.name()), Some(p), "{n}");
            assert_eq!(L4Proto::from_name(&format!("ip-{n}")), Some(p), "{n}");
        }
        assert_eq!(L4Proto::Other(2).name(), "igmp");
        assert_eq!(L4Proto::Other(89).name(), "ospf");
        assert_eq!(L4Proto::from_name("OSPFIGP"), Some(L4Proto::Other(89)));
        assert_eq!(L4Proto::Other(99).name(), "ip-99");
    }
}
