//! Kerberos v5 (TCP/UDP 88): KDC messages are ASN.1 APPLICATION-tagged (10 AS-REQ, 11 AS-REP,
//! 12 TGS-REQ, 13 TGS-REP, 30 KRB-ERROR) SEQUENCEs that start with pvno = 5. Over TCP each
//! message has a 4-byte length prefix (RFC 4120 7.2.2). Facts have no realm/principal fields, so
//! only the protocol is reported.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

/// Reads a BER length at `off`; returns (length, bytes used).
pub(crate) fn ber_len(p: &[u8], off: usize) -> Option<(usize, usize)> {
    let first = *p.get(off)?;
    if first < 0x80 {
        return Some((usize::from(first), 1));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None; // indefinite or absurd lengths are not used by these protocols
    }
    let bytes = p.get(off + 1..off + 1 + n)?;
    Some((bytes.iter().fold(0usize, |v, &b| v << 8 | usize::from(b)), 1 + n))
}

/// The message type of a KDC message at the start of `p` (no TCP prefix), if it is one.
pub fn kdc_message(p: &[u8]) -> Option<u8> {
    let tag = *p.first()?;
    let msg_type = match tag {
        0x6a => 10,
        0x6b => 11,
        0x6c => 12,
        0x6d => 13,
        0x7e => 30,
        _ => return None,
    };
    let (_, used) = ber_len(p, 1)?;
    let seq = 1 + used;
    if *p.get(seq)? != 0x30 {
        return None;
    }
    let (_, used) = ber_len(p, seq + 1)?;
    let field = seq + 1 + used;
    // pvno: [1] in requests, [0] in replies and errors; INTEGER 5.
    let pvno_tag = if matches!(msg_type, 10 | 12) { 0xa1 } else { 0xa0 };
    (p.get(field..field + 5)? == [pvno_tag, 3, 2, 1, 5]).then_some(msg_type)
}

#[derive(Debug, Default)]
pub struct Kerberos {
    packets: u8,
}

impl Dissector for Kerberos {
    fn name(&self) -> &'static str {
        "kerberos"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if p.is_empty() {
            return Step::NeedMore;
        }
        self.packets += 1;
        let msg = if pkt.is_tcp() {
            let len = p.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize);
            // The prefix covers at least what this segment holds after it (messages may span).
            match len {
                Some(len) if len >= p.len() - 4 && len < 1 << 20 => p.get(4..),
                _ => None,
            }
        } else {
            Some(p)
        };
        if msg.and_then(kdc_message).is_some() {
            facts.protocol = Some("Kerberos");
            return Step::Done;
        }
        // Port 88 flows captured mid-message: look at a few more packets.
        if pkt.has_port(88) && self.packets < 4 {
            Step::NeedMore
        } else {
            Step::NotMine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::*;
    use crate::view::Dir;
    use vigil_wire::L4Proto;

    const AS_REQ: &[u8] = include_bytes!("../../tests/fixtures/kerberos/as_req_tcp.bin");
    const ERROR: &[u8] = include_bytes!("../../tests/fixtures/kerberos/krb_error_tcp.bin");
    const TGS_REP: &[u8] = include_bytes!("../../tests/fixtures/kerberos/tgs_rep_tcp.bin");

    #[test]
    fn real_messages() {
        assert_eq!(kdc_message(&AS_REQ[4..]), Some(10));
        assert_eq!(kdc_message(&ERROR[4..]), Some(30));
        assert_eq!(kdc_message(&TGS_REP[4..]), Some(13));
        let mut facts = Facts::default();
        assert_eq!(run(&mut Kerberos::default(), &[(Dir::ToServer, AS_REQ)], 88, &mut facts), [Step::Done]);
        assert_eq!(facts.protocol, Some("Kerberos"));
        // UDP carries the message without the prefix; a split TCP message still starts right.
        let mut facts = Facts::default();
        let steps = run_l4(&mut Kerberos::default(), L4Proto::Udp, &[(Dir::ToServer, &AS_REQ[4..])], 88, &mut facts);
        assert_eq!(steps, [Step::Done]);
        let mut facts = Facts::default();
        assert_eq!(run(&mut Kerberos::default(), &[(Dir::ToClient, &TGS_REP[..100])], 88, &mut facts), [Step::Done]);
    }

    #[test]
    fn others_are_not_mine() {
        let ldap = include_bytes!("../../tests/fixtures/ldap/bind_response.bin");
        let mut facts = Facts::default();
        assert_eq!(run(&mut Kerberos::default(), &[(Dir::ToClient, ldap)], 389, &mut facts), [Step::NotMine]);
        assert_not_mine_on_random(|| Box::new(Kerberos::default()), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Kerberos::default()), &[AS_REQ, ERROR, &TGS_REP[..300]], 88);
    }
}
