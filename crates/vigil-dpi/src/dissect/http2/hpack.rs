//! HPACK (RFC 7541) decoding of one header block, as far as classification needs: the fields in
//! order, through a callback that may stop early. Decode only, no encoder.
//!
//! Hand-written rather than a crate. The candidates (checked 2026-11, all MIT) each fail one of
//! the dissector rules:
//! * `loona-hpack` 0.4.3 (the kept fork of `hpack` 0.3.0 / `fluke-hpack` 0.3.1, which share its
//!   code): its Huffman decoder builds a 257-entry nested `HashMap` for every Huffman string and
//!   walks it bit by bit; one 16 KiB block of one-byte Huffman strings took 366 ms in a release
//!   build, a one-packet stall of the inline engine. It cannot stop after the fields wanted, and
//!   pulls `tracing` (+ `tracing-core`, `tracing-attributes`, `pin-project-lite`, `once_cell`)
//!   and `thiserror` 1. `hpack` 0.3.0 (2015) also lets a size update grow the table without limit.
//! * `httlib-hpack` 0.1.3 (2020): panics on one-byte blocks (`[0x40]`, `[0x1f]`: unchecked
//!   indexing).
//! * `hpack_codec` 0.1.1 (2019): safe and fast enough in a test, but unmaintained since 2019 and
//!   brings `trackable` 0.2 → 1, `trackable_derive` and `syn` 1.
//!
//! What is here is small because decoding is: the static table (Appendix A), integers (§5.1),
//! strings (§5.2) and a canonical Huffman decoder built at compile time from the code lengths of
//! Appendix B (the HPACK code is canonical: codes are assigned in order of length, then symbol, so
//! the lengths alone define it; checked against the table of the Python `hpack` package).
//!
//! Bounds: integers are limited to 4 continuation octets (a value below 2^28 + 255), the dynamic
//! table to [`MAX_TABLE_SIZE`] bytes as RFC 7541 counts them (so to at most `MAX_TABLE_SIZE / 32`
//! entries), a block to [`MAX_FIELDS`] fields; a string decodes into at most 8/5 of its encoded
//! length. Every read is checked; malformed input ends decoding with an [`HpackError`], the
//! fields delivered before it stand.

use std::collections::VecDeque;

/// Fields decoded per block at most (real requests carry 5-40).
pub const MAX_FIELDS: usize = 128;

/// The largest dynamic table size update accepted. A client may only use what the server's
/// SETTINGS_HEADER_TABLE_SIZE allows (4096 unless raised; common clients keep 4096): anything
/// larger than this is treated as garbage, not as a reason to hold more memory.
pub const MAX_TABLE_SIZE: usize = 64 * 1024;

/// The table size a decoder starts with (RFC 9113 §6.5.2, SETTINGS_HEADER_TABLE_SIZE default).
const DEFAULT_TABLE_SIZE: usize = 4096;

/// Per-entry overhead in the table size (RFC 7541 §4.1).
const ENTRY_OVERHEAD: usize = 32;

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("header block truncated")]
    Truncated,
    #[error("integer too large")]
    Integer,
    #[error("table index out of range")]
    Index,
    #[error("invalid Huffman string")]
    Huffman,
    #[error("dynamic table size update out of range or misplaced")]
    TableSize,
    #[error("too many header fields")]
    TooManyFields,
}

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// Huffman code length in bits of each symbol, RFC 7541 Appendix B (index 256 is EOS).
#[rustfmt::skip]
const CODE_LEN: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, // 0x00..0x0f
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28, // 0x10..0x1f
     6, 10, 10, 12, 13,  6,  8, 11, 10, 10,  8, 11,  8,  6,  6,  6, // 0x20..0x2f
     5,  5,  5,  6,  6,  6,  6,  6,  6,  6,  7,  8, 15,  6, 12, 10, // 0x30..0x3f
    13,  6,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7,  7, // 0x40..0x4f
     7,  7,  7,  7,  7,  7,  7,  7,  8,  7,  8, 13, 19, 13, 14,  6, // 0x50..0x5f
    15,  5,  6,  5,  6,  5,  6,  6,  6,  5,  7,  7,  6,  6,  6,  5, // 0x60..0x6f
     6,  7,  6,  5,  5,  6,  7,  7,  7,  7,  7, 15, 11, 14, 13, 28, // 0x70..0x7f
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, // 0x80..0x8f
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, // 0x90..0x9f
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, // 0xa0..0xaf
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, // 0xb0..0xbf
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, // 0xc0..0xcf
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, // 0xd0..0xdf
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, // 0xe0..0xef
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, // 0xf0..0xff
    30, // EOS
];

