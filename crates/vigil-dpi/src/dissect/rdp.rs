//! RDP: X.224 connection request (TCP) and RDP-UDP.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Rdp;

impl Dissector for Rdp {
    fn name(&self) -> &'static str {
        "rdp"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
