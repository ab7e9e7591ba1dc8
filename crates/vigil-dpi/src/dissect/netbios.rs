//! NetBIOS name service (UDP 137), datagram (UDP 138), session (TCP 139).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Netbios;

impl Dissector for Netbios {
    fn name(&self) -> &'static str {
        "netbios"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
