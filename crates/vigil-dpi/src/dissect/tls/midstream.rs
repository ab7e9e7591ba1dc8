//! TLS picked up mid-stream: recognised from its record framing alone, when the handshake was
//! never seen (vigil started or restarted on a busy gateway, a capture began mid-connection).
//! Only for flows without a SYN (either way) whose first payload was not a ClientHello: a flow
//! whose start was seen must show a handshake, as before.
//!
//! After the handshake a TLS connection is a sequence of records, back to back in each direction
//! (RFC 5246 §6.2, RFC 8446 §5.1): a 5-byte header (content type, legacy version, 16-bit length)
//! then that many bytes of protected data. The evidence here is that the length fields add up: a
//! record is *complete* when its header was read and the bytes that follow it, `length` bytes
//! later, are the end of a segment or another valid header. A flow is TLS once two complete
//! records were seen, in either direction: two segments that are each exactly one record, one
//! segment holding two chained records, or a record spanning segments followed by the next one.
//! Until then the dissector answers `NeedMore`, for at most [`PATIENCE`] payload packets
//! (retransmissions included), and `NotMine` as soon as a header is wrong.
//!
//! What a header must hold to count:
//! * content type 20..=23 (change_cipher_spec, alert, handshake, application_data); 24
//!   (heartbeat, RFC 6520) is left out: rare, and mostly disabled since 2014;
//! * version 0x0301..=0x0303, the same in every record of the flow (records after the hello
//!   exchange carry the negotiated version; TLS 1.3 freezes it at 0x0303). 0x0300 (SSL 3.0) is
//!   prohibited (RFC 7568), and `03 00` is a common byte pair in other framings (TPKT, used by
//!   RDP and ISO-TSAP, starts `03 00`); DTLS (0xfeff, 0xfefd) has another header and runs over
//!   UDP, where the DTLS dissector reads it;
//! * length 1..=2^14+2048: a protected record is never empty (it carries at least a MAC or an
//!   AEAD tag; a change_cipher_spec or alert body is 1 or 2 bytes), and none is longer.
//!
//! Segmentation: each direction remembers the sequence number where the next record header is
//! due. A segment that only starts a long record leaves that position ahead; segments inside the
//! record are skipped; the one holding the position is read from there. A retransmission lies
//! before the position and is skipped, so it never counts twice. A segment that begins past the
//! position (a segment missed) or that ends inside a header puts that direction out of step: it
//! gives no more evidence, for or against. A direction's first segment must begin with a header,
//! so a flow picked up in the middle of a long record is not recognised (it keeps its port guess).
//!
//! False positives: for bytes from another protocol to pass, two length fields must each land
//! exactly on a segment end or on another header, and every header must carry a type in 20..=23,
//! a `03` byte and one fixed minor version: for random bytes, below 2^-55 per flow (a header
//! passes with odds of about 2^-20, a length lands exactly with 2^-16). The residual risk is
//! protocols whose own framing happens to be a type byte 20..=23, `03 01`..`03 03` and a
//! big-endian length of what follows; none of the corpus' protocols is one. Protocols that disguise themselves as TLS records (fake-TLS
//! proxies, obfuscation transports) are named TLS, which is what their bytes are at this layer;
//! protocols that carry TLS after a clear-text start (STARTTLS in SMTP/IMAP/POP3/LDAP/XMPP, RDP's
//! TLS security layer, PostgreSQL's SSLRequest) are named TLS when only their TLS part was seen,
//! instead of the outer protocol a port guess would have given.
//!
//! State is a few integers per flow; nothing is buffered, so hostile lengths cost nothing.

use super::{CT_HANDSHAKE, MAX_RECORD};
use crate::view::Dir;

/// Complete records that identify the flow.
const EVIDENCE: u8 = 2;
/// Payload packets after which a flow still short of evidence is given up on.
const PATIENCE: u8 = 8;

/// A record header: content type, the version's minor byte and the body length; `None` when the
/// bytes cannot begin a record (see the module documentation for the ranges).
fn record_header(h: &[u8]) -> Option<(u8, u8, usize)> {
    let &[ty @ 20..=23, 3, minor @ 1..=3, hi, lo, ..] = h else { return None };
    let len = usize::from(hi) << 8 | usize::from(lo);
    (1..=MAX_RECORD).contains(&len).then_some((ty, minor, len))
}

