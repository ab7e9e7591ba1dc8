//! DHCP (BOOTP with the magic cookie, UDP 67/68) and DHCPv6 (UDP 546/547).
//!
//! The client's options identify the device: hostname (12), vendor class (60, "android-dhcp-13",
//! "MSFT 5.0") and the parameter request list (55, the classic DHCP fingerprint).

use super::{Dissector, Step};
use crate::facts::{Facts, NameSource};
use crate::view::PacketView;

const COOKIE: [u8; 4] = [0x63, 0x82, 0x53, 0x63];
/// Packets to look at for a hostname when the first message carried none.
const MAX_PACKETS: u8 = 4;

/// Why a message did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DhcpError {
    #[error("message truncated")]
    Truncated,
    #[error("not a DHCP message")]
    NotDhcp,
}

/// What a DHCPv4 message says about the client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DhcpInfo<'a> {
    pub message_type: Option<u8>,
    pub hostname: Option<&'a [u8]>,
    pub vendor_class: Option<&'a [u8]>,
    pub params: Option<&'a [u8]>,
}

/// Parses a BOOTP/DHCP message: fixed header, magic cookie, options up to END.
pub fn parse_v4(p: &[u8]) -> Result<DhcpInfo<'_>, DhcpError> {
    let header = p.get(..240).ok_or(DhcpError::Truncated)?;
    let (op, htype, hlen) = (header[0], header[1], header[2]);
    if !matches!(op, 1 | 2) || htype == 0 || htype > 32 || hlen > 16 || header.get(236..240) != Some(&COOKIE[..]) {
        return Err(DhcpError::NotDhcp);
    }
    let mut info = DhcpInfo::default();
    let mut off = 240;
    while let Some(&code) = p.get(off) {
        match code {
            0 => off += 1,
            255 => break,
            _ => {
                let len = usize::from(*p.get(off + 1).ok_or(DhcpError::Truncated)?);
                let value = p.get(off + 2..off + 2 + len).ok_or(DhcpError::Truncated)?;
                match code {
                    12 => info.hostname = Some(value),
                    53 => info.message_type = value.first().copied(),
                    55 => info.params = Some(value),
                    60 => info.vendor_class = Some(value),
                    _ => {}
                }
                off += 2 + len;
            }
        }
    }
    Ok(info)
}

/// Checks a DHCPv6 message (RFC 8415): message type, then options that end exactly at the end.
pub fn parse_v6(p: &[u8]) -> Result<u8, DhcpError> {
    let msg_type = *p.first().ok_or(DhcpError::Truncated)?;
    if !(1..=13).contains(&msg_type) {
        return Err(DhcpError::NotDhcp);
    }
    // Relay messages (12, 13) carry hop count and two addresses before the options.
    let mut off = if msg_type >= 12 { 34 } else { 4 };
    if p.len() < off {
        return Err(DhcpError::Truncated);
    }
    while off < p.len() {
        let hdr = p.get(off..off + 4).ok_or(DhcpError::NotDhcp)?;
        let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
        off = off.checked_add(4 + len).ok_or(DhcpError::NotDhcp)?;
    }
    if off == p.len() {
        Ok(msg_type)
    } else {
        Err(DhcpError::NotDhcp)
    }
}

fn text(v: &[u8]) -> String {
    String::from_utf8_lossy(v.get(..255).unwrap_or(v)).trim_end_matches('\0').to_owned()
}

#[derive(Debug, Default)]
pub struct Dhcp {
    identified: bool,
    packets: u8,
}

impl Dissector for Dhcp {
    fn name(&self) -> &'static str {
        "dhcp"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if !pkt.is_udp() {
            return Step::NotMine;
        }
        if pkt.payload.is_empty() {
            return Step::NeedMore;
        }
        self.packets += 1;
        if !self.identified && (pkt.has_port(546) || pkt.has_port(547)) {
            return match parse_v6(pkt.payload) {
                Ok(_) => {
                    facts.protocol = Some("DHCPV6");
                    Step::Done
                }
                Err(_) => Step::NotMine,
            };
        }
        let info = match parse_v4(pkt.payload) {
            Ok(info) => info,
            Err(_) if self.identified => return Step::Identified,
            Err(_) => return Step::NotMine,
        };
        if !self.identified {
            // The cookie alone is 32 bits of evidence; off 67/68 also require a DHCP message type.
            if !(pkt.has_port(67) || pkt.has_port(68)) && info.message_type.is_none() {
                return Step::NotMine;
            }
            facts.protocol = Some("DHCP");
            self.identified = true;
        }
        if let Some(h) = info.hostname {
            let h = text(h);
            facts.set_hostname(&h, NameSource::Protocol);
            facts.dhcp_hostname.get_or_insert(h);
        }
        if let Some(v) = info.vendor_class {
            facts.dhcp_vendor_class.get_or_insert_with(|| text(v));
        }
        if let Some(params) = info.params {
            if facts.dhcp_params.is_empty() {
                facts.dhcp_params = params.to_vec();
            }
        }
        if facts.dhcp_hostname.is_some() || self.packets >= MAX_PACKETS {
            Step::Done
        } else {
            Step::Identified
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::*;
    use crate::view::Dir;
    use vigil_wire::L4Proto;

    const DISCOVER: &[u8] = include_bytes!("../../tests/fixtures/dhcp/discover.bin");
    const SOLICIT: &[u8] = include_bytes!("../../tests/fixtures/dhcp/dhcpv6_solicit.bin");

    #[test]
    fn real_discover() {
        let mut facts = Facts::default();
        let steps = run_l4(&mut Dhcp::default(), L4Proto::Udp, &[(Dir::ToServer, DISCOVER)], 67, &mut facts);
        assert_eq!(steps, [Step::Done]);
        assert_eq!(facts.protocol, Some("DHCP"));
        assert_eq!(facts.dhcp_hostname.as_deref(), Some("Lucas-iMac"));
        assert_eq!(facts.hostname.as_deref(), Some("lucas-imac"));
        assert_eq!(facts.name_source, Some(NameSource::Protocol));
        assert_eq!(facts.dhcp_params, [1, 121, 3, 6, 15, 119, 252, 95, 44, 46]);
        assert_eq!(parse_v4(DISCOVER).map(|i| i.message_type), Ok(Some(1)));
    }

    #[test]
    fn real_dhcpv6_solicit() {
        let mut facts = Facts::default();
        let steps = run_l4(&mut Dhcp::default(), L4Proto::Udp, &[(Dir::ToServer, SOLICIT)], 547, &mut facts);
        assert_eq!(steps, [Step::Done]);
        assert_eq!(facts.protocol, Some("DHCPV6"));
    }

    #[test]
    fn others_are_not_mine() {
        let dns = include_bytes!("../../tests/fixtures/dns/query_a.bin");
        let mut facts = Facts::default();
        for port in [67, 547, 40000] {
            let steps = run_l4(&mut Dhcp::default(), L4Proto::Udp, &[(Dir::ToServer, dns)], port, &mut facts);
            assert_eq!(steps, [Step::NotMine]);
        }
        assert_eq!(run(&mut Dhcp::default(), &[(Dir::ToServer, DISCOVER)], 67, &mut facts), [Step::NotMine]);
        assert_not_mine_on_random(|| Box::new(Dhcp::default()), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Dhcp::default()), &[DISCOVER], 67);
        hostile(|| Box::new(Dhcp::default()), &[SOLICIT], 547);
    }
}
