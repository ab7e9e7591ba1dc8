//! HTTP/1.x: method, Host, path, User-Agent; CONNECT targets.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Http;

impl Dissector for Http {
    fn name(&self) -> &'static str {
        "http"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
