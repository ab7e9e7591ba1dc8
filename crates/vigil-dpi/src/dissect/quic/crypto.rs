//! Initial packet protection (RFC 9001 section 5): keys from the client's first Destination
//! Connection ID, header protection with AES-ECB, payload protection with AES-128-GCM.
//!
//! Anyone on the path can compute these keys; that is the point of Initial protection (it
//! defends against off-path tampering only), and it is what lets a firewall read the SNI.

use super::version::Version;
use super::QuicError;
use aes::cipher::{BlockEncrypt, KeyInit};
use aes::Aes128;
use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes128Gcm, Nonce, Tag};
use hkdf::Hkdf;
use sha2::Sha256;

const TAG_LEN: usize = 16;
const SAMPLE_LEN: usize = 16;

/// One direction's Initial keys.
#[derive(Clone)]
pub struct InitialKeys {
    aead: Aes128Gcm,
    iv: [u8; 12],
    hp: Aes128,
}

impl std::fmt::Debug for InitialKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InitialKeys(..)")
    }
}

/// The raw key material, exposed for the RFC test vectors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMaterial {
    pub secret: [u8; 32],
    pub key: [u8; 16],
    pub iv: [u8; 12],
    pub hp: [u8; 16],
}

/// HKDF-Expand-Label (RFC 8446 section 7.1) with an empty context.
fn expand_label(prk: &Hkdf<Sha256>, label: &[u8], out: &mut [u8]) -> Result<(), QuicError> {
    const PREFIX: &[u8] = b"tls13 ";
    let out_len = u16::try_from(out.len()).map_err(|_| QuicError::Kdf)?;
    let label_len = u8::try_from(PREFIX.len() + label.len()).map_err(|_| QuicError::Kdf)?;
    let mut info = Vec::with_capacity(4 + usize::from(label_len));
    info.extend_from_slice(&out_len.to_be_bytes());
    info.push(label_len);
    info.extend_from_slice(PREFIX);
    info.extend_from_slice(label);
    info.push(0);
    prk.expand(&info, out).map_err(|_| QuicError::Kdf)
}

/// Derives the client's Initial key material for `version` from the client's first DCID.
pub fn client_key_material(version: &Version, dcid: &[u8]) -> Result<KeyMaterial, QuicError> {
    let (_, initial) = Hkdf::<Sha256>::extract(Some(version.salt), dcid);
    let mut secret = [0u8; 32];
    expand_label(&initial, b"client in", &mut secret)?;
    let client = Hkdf::<Sha256>::from_prk(&secret).map_err(|_| QuicError::Kdf)?;
    let (key_label, iv_label, hp_label): (&[u8], &[u8], &[u8]) = if version.v2_labels {
        (b"quicv2 key", b"quicv2 iv", b"quicv2 hp")
    } else {
        (b"quic key", b"quic iv", b"quic hp")
    };
    let mut m = KeyMaterial { secret, key: [0; 16], iv: [0; 12], hp: [0; 16] };
    expand_label(&client, key_label, &mut m.key)?;
    expand_label(&client, iv_label, &mut m.iv)?;
    expand_label(&client, hp_label, &mut m.hp)?;
    Ok(m)
}

impl InitialKeys {
    pub fn client(version: &Version, dcid: &[u8]) -> Result<Self, QuicError> {
        Ok(Self::from_material(&client_key_material(version, dcid)?))
    }

    pub fn from_material(m: &KeyMaterial) -> Self {
        InitialKeys { aead: Aes128Gcm::new(&m.key.into()), iv: m.iv, hp: Aes128::new(&m.hp.into()) }
    }

    /// The 5-byte header protection mask for a 16-byte sample (RFC 9001 section 5.4.3).
    fn mask(&self, sample: &[u8; SAMPLE_LEN]) -> [u8; 5] {
        let mut block = (*sample).into();
        self.hp.encrypt_block(&mut block);
        [block[0], block[1], block[2], block[3], block[4]]
    }

    fn nonce(&self, pn: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, p) in nonce[4..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        nonce
    }

    /// Removes header and payload protection from one long-header packet.
    ///
    /// `packet` spans exactly the packet (header through the AEAD tag, as the Length field says);
    /// `pn_offset` is where the packet number starts. Returns the plaintext frames and the packet
    /// number. Fails on anything that does not authenticate, so a success proves the keys (and so
    /// the version and DCID) were right.
    pub fn open(&self, packet: &[u8], pn_offset: usize) -> Result<Opened, QuicError> {
        // The sample assumes a 4-byte packet number, whatever the real length.
        let sample_at = pn_offset.checked_add(4).ok_or(QuicError::BadLength)?;
        let sample: &[u8; SAMPLE_LEN] = packet
            .get(sample_at..sample_at + SAMPLE_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(QuicError::ShortSample)?;
        let mask = self.mask(sample);
        let first = packet.first().ok_or(QuicError::Truncated)? ^ (mask[0] & 0x0f);
        let pn_len = usize::from(first & 0x03) + 1;
        let (head, rest) = packet.split_at_checked(pn_offset + pn_len).ok_or(QuicError::BadLength)?;
        let body_len = rest.len().checked_sub(TAG_LEN).ok_or(QuicError::BadLength)?;
        let (body, tag) = rest.split_at_checked(body_len).ok_or(QuicError::BadLength)?;
        // The AEAD's associated data is the header with protection removed.
        let mut header = head.to_vec();
        if let Some(b) = header.first_mut() {
            *b = first;
        }
        let mut pn = 0u64;
        for (b, m) in header.iter_mut().skip(pn_offset).zip(&mask[1..]) {
            *b ^= m;
            pn = (pn << 8) | u64::from(*b);
        }
        let mut plain = body.to_vec();
        let nonce = self.nonce(pn);
        self.aead
            .decrypt_in_place_detached(Nonce::from_slice(&nonce), &header, &mut plain, Tag::from_slice(tag))
            .map_err(|_| QuicError::Decrypt)?;
        // Reserved bits must be zero once unmasked (RFC 9000 section 17.2); after a successful
        // AEAD open this only flags a broken peer, so it is not checked.
        Ok(Opened { first_byte: first, packet_number: pn, frames: plain })
    }

    /// Applies packet and header protection: the inverse of [`InitialKeys::open`], for tests.
    #[cfg(test)]
    pub fn seal(&self, header: &[u8], pn_offset: usize, payload: &[u8]) -> Vec<u8> {
        let pn_len = usize::from(header[0] & 0x03) + 1;
        let pn = header[pn_offset..pn_offset + pn_len].iter().fold(0u64, |a, &b| (a << 8) | u64::from(b));
        let mut body = payload.to_vec();
        let tag = self.aead.encrypt_in_place_detached(Nonce::from_slice(&self.nonce(pn)), header, &mut body).unwrap();
        let mut out = header.to_vec();
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag);
        let sample: [u8; 16] = out[pn_offset + 4..pn_offset + 20].try_into().unwrap();
        let mask = self.mask(&sample);
        out[0] ^= mask[0] & 0x0f;
        for i in 0..pn_len {
            out[pn_offset + i] ^= mask[1 + i];
        }
        out
    }
}

