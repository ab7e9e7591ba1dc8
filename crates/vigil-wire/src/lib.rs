//! Zero-copy views over the packets vigil inspects: IPv4, IPv6, TCP, UDP, ICMP.
//!
//! Each layer has its own module with a view type that borrows the buffer and checks lengths once
//! at construction, so accessors never panic on hostile input (smoltcp's `wire` layout). The
//! [`packet`] module walks the layers of one L3 packet and produces the [`packet::PacketInfo`] the
//! pipeline needs; [`checksum`] recomputes IPv4/TCP/UDP checksums after a payload is rewritten.

pub mod build;
pub mod checksum;
pub mod icmp;
pub mod ipv4;
pub mod ipv6;
pub mod packet;
pub mod tcp;
pub mod udp;

pub use packet::{parse_l3, L4Proto, PacketInfo};

/// Why a packet could not be parsed. Callers count these; they never abort the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("packet truncated: {layer} needs {needed} bytes, {available} available")]
    Truncated { layer: &'static str, needed: usize, available: usize },
    #[error("{layer}: malformed header ({reason})")]
    Malformed { layer: &'static str, reason: &'static str },
    #[error("not an IP packet (version nibble {0})")]
    NotIp(u8),
}

pub(crate) fn need(layer: &'static str, buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::Truncated { layer, needed, available: buf.len() })
    } else {
        Ok(())
    }
}

#[inline]
pub(crate) fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
