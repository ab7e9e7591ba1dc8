//! Google QUIC before TLS: Q024-Q043 (the original public header) and Q046 (IETF-like long
//! header), whose client hello travels in the clear ("null encryption" with a 12-byte hash) as a
//! CHLO tag-value message on stream 1. Q050 reuses the CHLO format inside protected Initials.

use super::reader::Reader;
use super::QuicError;

pub const Q046: u32 = 0x5130_3436;

/// Google QUIC version number of `wire` ("Q043" -> 43), for the versions with a cleartext CHLO.
pub fn legacy_number(wire: u32) -> Option<u8> {
    let [q, a, b, c] = wire.to_be_bytes();
    if q != b'Q' || !a.is_ascii_digit() || !b.is_ascii_digit() || !c.is_ascii_digit() {
        return None;
    }
    // "Q999" is 999: compute wider than the result.
    let n = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
    // Q024..Q043 use the public header; Q044/Q045 never shipped; Q046 has the long header.
    match n {
        24..=43 | 46 => u8::try_from(n).ok(),
        _ => None,
    }
}

/// One stream-1 fragment of a cleartext client packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyInitial<'a> {
    pub version: u32,
    pub offset: u64,
    pub data: &'a [u8],
}

/// Parses a client packet of Q024-Q046 up to its first stream-1 (crypto stream) frame.
///
/// Fails fast on anything that is not a client packet carrying its version, which keeps random
/// UDP payloads cheap to reject.
pub fn parse_legacy(datagram: &[u8]) -> Result<LegacyInitial<'_>, QuicError> {
    let mut r = Reader::new(datagram);
    let first = r.u8()?;
    let (version, n, pn_len) = if first & 0x80 != 0 {
        // Q046 long header: 0b11TT00PP with type Initial (0) and a 4-byte packet number; a single
        // byte holds both CID lengths as nibbles (+3 when non-zero), as in early IETF drafts.
        let version = r.u32_be()?;
        if version != Q046 || first & 0x70 != 0x40 {
            return Err(QuicError::NotInitial);
        }
        let cil = r.u8()?;
        let nib = |x: u8| if x == 0 { 0 } else { usize::from(x) + 3 };
        r.skip(nib(cil >> 4) + nib(cil & 0x0f))?;
        (version, 46, usize::from(first & 0x03) + 1)
    } else {
        // Public header: flags 0x01 version present, 0x02 reset, 0x08 8-byte CID (before Q033
        // 0x0c was "8-byte CID"; later 0x04 is a diversification nonce, which only servers
        // send), 0x30 packet number length, 0xc0 unused. Clients always send an 8-byte CID.
        if first & 0xc3 != 0x01 || first & 0x08 == 0 {
            return Err(QuicError::NotInitial);
        }
        r.skip(8)?;
        let version = r.u32_be()?;
        let n = legacy_number(version).filter(|&n| n < 46).ok_or(QuicError::UnknownVersion(version))?;
        let pn_len = match (first >> 4) & 0x03 {
            0 => 1,
            1 => 2,
            2 => 4,
            _ => 6,
        };
        (version, n, pn_len)
    };
    r.skip(pn_len)?;
    r.skip(12)?; // null-encryption message authentication hash
    if n < 34 {
        r.skip(1)?; // private flags
    }
    let big_endian = n >= 39;
    loop {
        let ty = r.u8()?;
        match ty {
            0x80..=0xff => {
                // STREAM: 1FDOOOSS. F fin, D data length present, OOO offset length, SS id length.
                let id = r.uint(usize::from(ty & 0x03) + 1, big_endian)?;
                let ooo = usize::from((ty >> 2) & 0x07);
                let offset = r.uint(if ooo == 0 { 0 } else { ooo + 1 }, big_endian)?;
                let data = if ty & 0x20 != 0 {
                    let len = r.uint(2, big_endian)?;
                    r.bytes(usize::try_from(len).map_err(|_| QuicError::BadLength)?)?
                } else {
                    let rest = r.rest();
                    r.skip(rest.len())?;
                    rest
                };
                if id == 1 {
                    return Ok(LegacyInitial { version, offset, data });
                }
            }
            0x07 => {}                                       // PING
            0x06 => r.skip(pn_len)?,                         // STOP_WAITING: least unacked delta
            _ => return Err(QuicError::UnexpectedFrame(ty)), // ACK and the rest: not in a first CHLO
        }
    }
}

