//! MQTT: the client's CONNECT packet (fixed header type 1, protocol name "MQTT" or "MQIsdp").

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::{Dir, PacketView};

/// Why a CONNECT did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MqttError {
    #[error("packet truncated")]
    Truncated,
    #[error("not an MQTT CONNECT")]
    NotConnect,
}

/// Parses the variable-length "remaining length" (1-4 bytes); returns (value, bytes used).
fn remaining_length(p: &[u8]) -> Result<(usize, usize), MqttError> {
    let mut value = 0usize;
    for i in 0..4 {
        let b = *p.get(i).ok_or(MqttError::Truncated)?;
        value |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(MqttError::NotConnect)
}

/// Checks a CONNECT packet; returns the protocol level (3 = 3.1, 4 = 3.1.1, 5 = 5.0).
pub fn parse_connect(p: &[u8]) -> Result<u8, MqttError> {
    if *p.first().ok_or(MqttError::Truncated)? != 0x10 {
        return Err(MqttError::NotConnect);
    }
    let (len, used) = remaining_length(p.get(1..).unwrap_or_default())?;
    let body = p.get(1 + used..).ok_or(MqttError::Truncated)?;
    // Name length (2) + name (4 or 6) + level + flags + keepalive (2) at least.
    if len < 10 || body.len() < 10.min(len) {
        return Err(if len < 10 { MqttError::NotConnect } else { MqttError::Truncated });
    }
    let (level, flags) = match body {
        [0, 4, b'M', b'Q', b'T', b'T', level, flags, ..] if matches!(level, 3..=5) => (*level, *flags),
        [0, 6, b'M', b'Q', b'I', b's', b'd', b'p', level @ 3, flags, ..] => (*level, *flags),
        _ => return Err(MqttError::NotConnect),
    };
    // The reserved flag bit must be 0; a password needs a user name in 3.1.x.
    if flags & 0x01 != 0 || level < 5 && flags & 0x40 != 0 && flags & 0x80 == 0 {
        return Err(MqttError::NotConnect);
    }
    Ok(level)
}

#[derive(Debug, Default)]
pub struct Mqtt;

impl Dissector for Mqtt {
    fn name(&self) -> &'static str {
        "mqtt"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if pkt.payload.is_empty() {
            return Step::NeedMore;
        }
        if pkt.dir != Dir::ToServer {
            return Step::NotMine; // the client speaks first
        }
        match parse_connect(pkt.payload) {
            Ok(_) => {
                facts.protocol = Some("MQTT");
                Step::Done
            }
            Err(_) => Step::NotMine,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::*;

    const V31: &[u8] = include_bytes!("../../tests/fixtures/mqtt/connect_v31.bin");
    const V311: &[u8] = include_bytes!("../../tests/fixtures/mqtt/connect_v311.bin");

    #[test]
    fn real_connects() {
        assert_eq!(parse_connect(V31), Ok(3));
        assert_eq!(parse_connect(V311), Ok(4));
        let mut facts = Facts::default();
        assert_eq!(run(&mut Mqtt, &[(Dir::ToServer, V311)], 8883, &mut facts), [Step::Done]);
        assert_eq!(facts.protocol, Some("MQTT"));
    }

    #[test]
    fn others_are_not_mine() {
        let mut facts = Facts::default();
        for p in [&b"\x10\x02\x00\x04"[..], b"GET / HTTP/1.1\r\n", b"\x16\x03\x01\x00\x10", b"\x10\xff\xff\xff\xff\x01"]
        {
            assert_eq!(run(&mut Mqtt, &[(Dir::ToServer, p)], 1883, &mut facts), [Step::NotMine], "{p:?}");
        }
        assert_eq!(run(&mut Mqtt, &[(Dir::ToClient, V31)], 1883, &mut facts), [Step::NotMine]);
        assert_not_mine_on_random(|| Box::new(Mqtt), 2);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Mqtt), &[V31, V311], 1883);
    }
}
