//! TLS over TCP: ClientHello reassembled across segments (SNI, ALPN, versions, JA4, ECH),
//! ServerHello (version, ALPN), certificate names and identities (TLS <= 1.2; the client's
//! certificate too when the server asks for one).
//!
//! Each direction's first bytes go through a [`StreamReassembler`]; the records at the front of
//! that stream are unwrapped into the handshake byte stream (a message may span records, a record
//! may hold several messages), and the messages are read from there. Post-quantum key shares and
//! ECH make 2-3 segment ClientHellos the norm, so nothing assumes one packet.
//!
//! A flow picked up mid-stream (no SYN, no hello) is recognised from its record framing instead
//! (`midstream.rs`).

pub mod cert;
pub mod hello;
mod midstream;

pub use self::hello::{
    parse_client_hello, parse_client_hello_with, parse_server_hello, ClientHello, ServerHello, TlsError,
};
pub use crate::ja4::Transport;

use self::hello::{
    Reader, HS_CERTIFICATE, HS_CERTIFICATE_REQUEST, HS_CLIENT_HELLO, HS_SERVER_HELLO, HS_SERVER_HELLO_DONE,
};
use self::midstream::{MidStream, Verdict};
use super::{tor, Dissector, Step};
use crate::facts::{Facts, NameSource};
use crate::reasm::StreamReassembler;
use crate::view::{Dir, PacketView};
use std::borrow::Cow;
use vigil_wire::tcp;

/// Fills what a ClientHello tells (SNI, offered ALPNs, ECH, JA4) into `facts`. Shared by TLS,
/// QUIC and DTLS; `transport` picks JA4's prefix.
pub fn apply_client_hello(ch: &ClientHello<'_>, transport: Transport, facts: &mut Facts) {
    if let Some(name) = ch.server_name {
        facts.set_hostname(name, NameSource::Sni);
    }
    facts.alpn_offered = ch.alpn_protocols().take(16).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    facts.ech |= ch.ech;
    facts.ja4 = Some(crate::ja4::ja4(ch, transport));
    if tor::looks_like_tor(ch) {
        facts.app_hint = Some("Tor");
    }
}

/// Fills the negotiated version and selected ALPN of a ServerHello.
pub fn apply_server_hello(sh: &ServerHello<'_>, facts: &mut Facts) {
    if let Some(name) = hello::version_name(sh.version()) {
        facts.tls_version = Some(name);
    }
    if let Some(alpn) = sh.alpn {
        facts.alpn = Some(String::from_utf8_lossy(alpn).into_owned());
    }
}

/// Content types (RFC 8446 §5.1).
const CT_HANDSHAKE: u8 = 22;
/// Largest record body a peer may send (2^14 plus expansion, RFC 5246 §6.2.3).
const MAX_RECORD: usize = 16384 + 2048;

/// Is this a plausible TLS record header (content type given), version 3.0-3.4?
fn record_header_ok(h: &[u8]) -> bool {
    matches!(h, [20..=24, 3, 0..=4, hi, lo, ..] if usize::from(*hi) << 8 | usize::from(*lo) <= MAX_RECORD)
}

/// The handshake bytes carried by the records at the front of a stream, and whether the handshake
/// records end there (a record of another type or a bad header follows) rather than the data.
/// Borrowed when one record holds it all; a trailing partial record contributes what arrived.
pub(crate) fn handshake_stream(stream: &[u8]) -> (Cow<'_, [u8]>, bool) {
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut rest = stream;
    let mut ended = false;
    while rest.len() >= 5 {
        if !record_header_ok(rest) || rest[0] != CT_HANDSHAKE {
            ended = true;
            break;
        }
        let len = usize::from(rest[3]) << 8 | usize::from(rest[4]);
        let body = &rest[5..];
        let take = len.min(body.len());
        parts.push(&body[..take]);
        rest = &body[take..];
        if take < len {
            break;
        }
    }
    let bytes = match parts.as_slice() {
        [] => Cow::Borrowed(&[][..]),
        [one] => Cow::Borrowed(*one),
        many => Cow::Owned(many.concat()),
    };
    (bytes, ended)
}

