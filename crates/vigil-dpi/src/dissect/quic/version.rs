//! The QUIC versions whose client Initial we can open: which salt, which HKDF labels, which
//! long-header type bits mean "Initial", and how the decrypted payload is framed.

/// Wire values of the versions with special handling.
pub const V1: u32 = 0x0000_0001;
pub const V2: u32 = 0x6b33_43cf;
pub const MVFST_22: u32 = 0xface_b001;
pub const MVFST_27: u32 = 0xface_b002;
pub const MVFST_EXP: u32 = 0xface_b00e;
pub const Q050: u32 = 0x5130_3530;
pub const T050: u32 = 0x5430_3530;
pub const T051: u32 = 0x5430_3531;

/// draft-ietf-quic-tls-22 (and mvfst "draft-22").
const SALT_DRAFT_22: [u8; 20] = hex20(b"7fbcdb0e7c66bbe9193a96cd21519ebd7a02644a");
/// draft-ietf-quic-tls-23 through -28 (and mvfst "draft-27").
const SALT_DRAFT_23: [u8; 20] = hex20(b"c3eef712c72ebb5a11a7d2432bb46365bef9f502");
/// draft-ietf-quic-tls-29 through -32.
const SALT_DRAFT_29: [u8; 20] = hex20(b"afbfec289993d24c9e9786f19c6111e04390a899");
/// RFC 9001 section 5.2; drafts 33 and 34 already used it.
const SALT_V1: [u8; 20] = hex20(b"38762cf7f55934b34d179ae6a4c80cadccbb7f0a");
/// RFC 9369 section 3.3.1.
const SALT_V2: [u8; 20] = hex20(b"0dede3def700a6db819381be6e269dcbf9bd2ed9");
/// Chromium's Q050/T050/T051 salts (quic_version_utils / Wireshark packet-quic.c).
const SALT_Q050: [u8; 20] = hex20(b"504574efd066fe2f9d945cfcdbd3a7f0d3b56b45");
const SALT_T050: [u8; 20] = hex20(b"7ff579e5acd072915580304c43a2367c60488310");
const SALT_T051: [u8; 20] = hex20(b"7a4edef4e7ccee5fa4506c19124fc8ccda6e033d");

/// Compile-time hex decoding, so salts read as in the specs.
const fn hex20(s: &[u8]) -> [u8; 20] {
    let mut out = [0u8; 20];
    let mut i = 0;
    let mut n = 0;
    while i < s.len() && n < 40 {
        let c = s[i];
        i += 1;
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => continue,
        };
        out[n / 2] |= if n % 2 == 0 { v << 4 } else { v };
        n += 1;
    }
    // Evaluated at compile time only: a mistyped salt fails the build.
    assert!(n == 40, "a salt is 20 bytes");
    out
}

/// How the frames inside a decrypted Initial are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// RFC 9000 frames (CRYPTO = 0x06).
    Ietf,
    /// Google QUIC frames (CRYPTO = 0x08, PING = 0x07), used by Q050 and T05x.
    Google,
}

/// What the CRYPTO stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// A TLS 1.3 ClientHello handshake message.
    Tls,
    /// A Google QUIC crypto handshake "CHLO" tag-value message.
    Chlo,
}

/// Everything version-specific about opening a client Initial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub wire: u32,
    pub salt: &'static [u8; 20],
    /// RFC 9369 labels ("quicv2 key", ...) instead of "quic key".
    pub v2_labels: bool,
    /// Long-header type bits (0x30 of the first byte, shifted down) of an Initial packet.
    pub initial_type: u8,
    pub framing: Framing,
    pub handshake: Handshake,
}

