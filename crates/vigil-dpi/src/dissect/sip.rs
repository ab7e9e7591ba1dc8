//! SIP over UDP and TCP.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Sip;

impl Dissector for Sip {
    fn name(&self) -> &'static str {
        "sip"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
