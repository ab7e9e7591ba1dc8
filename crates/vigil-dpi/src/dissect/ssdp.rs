//! SSDP (HTTP over UDP 1900 multicast).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Ssdp;

impl Dissector for Ssdp {
    fn name(&self) -> &'static str {
        "ssdp"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