/// Length of the CHLO message at the start of `stream` once its index is readable: `Ok(None)`
/// while more is needed, an error if this is no CHLO.
pub fn chlo_len(stream: &[u8]) -> Result<Option<usize>, QuicError> {
    let Some(tag) = stream.get(..4) else { return Ok(None) };
    if tag != b"CHLO" {
        return Err(QuicError::NotClientHello);
    }
    let Some(n) = stream.get(4..6) else { return Ok(None) };
    let n = usize::from(u16::from_le_bytes([n[0], n[1]]));
    if n == 0 {
        return Ok(Some(8));
    }
    let last = 8 + 8 * (n - 1) + 4;
    let Some(end) = stream.get(last..last + 4) else { return Ok(None) };
    let end = u32::from_le_bytes([end[0], end[1], end[2], end[3]]) as usize;
    Ok(Some(8 + 8 * n + end))
}

/// The tags of a CHLO that classification uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Chlo<'a> {
    pub sni: Option<&'a [u8]>,
    pub user_agent: Option<&'a [u8]>,
    /// "VER\0": the version the client speaks, as four ASCII bytes.
    pub version: Option<&'a [u8]>,
}

/// Parses a complete CHLO message: tag "CHLO", u16 entry count, u16 padding, then (tag, end
/// offset) pairs with end offsets increasing, then the values (all little-endian).
pub fn parse_chlo(msg: &[u8]) -> Result<Chlo<'_>, QuicError> {
    let mut r = Reader::new(msg);
    if r.bytes(4)? != b"CHLO" {
        return Err(QuicError::NotClientHello);
    }
    let n = usize::from(u16::from_le_bytes([r.u8()?, r.u8()?]));
    r.skip(2)?;
    let index = r.bytes(8 * n)?;
    let values = r.rest();
    let mut chlo = Chlo::default();
    let mut prev = 0usize;
    for entry in index.chunks_exact(8) {
        let end = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]) as usize;
        let value = values.get(prev..end).ok_or(QuicError::Malformed)?;
        prev = end;
        match &entry[..4] {
            b"SNI\0" => chlo.sni = Some(value),
            b"UAID" => chlo.user_agent = Some(value),
            b"VER\0" => chlo.version = Some(value),
            _ => {}
        }
    }
    Ok(chlo)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn chlo(tags: &[(&[u8; 4], &[u8])]) -> Vec<u8> {
        let mut m = b"CHLO".to_vec();
        m.extend_from_slice(&(tags.len() as u16).to_le_bytes());
        m.extend_from_slice(&[0, 0]);
        let mut end = 0u32;
        for (t, v) in tags {
            end += v.len() as u32;
            m.extend_from_slice(*t);
            m.extend_from_slice(&end.to_le_bytes());
        }
        for (_, v) in tags {
            m.extend_from_slice(v);
        }
        m
    }

    #[test]
    fn chlo_tags() {
        let m = chlo(&[(b"PAD\0", &[0x2d; 10]), (b"SNI\0", b"www.example.com"), (b"UAID", b"Chrome/80")]);
        assert_eq!(chlo_len(&m), Ok(Some(m.len())));
        assert_eq!(chlo_len(&m[..20]), Ok(None));
        let c = parse_chlo(&m).unwrap();
        assert_eq!(c.sni, Some(&b"www.example.com"[..]));
        assert_eq!(c.user_agent, Some(&b"Chrome/80"[..]));
        assert_eq!(parse_chlo(&m[..m.len() - 1]), Err(QuicError::Malformed));
        assert_eq!(chlo_len(b"SHLO\0\0"), Err(QuicError::NotClientHello));
    }

    #[test]
    fn legacy_versions() {
        assert_eq!(legacy_number(0x5130_3433), Some(43));
        assert_eq!(legacy_number(0x5130_3436), Some(46));
        assert_eq!(legacy_number(0x5130_3530), None); // Q050 is decrypted, not parsed here
        assert_eq!(legacy_number(0x0000_0001), None);
        assert_eq!(legacy_number(u32::from_be_bytes(*b"Q999")), None); // found by the fuzzer
        assert_eq!(legacy_number(u32::from_be_bytes(*b"Q0a1")), None);
    }
}
