//! NTP: on port 123 a header with a valid version and mode; elsewhere a client request (mode 3)
//! answered by a server reply (mode 4) that echoes the request's transmit timestamp as its origin
//! timestamp (64 bits of evidence no random flow produces).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::{Dir, PacketView};

/// The fixed NTP header (RFC 5905).
const HEADER: usize = 48;

/// (version, mode) of an NTP header, when plausible.
pub fn header(p: &[u8]) -> Option<(u8, u8)> {
    let b = *p.first()?;
    let (version, mode) = ((b >> 3) & 7, b & 7);
    let min = if mode >= 6 { 12 } else { HEADER }; // control and private messages are shorter
    ((1..=4).contains(&version) && mode != 0 && p.len() >= min).then_some((version, mode))
}

#[derive(Debug, Default)]
pub struct Ntp {
    /// Transmit timestamp of a client request seen off port 123.
    request_ts: Option<[u8; 8]>,
}

impl Ntp {
    fn identify(facts: &mut Facts) -> Step {
        facts.protocol = Some("NTP");
        Step::Done
    }
}

impl Dissector for Ntp {
    fn name(&self) -> &'static str {
        "ntp"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if !pkt.is_udp() {
            return Step::NotMine;
        }
        if p.is_empty() {
            return Step::NeedMore;
        }
        let Some((version, mode)) = header(p) else { return Step::NotMine };
        if pkt.has_port(123) {
            return Self::identify(facts);
        }
        match (pkt.dir, mode, self.request_ts) {
            (Dir::ToServer, 3, None) if p.len() == HEADER && version >= 3 => {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(p.get(40..48).unwrap_or(&[0; 8]));
                if ts == [0; 8] {
                    return Step::NotMine; // nothing to match a reply against
                }
                self.request_ts = Some(ts);
                Step::NeedMore
            }
            (Dir::ToClient, 4, Some(ts)) if p.get(24..32) == Some(&ts[..]) => Self::identify(facts),
            _ => Step::NotMine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::*;
    use vigil_wire::L4Proto;

    const V4: &[u8] = include_bytes!("../../tests/fixtures/ntp/ntpv4.bin");
    const CLIENT: &[u8] = include_bytes!("../../tests/fixtures/ntp/client.bin");
    const SERVER: &[u8] = include_bytes!("../../tests/fixtures/ntp/server.bin");

    fn udp(pkts: &[(Dir, &[u8])], port: u16) -> (Vec<Step>, Facts) {
        let mut facts = Facts::default();
        (run_l4(&mut Ntp::default(), L4Proto::Udp, pkts, port, &mut facts), facts)
    }

    #[test]
    fn real_ntp() {
        let (steps, facts) = udp(&[(Dir::ToServer, V4)], 123);
        assert_eq!(steps, [Step::Done]);
        assert_eq!(facts.protocol, Some("NTP"));
        assert_eq!(header(V4), Some((4, 3)));
        assert_eq!(udp(&[(Dir::ToServer, CLIENT)], 123).0, [Step::Done]);
    }

    #[test]
    fn request_reply_pairing_off_port() {
        let mut req = V4.to_vec();
        req[0] = 0x23; // v4 client
        let mut reply = SERVER.to_vec();
        reply[24..32].copy_from_slice(&req[40..48]);
        let (steps, facts) = udp(&[(Dir::ToServer, &req), (Dir::ToClient, &reply)], 4123);
        assert_eq!(steps, [Step::NeedMore, Step::Done]);
        assert_eq!(facts.protocol, Some("NTP"));
        assert_eq!(udp(&[(Dir::ToServer, &req), (Dir::ToClient, SERVER)], 4123).0, [Step::NeedMore, Step::NotMine]);
    }

    #[test]
    fn others_are_not_mine() {
        let dns = include_bytes!("../../tests/fixtures/dns/query_a.bin");
        assert_eq!(udp(&[(Dir::ToServer, dns)], 123).0, [Step::NotMine]);
        assert_not_mine_on_random(|| Box::new(Ntp::default()), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Ntp::default()), &[V4, CLIENT, SERVER], 123);
    }
}