/// A handshake message at the front of `hs`: type, declared length and the body bytes present.
fn message(hs: &[u8]) -> Option<(u8, usize, &[u8])> {
    let mut r = Reader::new(hs);
    let ty = r.u8().ok()?;
    let len = r.u24().ok()?;
    let body = r.rest();
    Some((ty, len, body.get(..len).unwrap_or(body)))
}

/// Client side progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Client {
    /// Waiting for the first bytes.
    #[default]
    Start,
    /// A ClientHello is arriving.
    Hello,
    /// The server asked for a client certificate (TLS <= 1.2): the client's second flight should
    /// start with its Certificate message.
    Certificate,
    /// Parsed (or given up on): nothing more from the client.
    Done,
}

/// Server side progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Server {
    #[default]
    Hello,
    /// TLS <= 1.2 ServerHello seen: the Certificate should follow.
    Certificate,
    /// Certificate read: the rest of the flight, up to ServerHelloDone, may ask for a client
    /// certificate (CertificateRequest).
    Request,
    Done,
}

/// Payload packets per direction after which a missing message is given up on.
const PATIENCE: u8 = 8;

/// TLS over TCP dissector state for one flow.
#[derive(Debug, Default)]
pub struct Tls {
    client: Client,
    server: Server,
    client_stream: StreamReassembler,
    server_stream: StreamReassembler,
    client_syn: bool,
    /// A SYN was seen, either way: the flow was not picked up mid-stream.
    syn_seen: bool,
    /// Picked up mid-stream: record framing is being checked instead of a handshake (the
    /// reassemblers are no longer fed).
    midstream: Option<MidStream>,
    /// The ClientHello carried no usable SNI: a certificate name may stand in.
    no_sni: bool,
    client_packets: u8,
    server_packets: u8,
    /// Offset in the server's handshake byte stream of the first message not yet processed (the
    /// stream is re-derived from the reassembled bytes on each packet; its prefix never changes).
    server_pos: usize,
    /// Offset in the client's handshake byte stream just past the ClientHello (0: none parsed).
    client_pos: usize,
}

impl Dissector for Tls {
    fn name(&self) -> &'static str {
        "tls"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if let Some(mid) = self.midstream.as_mut() {
            if pkt.payload.is_empty() {
                return Step::NeedMore;
            }
            return midstream_step(mid.on_payload(pkt.dir, pkt.tcp_seq, pkt.payload), facts);
        }
        let syn = pkt.tcp_flags & tcp::SYN != 0;
        self.syn_seen |= syn;
        let stream = match pkt.dir {
            Dir::ToServer => &mut self.client_stream,
            Dir::ToClient => &mut self.server_stream,
        };
        if syn {
            stream.on_syn(pkt.tcp_seq);
            self.client_syn |= pkt.dir == Dir::ToServer;
        }
        if !pkt.payload.is_empty() {
            stream.push(pkt.tcp_seq, pkt.payload);
        }
        if pkt.payload.is_empty() {
            return self.step();
        }
        match pkt.dir {
            Dir::ToServer => {
                self.client_packets = self.client_packets.saturating_add(1);
                match self.on_client(facts) {
                    Some(Step::NotMine) => return self.try_midstream(pkt, facts),
                    Some(step) => return step,
                    None => {}
                }
            }
            Dir::ToClient => {
                if self.client == Client::Start {
                    // TLS clients speak first, unless the flow was picked up mid-stream.
                    return self.try_midstream(pkt, facts);
                }
                self.server_packets = self.server_packets.saturating_add(1);
                self.on_server(facts);
            }
        }
        self.step()
    }
}

/// The step for a mid-stream verdict. TLS identified from its framing alone has no name (the
/// classifier may still find one in the DNS cache), and a version only where the records tell it.
fn midstream_step(verdict: Verdict, facts: &mut Facts) -> Step {
    match verdict {
        Verdict::Tls(minor) => {
            facts.protocol = Some("TLS");
            if let Some(minor) = minor {
                facts.tls_version = hello::version_name(0x0300 | u16::from(minor));
            }
            Step::Done
        }
        Verdict::Maybe => Step::NeedMore,
        Verdict::NotTls => Step::NotMine,
    }
}

