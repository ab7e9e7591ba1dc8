//! MQTT CONNECT/CONNACK.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::PacketView;

#[derive(Debug, Default)]
pub struct Mqtt;

impl Dissector for Mqtt {
    fn name(&self) -> &'static str {
        "mqtt"
    }
    fn on_packet(&mut self, _pkt: &PacketView<'_>, _facts: &mut Facts) -> Step {
        Step::NotMine
    }
}
