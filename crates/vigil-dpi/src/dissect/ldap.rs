//! LDAP (TCP/UDP 389, 3268): BER LDAPMessage = SEQUENCE { messageID INTEGER, protocolOp
//! [APPLICATION n] ... } (RFC 4511). The SEQUENCE length must cover the segment (or more, when
//! the message continues), which with the exact tags makes random payloads fail.

use super::kerberos::ber_len;
use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

/// protocolOp tags: constructed APPLICATION 0-25 except the primitive unbind (2), delete (10)
/// and abandon (16).
fn is_protocol_op(tag: u8) -> bool {
    match tag {
        0x42 | 0x4a | 0x50 => true,
        0x60..=0x79 => !matches!(tag & 0x1f, 2 | 10 | 16 | 17 | 18 | 20 | 21 | 22),
        _ => false,
    }
}

/// Checks an LDAPMessage at the start of `p`; returns the protocolOp number.
pub fn ldap_message(p: &[u8]) -> Option<u8> {
    if *p.first()? != 0x30 {
        return None;
    }
    let (len, used) = ber_len(p, 1)?;
    let body = 1 + used;
    if len < 5 {
        return None;
    }
    // A whole-segment message must end exactly at the segment end or be followed by another.
    if len + body < p.len() && p.get(len + body) != Some(&0x30) {
        return None;
    }
    if *p.get(body)? != 0x02 {
        return None;
    }
    let id_len = usize::from(*p.get(body + 1)?);
    if !(1..=4).contains(&id_len) {
        return None;
    }
    let op = *p.get(body + 2 + id_len)?;
    is_protocol_op(op).then_some(op & 0x1f)
}

#[derive(Debug, Default)]
pub struct Ldap {
    packets: u8,
}

impl Dissector for Ldap {
    fn name(&self) -> &'static str {
        "ldap"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if p.is_empty() {
            return Step::NeedMore;
        }
        self.packets += 1;
        if ldap_message(p).is_some() {
            facts.protocol = Some("LDAP");
            return Step::Done;
        }
        // After a SASL bind, messages are wrapped (4-byte length + GSS token): keep looking on
        // LDAP's ports for a plain message in the other direction.
        if (pkt.has_port(389) || pkt.has_port(3268)) && self.packets < 4 {
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

    const BIND_RESPONSE: &[u8] = include_bytes!("../../tests/fixtures/ldap/bind_response.bin");

    #[test]
    fn real_and_synthetic_messages() {
        assert_eq!(ldap_message(BIND_RESPONSE), Some(1));
        // Anonymous simple bind: id 1, version 3, name "", simple "".
        let bind = [0x30, 0x0c, 0x02, 0x01, 0x01, 0x60, 0x07, 0x02, 0x01, 0x03, 0x04, 0x00, 0x80, 0x00];
        assert_eq!(ldap_message(&bind), Some(0));
        let mut facts = Facts::default();
        assert_eq!(run(&mut Ldap::default(), &[(Dir::ToServer, &bind)], 1389, &mut facts), [Step::Done]);
        assert_eq!(facts.protocol, Some("LDAP"));
    }

    #[test]
    fn others_are_not_mine() {
        let krb = include_bytes!("../../tests/fixtures/kerberos/as_req_tcp.bin");
        // SNMP: SEQUENCE, INTEGER version, OCTET STRING community.
        let snmp = [0x30, 0x0b, 0x02, 0x01, 0x01, 0x04, 0x06, b'p', b'u', b'b', b'l', b'i', b'c'];
        let mut facts = Facts::default();
        for p in [&krb[..], &krb[4..], &snmp] {
            assert_eq!(run(&mut Ldap::default(), &[(Dir::ToServer, p)], 88, &mut facts), [Step::NotMine]);
        }
        assert_not_mine_on_random(|| Box::new(Ldap::default()), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Ldap::default()), &[BIND_RESPONSE], 389);
    }
}
