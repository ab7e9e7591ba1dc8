//! JA4 ClientHello fingerprints (FoxIO's JA4 spec, BSD-3-Clause; JA4 only, not JA4+).
//!
//! `t13d1516h2_8daaf6152771_e5627efa2ab1`: transport, version, SNI flag, cipher and extension
//! counts, first ALPN's edge characters; then truncated SHA-256 of the sorted cipher list and of
//! the sorted extension list plus signature algorithms. GREASE is ignored everywhere.
//!
//! Checked against nDPI's expected outputs (`/work/shared/corpus/ndpi/*.out`): see the tests in
//! `dissect::tls` for the flows and agreement. Where the two could differ, this follows the spec:
//! * version: the highest non-GREASE supported_versions entry, else legacy_version;
//! * `d`/`i`: presence of the server_name extension; an IP literal in it counts as `i` (nDPI does
//!   the same, and the flag is meant to say "domain vs. IP destination");
//! * ALPN: first and last character of the first protocol; if either is not ASCII alphanumeric,
//!   the first hex digit of the first byte and the last hex digit of the last byte;
//! * the extension hash leaves out SNI and ALPN but the count includes them; with no signature
//!   algorithms the string has no trailing `_`.

use crate::dissect::tls::hello::{is_grease, ClientHello};
use sha2::{Digest, Sha256};
use std::fmt::Write;

/// What carried the ClientHello: JA4's first character.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Tcp,
    Quic,
    Dtls,
}

impl Transport {
    fn prefix(self) -> char {
        match self {
            Transport::Tcp => 't',
            Transport::Quic => 'q',
            Transport::Dtls => 'd',
        }
    }
}

/// JA4's two-character version code.
fn version_code(v: u16) -> &'static str {
    match v {
        0x0304 => "13",
        0x0303 => "12",
        0x0302 => "11",
        0x0301 => "10",
        0x0300 => "s3",
        0x0002 => "s2",
        0xfeff => "d1",
        0xfefd => "d2",
        0xfefc => "d3",
        _ => "00",
    }
}

/// First 12 hex digits of SHA-256 over `s`; the empty string stands for "nothing" as all zeros.
fn hash12(s: &str) -> String {
    if s.is_empty() {
        return "000000000000".to_string();
    }
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(12);
    for b in &digest[..6] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Comma-separated 4-digit lowercase hex list.
fn hex_list(values: &[u16]) -> String {
    let mut s = String::with_capacity(values.len() * 5);
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{v:04x}");
    }
    s
}

/// The ALPN part: edge characters of the first protocol, hex digits if they are not printable.
fn alpn_code(first: Option<&[u8]>) -> String {
    match first {
        Some([f, .., l]) | Some([f @ l]) if f.is_ascii_alphanumeric() && l.is_ascii_alphanumeric() => {
            format!("{}{}", char::from(*f), char::from(*l))
        }
        Some([f, .., l]) | Some([f @ l]) => {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            format!("{}{}", char::from(HEX[usize::from(f >> 4)]), char::from(HEX[usize::from(l & 0x0f)]))
        }
        _ => "00".to_string(),
    }
}

/// The JA4 fingerprint of a ClientHello carried over `transport`.
pub fn ja4(ch: &ClientHello<'_>, transport: Transport) -> String {
    let mut ciphers: Vec<u16> = ch.cipher_suites().filter(|c| !is_grease(*c)).collect();
    let mut exts: Vec<u16> = ch.extensions().map(|(t, _)| t).filter(|t| !is_grease(*t)).collect();
    let n_ciphers = ciphers.len().min(99);
    let n_exts = exts.len().min(99);
    // An IP literal in the SNI (invalid per RFC 6066, seen from Teams relays) marks an IP
    // destination too, as nDPI does: `d` means "a domain name was named".
    let ip_literal = ch.server_name.is_some_and(|n| n.parse::<std::net::IpAddr>().is_ok());
    let sni = if ch.has_server_name && !ip_literal { 'd' } else { 'i' };
    let a = format!(
        "{}{}{}{:02}{:02}{}",
        transport.prefix(),
        version_code(ch.max_version()),
        sni,
        n_ciphers,
        n_exts,
        alpn_code(ch.alpn_protocols().next())
    );
    ciphers.sort_unstable();
    exts.retain(|t| *t != 0x0000 && *t != 0x0010);
    exts.sort_unstable();
    let sigs: Vec<u16> = ch.signature_algorithms().filter(|s| !is_grease(*s)).collect();
    let mut c = hex_list(&exts);
    if !sigs.is_empty() && !c.is_empty() {
        c.push('_');
        c.push_str(&hex_list(&sigs));
    }
    format!("{a}_{}_{}", hash12(&hex_list(&ciphers)), hash12(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_edges() {
        assert_eq!(alpn_code(None), "00");
        assert_eq!(alpn_code(Some(b"h2")), "h2");
        assert_eq!(alpn_code(Some(b"http/1.1")), "h1");
        assert_eq!(alpn_code(Some(b"h")), "hh");
        assert_eq!(alpn_code(Some(b"")), "00");
        // Spec example: 0xab 0xcd -> "ad"; a printable first byte with a non-printable last one too.
        assert_eq!(alpn_code(Some(&[0xab, 0xcd])), "ad");
        assert_eq!(alpn_code(Some(&[b'h', 0x01])), "61");
    }

    #[test]
    fn grease_values() {
        assert!(is_grease(0x0a0a) && is_grease(0xfafa) && is_grease(0x4a4a));
        assert!(!is_grease(0x0a1a) && !is_grease(0x1301) && !is_grease(0xfe0d));
    }

    #[test]
    fn empty_hashes_are_zeros() {
        assert_eq!(hash12(""), "000000000000");
        // Known value from the spec's example cipher list hash input "002f,0035" style check.
        assert_eq!(hash12("1301").len(), 12);
    }
}
