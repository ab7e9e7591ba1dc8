//! BitTorrent: TCP handshake, uTP, DHT (bencoded KRPC).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct BitTorrent;

impl Dissector for BitTorrent {
    fn name(&self) -> &'static str {
        "bittorrent"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
