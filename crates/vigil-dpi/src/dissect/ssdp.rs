//! SSDP (UPnP discovery, UDP 1900): "M-SEARCH * HTTP/1.1", "NOTIFY * HTTP/1.1" and the
//! unicast "HTTP/1.1 200 OK" replies. Like nDPI, the HOST header value (usually
//! "239.255.255.250:1900") is reported as the flow's hostname.

use super::http::headers;
use super::{Dissector, Step};
use crate::facts::{Facts, NameSource};
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Ssdp;

impl Dissector for Ssdp {
    fn name(&self) -> &'static str {
        "ssdp"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if !pkt.is_udp() {
            return Step::NotMine;
        }
        if p.is_empty() {
            return Step::NeedMore;
        }
        let request = p.starts_with(b"M-SEARCH * HTTP/1.1\r\n") || p.starts_with(b"NOTIFY * HTTP/1.1\r\n");
        // A reply is plain HTTP: on port 1900 with a search target or unique service name.
        let reply = p.starts_with(b"HTTP/1.1 200 OK\r\n")
            && pkt.has_port(1900)
            && headers(p).any(|(n, _)| n.eq_ignore_ascii_case(b"ST") || n.eq_ignore_ascii_case(b"USN"));
        if !request && !reply {
            return Step::NotMine;
        }
        facts.protocol = Some("SSDP");
        if let Some((_, host)) = headers(p).find(|(n, _)| n.eq_ignore_ascii_case(b"HOST")) {
            facts.set_hostname(&String::from_utf8_lossy(host.get(..255).unwrap_or(host)), NameSource::Protocol);
        }
        Step::Done
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::*;
    use crate::view::Dir;
    use vigil_wire::L4Proto;

    const MSEARCH: &[u8] = include_bytes!("../../tests/fixtures/ssdp/msearch.bin");

    #[test]
    fn real_msearch() {
        let mut facts = Facts::default();
        assert_eq!(run_l4(&mut Ssdp, L4Proto::Udp, &[(Dir::ToServer, MSEARCH)], 1900, &mut facts), [Step::Done]);
        assert_eq!(facts.protocol, Some("SSDP"));
        assert_eq!(facts.hostname.as_deref(), Some("239.255.255.250:1900"));
        let reply = b"HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=1800\r\nST: upnp:rootdevice\r\nUSN: uuid:x\r\n\r\n";
        let mut facts = Facts::default();
        assert_eq!(run_l4(&mut Ssdp, L4Proto::Udp, &[(Dir::ToClient, reply)], 1900, &mut facts), [Step::Done]);
    }

    #[test]
    fn others_are_not_mine() {
        let mut facts = Facts::default();
        let get = include_bytes!("../../tests/fixtures/http/get_request.bin");
        let resp = include_bytes!("../../tests/fixtures/http/response_head.bin");
        for p in [&get[..], resp] {
            assert_eq!(run_l4(&mut Ssdp, L4Proto::Udp, &[(Dir::ToServer, p)], 1900, &mut facts), [Step::NotMine]);
        }
        assert_eq!(run(&mut Ssdp, &[(Dir::ToServer, MSEARCH)], 1900, &mut facts), [Step::NotMine]);
        assert_not_mine_on_random(|| Box::new(Ssdp), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Ssdp), &[MSEARCH], 1900);
    }
}