/// Can these first 1-4 bytes of a header begin a record of version `minor` (when known)?
fn header_prefix_ok(p: &[u8], minor: Option<u8>) -> bool {
    let shape = matches!(*p, [20..=23] | [20..=23, 3] | [20..=23, 3, 1..=3, ..]);
    shape && !matches!((p.get(2), minor), (Some(&m), Some(v)) if m != v)
}

/// Record framing of one direction.
#[derive(Debug, Clone, Copy, Default)]
struct Framing {
    /// Sequence number where the next record header is due, once a segment was read.
    next: Option<u32>,
    /// A record's header was read and its end (`next`) has not arrived yet.
    open: bool,
    /// Out of step (a segment missed, or a header split between segments): no more evidence from
    /// this direction, for or against.
    lost: bool,
}

/// What the framing seen so far says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// TLS: enough complete records. Carries the negotiated version's minor byte when the
    /// records tell it: outside the handshake (no handshake record seen), records carry the
    /// negotiated version (RFC 5246 §6.2.1), except that TLS 1.3 writes 0x0303 too (RFC 8446
    /// §5.1), so only 1 (TLS 1.0) and 2 (TLS 1.1) are given.
    Tls(Option<u8>),
    /// Consistent so far, not enough evidence yet.
    Maybe,
    /// Not TLS record framing, or no evidence within the patience.
    NotTls,
}

/// What the records of both directions have in common.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    /// The version's minor byte, the same in every record of the flow.
    version: Option<u8>,
    /// A handshake record was read: its version need not be the negotiated one (a server may
    /// echo the ClientHello's record version in its hello).
    handshake: bool,
}

/// Mid-stream record framing state of one flow (both directions).
#[derive(Debug, Clone, Default)]
pub(super) struct MidStream {
    dirs: [Framing; 2],
    seen: Seen,
    /// Complete records so far.
    records: u8,
    /// Payload packets read.
    payloads: u8,
}

impl MidStream {
    /// Reads one payload-bearing segment.
    pub(super) fn on_payload(&mut self, dir: Dir, seq: u32, payload: &[u8]) -> Verdict {
        self.payloads = self.payloads.saturating_add(1);
        let Some(framing) = self.dirs.get_mut(dir.index()) else { return Verdict::NotTls };
        match framing.read(seq, payload, &mut self.seen) {
            Some(n) => self.records = self.records.saturating_add(n),
            None => return Verdict::NotTls,
        }
        match self.seen.version {
            Some(minor) if self.records >= EVIDENCE => {
                Verdict::Tls(Some(minor).filter(|&m| m < 3 && !self.seen.handshake))
            }
            _ if self.payloads >= PATIENCE || self.dirs.iter().all(|d| d.lost) => Verdict::NotTls,
            _ => Verdict::Maybe,
        }
    }
}

impl Framing {
    /// Reads a segment: the number of records it completed, `None` if it breaks the framing.
    fn read(&mut self, seq: u32, payload: &[u8], seen: &mut Seen) -> Option<u8> {
        if self.lost || payload.is_empty() {
            return Some(0);
        }
        let start = match self.next {
            None => 0,
            Some(next) => {
                // Distance from this segment's first byte to the due header, wrapping.
                let ahead = next.wrapping_sub(seq) as i32;
                if ahead < 0 {
                    self.lost = true; // the segment holding the boundary was missed
                    return Some(0);
                }
                let ahead = ahead.unsigned_abs() as usize;
                if ahead > payload.len() {
                    return Some(0); // inside the open record, or a retransmission
                }
                ahead
            }
        };
        // The boundary lies in this segment (or at its end): the open record is complete, unless
        // what follows it breaks the framing (then nothing counts anyway).
        let mut records = u8::from(std::mem::take(&mut self.open));
        let mut rest = payload.get(start..)?;
        let mut pos = seq.wrapping_add(start as u32);
        loop {
            if rest.is_empty() {
                self.next = Some(pos);
                return Some(records);
            }
            let Some((ty, minor, len)) = record_header(rest) else {
                if rest.len() < 5 && header_prefix_ok(rest, seen.version) {
                    self.lost = true; // the header continues in the next segment
                    return Some(records);
                }
                return None;
            };
            if *seen.version.get_or_insert(minor) != minor {
                return None;
            }
            seen.handshake |= ty == CT_HANDSHAKE;
            let total = 5 + len;
            pos = pos.wrapping_add(total as u32);
            match rest.get(total..) {
                Some(after) => {
                    records = records.saturating_add(1);
                    rest = after;
                }
                None => {
                    self.next = Some(pos);
                    self.open = true;
                    return Some(records);
                }
            }
        }
    }
}
