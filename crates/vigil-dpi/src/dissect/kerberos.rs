//! Kerberos over UDP and TCP (ASN.1 application tags).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Kerberos;

impl Dissector for Kerberos {
    fn name(&self) -> &'static str {
        "kerberos"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