const EOS: u16 = 256;
const MAX_CODE_LEN: usize = 30;

/// The canonical code, per length: the first code of that length, how many codes have it, and
/// where their symbols start in `symbols` (sorted by length, then value).
struct Canonical {
    first: [u32; MAX_CODE_LEN + 1],
    count: [u16; MAX_CODE_LEN + 1],
    start: [u16; MAX_CODE_LEN + 1],
    symbols: [u16; 257],
}

const fn canonical() -> Canonical {
    let mut c = Canonical {
        first: [0; MAX_CODE_LEN + 1],
        count: [0; MAX_CODE_LEN + 1],
        start: [0; MAX_CODE_LEN + 1],
        symbols: [0; 257],
    };
    let mut s = 0;
    while s < 257 {
        c.count[CODE_LEN[s] as usize] += 1;
        s += 1;
    }
    // First code of each length (as in DEFLATE's canonical codes), and symbol offsets.
    let mut code = 0u32;
    let mut at = 0u16;
    let mut len = 1;
    while len <= MAX_CODE_LEN {
        code = (code + c.count[len - 1] as u32) << 1;
        c.first[len] = code;
        c.start[len] = at;
        at += c.count[len];
        len += 1;
    }
    let mut next = c.start;
    let mut s = 0;
    while s < 257 {
        let l = CODE_LEN[s] as usize;
        c.symbols[next[l] as usize] = s as u16;
        next[l] += 1;
        s += 1;
    }
    c
}

static HUFFMAN: Canonical = canonical();

/// Decodes a Huffman-coded string (RFC 7541 §5.2) into `out`.
pub fn huffman_decode(data: &[u8], out: &mut Vec<u8>) -> Result<(), HpackError> {
    out.reserve(data.len() * 8 / 5 + 1);
    let mut code = 0u32;
    let mut len = 0usize;
    for &byte in data {
        for shift in (0..8).rev() {
            code = code << 1 | u32::from(byte >> shift & 1);
            len += 1;
            let first = HUFFMAN.first.get(len).copied().ok_or(HpackError::Huffman)?;
            let count = HUFFMAN.count.get(len).copied().unwrap_or(0);
            if let Some(i) = code.checked_sub(first).filter(|&i| i < u32::from(count)) {
                let at = usize::from(HUFFMAN.start.get(len).copied().unwrap_or(0)) + i as usize;
                match HUFFMAN.symbols.get(at).copied() {
                    Some(sym) if sym < EOS => out.push(sym as u8),
                    _ => return Err(HpackError::Huffman), // EOS inside a string (§5.2)
                }
                code = 0;
                len = 0;
            } else if len >= MAX_CODE_LEN {
                return Err(HpackError::Huffman);
            }
        }
    }
    // Padding: fewer than 8 bits, all ones (the most significant bits of EOS).
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HpackError::Huffman);
    }
    Ok(())
}

/// Reads an integer with an `n`-bit prefix (RFC 7541 §5.1) at the start of `buf`: (value, octets).
pub fn decode_integer(buf: &[u8], n: u8) -> Result<(usize, usize), HpackError> {
    let first = *buf.first().ok_or(HpackError::Truncated)?;
    let max = (1usize << n) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok((value, 1));
    }
    // At most 4 continuation octets: 28 bits, so no overflow even with a 32-bit usize.
    for i in 0..4 {
        let b = *buf.get(1 + i).ok_or(HpackError::Truncated)?;
        value += usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, 2 + i));
        }
    }
    Err(HpackError::Integer)
}

