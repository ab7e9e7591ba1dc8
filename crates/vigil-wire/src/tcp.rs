//! TCP header view (RFC 9293).

use crate::{be16, be32, need, WireError};

pub const MIN_HEADER_LEN: usize = 20;

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

#[derive(Debug, Clone, Copy)]
pub struct TcpSegment<'a> {
    buf: &'a [u8],
}

impl<'a> TcpSegment<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        need("tcp", buf, MIN_HEADER_LEN)?;
        let off = usize::from(buf[12] >> 4) * 4;
        if off < MIN_HEADER_LEN {
            return Err(WireError::Malformed { layer: "tcp", reason: "data offset below 5" });
        }
        need("tcp", buf, off)?;
        Ok(TcpSegment { buf })
    }
    pub fn src_port(&self) -> u16 {
        be16(self.buf, 0)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buf, 2)
    }
    pub fn seq(&self) -> u32 {
        be32(self.buf, 4)
    }
    pub fn ack(&self) -> u32 {
        be32(self.buf, 8)
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.buf[12] >> 4) * 4
    }
    pub fn flags(&self) -> u8 {
        self.buf[13]
    }
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.header_len()..]
    }
}
