//! SMB over TCP (445, or 139 without a session request): a NetBIOS session message header
//! (type 0, 17-bit length) followed by "\xffSMB" (nDPI: "SMBv1") or "\xfeSMB"/"\xfdSMB"
//! (SMB 2/3, nDPI: "SMBv23").

use super::netbios::smb_kind;
use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

/// Packets to look for an SMB header on port 445 (a capture can start mid-message).
const MAX_PACKETS: u8 = 4;

#[derive(Debug, Default)]
pub struct Smb {
    packets: u8,
}

impl Dissector for Smb {
    fn name(&self) -> &'static str {
        "smb"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if !pkt.is_tcp() {
            return Step::NotMine;
        }
        if p.is_empty() {
            return Step::NeedMore;
        }
        self.packets += 1;
        if p.first() == Some(&0x00) {
            if let Some(kind) = smb_kind(p, 4) {
                facts.protocol = Some(kind);
                return Step::Done;
            }
        }
        if (pkt.has_port(445) || pkt.has_port(139)) && self.packets < MAX_PACKETS {
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

    const NEGOTIATE: &[u8] = include_bytes!("../../tests/fixtures/smb/smb2_negotiate.bin");

    #[test]
    fn real_smb2_and_smb1() {
        let mut facts = Facts::default();
        assert_eq!(run(&mut Smb::default(), &[(Dir::ToServer, NEGOTIATE)], 445, &mut facts), [Step::Done]);
        assert_eq!(facts.protocol, Some("SMBv23"));
        let mut facts = Facts::default();
        let smb1 = b"\x00\x00\x00\x2f\xffSMBr\x00\x00\x00\x00\x18\x53\xc8";
        let steps =
            run(&mut Smb::default(), &[(Dir::ToServer, b"\x01\x02garbage"), (Dir::ToClient, smb1)], 445, &mut facts);
        assert_eq!(steps, [Step::NeedMore, Step::Done]);
        assert_eq!(facts.protocol, Some("SMBv1"));
    }

    #[test]
    fn others_are_not_mine() {
        let mut facts = Facts::default();
        assert_eq!(
            run(&mut Smb::default(), &[(Dir::ToServer, b"GET / HTTP/1.1\r\n")], 80, &mut facts),
            [Step::NotMine]
        );
        assert_not_mine_on_random(|| Box::new(Smb::default()), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Smb::default()), &[NEGOTIATE], 445);
    }
}
