//! IPsec: IKEv1/IKEv2 on UDP 500/4500, ESP in UDP.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Ipsec;

impl Dissector for Ipsec {
    fn name(&self) -> &'static str {
        "ipsec"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
