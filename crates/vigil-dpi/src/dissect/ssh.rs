//! SSH: client and server identification banners.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Ssh;

impl Dissector for Ssh {
    fn name(&self) -> &'static str {
        "ssh"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
