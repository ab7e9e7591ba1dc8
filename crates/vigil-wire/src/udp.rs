//! UDP header view (RFC 768).

use crate::{be16, need, WireError};

pub const HEADER_LEN: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct UdpDatagram<'a> {
    buf: &'a [u8],
}

impl<'a> UdpDatagram<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        need("udp", buf, HEADER_LEN)?;
        let len = usize::from(be16(buf, 4));
        // Length 0 is legal for UDP GSO super-packets and IPv6 jumbograms: use the buffer.
        if len != 0 && len < HEADER_LEN {
            return Err(WireError::Malformed { layer: "udp", reason: "length below 8" });
        }
        Ok(UdpDatagram { buf })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }
    /// Payload, bounded by the UDP length field and by what was captured.
    pub fn payload(&self) -> &'a [u8] {
        let len = usize::from(be16(self.buf, 4));
        let end = if len == 0 { self.buf.len() } else { len.min(self.buf.len()) };
        &self.buf[HEADER_LEN..end.max(HEADER_LEN)]
    }
}