/// One header block's decoder: the dynamic table starts empty, as at a connection's first block.
#[derive(Debug)]
pub struct Decoder {
    /// Newest first, as HPACK indexes it.
    table: VecDeque<(Vec<u8>, Vec<u8>)>,
    /// Table size as RFC 7541 §4.1 counts it.
    size: usize,
    max_size: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { table: VecDeque::new(), size: 0, max_size: DEFAULT_TABLE_SIZE }
    }
}

/// A string of the block: borrowed when sent as is, decoded when Huffman-coded.
fn decode_string(buf: &[u8]) -> Result<(std::borrow::Cow<'_, [u8]>, usize), HpackError> {
    let huffman = buf.first().is_some_and(|b| b & 0x80 != 0);
    let (len, used) = decode_integer(buf, 7)?;
    let raw = used.checked_add(len).and_then(|end| buf.get(used..end)).ok_or(HpackError::Truncated)?;
    if huffman {
        let mut out = Vec::new();
        huffman_decode(raw, &mut out)?;
        Ok((std::borrow::Cow::Owned(out), used + len))
    } else {
        Ok((std::borrow::Cow::Borrowed(raw), used + len))
    }
}

impl Decoder {
    /// Field `index` of the combined static + dynamic table (1-based).
    fn field(&self, index: usize) -> Result<(&[u8], &[u8]), HpackError> {
        let i = index.checked_sub(1).ok_or(HpackError::Index)?;
        if let Some(&(n, v)) = STATIC_TABLE.get(i) {
            return Ok((n, v));
        }
        let (n, v) = self.table.get(i - STATIC_TABLE.len()).ok_or(HpackError::Index)?;
        Ok((n, v))
    }

    fn evict_to(&mut self, max: usize) {
        while self.size > max {
            match self.table.pop_back() {
                Some((n, v)) => self.size = self.size.saturating_sub(n.len() + v.len() + ENTRY_OVERHEAD),
                None => self.size = 0,
            }
        }
    }

