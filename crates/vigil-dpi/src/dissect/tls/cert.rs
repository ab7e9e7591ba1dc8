//! Names from an X.509 certificate (RFC 5280): subject commonName and subjectAltName dNSNames
//! (host names), and the subject's and issuer's commonName and organizationName (identities, for
//! applications whose self-signed or private-CA certificates name the product, not a host).
//!
//! A minimal bounded DER walk instead of an ASN.1 crate: classification needs a few fields, the
//! walk is ~150 lines of bounds-checked reads, never allocates more than the strings it returns
//! (capped), and does not have to validate or even fully decode the certificate (it is not trusted
//! for anything: the names are only labels).

use crate::facts::{CertField, CertId, MAX_CERT_IDS};

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
/// id-at-organizationName, 2.5.4.10.
const OID_O: &[u8] = &[0x55, 0x04, 0x0a];
/// The string types an identity is read from: UTF8String, PrintableString, TeletexString,
/// IA5String (BMPString and UniversalString are rare in CN/O and not decoded).
const STRING_TAGS: &[u8] = &[0x0c, 0x13, 0x14, 0x16];
/// Longest identity value taken, in bytes (X.520 bounds CN and O to 64 characters; 4-byte UTF-8
/// makes 256): a longer value is dropped, not cut, so it can never equal a shorter hint.
pub const MAX_ID_LEN: usize = 256;
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];
/// GeneralName dNSName: [2] IMPLICIT IA5String.
const DNS_NAME: u8 = 0x82;

/// Subject CN(s) first, then SAN dNSNames, de-duplicated, at most [`MAX_NAMES`]. Returns what it
/// found before any malformation; an unparseable certificate yields no names.
pub fn cert_names(der: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let _ = walk(der, &mut names, None);
    names
}

/// [`cert_names`], and the subject's then the issuer's CN and O appended to `ids` (de-duplicated,
/// `ids` kept to at most [`MAX_CERT_IDS`]). Identities are read before the host names, so a
/// certificate malformed after its subject still yields them.
pub fn cert_names_and_ids(der: &[u8], ids: &mut Vec<CertId>) -> Vec<String> {
    let mut names = Vec::new();
    let _ = walk(der, &mut names, Some(ids));
    names
}

/// The attributes of a Name (`rdns`: its contents; Name ::= SEQUENCE OF RelativeDistinguishedName,
/// each a SET OF AttributeTypeAndValue) as (OID, value TLV). A malformed attribute is skipped, a
/// malformed RDN ends the walk.
fn attributes(rdns: &[u8]) -> impl Iterator<Item = (&[u8], Tlv<'_>)> {
    let mut rdns = rdns;
    let mut atvs: &[u8] = &[];
    std::iter::from_fn(move || loop {
        if let Some((atv, rest)) = expect(atvs, SEQUENCE) {
            atvs = rest;
            let Some((oid, val)) = expect(atv, OID) else { continue };
            let Some((value, _)) = tlv(val) else { continue };
            return Some((oid, value));
        }
        let (rdn, rest) = expect(rdns, SET)?;
        rdns = rest;
        atvs = rdn;
    })
}

