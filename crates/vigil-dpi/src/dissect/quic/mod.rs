//! QUIC: client Initial decryption (v1 RFC 9001, v2 RFC 9369, drafts 22-34, mvfst, Google
//! Q050/T050/T051), CRYPTO reassembly across packets and datagrams, the ClientHello handed to the
//! TLS parser; Google QUIC Q024-Q046 cleartext CHLO (SNI, UAID).
//!
//! QUIC is the first UDP candidate, so rejecting other traffic is the hot path: a datagram must
//! pass the first-byte, version and length checks before any key is derived, and only an
//! authenticated Initial identifies the flow.
//!
//! Per flow: the first client datagram decides. After identification later client Initials feed
//! the CRYPTO stream (Chrome spreads its ClientHello over several packets and datagrams and
//! shuffles the CRYPTO frames) until the ClientHello is complete or the budget is spent. Server
//! packets carry nothing needed here (the ServerHello only confirms the ALPN) and are ignored.

mod crypto;
mod frames;
mod gquic;
mod packet;
mod reader;
mod version;

#[cfg(test)]
mod tests;

pub use crypto::{client_key_material, InitialKeys, KeyMaterial, Opened};
pub use frames::{crypto_fragments, CryptoFragment, CryptoStream, CRYPTO_CAP};
pub use gquic::{parse_chlo, parse_legacy, Chlo, LegacyInitial};
pub use packet::{coalesced, parse_long, LongHeader};
pub use version::{Framing, Handshake, Version};

use super::tls::{apply_client_hello, parse_client_hello, Transport};
use super::{Dissector, Step};
use crate::facts::{Facts, NameSource};
use crate::view::{Dir, PacketView};

/// Why a datagram or packet was not usable. Never escapes the dissector as a panic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QuicError {
    #[error("truncated")]
    Truncated,
    #[error("not a long-header packet")]
    NotLongHeader,
    #[error("unknown or unsupported version {0:#010x}")]
    UnknownVersion(u32),
    #[error("not a client Initial packet")]
    NotInitial,
    #[error("connection id of {0} bytes exceeds 20")]
    CidTooLong(usize),
    #[error("length field exceeds the datagram")]
    BadLength,
    #[error("packet too short for the header protection sample")]
    ShortSample,
    #[error("packet does not authenticate with the Initial keys")]
    Decrypt,
    #[error("key derivation failed")]
    Kdf,
    #[error("frame type {0:#04x} not expected in an Initial")]
    UnexpectedFrame(u8),
    #[error("malformed field")]
    Malformed,
    #[error("CRYPTO data beyond the reassembly cap")]
    CryptoTooLarge,
    #[error("CRYPTO data in too many pieces")]
    CryptoTooFragmented,
    #[error("the handshake stream does not start with a ClientHello")]
    NotClientHello,
}

/// Client Initial packets opened without completing the ClientHello before giving up.
const MAX_CLIENT_INITIALS: u8 = 6;
/// Datagrams (either direction) after identification before giving up.
const MAX_DATAGRAMS: u8 = 16;
/// Client long-header datagrams without an Initial tolerated before the first Initial.
const MAX_EARLY_DATAGRAMS: u8 = 3;
/// Longest user agent kept from a CHLO.
const MAX_UA: usize = 512;

/// QUIC dissector state for one flow.
#[derive(Debug, Default)]
pub struct Quic {
    state: State,
}

#[derive(Debug, Default)]
enum State {
    /// No client Initial yet; counts the client's 0-RTT/Handshake datagrams that came first
    /// (reordered on the path, or captured out of order).
    #[default]
    Start,
    Waiting(u8),
    /// Identified; collecting the handshake stream.
    Collecting(Box<Collect>),
    /// Nothing more to learn.
    Finished,
}

/// What a flow collects after identification.
#[derive(Debug)]
struct Collect {
    source: Source,
    stream: CryptoStream,
    handshake: Handshake,
    /// Client Initials that contributed (IETF) or client packets (legacy gQUIC).
    client_packets: u8,
    datagrams: u8,
}