impl Tls {
    /// The handshake reading found no hello where one was due. A flow picked up mid-stream (no
    /// SYN seen, no hello read) may still be TLS: check its record framing from this packet on.
    fn try_midstream(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if self.syn_seen || self.client != Client::Start {
            return Step::NotMine;
        }
        let mut mid = MidStream::default();
        let step = midstream_step(mid.on_payload(pkt.dir, pkt.tcp_seq, pkt.payload), facts);
        if step == Step::NeedMore {
            self.client_stream = StreamReassembler::default();
            self.server_stream = StreamReassembler::default();
            self.midstream = Some(mid);
        }
        step
    }

    fn step(&self) -> Step {
        match (self.client, self.server) {
            (Client::Start, _) => Step::NeedMore,
            (Client::Done, Server::Done) => Step::Done,
            _ => Step::Identified,
        }
    }

    /// Reads the client stream; `Some` for a final answer before identification.
    fn on_client(&mut self, facts: &mut Facts) -> Option<Step> {
        match self.client {
            Client::Done => return None,
            Client::Certificate => {
                self.on_client_certificate(facts);
                return None;
            }
            Client::Start | Client::Hello => {}
        }
        let data = self.client_stream.contiguous();
        if self.client == Client::Start {
            match looks_like_client_hello(data) {
                Some(true) => {
                    facts.protocol = Some("TLS");
                    self.client = Client::Hello;
                }
                Some(false) => return Some(Step::NotMine),
                // A hole at the start (first segment overtaken) is worth a few packets' wait,
                // but only when the SYN says where the stream starts.
                None if self.client_syn && self.client_packets < 4 => return Some(Step::NeedMore),
                None if data.is_empty() || data.len() >= 6 => return Some(Step::NotMine),
                None => return Some(Step::NeedMore),
            }
        }
        if data.first().is_some_and(|b| b & 0x80 != 0) {
            self.client = Client::Done; // SSLv2-compatible hello: identified, nothing to fingerprint
            return None;
        }
        let (hs, ended) = handshake_stream(data);
        match parse_client_hello(&hs) {
            Ok(ch) => {
                apply_client_hello(&ch, Transport::Tcp, facts);
                self.no_sni = ch.server_name.is_none();
                self.client_pos = message(&hs).map_or(0, |(_, len, _)| 4 + len);
                self.client = Client::Done;
            }
            Err(TlsError::Truncated) if !ended && !self.client_stream.is_full() && self.client_packets < PATIENCE => {}
            Err(_) => self.client = Client::Done,
        }
        None
    }

    fn on_server(&mut self, facts: &mut Facts) {
        if self.server == Server::Done {
            return;
        }
        let (hs, ended) = handshake_stream(self.server_stream.contiguous());
        let mut rest: &[u8] = hs.get(self.server_pos..).unwrap_or(&[]);
        while let Some((ty, len, body)) = message(rest) {
            let complete = body.len() == len;
            match (self.server, ty) {
                (Server::Hello, HS_SERVER_HELLO) if complete => {
                    match hello::parse_server_hello_body(body) {
                        Ok(sh) => {
                            apply_server_hello(&sh, facts);
                            // TLS 1.3 encrypts the certificate: nothing more to read.
                            self.server = if sh.version() >= 0x0304 || sh.version() < 0x0300 {
                                Server::Done
                            } else {
                                Server::Certificate
                            };
                        }
                        Err(_) => self.server = Server::Done,
                    }
                }
                (Server::Certificate, HS_CERTIFICATE) => {
                    if let Some(leaf) = leaf_certificate(body) {
                        let names = cert::cert_names_and_ids(leaf, &mut facts.cert_ids);
                        if self.no_sni {
                            if let Some(first) = names.first() {
                                facts.set_hostname(first, NameSource::Certificate);
                            }
                        }
                        facts.cert_names = names;
                        // The leaf is enough; the rest of the chain is waited for (below, bounded
                        // by the patience) only to read the messages after it.
                        self.server = Server::Request;
                    } else if complete {
                        self.server = Server::Done;
                    }
                }
                (Server::Request, HS_CERTIFICATE_REQUEST) if complete => {
                    if self.client == Client::Done && self.client_pos != 0 {
                        self.client = Client::Certificate;
                        self.client_packets = 0;
                    }
                    self.server = Server::Done;
                }
                (Server::Request, HS_SERVER_HELLO_DONE) if complete => self.server = Server::Done,
                // ServerKeyExchange, CertificateStatus: the flight goes on.
                (Server::Request, _) => {}
                // Anything else where these were expected (resumption, PSK, another type): over.
                (Server::Hello | Server::Certificate, _) if complete => self.server = Server::Done,
                _ => {}
            }
            if !complete || self.server == Server::Done {
                break;
            }
            rest = rest.get(4 + len..).unwrap_or(&[]);
            self.server_pos += 4 + len;
        }
        let stuck = self.server_packets >= PATIENCE || self.server_stream.is_full();
        // `ended`: the handshake records gave way to ChangeCipherSpec, an alert or application
        // data, so whatever was not found above is not coming.
        if stuck || ended {
            self.server = Server::Done;
        }
    }
}

