//! Frames inside a decrypted Initial, and the CRYPTO stream they add up to.
//!
//! Only CRYPTO data matters here. An Initial may carry PADDING, PING, ACK, CRYPTO and
//! CONNECTION_CLOSE (RFC 9000 section 12.4); these are skipped by their encoded lengths. Any
//! other frame type has a length we cannot know, so parsing stops there and keeps what it has.

use super::reader::Reader;
use super::version::Framing;
use super::QuicError;

/// Bytes of handshake stream kept per flow: a ClientHello with post-quantum key shares is
/// ~1.8 KiB, and 16 KiB bounds what a peer can make us hold.
pub const CRYPTO_CAP: usize = 16 * 1024;
/// Disjoint received ranges kept before giving up (Chrome uses a handful).
const MAX_RANGES: usize = 64;

/// One CRYPTO frame's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CryptoFragment<'a> {
    pub offset: u64,
    pub data: &'a [u8],
}

/// Extracts the CRYPTO fragments of a decrypted Initial payload, in packet order.
///
/// Returns the fragments found before an unknown frame or malformed data; the error says why
/// parsing stopped (`Ok` when the whole payload was understood).
pub fn crypto_fragments(payload: &[u8], framing: Framing) -> (Vec<CryptoFragment<'_>>, Result<(), QuicError>) {
    let mut out = Vec::new();
    let mut r = Reader::new(payload);
    let result = match framing {
        Framing::Ietf => walk_ietf(&mut r, &mut out),
        Framing::Google => walk_google(&mut r, &mut out),
    };
    (out, result)
}

fn crypto<'a>(r: &mut Reader<'a>) -> Result<CryptoFragment<'a>, QuicError> {
    let offset = r.varint()?;
    let len = r.varint_usize()?;
    let data = r.bytes(len)?;
    Ok(CryptoFragment { offset, data })
}

fn walk_ietf<'a>(r: &mut Reader<'a>, out: &mut Vec<CryptoFragment<'a>>) -> Result<(), QuicError> {
    while let Some(ty) = r.peek() {
        r.u8()?;
        match ty {
            0x00 | 0x01 => {} // PADDING, PING
            0x02 | 0x03 => {
                // ACK: largest, delay, range count, first range, then (gap, length) pairs.
                r.varint()?;
                r.varint()?;
                let ranges = r.varint()?;
                r.varint()?;
                for _ in 0..ranges {
                    // Each pair takes at least two bytes, so a huge count runs out of input fast.
                    r.varint()?;
                    r.varint()?;
                }
                if ty == 0x03 {
                    for _ in 0..3 {
                        r.varint()?; // ECN counts
                    }
                }
            }
            0x06 => out.push(crypto(r)?),
            0x1c | 0x1d => {
                r.varint()?; // error code
                if ty == 0x1c {
                    r.varint()?; // offending frame type
                }
                let len = r.varint_usize()?;
                r.skip(len)?;
            }
            other => return Err(QuicError::UnexpectedFrame(other)),
        }
    }
    Ok(())
}

/// Google QUIC framing (Q050, T050, T051): padding runs to the end, PING is 0x07, CRYPTO is 0x08
/// with varint offset and length. Acknowledgements use a different layout we do not need.
fn walk_google<'a>(r: &mut Reader<'a>, out: &mut Vec<CryptoFragment<'a>>) -> Result<(), QuicError> {
    while let Some(ty) = r.peek() {
        r.u8()?;
        match ty {
            0x00 => return Ok(()), // padding fills the rest of the packet
            0x07 => {}
            0x08 => out.push(crypto(r)?),
            other => return Err(QuicError::UnexpectedFrame(other)),
        }
    }
    Ok(())
}

/// The client's handshake byte stream, rebuilt from fragments in any order, capped at
/// [`CRYPTO_CAP`]. Retransmitted and overlapping data simply overwrites (peers resend the same
/// bytes; a peer that lies only confuses its own classification).
#[derive(Debug, Default, Clone)]
pub struct CryptoStream {
    buf: Vec<u8>,
    /// Received ranges, sorted and merged.
    ranges: Vec<(usize, usize)>,
}

impl CryptoStream {
    pub fn insert(&mut self, offset: u64, data: &[u8]) -> Result<(), QuicError> {
        if data.is_empty() {
            return Ok(());
        }
        let start = usize::try_from(offset).map_err(|_| QuicError::CryptoTooLarge)?;
        let end = start.checked_add(data.len()).ok_or(QuicError::CryptoTooLarge)?;
        if end > CRYPTO_CAP {
            return Err(QuicError::CryptoTooLarge);
        }
        if self.buf.len() < end {
            self.buf.resize(end, 0);
        }
        if let Some(dst) = self.buf.get_mut(start..end) {
            dst.copy_from_slice(data);
        }
        self.add_range(start, end)
    }

    fn add_range(&mut self, mut start: usize, mut end: usize) -> Result<(), QuicError> {
        // Absorb every range that touches [start, end), then insert the union in order.
        let mut kept = Vec::with_capacity(self.ranges.len() + 1);
        for &(s, e) in &self.ranges {
            if e < start || s > end {
                kept.push((s, e));
            } else {
                start = start.min(s);
                end = end.max(e);
            }
        }
        let at = kept.partition_point(|&(s, _)| s < start);
        kept.insert(at, (start, end));
        if kept.len() > MAX_RANGES {
            return Err(QuicError::CryptoTooFragmented);
        }
        self.ranges = kept;
        Ok(())
    }

