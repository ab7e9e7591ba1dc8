//! A small refilling byte buffer over any [`Read`].
//!
//! pcap-file's own `ReadBuffer` is crate-private, allocates a fixed 8 MB per reader and cannot
//! report file offsets, so the readers keep their own buffer and hand complete records (whose size
//! they learned from the record header) to pcap-file's slice parsers.

use std::io::{self, Read};

/// Initial buffer size; grown geometrically (only as data actually arrives) for larger records.
const MIN_BUF: usize = 64 * 1024;

pub(crate) struct Input<R> {
    reader: R,
    buf: Vec<u8>,
    /// Index in `buf` of the first unconsumed byte.
    start: usize,
    /// Index in `buf` one past the last valid byte.
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
}

impl<R: Read> Input<R> {
    pub(crate) fn new(reader: R) -> Self {
        Input { reader, buf: Vec::new(), start: 0, end: 0, base: 0, eof: false }
    }

    /// The unconsumed bytes currently buffered.
    pub(crate) fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The whole buffer; indices from [`Input::pos`] stay valid until the next [`Input::fill`].
    pub(crate) fn buf(&self) -> &[u8] {
        &self.buf
    }

    /// Index in [`Input::buf`] of the first unconsumed byte.
    pub(crate) fn pos(&self) -> usize {
        self.start
    }

    /// File offset of the first unconsumed byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.start as u64
    }

    pub(crate) fn consume(&mut self, n: usize) {
        self.start += n.min(self.end - self.start);
    }

    /// Makes at least `n` unconsumed bytes available. Returns `Ok(false)` if the input ends first
    /// (whatever was there stays available). May move the buffered bytes, which invalidates
    /// indices previously obtained from [`Input::pos`].
    pub(crate) fn fill(&mut self, n: usize) -> io::Result<bool> {
        while self.end - self.start < n {
            if self.eof {
                return Ok(false);
            }
            if self.start > 0 && (self.end == self.buf.len() || self.buf.len() - self.start < n) {
                self.buf.copy_within(self.start..self.end, 0);
                self.base += self.start as u64;
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                // Full: grow, but never beyond what is needed, and geometrically so that a bogus
                // huge length in a short file costs no more than the file itself.
                let new_len = (self.buf.len() * 2).max(MIN_BUF).min(n.max(MIN_BUF));
                self.buf.resize(new_len, 0);
            }
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(k) => self.end = (self.end + k).min(self.buf.len()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most 3 bytes per call.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len()).min(3);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn fill_consume_offsets_across_compaction() {
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let mut inp = Input::new(Trickle(&data));
        let mut off = 0usize;
        for step in [1usize, 70_000, 5, 100_000, 24_000] {
            assert!(inp.fill(step).unwrap());
            assert_eq!(inp.offset(), off as u64);
            assert_eq!(&inp.available()[..step], &data[off..off + step]);
            let p = inp.pos();
            assert_eq!(&inp.buf()[p..p + step], &data[off..off + step]);
            inp.consume(step);
            off += step;
        }
        assert!(!inp.fill(10_000).unwrap());
        assert_eq!(inp.available(), &data[off..]);
    }
}