/// A decrypted packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// First byte with header protection removed.
    pub first_byte: u8,
    /// Truncated packet number as sent (Initial packet numbers are small; no reconstruction).
    pub packet_number: u64,
    pub frames: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::super::version::{Version, V1, V2};
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    const DCID: &str = "8394c8f03e515708";

    /// RFC 9001 Appendix A.1.
    #[test]
    fn rfc9001_client_initial_keys() {
        let m = client_key_material(&Version::lookup(V1).unwrap(), &unhex(DCID)).unwrap();
        assert_eq!(m.secret.to_vec(), unhex("c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"));
        assert_eq!(m.key.to_vec(), unhex("1f369613dd76d5467730efcbe3b1a22d"));
        assert_eq!(m.iv.to_vec(), unhex("fa044b2f42a3fd3b46fb255c"));
        assert_eq!(m.hp.to_vec(), unhex("9f50449e04a0e810283a1e9933adedd2"));
    }

    /// RFC 9369 Appendix A.1.
    #[test]
    fn rfc9369_client_initial_keys() {
        let m = client_key_material(&Version::lookup(V2).unwrap(), &unhex(DCID)).unwrap();
        assert_eq!(m.secret.to_vec(), unhex("14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b"));
        assert_eq!(m.key.to_vec(), unhex("8b1a0bc121284290a29e0971b5cd045d"));
        assert_eq!(m.iv.to_vec(), unhex("91f73e2351d8fa91660e909f"));
        assert_eq!(m.hp.to_vec(), unhex("45b95e15235d6f45a6b19cbcb0294ba9"));
    }

    /// RFC 9001 A.2 and RFC 9369 A.2: the header-protection mask and the sealed packet's prefix.
    #[test]
    fn mask_and_seal_match_appendix_a2() {
        let crypto = unhex(
            "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
             04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
             616d706c652e636f6dff01000100000a00080006001d00170018001000070005
             04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
             baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
             0d0010000e0403050306030203080408050806002d00020101001c0002400100
             3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
             75300901100f088394c8f03e51570806048000ffff",
        );
        let mut payload = crypto.clone();
        payload.resize(1162, 0);
        for (wire, header, sample, mask, prefix) in [
            (
                V1,
                "c300000001088394c8f03e5157080000449e00000002",
                "d1b1c98dd7689fb8ec11d242b123dc9b",
                "437b9aec36",
                "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11",
            ),
            (
                V2,
                "d36b3343cf088394c8f03e5157080000449e00000002",
                "ffe67b6abcdb4298b485dd04de806071",
                "94a0c95e80",
                "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485",
            ),
        ] {
            let keys = InitialKeys::client(&Version::lookup(wire).unwrap(), &unhex(DCID)).unwrap();
            let sample: [u8; 16] = unhex(sample).try_into().unwrap();
            assert_eq!(keys.mask(&sample).to_vec(), unhex(mask));
            let sealed = keys.seal(&unhex(header), 18, &payload);
            assert_eq!(sealed.len(), 1200);
            assert_eq!(sealed[..32], unhex(prefix)[..]);
            let opened = keys.open(&sealed, 18).unwrap();
            assert_eq!(opened.packet_number, 2);
            assert_eq!(opened.frames, payload);
        }
    }

    #[test]
    fn wrong_key_or_tampering_fails_to_open() {
        let v1 = Version::lookup(V1).unwrap();
        let keys = InitialKeys::client(&v1, &unhex(DCID)).unwrap();
        let sealed = keys.seal(&unhex("c300000001088394c8f03e5157080000449e00000002"), 18, &[0u8; 1162]);
        let other = InitialKeys::client(&v1, b"another dcid").unwrap();
        assert_eq!(other.open(&sealed, 18), Err(QuicError::Decrypt));
        let mut bad = sealed.clone();
        bad[100] ^= 1;
        assert_eq!(keys.open(&bad, 18), Err(QuicError::Decrypt));
        assert_eq!(keys.open(&sealed[..30], 18), Err(QuicError::ShortSample));
        assert_eq!(keys.open(&sealed[..37], 18), Err(QuicError::ShortSample));
        // Sample present but no ciphertext: only the tag check can fail.
        assert_eq!(keys.open(&sealed[..38], 18), Err(QuicError::Decrypt));
    }
}