    /// The bytes received contiguously from offset 0.
    pub fn contiguous(&self) -> &[u8] {
        match self.ranges.first() {
            Some(&(0, end)) => self.buf.get(..end).unwrap_or(&[]),
            _ => &[],
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }
}

/// The first TLS handshake message of `stream`, once it is all there.
///
/// `Ok(None)` means "wait for more"; an error means the stream can never yield a ClientHello.
pub fn tls_client_hello(stream: &[u8]) -> Result<Option<&[u8]>, QuicError> {
    let Some(header) = stream.get(..4) else { return Ok(None) };
    if header[0] != 0x01 {
        return Err(QuicError::NotClientHello);
    }
    let len = 4 + (usize::from(header[1]) << 16 | usize::from(header[2]) << 8 | usize::from(header[3]));
    if len > CRYPTO_CAP {
        return Err(QuicError::CryptoTooLarge);
    }
    Ok(stream.get(..len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(offset: u8, data: &[u8]) -> Vec<u8> {
        let mut f = vec![0x06, offset, data.len() as u8];
        f.extend_from_slice(data);
        f
    }

    #[test]
    fn skips_padding_ping_ack_and_close() {
        let mut p = vec![0x01, 0x00, 0x00];
        p.extend_from_slice(&[0x02, 0x05, 0x00, 0x01, 0x00, 0x01, 0x02]); // ACK, one extra range
        p.extend_from_slice(&[0x03, 0x05, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03]); // ACK_ECN
        p.extend(frame(3, b"lo"));
        p.extend_from_slice(&[0x1c, 0x00, 0x06, 0x02, b'h', b'i']);
        p.extend_from_slice(&[0x1d, 0x00, 0x00]);
        p.extend(frame(0, b"hel"));
        p.extend_from_slice(&[0x00; 8]);
        let (frags, res) = crypto_fragments(&p, Framing::Ietf);
        assert_eq!(res, Ok(()));
        assert_eq!(frags, [CryptoFragment { offset: 3, data: b"lo" }, CryptoFragment { offset: 0, data: b"hel" }]);
        let mut s = CryptoStream::default();
        for f in frags {
            s.insert(f.offset, f.data).unwrap();
        }
        assert_eq!(s.contiguous(), b"hello");
    }

    #[test]
    fn unknown_frame_stops_but_keeps_earlier_crypto() {
        let mut p = frame(0, b"abc");
        p.extend_from_slice(&[0x08, 0x00, 0x00]);
        p.extend(frame(3, b"def"));
        let (frags, res) = crypto_fragments(&p, Framing::Ietf);
        assert_eq!(res, Err(QuicError::UnexpectedFrame(0x08)));
        assert_eq!(frags.len(), 1);
        let (_, res) = crypto_fragments(&[0x06, 0x00, 0x40], Framing::Ietf);
        assert_eq!(res, Err(QuicError::Truncated));
        // A range count far beyond the payload ends quickly.
        let (_, res) = crypto_fragments(&[0x02, 0, 0, 0xbf, 0xff, 0xff, 0xff, 0], Framing::Ietf);
        assert_eq!(res, Err(QuicError::Truncated));
    }

    #[test]
    fn google_framing() {
        let p = [0x07, 0x08, 0x00, 0x03, b'C', b'H', b'L', 0x00, 0x08, 0x03, 0x01, b'O'];
        let (frags, res) = crypto_fragments(&p, Framing::Google);
        assert_eq!(res, Ok(()));
        assert_eq!(frags, [CryptoFragment { offset: 0, data: b"CHL" }]);
    }

    #[test]
    fn stream_gaps_overlaps_and_caps() {
        let mut s = CryptoStream::default();
        s.insert(5, b"fgh").unwrap();
        assert_eq!(s.contiguous(), b"");
        s.insert(0, b"abc").unwrap();
        assert_eq!(s.contiguous(), b"abc");
        s.insert(2, b"cde").unwrap(); // overlaps both sides, closes the gap
        assert_eq!(s.contiguous(), b"abcdefgh");
        s.insert(0, b"ab").unwrap(); // retransmission
        assert_eq!(s.contiguous(), b"abcdefgh");
        assert_eq!(s.insert(CRYPTO_CAP as u64, b"x"), Err(QuicError::CryptoTooLarge));
        assert_eq!(s.insert(u64::MAX, b"x"), Err(QuicError::CryptoTooLarge));
        let mut f = CryptoStream::default();
        let mut err = Ok(());
        for i in 0..100u64 {
            err = err.and(f.insert(10 + i * 3, b"x"));
        }
        assert_eq!(err, Err(QuicError::CryptoTooFragmented));
    }

    #[test]
    fn client_hello_completion() {
        assert_eq!(tls_client_hello(&[0x01, 0x00]), Ok(None));
        assert_eq!(tls_client_hello(&[0x01, 0x00, 0x00, 0x02, 0xaa]), Ok(None));
        assert_eq!(tls_client_hello(&[0x01, 0x00, 0x00, 0x01, 0xaa, 0xbb]), Ok(Some(&[0x01, 0, 0, 1, 0xaa][..])));
        assert_eq!(tls_client_hello(&[0x02, 0x00, 0x00, 0x01]), Err(QuicError::NotClientHello));
        assert_eq!(tls_client_hello(&[0x01, 0xff, 0xff, 0xff]), Err(QuicError::CryptoTooLarge));
    }
}
