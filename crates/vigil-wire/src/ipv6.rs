//! IPv6 header view (RFC 8200) with a walk over extension headers to the upper-layer protocol.

use crate::{be16, need, WireError};
use std::net::Ipv6Addr;

pub const HEADER_LEN: usize = 40;

const HOP_BY_HOP: u8 = 0;
const ROUTING: u8 = 43;
const FRAGMENT: u8 = 44;
const DEST_OPTS: u8 = 60;
const MOBILITY: u8 = 135;
/// Extension headers followed before giving up: bounds the walk on hostile chains.
const MAX_EXT_HEADERS: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct Ipv6Packet<'a> {
    buf: &'a [u8],
}

/// The upper layer after extension headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpperLayer<'a> {
    pub protocol: u8,
    pub payload: &'a [u8],
    /// True when a Fragment header with a nonzero offset was crossed: no L4 header here.
    pub later_fragment: bool,
    pub fragmented: bool,
}

impl<'a> Ipv6Packet<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        need("ipv6", buf, HEADER_LEN)?;
        if buf[0] >> 4 != 6 {
            return Err(WireError::NotIp(buf[0] >> 4));
        }
        Ok(Ipv6Packet { buf })
    }
    pub fn payload_len(&self) -> usize {
        usize::from(be16(self.buf, 4))
    }
    /// Length the header claims (payload length 0 with a jumbogram or GSO: use the buffer).
    pub fn wire_len(&self) -> usize {
        match self.payload_len() {
            0 => self.buf.len(),
            n => HEADER_LEN + n,
        }
    }
    pub fn next_header(&self) -> u8 {
        self.buf[6]
    }
    pub fn hop_limit(&self) -> u8 {
        self.buf[7]
    }
    pub fn src(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[8..24]);
        Ipv6Addr::from(a)
    }
    pub fn dst(&self) -> Ipv6Addr {
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buf[24..40]);
        Ipv6Addr::from(a)
    }
    /// Bytes after the fixed header, clamped to the buffer.
    pub fn payload(&self) -> &'a [u8] {
        let end = self.wire_len().min(self.buf.len());
        &self.buf[HEADER_LEN..end.max(HEADER_LEN)]
    }

    /// Follows extension headers to the upper-layer protocol.
    pub fn upper_layer(&self) -> Result<UpperLayer<'a>, WireError> {
        let mut proto = self.next_header();
        let mut rest = self.payload();
        let mut fragmented = false;
        let mut later_fragment = false;
        for _ in 0..MAX_EXT_HEADERS {
            match proto {
                HOP_BY_HOP | ROUTING | DEST_OPTS | MOBILITY => {
                    need("ipv6 ext", rest, 8)?;
                    let len = (usize::from(rest[1]) + 1) * 8;
                    need("ipv6 ext", rest, len)?;
                    proto = rest[0];
                    rest = &rest[len..];
                }
                FRAGMENT => {
                    need("ipv6 frag", rest, 8)?;
                    fragmented = true;
                    if be16(rest, 2) & 0xfff8 != 0 {
                        later_fragment = true;
                    }
                    proto = rest[0];
                    rest = &rest[8..];
                }
                _ => return Ok(UpperLayer { protocol: proto, payload: rest, later_fragment, fragmented }),
            }
        }
        Err(WireError::Malformed { layer: "ipv6", reason: "too many extension headers" })
    }
}
