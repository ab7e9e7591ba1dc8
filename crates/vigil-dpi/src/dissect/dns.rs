//! DNS over UDP and TCP (and mDNS on 5353, LLMNR): queries, answers (A, AAAA, CNAME, HTTPS/SVCB), rcode.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Dns;

impl Dissector for Dns {
    fn name(&self) -> &'static str {
        "dns"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