impl Tls {
    /// The client's second flight after a CertificateRequest: the leaf of its Certificate message
    /// adds identities (not names: the client's certificate does not name the server).
    fn on_client_certificate(&mut self, facts: &mut Facts) {
        let (hs, ended) = handshake_stream(self.client_stream.contiguous());
        let rest = hs.get(self.client_pos..).unwrap_or(&[]);
        match message(rest) {
            Some((HS_CERTIFICATE, len, body)) => {
                if let Some(leaf) = leaf_certificate(body) {
                    let _ = cert::cert_names_and_ids(leaf, &mut facts.cert_ids);
                    self.client = Client::Done;
                } else if body.len() == len {
                    self.client = Client::Done; // an empty certificate list
                }
            }
            Some((_, len, body)) if body.len() == len => self.client = Client::Done,
            _ => {}
        }
        if ended || self.client_packets >= PATIENCE || self.client_stream.is_full() {
            self.client = Client::Done;
        }
    }
}

/// The leaf certificate of a Certificate message body (RFC 5246 §7.4.2), once its bytes are
/// present (the rest of the chain need not have arrived).
fn leaf_certificate(body: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(body);
    let _list_len = r.u24().ok()?;
    let len = r.u24().ok()?;
    r.bytes(len).ok()
}

/// Does a stream start like a ClientHello? `None` while too few bytes arrived to tell.
fn looks_like_client_hello(data: &[u8]) -> Option<bool> {
    if data.first().is_some_and(|b| b & 0x80 != 0) {
        return sslv2_client_hello(data);
    }
    let head = data.get(..6)?;
    let record_len = usize::from(head[3]) << 8 | usize::from(head[4]);
    Some(head[0] == CT_HANDSHAKE && record_header_ok(head) && record_len >= 4 && head[5] == HS_CLIENT_HELLO)
}

/// SSLv2-compatible ClientHello (RFC 5246 Appendix E.2): 2-byte length with the top bit, type 1,
/// version, three lengths that must add up. Strict, since the shape is short.
fn sslv2_client_hello(data: &[u8]) -> Option<bool> {
    let h = data.get(..11)?;
    let len = usize::from(h[0] & 0x7f) << 8 | usize::from(h[1]);
    let version_ok = matches!((h[3], h[4]), (0, 2) | (3, 0..=3));
    let cipher_len = usize::from(h[5]) << 8 | usize::from(h[6]);
    let session_len = usize::from(h[7]) << 8 | usize::from(h[8]);
    let challenge_len = usize::from(h[9]) << 8 | usize::from(h[10]);
    Some(
        h[2] == 1
            && version_ok
            && cipher_len > 0
            && cipher_len % 3 == 0
            && matches!(session_len, 0 | 16)
            && (16..=32).contains(&challenge_len)
            && len == 9 + cipher_len + session_len + challenge_len,
    )
}

#[cfg(test)]
mod tests;
