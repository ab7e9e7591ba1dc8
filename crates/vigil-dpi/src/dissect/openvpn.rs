//! OpenVPN over TCP and UDP (P_CONTROL_HARD_RESET opcodes).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct OpenVpn;

impl Dissector for OpenVpn {
    fn name(&self) -> &'static str {
        "openvpn"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
