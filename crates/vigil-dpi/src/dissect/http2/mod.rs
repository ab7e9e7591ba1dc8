//! HTTP/2 over cleartext TCP with prior knowledge ("h2c", RFC 9113 §3.3): gRPC without TLS,
//! `curl --http2-prior-knowledge`, service meshes' plain-text hops. The name comes from the
//! request's `:authority`.
//!
//! Recognised on any port by the client connection preface (§3.4), 24 fixed bytes that no other
//! protocol starts with (HTTP/1 has no `PRI` method, so the `http` dissector drops such a flow at
//! its first bytes). After the preface the client's frames (§4.1: 24-bit length, type, flags,
//! 31-bit stream id) are walked, skipping SETTINGS, WINDOW_UPDATE, PRIORITY and the like, to the
//! first HEADERS frame; its header block (with any CONTINUATION frames, the padding and priority
//! fields removed) is decoded with [`hpack`] up to `:authority`, `:method`, `:path` and
//! `user-agent` (`host` stands in for a missing `:authority`, §8.3.1).
//!
//! HTTP/2 over TLS is a TLS flow (ALPN `h2`), and HTTP/1.1's `Upgrade: h2c` starts as an HTTP/1
//! request: both are named elsewhere. Only the client side is read: a server's first frame is a
//! SETTINGS frame it may send before the client's preface arrives, so such a frame is waited
//! past; any other server data first means this is not h2c (clients speak first).
//!
//! **Protocol name: `HTTP2`**, nDPI's name (as [`Facts::protocol`] asks), not `HTTP`. Suricata
//! also keeps the two apart (`app_proto` "http2", the EVE `http` event for both). Policies that
//! mean all web traffic in clear list both `"HTTP"` and `"HTTP2"`; keeping them apart also keeps
//! a `reject` from answering an HTTP/2 client with the HTTP/1.1 block page (it gets a reset).
//!
//! The client stream goes through a [`StreamReassembler`] (segments reordered or retransmitted,
//! a preface split across segments) capped at [`STREAM_CAP`]; a header block is decoded from at
//! most [`hpack::MAX_FIELDS`] fields of its first [`MAX_BLOCK`] bytes.

pub mod hpack;

use super::http::{host_without_port, lossy};
use super::{Dissector, Step};
use crate::facts::{Facts, NameSource};
use crate::reasm::StreamReassembler;
use crate::view::{Dir, PacketView};
use vigil_wire::tcp;

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Header block bytes decoded at most: the default SETTINGS_MAX_FRAME_SIZE, so one whole HEADERS
/// frame of a client that has not seen the server's SETTINGS yet.
pub const MAX_BLOCK: usize = 16 * 1024;

/// Client stream bytes kept: the preface, room for the frames before HEADERS, one full block.
pub const STREAM_CAP: usize = PREFACE.len() + 2048 + FRAME_HEADER + MAX_BLOCK;

/// Payload packets (either direction) after the preface to wait for a complete HEADERS frame.
const PATIENCE: u8 = 8;

/// Client payload packets to wait for the rest of a split preface (or the start of a stream whose
/// first segment was overtaken).
const PREFACE_PACKETS: u8 = 8;

/// Frames before the first HEADERS walked at most.
const MAX_FRAMES: usize = 32;

const FRAME_HEADER: usize = 9;
const TYPE_HEADERS: u8 = 0x1;
const TYPE_SETTINGS: u8 = 0x4;
const TYPE_CONTINUATION: u8 = 0x9;
const FLAG_END_HEADERS: u8 = 0x4;
const FLAG_PADDED: u8 = 0x8;
const FLAG_PRIORITY: u8 = 0x20;

/// A frame header (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: usize,
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
}

/// The frame header at the start of `buf`, when all 9 bytes are there.
pub fn frame_header(buf: &[u8]) -> Option<FrameHeader> {
    let h: &[u8; FRAME_HEADER] = buf.get(..FRAME_HEADER)?.try_into().ok()?;
    Some(FrameHeader {
        len: usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]),
        ty: h[3],
        flags: h[4],
        stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
    })
}

/// `buf` starts like the preface (as far as it goes).
fn preface_prefix(buf: &[u8]) -> bool {
    let n = buf.len().min(PREFACE.len());
    buf.get(..n) == PREFACE.get(..n)
}

/// The header block fragment of a HEADERS frame whose first `avail.len()` payload bytes (of
/// `h.len`) are at hand: without the pad length, priority fields and padding (§6.2). None when
/// the padding or priority fields do not fit in the frame.
fn headers_fragment<'a>(h: &FrameHeader, avail: &'a [u8]) -> Option<&'a [u8]> {
    let mut start = 0;
    let mut pad = 0;
    if h.flags & FLAG_PADDED != 0 {
        pad = usize::from(*avail.first()?);
        start = 1;
    }
    if h.flags & FLAG_PRIORITY != 0 {
        start += 5;
    }
    let end = h.len.checked_sub(pad).filter(|&e| e >= start)?;
    avail.get(start..end.min(avail.len()))
}

