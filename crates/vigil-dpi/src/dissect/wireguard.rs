//! WireGuard handshake initiation/response and transport messages.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct WireGuard;

impl Dissector for WireGuard {
    fn name(&self) -> &'static str {
        "wireguard"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
