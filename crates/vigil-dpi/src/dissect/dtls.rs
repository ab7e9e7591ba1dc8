//! DTLS: ClientHello (SNI, ALPN, JA4 with the d prefix) through the TLS parser.
//!
//! DTLS 1.0/1.2/1.3 records (RFC 6347 §4.1, RFC 9147 §4: 13-byte header with epoch and sequence
//! number) carry handshake messages with a 12-byte header (message_seq, fragment offset and
//! length), so one ClientHello may arrive in fragments across records and datagrams, in any
//! order, repeated. Fragments of the newest ClientHello (after a HelloVerifyRequest the client
//! resends it with a cookie and the next message_seq) are placed by offset in a capped
//! [`StreamReassembler`], and the complete body goes to the TLS parser with the cookie flag.
//!
//! [`DtlsHandshake`] is the reusable part, for dissectors that find DTLS inside another flow
//! (WebRTC multiplexes STUN, DTLS and RTP on one 5-tuple, RFC 7983).

use super::tls::hello::{parse_client_hello_body, parse_server_hello_body, Reader, HS_CLIENT_HELLO, HS_SERVER_HELLO};
use super::tls::{apply_client_hello, apply_server_hello, Transport};
use super::{Dissector, Step};
use crate::facts::Facts;
use crate::reasm::StreamReassembler;
use crate::view::{Dir, PacketView};

const CT_HANDSHAKE: u8 = 22;
/// Largest ClientHello kept (post-quantum key shares make ~1.3 KiB common; 16 KiB is generous).
const MAX_HELLO: usize = 16 * 1024;
/// Datagrams per direction after which a missing message is given up on.
const PATIENCE: u8 = 8;

/// A DTLS record version: 1.0, 1.2 or 1.3 (1.3 records of the ClientHello say 1.0 or 1.2).
fn dtls_version(v: u16) -> bool {
    matches!(v, 0xfeff | 0xfefd | 0xfefc)
}

/// One handshake fragment of a record.
struct Fragment<'a> {
    msg_type: u8,
    length: usize,
    message_seq: u16,
    offset: usize,
    data: &'a [u8],
}

/// Reads one handshake fragment header and its data.
fn fragment<'a>(r: &mut Reader<'a>) -> Option<Fragment<'a>> {
    let msg_type = r.u8().ok()?;
    let length = r.u24().ok()?;
    let message_seq = r.u16().ok()?;
    let offset = r.u24().ok()?;
    let frag_len = r.u24().ok()?;
    let data = r.bytes(frag_len).ok()?;
    Some(Fragment { msg_type, length, message_seq, offset, data })
}

/// The epoch-0 handshake fragments of a datagram, in order. Stops at the first record that is
/// not a plaintext DTLS handshake record.
fn fragments(datagram: &[u8]) -> impl Iterator<Item = Fragment<'_>> {
    let mut records = Reader::new(datagram);
    let mut current = Reader::new(&[]);
    std::iter::from_fn(move || loop {
        if !current.is_empty() {
            match fragment(&mut current) {
                Some(f) => return Some(f),
                None => current = Reader::new(&[]),
            }
        }
        let ty = records.u8().ok()?;
        let version = records.u16().ok()?;
        let epoch = records.u16().ok()?;
        let _seq = records.bytes(6).ok()?;
        let body = records.vec16().ok()?;
        if ty != CT_HANDSHAKE || !dtls_version(version) || epoch != 0 {
            return None;
        }
        current = Reader::new(body);
    })
}

/// Does a datagram start like a plaintext DTLS handshake record (type 22, DTLS version, epoch 0)?
fn is_dtls_handshake_header(datagram: &[u8]) -> bool {
    matches!(datagram, [CT_HANDSHAKE, 0xfe, 0xff | 0xfd | 0xfc, 0, 0, ..])
}

/// Does a datagram start with a DTLS handshake record holding (a fragment of) a ClientHello?
pub fn starts_with_client_hello(datagram: &[u8]) -> bool {
    is_dtls_handshake_header(datagram)
        && fragments(datagram).next().is_some_and(|f| {
            f.msg_type == HS_CLIENT_HELLO && f.length >= 38 && f.offset.saturating_add(f.data.len()) <= f.length
        })
}

