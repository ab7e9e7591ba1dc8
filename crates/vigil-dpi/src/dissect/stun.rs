//! STUN/TURN: message structure, and the vendor attributes that reveal WhatsApp, Zoom, Teams, Signal, Telegram, Google calls.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Stun;

impl Dissector for Stun {
    fn name(&self) -> &'static str {
        "stun"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
