//! DHCP (v4) and DHCPv6: client hostname, vendor class, parameter request list.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Dhcp;

impl Dissector for Dhcp {
    fn name(&self) -> &'static str {
        "dhcp"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
