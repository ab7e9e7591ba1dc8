//! Long-header packets (RFC 9000 section 17.2) and walking the packets coalesced in a datagram.

use super::reader::Reader;
use super::version::{Version, TYPE_INITIAL, TYPE_RETRY};
use super::QuicError;

/// RFC 9000 section 17.2: connection IDs are at most 20 bytes in QUIC v1 and v2.
pub const MAX_CID_LEN: usize = 20;

/// One long-header packet, header parsed, payload still protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongHeader<'a> {
    pub first_byte: u8,
    pub version: Version,
    /// v1 numbering: 0 Initial, 1 0-RTT, 2 Handshake (Retry is never returned).
    pub packet_type: u8,
    pub dcid: &'a [u8],
    pub scid: &'a [u8],
    /// Where the (protected) packet number starts within `packet`.
    pub pn_offset: usize,
    /// The whole packet: header, packet number, payload and tag, as the Length field delimits it.
    pub packet: &'a [u8],
}

impl LongHeader<'_> {
    pub fn is_initial(&self) -> bool {
        self.packet_type == TYPE_INITIAL
    }
}

/// The first-byte and version checks, cheap enough to run on every new UDP flow.
pub fn peek_version(datagram: &[u8]) -> Option<(u8, u32)> {
    let first = *datagram.first()?;
    // Long header form and the fixed bit (RFC 9000 section 17.2; greasing it is opt-in per
    // connection, so a client's first flight has it set).
    if first & 0xc0 != 0xc0 {
        return None;
    }
    let v = datagram.get(1..5)?;
    Some((first, u32::from_be_bytes([v[0], v[1], v[2], v[3]])))
}

/// Parses the long-header packet at the start of `buf`, which must carry `version`. Returns the
/// packet and the bytes after it (further coalesced packets, or padding).
pub fn parse_long<'a>(buf: &'a [u8], version: &Version) -> Result<(LongHeader<'a>, &'a [u8]), QuicError> {
    let mut r = Reader::new(buf);
    let first = r.u8()?;
    if first & 0x80 == 0 {
        return Err(QuicError::NotLongHeader);
    }
    let wire = r.u32_be()?;
    if wire != version.wire {
        return Err(QuicError::UnknownVersion(wire));
    }
    let packet_type = version.packet_type(first);
    if packet_type == TYPE_RETRY {
        // Retry has no Length field and only servers send it.
        return Err(QuicError::NotInitial);
    }
    let dcid_len = usize::from(r.u8()?);
    if dcid_len > MAX_CID_LEN {
        return Err(QuicError::CidTooLong(dcid_len));
    }
    let dcid = r.bytes(dcid_len)?;
    let scid_len = usize::from(r.u8()?);
    if scid_len > MAX_CID_LEN {
        return Err(QuicError::CidTooLong(scid_len));
    }
    let scid = r.bytes(scid_len)?;
    if packet_type == TYPE_INITIAL {
        let token_len = r.varint_usize()?;
        r.skip(token_len).map_err(|_| QuicError::BadLength)?;
    }
    let length = r.varint_usize()?;
    let pn_offset = r.position();
    if length > r.remaining() {
        return Err(QuicError::BadLength);
    }
    let end = pn_offset + length;
    let packet = buf.get(..end).ok_or(QuicError::BadLength)?;
    let rest = buf.get(end..).unwrap_or(&[]);
    Ok((LongHeader { first_byte: first, version: *version, packet_type, dcid, scid, pn_offset, packet }, rest))
}