// The keys dwarf the legacy variant; `Collect` is boxed once per identified flow, so no more boxing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Source {
    /// Protected Initials: the keys from the client's first DCID.
    Protected { version: Version, dcid: Vec<u8>, keys: InitialKeys, other: Option<(Vec<u8>, InitialKeys)> },
    /// Google QUIC with a cleartext CHLO.
    Legacy { version: u32 },
}

impl Dissector for Quic {
    fn name(&self) -> &'static str {
        "quic"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        match &mut self.state {
            State::Start | State::Waiting(_) => {
                let waited = match self.state {
                    State::Waiting(n) => n,
                    _ => 0,
                };
                if pkt.dir != Dir::ToServer {
                    // QUIC clients speak first; a server answer means the Initial was missed.
                    return Step::NotMine;
                }
                match start(pkt.payload) {
                    Start::Initial(mut c) => {
                        facts.protocol = Some("QUIC");
                        let step = c.progress(facts);
                        self.state = if step == Step::Done { State::Finished } else { State::Collecting(c) };
                        step
                    }
                    Start::LongHeader if waited < MAX_EARLY_DATAGRAMS => {
                        self.state = State::Waiting(waited + 1);
                        Step::NeedMore
                    }
                    Start::LongHeader | Start::No => Step::NotMine,
                }
            }
            State::Collecting(c) => {
                let step = c.on_datagram(pkt, facts);
                if step == Step::Done {
                    self.state = State::Finished;
                }
                step
            }
            State::Finished => Step::Done,
        }
    }
}

/// What a client datagram before identification turned out to be.
enum Start {
    /// An authenticated Initial (or a cleartext CHLO).
    Initial(Box<Collect>),
    /// A well-formed long-header packet of a known version that is not an Initial (0-RTT or
    /// Handshake): the Initial may still come.
    LongHeader,
    No,
}

/// Tries to open a flow's first client datagram.
fn start(datagram: &[u8]) -> Start {
    if let Some((_, wire)) = packet::peek_version(datagram) {
        if let Some(version) = Version::lookup(wire) {
            return match start_protected(datagram, version) {
                Some(c) => Start::Initial(c),
                None if coalesced(datagram, &version).next().is_some_and(|p| !p.is_initial() && p.dcid.len() >= 8) => {
                    Start::LongHeader
                }
                None => Start::No,
            };
        }
    }
    start_legacy(datagram).map_or(Start::No, Start::Initial)
}

fn start_legacy(datagram: &[u8]) -> Option<Box<Collect>> {
    let legacy = parse_legacy(datagram).ok()?;
    // The first packet starts the CHLO; anything else on stream 1 is not what we took it for.
    if legacy.offset != 0 || legacy.data.len() < 4 || gquic::chlo_len(legacy.data).is_err() {
        return None;
    }
    let mut c = Collect {
        source: Source::Legacy { version: legacy.version },
        stream: CryptoStream::default(),
        handshake: Handshake::Chlo,
        client_packets: 1,
        datagrams: 0,
    };
    c.stream.insert(legacy.offset, legacy.data).ok()?;
    Some(Box::new(c))
}

fn start_protected(datagram: &[u8], version: Version) -> Option<Box<Collect>> {
    let (first, _) = parse_long(datagram, &version).ok()?;
    // RFC 9000 section 7.2: a client's first DCID is at least 8 bytes (any DCID is accepted
    // later, but 1..=7 on a first packet is not a client Initial).
    if !first.is_initial() || first.dcid.len() < 8 {
        return None;
    }
    let keys = InitialKeys::client(&version, first.dcid).ok()?;
    // Authenticate before trusting anything: this is the only expensive step.
    keys.open(first.packet, first.pn_offset).ok()?;
    let mut c = Collect {
        source: Source::Protected { version, dcid: first.dcid.to_vec(), keys, other: None },
        stream: CryptoStream::default(),
        handshake: version.handshake,
        client_packets: 0,
        datagrams: 0,
    };
    c.absorb(datagram);
    Some(Box::new(c))
}

