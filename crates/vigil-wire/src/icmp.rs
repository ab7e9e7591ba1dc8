//! ICMP and ICMPv6 header view: type and code, and the echo identifier that tells pings apart.

use crate::{be16, need, WireError};

pub const HEADER_LEN: usize = 8;

#[derive(Debug, Clone, Copy)]
pub struct IcmpMessage<'a> {
    buf: &'a [u8],
}

impl<'a> IcmpMessage<'a> {
    pub fn new_checked(buf: &'a [u8]) -> Result<Self, WireError> {
        need("icmp", buf, 4)?;
        Ok(IcmpMessage { buf })
    }
    pub fn msg_type(&self) -> u8 {
        self.buf[0]
    }
    pub fn code(&self) -> u8 {
        self.buf[1]
    }
    /// Echo identifier for echo request/reply (v4 types 8/0, v6 types 128/129), else None.
    pub fn echo_id(&self, v6: bool) -> Option<u16> {
        let echo = if v6 { matches!(self.buf[0], 128 | 129) } else { matches!(self.buf[0], 0 | 8) };
        (echo && self.buf.len() >= HEADER_LEN).then(|| be16(self.buf, 4))
    }
    pub fn payload(&self) -> &'a [u8] {
        self.buf.get(HEADER_LEN..).unwrap_or(&[])
    }
}
