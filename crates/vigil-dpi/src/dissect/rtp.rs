//! RTP and RTCP (and SRTP), by header structure over several packets.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Rtp;

impl Dissector for Rtp {
    fn name(&self) -> &'static str {
        "rtp"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
