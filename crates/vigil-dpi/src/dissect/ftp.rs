//! FTP control (and FTP data by the control channel's PORT/PASV, where seen).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Ftp;

impl Dissector for Ftp {
    fn name(&self) -> &'static str {
        "ftp"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
