//! Tor: TLS with Tor's characteristic certificate and ClientHello shape.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Tor;

impl Dissector for Tor {
    fn name(&self) -> &'static str {
        "tor"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