/// The long-header packets coalesced in one datagram (RFC 9000 section 12.2), in order. Stops at
/// a short-header packet, at padding, or at the first packet that does not parse.
///
/// One exception to "stops at padding": zero bytes after a packet, followed by a long-header
/// packet of the same version and the same destination connection ID. That is a UDP GSO train
/// seen before the kernel splits it (NFQUEUE with the GSO flag, or a capture on the sending host):
/// several datagrams back to back in one packet, where a sender that pads its datagrams with zeros
/// after the QUIC packet (Firefox does) leaves zeros up to the next datagram's first packet.
/// Requiring the same DCID keeps random bytes after padding from being read as a packet.
pub fn coalesced<'a>(datagram: &'a [u8], version: &Version) -> impl Iterator<Item = LongHeader<'a>> + 'a {
    let version = *version;
    let mut rest = datagram;
    let mut last_dcid: Option<&'a [u8]> = None;
    std::iter::from_fn(move || {
        let mut after_padding = false;
        if let Some(dcid) = last_dcid {
            let zeros = rest.iter().take_while(|&&b| b == 0).count();
            if zeros > 0 {
                rest = rest.get(zeros..).unwrap_or_default();
                after_padding = true;
            }
            if after_padding && rest.get(6..6 + dcid.len()).is_none_or(|d| d != dcid) {
                rest = &[];
                return None;
            }
        }
        if !matches!(rest.first(), Some(b) if b & 0xc0 == 0xc0) {
            return None;
        }
        match parse_long(rest, &version) {
            Ok((packet, after)) if !after_padding || Some(packet.dcid) == last_dcid => {
                rest = after;
                last_dcid = Some(packet.dcid);
                Some(packet)
            }
            _ => {
                rest = &[];
                None
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::version::{V1, V2};
    use super::*;

    #[test]
    fn parses_the_rfc9001_header() {
        let pkt = include_bytes!("../../../tests/fixtures/quic/rfc9001_a2_client_initial.bin");
        let (h, rest) = parse_long(pkt, &Version::lookup(V1).unwrap()).unwrap();
        assert!(h.is_initial());
        assert_eq!(h.dcid, [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08]);
        assert!(h.scid.is_empty());
        assert_eq!(h.pn_offset, 18);
        assert_eq!(h.packet.len(), 1200);
        assert!(rest.is_empty());
        // A v1 packet is not a v2 packet.
        assert!(parse_long(pkt, &Version::lookup(V2).unwrap()).is_err());
    }

    #[test]
    fn length_beyond_datagram_is_rejected() {
        let pkt = include_bytes!("../../../tests/fixtures/quic/rfc9001_a2_client_initial.bin");
        let v1 = Version::lookup(V1).unwrap();
        assert_eq!(parse_long(&pkt[..1199], &v1), Err(QuicError::BadLength));
        assert_eq!(coalesced(&pkt[..1199], &v1).count(), 0);
        let mut two = pkt.to_vec();
        two.extend_from_slice(pkt);
        two.extend_from_slice(&[0u8; 40]);
        assert_eq!(coalesced(&two, &v1).count(), 2);
    }

    #[test]
    fn a_gso_train_of_zero_padded_datagrams_yields_each_packet() {
        let pkt = include_bytes!("../../../tests/fixtures/quic/rfc9001_a2_client_initial.bin");
        let v1 = Version::lookup(V1).unwrap();
        // Two datagrams of 1252 bytes, each a 1200-byte Initial then zeros (as Firefox pads).
        let mut train = pkt.to_vec();
        train.resize(1252, 0);
        train.extend_from_slice(pkt);
        train.resize(2504, 0);
        assert_eq!(coalesced(&train, &v1).count(), 2);
        // After zeros, a packet for another connection is not taken.
        let mut other = pkt.to_vec();
        other[6] ^= 0xff; // first DCID byte
        let mut mixed = pkt.to_vec();
        mixed.resize(1252, 0);
        mixed.extend_from_slice(&other);
        assert_eq!(coalesced(&mixed, &v1).count(), 1);
        // Zeros only, or zeros then garbage: just the first packet.
        let mut tail = pkt.to_vec();
        tail.extend_from_slice(&[0, 0, 0, 0xc3, 0, 0, 0]);
        assert_eq!(coalesced(&tail, &v1).count(), 1);
        // A datagram starting with zeros is not walked at all.
        let mut lead = vec![0u8; 10];
        lead.extend_from_slice(pkt);
        assert_eq!(coalesced(&lead, &v1).count(), 0);
    }
}