/// Reassembles and applies a DTLS ClientHello and ServerHello from datagrams of one flow.
#[derive(Debug, Default)]
pub struct DtlsHandshake {
    hello: Option<HelloBuf>,
    client_done: bool,
    server_done: bool,
}

#[derive(Debug)]
struct HelloBuf {
    message_seq: u16,
    length: usize,
    body: StreamReassembler,
}

impl DtlsHandshake {
    /// The ClientHello was parsed (or given up on).
    pub fn client_done(&self) -> bool {
        self.client_done
    }
    /// The ServerHello was parsed.
    pub fn server_done(&self) -> bool {
        self.server_done
    }

    /// A client datagram: collects ClientHello fragments; when complete, fills SNI/ALPN/JA4.
    pub fn on_client_datagram(&mut self, datagram: &[u8], facts: &mut Facts) {
        for f in fragments(datagram) {
            if f.msg_type != HS_CLIENT_HELLO || f.length > MAX_HELLO {
                continue;
            }
            let newer = match &self.hello {
                None => true,
                Some(h) => f.message_seq > h.message_seq,
            };
            if newer {
                let mut body = StreamReassembler::with_cap(f.length);
                body.on_syn(u32::MAX); // offsets start at 0
                self.hello = Some(HelloBuf { message_seq: f.message_seq, length: f.length, body });
                self.client_done = false;
            }
            let Some(h) = self.hello.as_mut() else { continue };
            if f.message_seq != h.message_seq || f.length != h.length || self.client_done {
                continue;
            }
            h.body.push(f.offset as u32, f.data);
            if h.body.contiguous().len() == h.length {
                if let Ok(ch) = parse_client_hello_body(h.body.contiguous(), true) {
                    apply_client_hello(&ch, Transport::Dtls, facts);
                }
                self.client_done = true;
            }
        }
    }

    /// A server datagram: the ServerHello's version and ALPN (it is small enough to come whole;
    /// a fragmented one is read when its first fragment holds the fields).
    pub fn on_server_datagram(&mut self, datagram: &[u8], facts: &mut Facts) {
        for f in fragments(datagram) {
            if f.msg_type != HS_SERVER_HELLO || f.offset != 0 {
                continue;
            }
            let body = f.data.get(..f.length).unwrap_or(f.data);
            if let Ok(sh) = parse_server_hello_body(body) {
                apply_server_hello(&sh, facts);
                self.server_done = true;
                return;
            }
        }
    }
}

/// DTLS over UDP.
#[derive(Debug, Default)]
pub struct Dtls {
    hs: DtlsHandshake,
    /// The direction the ClientHello came from: with WebRTC either peer may be the DTLS client.
    client_dir: Option<Dir>,
    client_datagrams: u8,
    server_datagrams: u8,
}

impl Dissector for Dtls {
    fn name(&self) -> &'static str {
        "dtls"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if pkt.payload.is_empty() {
            return if self.client_dir.is_some() { Step::Identified } else { Step::NeedMore };
        }
        let client_dir = match self.client_dir {
            Some(d) => d,
            None if starts_with_client_hello(pkt.payload) => {
                facts.protocol = Some("DTLS");
                *self.client_dir.insert(pkt.dir)
            }
            // A DTLS handshake record header whose contents do not parse (seen in the corpus: a
            // mangled first ClientHello, then a good retransmission): worth a few more datagrams.
            None if is_dtls_handshake_header(pkt.payload) && self.client_datagrams < 4 => {
                self.client_datagrams += 1;
                return Step::NeedMore;
            }
            None => return Step::NotMine,
        };
        match pkt.dir {
            d if d == client_dir => {
                self.client_datagrams = self.client_datagrams.saturating_add(1);
                self.hs.on_client_datagram(pkt.payload, facts);
            }
            _ => {
                self.server_datagrams = self.server_datagrams.saturating_add(1);
                self.hs.on_server_datagram(pkt.payload, facts);
            }
        }
        let client_over = self.hs.client_done() || self.client_datagrams >= PATIENCE;
        let server_over = self.hs.server_done() || self.server_datagrams >= PATIENCE;
        if client_over && server_over {
            Step::Done
        } else {
            Step::Identified
        }
    }
}
