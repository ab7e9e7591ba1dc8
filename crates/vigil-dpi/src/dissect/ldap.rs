//! LDAP (and CLDAP over UDP): BER LDAPMessage.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Ldap;

impl Dissector for Ldap {
    fn name(&self) -> &'static str {
        "ldap"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
