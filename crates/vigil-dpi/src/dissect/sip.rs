//! SIP (RFC 3261) over UDP or TCP, on any port: a request line `METHOD sip:... SIP/2.0` or a status
//! line `SIP/2.0 NNN`. NAT keepalives (CRLFs, or 4 zero bytes some phones send) are skipped.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

const METHODS: &[&str] = &[
    "INVITE",
    "REGISTER",
    "OPTIONS",
    "ACK",
    "BYE",
    "CANCEL",
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "INFO",
    "PRACK",
    "UPDATE",
    "REFER",
    "PUBLISH",
];
/// Keepalives tolerated before the first message.
const BUDGET: u32 = 4;

#[derive(Debug, Default)]
pub struct Sip {
    seen: u32,
}

/// The first line of `p`, without its CRLF, when it is short and textual.
fn first_line(p: &[u8]) -> Option<&str> {
    let end = p.windows(2).take(512).position(|w| w == b"\r\n")?;
    std::str::from_utf8(p.get(..end)?).ok()
}

fn is_start_line(line: &str) -> bool {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let code = rest.get(..3).unwrap_or("");
        return code.len() == 3
            && code.bytes().all(|b| b.is_ascii_digit())
            && (b'1'..=b'6').contains(&code.as_bytes()[0])
            && !matches!(rest.as_bytes().get(3), Some(&b) if b != b' ');
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    METHODS.contains(&method)
        && version == "SIP/2.0"
        && ["sip:", "sips:", "tel:"]
            .iter()
            .any(|s| uri.len() > s.len() && uri.get(..s.len()).is_some_and(|h| h.eq_ignore_ascii_case(s)))
}

/// The value of header `name` (or its compact form) in the message head.
fn header<'a>(p: &'a [u8], names: &[&str]) -> Option<&'a str> {
    let head = p.windows(4).take(4096).position(|w| w == b"\r\n\r\n").map_or(p, |e| &p[..e]);
    let text = std::str::from_utf8(head).ok()?;
    text.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        names.iter().any(|n| k.trim().eq_ignore_ascii_case(n)).then(|| v.trim())
    })
}

impl Dissector for Sip {
    fn name(&self) -> &'static str {
        "sip"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if p.is_empty() {
            return Step::NeedMore;
        }
        self.seen += 1;
        if p.iter().all(|&b| b == b'\r' || b == b'\n') || p == [0, 0, 0, 0] {
            return if self.seen >= BUDGET { Step::NotMine } else { Step::NeedMore };
        }
        if !first_line(p).is_some_and(is_start_line) {
            return Step::NotMine;
        }
        facts.protocol = Some("SIP");
        if let Some(ua) = header(p, &["User-Agent", "Server"]).filter(|v| !v.is_empty() && v.len() <= 256) {
            facts.user_agent.get_or_insert_with(|| ua.to_owned());
        }
        Step::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::testutil::packet;
    use crate::view::Dir;
    use vigil_wire::L4Proto;

    fn pv(l4: L4Proto, payload: &[u8]) -> PacketView<'_> {
        packet(l4, Dir::ToServer, ([192, 168, 1, 2], 5060), ([212, 242, 33, 35], 5060), payload)
    }

    fn one(l4: L4Proto, p: &[u8]) -> (Step, Facts) {
        let mut f = Facts::default();
        let s = Sip::default().on_packet(&pv(l4, p), &mut f);
        (s, f)
    }

    #[test]
    fn register_and_answer() {
        // sip.pcap: REGISTER from 192.168.1.2:5060 (X-Lite).
        let reg = b"REGISTER sip:sip.cybercity.dk SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.2;branch=z9hG4bKnp\r\n\
User-Agent: X-Lite release 1103m\r\nContent-Length: 0\r\n\r\n";
        let (s, f) = one(L4Proto::Udp, reg);
        assert_eq!((s, f.protocol), (Step::Done, Some("SIP")));
        assert_eq!(f.user_agent.as_deref(), Some("X-Lite release 1103m"));
        let ok = b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 192.168.1.2\r\nServer: Asterisk\r\n\r\n";
        assert_eq!(one(L4Proto::Tcp, ok).0, Step::Done);
    }

    #[test]
    fn keepalive_then_invite() {
        let mut d = Sip::default();
        let mut f = Facts::default();
        assert_eq!(d.on_packet(&pv(L4Proto::Udp, b"\r\n\r\n"), &mut f), Step::NeedMore);
        let inv = b"INVITE sip:bob@biloxi.com SIP/2.0\r\nTo: Bob <sip:bob@biloxi.com>\r\n\r\n";
        assert_eq!(d.on_packet(&pv(L4Proto::Udp, inv), &mut f), Step::Done);
    }

    #[test]
    fn negatives() {
        for p in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            b"INVITE http://x SIP/2.0\r\n\r\n",
            b"SIP/2.0 999 x\r\n",
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01",
            b"\x16\x03\x01\x00\xab\x01\x00\x00\xa7\x03\x03",
        ] {
            assert_eq!(one(L4Proto::Udp, p).0, Step::NotMine);
        }
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let base = b"SIP/2.0 200 OK\r\nServer: \xff\xfe\r\nUser-Agent:\r\n\r\n".to_vec();
        let mut seed = 0xfeedfacecafebeefu64;
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut p = base.clone();
            let i = (seed as usize) % p.len();
            p[i] ^= (seed >> 32) as u8;
            p.truncate((seed >> 40) as usize % (p.len() + 1));
            let _ = one(L4Proto::Udp, &p);
        }
    }
}
