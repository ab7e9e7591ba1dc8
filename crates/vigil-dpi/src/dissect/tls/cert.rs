//! Names from an X.509 certificate (RFC 5280): subject commonName and subjectAltName dNSNames.
//!
//! A minimal bounded DER walk instead of an ASN.1 crate: classification needs two fields, the walk
//! is ~100 lines of bounds-checked reads, never allocates more than the names it returns (capped),
//! and does not have to validate or even fully decode the certificate (it is not trusted for
//! anything: the names are only labels).

/// At most this many names are taken from one certificate (some CDN certificates list hundreds).
pub const MAX_NAMES: usize = 32;

/// One DER TLV: tag byte and contents.
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
}

/// Reads one DER TLV from the front of `buf`, returning it and the rest. Only single-byte tags and
/// definite lengths of up to 4 bytes (DER forbids the indefinite form).
fn tlv(buf: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = buf.split_first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers never occur in the fields we walk
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, tail) = rest.split_at_checked(n)?;
        rest = tail;
        bytes.iter().fold(0usize, |acc, b| acc << 8 | usize::from(*b))
    };
    let (value, rest) = rest.split_at_checked(len)?;
    Some((Tlv { tag, value }, rest))
}

/// Reads a TLV that must carry `tag`.
fn expect(buf: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (t, rest) = tlv(buf)?;
    (t.tag == tag).then_some((t.value, rest))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
/// id-at-commonName, 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// GeneralName dNSName: [2] IMPLICIT IA5String.
const DNS_NAME: u8 = 0x82;

/// Subject CN(s) first, then SAN dNSNames, de-duplicated, at most [`MAX_NAMES`]. Returns what it
/// found before any malformation; an unparseable certificate yields no names.
pub fn cert_names(der: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let _ = walk(der, &mut names);
    names
}

fn push(names: &mut Vec<String>, raw: &[u8]) {
    if names.len() >= MAX_NAMES || raw.is_empty() || raw.len() > 253 {
        return;
    }
    // Hostnames (and wildcards) only: anything else is not a name worth labelling a flow with.
    if !raw.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'*' | b'_')) {
        return;
    }
    let name = String::from_utf8_lossy(raw).to_ascii_lowercase();
    if !names.contains(&name) {
        names.push(name);
    }
}

fn walk(der: &[u8], names: &mut Vec<String>) -> Option<()> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, optional
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.1;
    }
    rest = tlv(rest)?.1; // serialNumber
    rest = expect(rest, SEQUENCE)?.1; // signature
    rest = expect(rest, SEQUENCE)?.1; // issuer
    rest = expect(rest, SEQUENCE)?.1; // validity
    let (subject, after) = expect(rest, SEQUENCE)?;
    subject_cns(subject, names);
    rest = expect(after, SEQUENCE)?.1; // subjectPublicKeyInfo
                                       // issuerUniqueID [1], subjectUniqueID [2], extensions [3]
    while let Some((t, tail)) = tlv(rest) {
        rest = tail;
        if t.tag == 0xa3 {
            let (exts, _) = expect(t.value, SEQUENCE)?;
            return san_names(exts, names);
        }
    }
    Some(())
}

/// Name ::= SEQUENCE OF RelativeDistinguishedName (SET OF AttributeTypeAndValue).
fn subject_cns(mut rdns: &[u8], names: &mut Vec<String>) {
    while let Some((value, rest)) = expect(rdns, SET) {
        rdns = rest;
        let mut atvs = value;
        while let Some((atv, rest)) = expect(atvs, SEQUENCE) {
            atvs = rest;
            let Some((oid, val)) = expect(atv, OID) else { continue };
            if oid == OID_CN {
                // Any string type (UTF8String, PrintableString, IA5String, ...): take the bytes.
                if let Some((s, _)) = tlv(val) {
                    push(names, s.value);
                }
            }
        }
    }
}

/// Extensions ::= SEQUENCE OF Extension { extnID, critical BOOLEAN DEFAULT FALSE, extnValue }.
fn san_names(mut exts: &[u8], names: &mut Vec<String>) -> Option<()> {
    while let Some((ext, rest)) = expect(exts, SEQUENCE) {
        exts = rest;
        let Some((oid, mut body)) = expect(ext, OID) else { continue };
        if oid != OID_SAN {
            continue;
        }
        if body.first() == Some(&0x01) {
            body = tlv(body)?.1; // critical
        }
        let (octets, _) = expect(body, OCTET_STRING)?;
        let (mut general_names, _) = expect(octets, SEQUENCE)?;
        while let Some((gn, rest)) = tlv(general_names) {
            general_names = rest;
            if gn.tag == DNS_NAME {
                push(names, gn.value);
            }
        }
        return Some(());
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_yields_nothing() {
        assert!(cert_names(&[]).is_empty());
        assert!(cert_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
        assert!(cert_names(&[0x30, 0x80, 0x00, 0x00]).is_empty());
        assert!(cert_names(&[0x30, 0x03, 0x30, 0x01, 0x02]).is_empty());
    }
}