impl Version {
    /// The versions whose Initials are protected with a known salt; `None` for everything else
    /// (including gQUIC Q046 and older, which send their CHLO in the clear: see `gquic`).
    pub fn lookup(wire: u32) -> Option<Version> {
        let ietf = |salt| Version {
            wire,
            salt,
            v2_labels: false,
            initial_type: 0,
            framing: Framing::Ietf,
            handshake: Handshake::Tls,
        };
        Some(match wire {
            V1 => ietf(&SALT_V1),
            V2 => Version { v2_labels: true, initial_type: 0b01, ..ietf(&SALT_V2) },
            MVFST_22 => ietf(&SALT_DRAFT_22),
            MVFST_27 | MVFST_EXP => ietf(&SALT_DRAFT_23),
            Q050 => Version { framing: Framing::Google, handshake: Handshake::Chlo, ..ietf(&SALT_Q050) },
            T050 => Version { framing: Framing::Google, ..ietf(&SALT_T050) },
            T051 => Version { framing: Framing::Google, ..ietf(&SALT_T051) },
            0xff00_0000..=0xff00_00ff => match wire & 0xff {
                22 => ietf(&SALT_DRAFT_22),
                23..=28 => ietf(&SALT_DRAFT_23),
                29..=32 => ietf(&SALT_DRAFT_29),
                33..=34 => ietf(&SALT_V1),
                _ => return None,
            },
            _ => return None,
        })
    }

    /// The long-header packet type of `first_byte`, mapped to v1 numbering (0 Initial, 1 0-RTT,
    /// 2 Handshake, 3 Retry): v2 rotated the type bits.
    pub fn packet_type(&self, first_byte: u8) -> u8 {
        let raw = (first_byte >> 4) & 0x03;
        if self.v2_labels {
            raw.wrapping_sub(1) & 0x03
        } else {
            raw
        }
    }

    pub fn is_initial(&self, first_byte: u8) -> bool {
        (first_byte >> 4) & 0x03 == self.initial_type
    }
}

/// Long-header packet types, v1 numbering.
pub const TYPE_INITIAL: u8 = 0;
pub const TYPE_RETRY: u8 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_decode_as_published() {
        assert_eq!(SALT_V1[..4], [0x38, 0x76, 0x2c, 0xf7]);
        assert_eq!(SALT_V1[19], 0x0a);
        assert_eq!(SALT_T050[..4], [0x7f, 0xf5, 0x79, 0xe5]);
        assert_eq!(SALT_T050[9..12], [0x80, 0x30, 0x4c]);
        assert_eq!(SALT_T050[19], 0x10);
        assert_eq!(SALT_Q050[19], 0x45);
        assert_eq!(SALT_V2[..2], [0x0d, 0xed]);
    }

    #[test]
    fn draft_salts_by_number() {
        assert_eq!(Version::lookup(0xff00_001b).map(|v| v.salt), Some(&SALT_DRAFT_23));
        assert_eq!(Version::lookup(0xff00_001c).map(|v| v.salt), Some(&SALT_DRAFT_23));
        assert_eq!(Version::lookup(0xff00_001d).map(|v| v.salt), Some(&SALT_DRAFT_29));
        assert_eq!(Version::lookup(0xff00_0020).map(|v| v.salt), Some(&SALT_DRAFT_29));
        assert_eq!(Version::lookup(0xff00_0021).map(|v| v.salt), Some(&SALT_V1));
        assert_eq!(Version::lookup(0xff00_0022).map(|v| v.salt), Some(&SALT_V1));
        assert_eq!(Version::lookup(0xff00_0023), None);
        assert_eq!(Version::lookup(0x0a0a_0a0a), None);
    }

    #[test]
    fn v2_type_bits() {
        let v2 = Version::lookup(V2).unwrap();
        assert!(v2.is_initial(0xd3));
        assert!(!v2.is_initial(0xc3));
        assert_eq!(v2.packet_type(0xd3), TYPE_INITIAL);
        assert_eq!(v2.packet_type(0xc0), TYPE_RETRY);
        let v1 = Version::lookup(V1).unwrap();
        assert!(v1.is_initial(0xc3));
        assert_eq!(v1.packet_type(0xf0), TYPE_RETRY);
    }
}
