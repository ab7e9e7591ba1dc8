//! A bounds-checked cursor: every read either succeeds or reports truncation, never panics.

use super::QuicError;

#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    pub fn peek(&self) -> Option<u8> {
        self.buf.get(self.pos).copied()
    }

    pub fn u8(&mut self) -> Result<u8, QuicError> {
        let b = self.peek().ok_or(QuicError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], QuicError> {
        let end = self.pos.checked_add(n).ok_or(QuicError::Truncated)?;
        let out = self.buf.get(self.pos..end).ok_or(QuicError::Truncated)?;
        self.pos = end;
        Ok(out)
    }

    pub fn skip(&mut self, n: usize) -> Result<(), QuicError> {
        self.bytes(n).map(|_| ())
    }

    pub fn u32_be(&mut self) -> Result<u32, QuicError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned integer of `n` (<= 8) bytes, big- or little-endian (gQUIC before Q039 was LE).
    pub fn uint(&mut self, n: usize, big_endian: bool) -> Result<u64, QuicError> {
        if n > 8 {
            return Err(QuicError::Malformed);
        }
        let b = self.bytes(n)?;
        let fold = |acc: u64, &x: &u8| (acc << 8) | u64::from(x);
        Ok(if big_endian { b.iter().fold(0, fold) } else { b.iter().rev().fold(0, fold) })
    }

    /// RFC 9000 section 16 variable-length integer.
    pub fn varint(&mut self) -> Result<u64, QuicError> {
        let first = self.peek().ok_or(QuicError::Truncated)?;
        let len = 1usize << (first >> 6);
        let b = self.bytes(len)?;
        Ok(b.iter().skip(1).fold(u64::from(first & 0x3f), |acc, &x| (acc << 8) | u64::from(x)))
    }

    /// A varint used as a length or offset into memory: it must fit `usize`.
    pub fn varint_usize(&mut self) -> Result<usize, QuicError> {
        usize::try_from(self.varint()?).map_err(|_| QuicError::BadLength)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_from_rfc9000_appendix_a1() {
        let cases: &[(&[u8], u64)] = &[
            (&[0xc2, 0x19, 0x7c, 0x5e, 0xff, 0x14, 0xe8, 0x8c], 151_288_809_941_952_652),
            (&[0x9d, 0x7f, 0x3e, 0x7d], 494_878_333),
            (&[0x7b, 0xbd], 15_293),
            (&[0x25], 37),
            (&[0x40, 0x25], 37),
        ];
        for (bytes, want) in cases {
            let mut r = Reader::new(bytes);
            assert_eq!(r.varint(), Ok(*want));
            assert_eq!(r.remaining(), 0);
        }
        assert_eq!(Reader::new(&[0x80, 0x00]).varint(), Err(QuicError::Truncated));
        assert_eq!(Reader::new(&[]).varint(), Err(QuicError::Truncated));
    }

    #[test]
    fn uint_endianness() {
        assert_eq!(Reader::new(&[0x01, 0x02]).uint(2, true), Ok(0x0102));
        assert_eq!(Reader::new(&[0x01, 0x02]).uint(2, false), Ok(0x0201));
        assert_eq!(Reader::new(&[0x01]).uint(2, false), Err(QuicError::Truncated));
    }
}
