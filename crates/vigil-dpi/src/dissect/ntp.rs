//! NTP (v1-v4) and SNTP.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Ntp;

impl Dissector for Ntp {
    fn name(&self) -> &'static str {
        "ntp"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