    /// Adds an entry (§4.4): older entries make room; one larger than the table empties it.
    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        let size = name.len() + value.len() + ENTRY_OVERHEAD;
        if size > self.max_size {
            self.table.clear();
            self.size = 0;
            return;
        }
        self.evict_to(self.max_size - size);
        self.size += size;
        self.table.push_front((name, value));
    }

    /// Decodes `block`, calling `on_field(name, value)` for each field in order until it returns
    /// false (then `Ok`). Fields before an error have been delivered.
    pub fn decode(&mut self, block: &[u8], mut on_field: impl FnMut(&[u8], &[u8]) -> bool) -> Result<(), HpackError> {
        let mut rest = block;
        let mut fields = 0;
        // Size updates are allowed only at the start of a block (§4.2).
        let mut at_start = true;
        while let Some(&first) = rest.first() {
            if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3).
                let (size, used) = decode_integer(rest, 5)?;
                if !at_start || size > MAX_TABLE_SIZE {
                    return Err(HpackError::TableSize);
                }
                self.max_size = size;
                self.evict_to(size);
                rest = rest.get(used..).unwrap_or_default();
                continue;
            }
            at_start = false;
            fields += 1;
            if fields > MAX_FIELDS {
                return Err(HpackError::TooManyFields);
            }
            let go_on = if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let (index, used) = decode_integer(rest, 7)?;
                rest = rest.get(used..).unwrap_or_default();
                let (n, v) = self.field(index)?;
                on_field(n, v)
            } else {
                // Literal (§6.2): with incremental indexing (01), never indexed (0001), without (0000).
                let indexing = first & 0x40 != 0;
                let (index, mut used) = decode_integer(rest, if indexing { 6 } else { 4 })?;
                let name = if index == 0 {
                    let (n, u) = decode_string(rest.get(used..).unwrap_or_default())?;
                    used += u;
                    n
                } else {
                    std::borrow::Cow::Borrowed(self.field(index)?.0)
                };
                let (value, u) = decode_string(rest.get(used..).unwrap_or_default())?;
                used += u;
                rest = rest.get(used..).unwrap_or_default();
                let go_on = on_field(&name, &value);
                if indexing {
                    let (name, value) = (name.into_owned(), value.into_owned());
                    self.insert(name, value);
                }
                go_on
            };
            if !go_on {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::testutil::hex;

    fn fields(block: &[u8]) -> (Vec<(String, String)>, Result<(), HpackError>) {
        let mut out = Vec::new();
        let r = Decoder::default().decode(block, |n, v| {
            out.push((String::from_utf8_lossy(n).into_owned(), String::from_utf8_lossy(v).into_owned()));
            true
        });
        (out, r)
    }

    fn huff(h: &str) -> Result<String, HpackError> {
        let mut out = Vec::new();
        huffman_decode(&hex(h), &mut out).map(|()| String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn canonical_code_matches_appendix_b() {
        // Spot checks of Appendix B: '0' 00000 (5 bits), 'a' 00011, ' ' 010100 (6), '!' 11111110|00
        // (10), EOS 30 ones.
        let code_of = |sym: u16| {
            let len = usize::from(CODE_LEN[usize::from(sym)]);
            let start = usize::from(HUFFMAN.start[len]);
            let k = HUFFMAN.symbols[start..].iter().position(|&s| s == sym).unwrap();
            (HUFFMAN.first[len] + k as u32, len)
        };
        assert_eq!(code_of(b'0'.into()), (0b00000, 5));
        assert_eq!(code_of(b'a'.into()), (0b00011, 5));
        assert_eq!(code_of(b' '.into()), (0b010100, 6));
        assert_eq!(code_of(b'!'.into()), (0b11_1111_1000, 10));
        assert_eq!(code_of(EOS), ((1 << 30) - 1, 30));
        assert_eq!(code_of(0), (0x1ff8, 13));
    }

    #[test]
    fn huffman_strings() {
        // RFC 7541 C.4.1 and C.4.2.
        assert_eq!(huff("f1e3c2e5f23a6ba0ab90f4ff").as_deref(), Ok("www.example.com"));
        assert_eq!(huff("a8eb10649cbf").as_deref(), Ok("no-cache"));
        // From curl's HEADERS frame (curl_h2c.pcap).
        assert_eq!(huff("9c445cbe474d7415644e7ad749509f").as_deref(), Ok("h2c.example-shop.test"));
        assert_eq!(huff("").as_deref(), Ok(""));
        // Padding longer than 7 bits, padding not all ones, EOS inside the string.
        assert_eq!(huff("f1e3c2e5f23a6ba0ab90f4ffff"), Err(HpackError::Huffman));
        assert_eq!(huff("00"), Err(HpackError::Huffman)); // "0" then 000 padding
        assert_eq!(huff("fffffffc"), Err(HpackError::Huffman)); // 30 ones: EOS
    }

    #[test]
    fn integers() {
        // RFC 7541 C.1.
        assert_eq!(decode_integer(&[0x0a], 5), Ok((10, 1)));
        assert_eq!(decode_integer(&[0x1f, 0x9a, 0x0a], 5), Ok((1337, 3)));
        assert_eq!(decode_integer(&[0x2a], 8), Ok((42, 1)));
        assert_eq!(decode_integer(&[0x1f], 5), Err(HpackError::Truncated));
        assert_eq!(decode_integer(&[], 5), Err(HpackError::Truncated));
        assert_eq!(decode_integer(&[0x1f, 0xff, 0xff, 0xff, 0x7f], 5), Ok((31 + (1 << 28) - 1, 5)));
        assert_eq!(decode_integer(&[0x1f, 0xff, 0xff, 0xff, 0xff, 0x01], 5), Err(HpackError::Integer));
    }

    #[test]
    fn rfc_request_examples_with_the_dynamic_table() {
        // RFC 7541 C.4.1: Huffman-coded request, then a field indexed from the dynamic table in
        // the same block (:authority inserted, then referenced as index 62).
        let mut block = hex("828684418cf1e3c2e5f23a6ba0ab90f4ff");
        block.push(0x80 | 62);
        let (f, r) = fields(&block);
        assert_eq!(r, Ok(()));
        let want = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
            (":authority", "www.example.com"),
        ];
        assert_eq!(f, want.map(|(a, b)| (a.to_string(), b.to_string())));
        // C.3.1 without Huffman; C.2.1 a literal name with indexing; C.2.3 never indexed.
        let (f, r) = fields(&hex("828684410f7777772e6578616d706c652e636f6d"));
        assert_eq!((f[3].1.as_str(), r), ("www.example.com", Ok(())));
        let (f, r) = fields(&hex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"));
        assert_eq!((f[0].0.as_str(), f[0].1.as_str(), r), ("custom-key", "custom-header", Ok(())));
        let (f, r) = fields(&hex("100870617373776f726406736563726574"));
        assert_eq!((f[0].0.as_str(), f[0].1.as_str(), r), ("password", "secret", Ok(())));
    }

    #[test]
    fn size_updates_and_eviction() {
        // A size update to 0 at the start, then a literal with indexing: not kept, index 62 fails.
        let (f, r) = fields(&[0x20, 0x41, 0x01, b'a', 0x80 | 62]);
        assert_eq!((f.len(), r), (1, Err(HpackError::Index)));
        // A size update after a field, and one beyond the cap.
        assert_eq!(fields(&[0x82, 0x20]).1, Err(HpackError::TableSize));
        // 31 + 0x62 + (0x7f << 7) + (3 << 14) = 65537: one byte over the cap; 65536 is accepted.
        assert_eq!(fields(&[0x3f, 0xe2, 0xff, 0x03, 0x82]).1, Err(HpackError::TableSize));
        assert_eq!(fields(&[0x3f, 0xe1, 0xff, 0x03, 0x82]).1, Ok(()));
        // A table of 64 bytes keeps one 32 + 2-byte entry at a time: the newer evicts the older.
        let (f, r) = fields(&[0x3f, 0x21, 0x41, 0x01, b'a', 0x41, 0x01, b'b', 0x80 | 62, 0x80 | 63]);
        assert_eq!(f.iter().map(|(_, v)| v.as_str()).collect::<Vec<_>>(), ["a", "b", "b"]);
        assert_eq!(r, Err(HpackError::Index));
    }

    #[test]
    fn stops_when_told_and_caps_fields() {
        let mut n = 0;
        let r = Decoder::default().decode(&[0x82, 0x84, 0x86], |_, _| {
            n += 1;
            n < 2
        });
        assert_eq!((n, r), (2, Ok(())));
        let many = vec![0x82; MAX_FIELDS + 1];
        let (f, r) = fields(&many);
        assert_eq!((f.len(), r), (MAX_FIELDS, Err(HpackError::TooManyFields)));
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = crate::dissect::http::testutil::XorShift(0x1234_5678_9abc_def1);
        for _ in 0..20_000 {
            let len = (rng.next() % 64) as usize;
            let mut b = rng.bytes(len);
            // Bias towards literal and size-update openers.
            if let Some(f) = b.first_mut() {
                *f = [0x00, 0x10, 0x40, 0x20, 0x3f, 0x7f, 0x0f, *f][(rng.next() % 8) as usize];
            }
            let _ = fields(&b);
        }
        let curl = hex("828586418f9c445cbe474d7415644e7ad749509f7a8825b650c3abbcf2e153032a2f2a");
        for cut in 0..curl.len() {
            let _ = fields(&curl[..cut]);
        }
        // A 16 KiB block of one-byte Huffman strings decodes quickly (no per-string setup cost).
        let mut big = Vec::new();
        while big.len() + 5 <= 16 * 1024 {
            big.extend_from_slice(&[0x00, 0x81, 0x07, 0x81, 0x07]);
        }
        let t = std::time::Instant::now();
        assert_eq!(fields(&big).1, Err(HpackError::TooManyFields));
        assert!(t.elapsed() < std::time::Duration::from_secs(1));
    }
}