/// The request fields classification wants, each the first of its name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    pub authority: Option<Vec<u8>>,
    pub host: Option<Vec<u8>>,
    pub method: Option<Vec<u8>>,
    pub path: Option<Vec<u8>>,
    pub user_agent: Option<Vec<u8>>,
}

/// Field values kept at most (the facts keep less).
const MAX_VALUE: usize = 1024;

impl Request {
    /// Decodes a (possibly truncated) header block; stops once every wanted field was seen.
    pub fn from_block(block: &[u8]) -> Request {
        let mut r = Request::default();
        let block = block.get(..MAX_BLOCK).unwrap_or(block);
        // An error ends decoding; what came before it stands.
        let _ = hpack::Decoder::default().decode(block, |name, value| {
            let slot = match name {
                b":authority" => &mut r.authority,
                b"host" => &mut r.host,
                b":method" => &mut r.method,
                b":path" => &mut r.path,
                b"user-agent" => &mut r.user_agent,
                _ => return true,
            };
            if slot.is_none() {
                *slot = Some(value.get(..MAX_VALUE).unwrap_or(value).to_vec());
            }
            [&r.authority, &r.method, &r.path, &r.user_agent].iter().any(|f| f.is_none())
        });
        r
    }

    /// The server's name: `:authority` (without userinfo and port), else `host`.
    pub fn hostname(&self) -> Option<String> {
        [&self.authority, &self.host].into_iter().flatten().find_map(|v| {
            let a = String::from_utf8_lossy(v);
            let a = a.rsplit('@').next().unwrap_or_default();
            host_without_port(a).map(str::to_owned)
        })
    }

    fn apply(&self, facts: &mut Facts) {
        if let Some(h) = self.hostname() {
            facts.set_hostname(&h, NameSource::Http);
        }
        if facts.http_method.is_none() {
            facts.http_method = self.method.as_deref().map(|m| lossy(m, 32));
        }
        if facts.http_path.is_none() {
            // As the HTTP/1 dissector keeps a request target: as sent, query included, 1024 chars.
            facts.http_path = self.path.as_deref().map(|p| String::from_utf8_lossy(p).chars().take(1024).collect());
        }
        if facts.user_agent.is_none() {
            facts.user_agent = self.user_agent.as_deref().map(|u| lossy(u, 512));
        }
    }
}

/// Where the walk of the client's frames got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    /// More client bytes are needed.
    Wait,
    /// The header block is complete (or as complete as it will get) at `block`.
    Block,
    /// No HEADERS frame to read (too many frames before it, a malformed frame).
    GiveUp,
}

/// HTTP/2 cleartext dissector state for one flow.
#[derive(Debug)]
pub struct Http2 {
    client: StreamReassembler,
    client_syn: bool,
    /// The preface was seen (protocol set).
    identified: bool,
    done: bool,
    /// Client payload packets before identification.
    client_packets: u8,
    /// Payload packets since identification.
    waited: u8,
    /// Offset in the client stream of the first frame not yet skipped.
    pos: usize,
    /// Frames skipped before the first HEADERS.
    skipped: usize,
}

impl Default for Http2 {
    fn default() -> Self {
        Http2 {
            client: StreamReassembler::with_cap(STREAM_CAP),
            client_syn: false,
            identified: false,
            done: false,
            client_packets: 0,
            waited: 0,
            pos: PREFACE.len(),
            skipped: 0,
        }
    }
}

impl Http2 {
    fn step(&self) -> Step {
        if self.done {
            Step::Done
        } else if self.identified {
            Step::Identified
        } else {
            Step::NeedMore
        }
    }

    /// Before identification: the preface, or not.
    fn on_client_start(&mut self, facts: &mut Facts) -> Step {
        let data = self.client.contiguous();
        if data.is_empty() {
            // A hole at the start (first segment overtaken): worth a few packets with a SYN.
            let wait = self.client_syn && self.client_packets < PREFACE_PACKETS;
            return if wait { Step::NeedMore } else { Step::NotMine };
        }
        if !preface_prefix(data) {
            return Step::NotMine;
        }
        if data.len() < PREFACE.len() {
            return if self.client_packets < PREFACE_PACKETS { Step::NeedMore } else { Step::NotMine };
        }
        facts.protocol = Some("HTTP2");
        self.identified = true;
        Step::Identified
    }

