//! SMTP, IMAP, POP3 (banners and commands) and STARTTLS.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Mail;

impl Dissector for Mail {
    fn name(&self) -> &'static str {
        "mail"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
