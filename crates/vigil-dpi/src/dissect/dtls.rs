//! DTLS: ClientHello (SNI, ALPN, JA4 with the d prefix) through the TLS parser.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Dtls;

impl Dissector for Dtls {
    fn name(&self) -> &'static str {
        "dtls"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
