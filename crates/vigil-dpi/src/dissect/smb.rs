//! SMB1 and SMB2/3 over NetBIOS session or direct TCP.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Smb;

impl Dissector for Smb {
    fn name(&self) -> &'static str {
        "smb"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