    /// Walks the client's frames from `pos` to the first HEADERS frame and gathers its header block
    /// into `block`.
    fn walk(&mut self, block: &mut Vec<u8>) -> Walk {
        let data = self.client.contiguous();
        // Bytes that will not come: the stream is at its cap, or the wait is over.
        let final_data = self.client.is_full() || self.waited >= PATIENCE;
        let mut at = self.pos;
        // Skip to the first HEADERS frame.
        let headers = loop {
            let Some(h) = data.get(at..).and_then(frame_header) else {
                return if final_data { Walk::GiveUp } else { Walk::Wait };
            };
            if h.ty == TYPE_HEADERS {
                break h;
            }
            if h.ty == TYPE_CONTINUATION || self.skipped >= MAX_FRAMES {
                return Walk::GiveUp; // a CONTINUATION with no HEADERS before it: not a request
            }
            let end = at + FRAME_HEADER + h.len;
            if data.len() < end {
                return if final_data { Walk::GiveUp } else { Walk::Wait };
            }
            at = end;
            self.pos = at; // skipped for good
            self.skipped += 1;
        };
        // The HEADERS frame, then CONTINUATION frames on its stream until END_HEADERS (§6.10).
        let mut h = headers;
        loop {
            let body = at + FRAME_HEADER;
            let avail = data.get(body..data.len().min(body + h.len)).unwrap_or_default();
            let fragment = if h.ty == TYPE_HEADERS { headers_fragment(&h, avail) } else { Some(avail) };
            let Some(fragment) = fragment else {
                // The pad length not there yet, or padding longer than the frame.
                return if avail.len() < h.len && !final_data { Walk::Wait } else { Walk::GiveUp };
            };
            let room = MAX_BLOCK.saturating_sub(block.len());
            block.extend_from_slice(fragment.get(..room).unwrap_or(fragment));
            if avail.len() < h.len {
                // Decode a partial block only when no more will come (its complete fields stand).
                return if final_data || block.len() >= MAX_BLOCK { Walk::Block } else { Walk::Wait };
            }
            if h.flags & FLAG_END_HEADERS != 0 || block.len() >= MAX_BLOCK {
                return Walk::Block;
            }
            at = body + h.len;
            match data.get(at..).and_then(frame_header) {
                Some(next) if next.ty == TYPE_CONTINUATION && next.stream == headers.stream => h = next,
                // Something else interrupts the block (a protocol error): decode what there is.
                Some(_) => return Walk::Block,
                None if final_data => return Walk::Block,
                None => return Walk::Wait,
            }
        }
    }

    fn on_client(&mut self, facts: &mut Facts) {
        let mut block = Vec::new();
        match self.walk(&mut block) {
            Walk::Wait => {}
            Walk::GiveUp => self.done = true,
            Walk::Block => {
                Request::from_block(&block).apply(facts);
                self.done = true;
            }
        }
    }
}

impl Dissector for Http2 {
    fn name(&self) -> &'static str {
        "http2"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if self.done {
            return Step::Done;
        }
        let syn = pkt.tcp_flags & tcp::SYN != 0;
        if pkt.dir == Dir::ToServer && syn {
            self.client.on_syn(pkt.tcp_seq);
            self.client_syn = true;
        }
        if pkt.payload.is_empty() {
            return self.step();
        }
        if self.identified {
            self.waited = self.waited.saturating_add(1);
        }
        match pkt.dir {
            Dir::ToServer => {
                // The common case while probing, without storing anything: a first segment (where
                // the stream starts) that is not the preface.
                let at_start = self.client.next_seq().is_none_or(|s| s == pkt.tcp_seq);
                if self.client.is_empty() && at_start && !preface_prefix(pkt.payload) {
                    return Step::NotMine;
                }
                self.client.push(pkt.tcp_seq, pkt.payload);
                if !self.identified {
                    self.client_packets = self.client_packets.saturating_add(1);
                    let step = self.on_client_start(facts);
                    if step != Step::Identified {
                        return step;
                    }
                }
                self.on_client(facts);
            }
            Dir::ToClient if self.identified => {
                if self.waited >= PATIENCE {
                    self.on_client(facts); // decode what there is, or give up
                }
            }
            Dir::ToClient => {
                // A server speaking first: only a SETTINGS frame on stream 0 may come before the
                // preface (§3.4); anything else is another protocol.
                let settings = frame_header(pkt.payload)
                    .is_some_and(|h| h.ty == TYPE_SETTINGS && h.stream == 0 && h.flags & !1 == 0 && h.len % 6 == 0);
                if !settings {
                    return Step::NotMine;
                }
            }
        }
        self.step()
    }
}

#[cfg(test)]
mod tests;