/// Appends the CN and O attributes of a Name (`rdns`: its contents) to `ids`.
fn push_ids(rdns: &[u8], subject: bool, ids: &mut Vec<CertId>) {
    for (oid, s) in attributes(rdns) {
        let field = match (oid, subject) {
            (OID_CN, true) => CertField::SubjectCn,
            (OID_O, true) => CertField::SubjectOrg,
            (OID_CN, false) => CertField::IssuerCn,
            (OID_O, false) => CertField::IssuerOrg,
            _ => continue,
        };
        let raw = s.value.trim_ascii();
        if !STRING_TAGS.contains(&s.tag) || raw.is_empty() || raw.len() > MAX_ID_LEN {
            continue;
        }
        if ids.len() >= MAX_CERT_IDS {
            return;
        }
        let value = String::from_utf8_lossy(raw);
        if !ids.iter().any(|i| i.field == field && i.value == value) {
            ids.push(CertId { field, value: value.into_owned() });
        }
    }
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

fn walk(der: &[u8], names: &mut Vec<String>, ids: Option<&mut Vec<CertId>>) -> Option<()> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    // version [0] EXPLICIT, optional
    if rest.first() == Some(&0xa0) {
        rest = tlv(rest)?.1;
    }
    rest = tlv(rest)?.1; // serialNumber
    rest = expect(rest, SEQUENCE)?.1; // signature
    let (issuer, after) = expect(rest, SEQUENCE)?;
    rest = expect(after, SEQUENCE)?.1; // validity
    let (subject, after) = expect(rest, SEQUENCE)?;
    if let Some(ids) = ids {
        push_ids(subject, true, ids);
        push_ids(issuer, false, ids);
    }
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

/// The subject's CNs that look like host names.
fn subject_cns(rdns: &[u8], names: &mut Vec<String>) {
    for (oid, s) in attributes(rdns) {
        if oid == OID_CN {
            // Any string type (UTF8String, PrintableString, IA5String, ...): take the bytes.
            push(names, s.value);
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

    /// anydesk.pcapng frame 85: a peer's self-signed certificate (subject = issuer = CN "AnyDesk
    /// Client"; the other peer presents the same as its client certificate).
    const ANYDESK_CLIENT: &[u8] = include_bytes!("../../../tests/fixtures/tls/anydesk_client_cert.der");
    /// anydesk.pcapng frame 128: a relay's leaf, subject C=DE, O=philandro Software GmbH,
    /// CN=AnyNet Relay, issuer CN=AnyNet Root CA, O=philandro Software GmbH, C=DE.
    const ANYDESK_RELAY: &[u8] = include_bytes!("../../../tests/fixtures/tls/anydesk_relay_cert.der");

    fn ids(der: &[u8]) -> (Vec<String>, Vec<(CertField, String)>) {
        let mut ids = Vec::new();
        let names = cert_names_and_ids(der, &mut ids);
        (names, ids.into_iter().map(|i| (i.field, i.value)).collect())
    }

    #[test]
    fn anydesk_peer_certificate() {
        let (names, ids) = ids(ANYDESK_CLIENT);
        // "AnyDesk Client" is no host name: cert_names stays as it was.
        assert!(names.is_empty());
        assert_eq!(names, cert_names(ANYDESK_CLIENT));
        assert_eq!(
            ids,
            [(CertField::SubjectCn, "AnyDesk Client".to_string()), (CertField::IssuerCn, "AnyDesk Client".to_string())]
        );
    }

    #[test]
    fn anydesk_relay_certificate() {
        let (names, ids) = ids(ANYDESK_RELAY);
        assert!(names.is_empty());
        let org = "philandro Software GmbH".to_string();
        assert_eq!(
            ids,
            [
                (CertField::SubjectOrg, org.clone()),
                (CertField::SubjectCn, "AnyNet Relay".to_string()),
                (CertField::IssuerCn, "AnyNet Root CA".to_string()),
                (CertField::IssuerOrg, org),
            ]
        );
    }

    #[test]
    fn identities_are_bounded_and_deduplicated() {
        let mut all = Vec::new();
        for _ in 0..3 {
            let _ = cert_names_and_ids(ANYDESK_RELAY, &mut all);
        }
        assert_eq!(all.len(), 4, "the same certificate twice adds nothing");
        let _ = cert_names_and_ids(ANYDESK_CLIENT, &mut all);
        assert_eq!(all.len(), 6);
        // A name with many attributes stops at MAX_CERT_IDS.
        let mut rdns = Vec::new();
        for i in 0..20u8 {
            let v = [b'o', b'0' + i % 10, b'a' + i / 10];
            let atv = [&[0x06, 3][..], OID_O, &[0x0c, 3], &v].concat();
            let seq = [&[SEQUENCE, atv.len() as u8][..], &atv].concat();
            rdns.extend_from_slice(&[SET, seq.len() as u8]);
            rdns.extend_from_slice(&seq);
        }
        let mut many = Vec::new();
        push_ids(&rdns, true, &mut many);
        assert_eq!(many.len(), MAX_CERT_IDS);
    }

    #[test]
    fn identity_string_types_and_length() {
        let atv = |tag: u8, v: &[u8]| {
            let s = [&[tag, v.len() as u8][..], v].concat();
            let atv = [&[0x06, 3][..], OID_CN, &s].concat();
            let seq = [&[SEQUENCE, atv.len() as u8][..], &atv].concat();
            [&[SET, seq.len() as u8][..], &seq].concat()
        };
        let run = |rdns: &[u8]| {
            let mut out = Vec::new();
            push_ids(rdns, false, &mut out);
            out.into_iter().map(|i| i.value).collect::<Vec<_>>()
        };
        assert_eq!(run(&atv(0x13, b" Printable ")), ["Printable"]);
        assert_eq!(run(&atv(0x14, b"Teletex")), ["Teletex"]);
        assert_eq!(run(&atv(0x16, b"IA5")), ["IA5"]);
        assert_eq!(run(&atv(0x0c, "Ümlaut".as_bytes())), ["Ümlaut"]);
        assert_eq!(run(&atv(0x0c, b"bad \xff utf8")), ["bad \u{fffd} utf8"]);
        assert!(run(&atv(0x1e, b"\0B\0M\0P")).is_empty(), "BMPString is not decoded");
        assert!(run(&atv(0x04, b"octets")).is_empty());
        assert!(run(&atv(0x0c, b"   ")).is_empty());
        // Longer than MAX_ID_LEN: dropped, not cut (long form length).
        let long = vec![b'a'; MAX_ID_LEN + 1];
        let s = [&[0x0c, 0x82, (long.len() >> 8) as u8, long.len() as u8][..], &long].concat();
        let atv = [&[0x06, 3][..], OID_CN, &s].concat();
        let seq = [&[SEQUENCE, 0x82, (atv.len() >> 8) as u8, atv.len() as u8][..], &atv].concat();
        let set = [&[SET, 0x82, (seq.len() >> 8) as u8, seq.len() as u8][..], &seq].concat();
        assert!(run(&set).is_empty());
    }

    #[test]
    fn truncated_and_mutated_certificates_never_panic() {
        for der in [ANYDESK_CLIENT, ANYDESK_RELAY] {
            for cut in 0..der.len() {
                let mut ids = Vec::new();
                let names = cert_names_and_ids(&der[..cut], &mut ids);
                assert!(names.len() <= MAX_NAMES && ids.len() <= MAX_CERT_IDS);
            }
            let mut m = der.to_vec();
            for i in 0..m.len() {
                for x in [0x00, 0x80, 0xff, 0x1f] {
                    let old = m[i];
                    m[i] = x;
                    let mut ids = Vec::new();
                    let _ = cert_names_and_ids(&m, &mut ids);
                    assert!(ids.len() <= MAX_CERT_IDS && ids.iter().all(|i| i.value.len() <= 3 * MAX_ID_LEN));
                    m[i] = old;
                }
            }
        }
    }

    #[test]
    fn garbage_yields_nothing() {
        assert!(cert_names(&[]).is_empty());
        assert!(cert_names(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_empty());
        assert!(cert_names(&[0x30, 0x80, 0x00, 0x00]).is_empty());
        assert!(cert_names(&[0x30, 0x03, 0x30, 0x01, 0x02]).is_empty());
        let mut ids = Vec::new();
        for g in [&[][..], &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff], &[0x30, 0x80, 0x00, 0x00], &[0x31, 0x02, 0x30, 0x00]]
        {
            assert!(cert_names_and_ids(g, &mut ids).is_empty());
            push_ids(g, true, &mut ids);
        }
        assert!(ids.is_empty());
    }
}
