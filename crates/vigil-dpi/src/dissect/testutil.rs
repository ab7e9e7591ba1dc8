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
