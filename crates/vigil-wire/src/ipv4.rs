//! IPv4 header view (RFC 791).

use crate::{be16, need, WireError};
use std::net::Ipv4Addr;

pub const MIN_HEADER_LEN: usize = 20;

/// A checked view of an IPv4 packet. `header_len()` and `total_len()` are validated against the
/// buffer at construction; a buffer longer than `total_len` (Ethernet padding) is tolerated.
#[derive(Debug, Clone, Copy)]
pub struct Ipv4Packet<'a> {
    buf: &'a [u8],
}

impl<'a> Ipv4Packet<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        need("ipv4", buf, MIN_HEADER_LEN)?;
        if buf[0] >> 4 != 4 {
            return Err(WireError::NotIp(buf[0] >> 4));
        }
        let ihl = usize::from(buf[0] & 0x0f) * 4;
        if ihl < MIN_HEADER_LEN {
            return Err(WireError::Malformed { layer: "ipv4", reason: "IHL below 5" });
        }
        need("ipv4", buf, ihl)?;
        let total = usize::from(be16(buf, 2));
        // total_len 0 happens with TSO/GSO super-packets on some paths; treat as "whole buffer".
        if total != 0 && total < ihl {
            return Err(WireError::Malformed { layer: "ipv4", reason: "total length below header length" });
        }
        Ok(Ipv4Packet { buf })
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.buf[0] & 0x0f) * 4
    }
    /// Total length from the header, clamped to what was captured.
    pub fn total_len(&self) -> usize {
        let total = usize::from(be16(self.buf, 2));
        if total == 0 {
            self.buf.len()
        } else {
            total.min(self.buf.len())
        }
    }
    /// Length the header claims, unclamped (for byte counters on truncated captures).
    pub fn wire_len(&self) -> usize {
        let total = usize::from(be16(self.buf, 2));
        if total == 0 {
            self.buf.len()
        } else {
            total
        }
    }
    pub fn protocol(&self) -> u8 {
        self.buf[9]
    }
    pub fn ttl(&self) -> u8 {
        self.buf[8]
    }
    pub fn src(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[12], self.buf[13], self.buf[14], self.buf[15])
    }
    pub fn dst(&self) -> Ipv4Addr {
        Ipv4Addr::new(self.buf[16], self.buf[17], self.buf[18], self.buf[19])
    }
    /// Fragment offset in 8-byte units; nonzero means this is not the first fragment.
    pub fn frag_offset(&self) -> u16 {
        be16(self.buf, 6) & 0x1fff
    }
    pub fn more_fragments(&self) -> bool {
        be16(self.buf, 6) & 0x2000 != 0
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len()..self.total_len()]
    }
}