impl Collect {
    fn on_datagram(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        self.datagrams = self.datagrams.saturating_add(1);
        if pkt.dir == Dir::ToServer {
            let before = self.client_packets;
            match self.source {
                Source::Protected { .. } => self.absorb(pkt.payload),
                Source::Legacy { .. } => self.absorb_legacy(pkt.payload),
            }
            if self.client_packets == before {
                // The client moved past its Initials (Handshake, 1-RTT): no more ClientHello.
                return Step::Done;
            }
        }
        if self.datagrams >= MAX_DATAGRAMS {
            return Step::Done;
        }
        self.progress(facts)
    }

    /// Feeds every client Initial coalesced in `datagram` into the stream.
    fn absorb(&mut self, datagram: &[u8]) {
        let Source::Protected { version, dcid, keys, other } = &mut self.source else { return };
        let Some((_, wire)) = packet::peek_version(datagram) else { return };
        if wire != version.wire {
            return;
        }
        for p in coalesced(datagram, version).filter(LongHeader::is_initial) {
            let opened = if p.dcid == dcid.as_slice() {
                keys.open(p.packet, p.pn_offset)
            } else {
                // After a Retry the client derives new keys from the server-chosen DCID.
                if !matches!(other, Some((d, _)) if d.as_slice() == p.dcid) {
                    *other = InitialKeys::client(version, p.dcid).ok().map(|k| (p.dcid.to_vec(), k));
                }
                match other {
                    Some((_, k)) => k.open(p.packet, p.pn_offset),
                    None => Err(QuicError::Kdf),
                }
            };
            let Ok(opened) = opened else { continue };
            self.client_packets = self.client_packets.saturating_add(1);
            let (frags, _) = crypto_fragments(&opened.frames, version.framing);
            for f in frags {
                // Over the cap: keep what arrived; progress() decides whether it suffices.
                let _ = self.stream.insert(f.offset, f.data);
            }
        }
    }

    fn absorb_legacy(&mut self, datagram: &[u8]) {
        let Source::Legacy { version } = self.source else { return };
        if let Ok(p) = parse_legacy(datagram) {
            if p.version == version {
                self.client_packets = self.client_packets.saturating_add(1);
                let _ = self.stream.insert(p.offset, p.data);
            }
        }
    }

    /// Parses the handshake if complete: `Done` when parsed or hopeless, else `Identified`.
    fn progress(&mut self, facts: &mut Facts) -> Step {
        let head = self.stream.contiguous();
        let finished = match self.handshake {
            Handshake::Tls => match frames::tls_client_hello(head) {
                Ok(Some(hello)) => {
                    if let Ok(ch) = parse_client_hello(hello) {
                        apply_client_hello(&ch, Transport::Quic, facts);
                    }
                    true
                }
                Ok(None) => false,
                Err(_) => true,
            },
            Handshake::Chlo => match gquic::chlo_len(head) {
                Ok(Some(len)) if len > CRYPTO_CAP => true,
                Ok(Some(len)) => match head.get(..len) {
                    Some(msg) => {
                        if let Ok(chlo) = parse_chlo(msg) {
                            apply_chlo(&chlo, facts);
                        }
                        true
                    }
                    None => false,
                },
                Ok(None) => false,
                Err(_) => true,
            },
        };
        if finished || self.client_packets >= MAX_CLIENT_INITIALS {
            Step::Done
        } else {
            Step::Identified
        }
    }
}

/// Fills a CHLO's SNI and user agent.
fn apply_chlo(chlo: &Chlo<'_>, facts: &mut Facts) {
    if let Some(sni) = chlo.sni.and_then(|s| std::str::from_utf8(s).ok()) {
        if sni.bytes().all(|b| b.is_ascii_graphic()) {
            facts.set_hostname(sni, NameSource::Sni);
        }
    }
    if let Some(ua) = chlo.user_agent {
        let ua = String::from_utf8_lossy(ua.get(..MAX_UA).unwrap_or(ua));
        let ua = ua.trim();
        if !ua.is_empty() {
            facts.user_agent = Some(ua.to_owned());
        }
    }
}
