//! RDP (TCP 3389): TPKT (version 3) + X.224 Connection Request from the client, usually with a
//! "Cookie: mstshash=" and an RDP Negotiation Request; the server answers with a Connection
//! Confirm. TPKT + X.224 is also ISO-TSAP (S7comm on 102), so off port 3389 a cookie or an RDP
//! negotiation structure is required.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::{Dir, PacketView};

/// X.224 TPDU codes.
const CR: u8 = 0xe0;
const CC: u8 = 0xd0;

/// The X.224 TPDU code of a single TPKT at the start of `p`, when its lengths are consistent.
fn tpkt_x224(p: &[u8]) -> Option<u8> {
    let hdr = p.get(..7)?;
    if hdr[0] != 3 || hdr[1] != 0 {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([hdr[2], hdr[3]]));
    let li = usize::from(hdr[4]);
    if len != p.len() || li + 5 != len {
        return None;
    }
    Some(hdr[5] & 0xf0)
}

/// RDP-specific content of a Connection Request/Confirm: a cookie or a negotiation structure
/// (type 1 request, 2 response, 3 failure; length 8) at the end.
fn rdp_specific(p: &[u8]) -> bool {
    let neg = p.len().checked_sub(8).and_then(|o| p.get(o..o + 4));
    let neg_ok = matches!(neg, Some([1..=3, _, 8, 0]));
    neg_ok || p.windows(17).any(|w| w == b"Cookie: mstshash=")
}

#[derive(Debug, Default)]
pub struct Rdp;

impl Dissector for Rdp {
    fn name(&self) -> &'static str {
        "rdp"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if !pkt.is_tcp() {
            return Step::NotMine; // RDP's UDP transport needs the TCP connection's context
        }
        if p.is_empty() {
            return Step::NeedMore;
        }
        let want = if pkt.dir == Dir::ToServer { CR } else { CC };
        if tpkt_x224(p) == Some(want) && (pkt.has_port(3389) || rdp_specific(p)) {
            facts.protocol = Some("RDP");
            Step::Done
        } else {
            Step::NotMine
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::*;

    const CR_BYTES: &[u8] = include_bytes!("../../tests/fixtures/rdp/x224_cr.bin");
    const CC_BYTES: &[u8] = include_bytes!("../../tests/fixtures/rdp/x224_cc.bin");

    #[test]
    fn real_connection_request_and_confirm() {
        let mut facts = Facts::default();
        assert_eq!(run(&mut Rdp, &[(Dir::ToServer, CR_BYTES)], 3389, &mut facts), [Step::Done]);
        assert_eq!(facts.protocol, Some("RDP"));
        let mut facts = Facts::default();
        assert_eq!(run(&mut Rdp, &[(Dir::ToServer, CR_BYTES)], 13389, &mut facts), [Step::Done]);
        let mut facts = Facts::default();
        assert_eq!(run(&mut Rdp, &[(Dir::ToClient, CC_BYTES)], 3389, &mut facts), [Step::Done]);
    }

    #[test]
    fn others_are_not_mine() {
        // S7comm COTP connection request on 102: TSAP parameters, no RDP negotiation.
        let s7 = [3, 0, 0, 22, 17, 0xe0, 0, 0, 0, 1, 0, 0xc0, 1, 0x0a, 0xc1, 2, 1, 0, 0xc2, 2, 1, 2];
        let mut facts = Facts::default();
        assert_eq!(run(&mut Rdp, &[(Dir::ToServer, &s7)], 102, &mut facts), [Step::NotMine]);
        assert_eq!(run(&mut Rdp, &[(Dir::ToClient, CR_BYTES)], 3389, &mut facts), [Step::NotMine]);
        assert_not_mine_on_random(|| Box::new(Rdp), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Rdp), &[CR_BYTES, CC_BYTES], 3389);
    }
}
