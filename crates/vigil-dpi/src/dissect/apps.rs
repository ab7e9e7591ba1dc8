//! Application-specific protocols without a public spec: Telegram (MTProto), Discord voice, Zoom, TeamViewer, AnyDesk, WhatsApp, Skype/Teams, Spotify (UDP 57621), Dropbox LAN sync (UDP 17500), Tailscale.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Apps;

impl Dissector for Apps {
    fn name(&self) -> &'static str {
        "apps"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
