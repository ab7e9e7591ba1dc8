//! Helpers for the dissectors' unit tests.

use crate::view::{Dir, PacketView};
use std::net::{IpAddr, Ipv4Addr};
use vigil_wire::L4Proto;

/// A packet of the IPv4 flow `client` -> `server` ((address, port)), as the classifier offers it:
/// first of its flow, no TCP sequence or flags.
pub fn packet(l4: L4Proto, dir: Dir, client: ([u8; 4], u16), server: ([u8; 4], u16), payload: &[u8]) -> PacketView<'_> {
    PacketView {
        dir,
        l4,
        client: (IpAddr::V4(Ipv4Addr::from(client.0)), client.1),
        server: (IpAddr::V4(Ipv4Addr::from(server.0)), server.1),
        payload,
        tcp_seq: 0,
        tcp_flags: 0,
        index: 0,
        ts_micros: 0,
    }
}

/// Bytes from hex digits ("16030100"), as captures print them.
pub fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2).map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap()).collect()
}

/// A STUN message (RFC 8489: with the magic cookie, a fixed transaction id) of type `ty` with the
/// given (type, value) attributes, each padded to 4 bytes.
pub fn stun_message(ty: u16, attrs: &[(u16, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (t, v) in attrs {
        body.extend_from_slice(&t.to_be_bytes());
        body.extend_from_slice(&(v.len() as u16).to_be_bytes());
        body.extend_from_slice(v);
        body.resize(body.len().next_multiple_of(4), 0);
    }
    let mut m = ty.to_be_bytes().to_vec();
    m.extend_from_slice(&(body.len() as u16).to_be_bytes());
    m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
    m.extend_from_slice(b"0123456789ab");
    m.extend(body);
    m
}
