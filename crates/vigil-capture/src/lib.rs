//! vigil-capture: read pcap and pcapng files and yield timestamped **L3 packets** (IPv4/IPv6
//! bytes, link layer stripped) for vigil's offline `replay` command.
//!
//! ```no_run
//! use vigil_capture::{CaptureReader, L3};
//!
//! let mut rd = CaptureReader::open("trace.pcapng")?;
//! while let Some(pkt) = rd.next_packet() {
//!     let pkt = pkt?; // an error is final: packets before it were yielded, nothing follows
//!     match pkt.l3 {
//!         L3::Ipv4(b) => println!("{} v4 {} bytes", pkt.ts_micros, b.len()),
//!         L3::Ipv6(b) => println!("{} v6 {} bytes", pkt.ts_micros, b.len()),
//!     }
//! }
//! println!("{:?}", rd.stats());
//! # Ok::<(), vigil_capture::CaptureError>(())
//! ```
//!
//! # Behaviour
//!
//! * The format is detected from the magic number, never from the file name: pcap (both byte
//!   orders, microsecond and nanosecond magic) and pcapng (any number of sections, either byte
//!   order, any number of interfaces, each with its own link type, `if_tsresol` and
//!   `if_tsoffset`). Enhanced, Simple and the obsolete Packet blocks are read; every other block
//!   type is skipped.
//! * Link types: Ethernet (1) with stacked 802.1Q/802.1ad tags, PPPoE session, MPLS and LLC/SNAP;
//!   RAW (101, 12, 14); IPv4 (228); IPv6 (229); NULL (0) and LOOP (108) with the address family in
//!   either byte order (AF_INET 2; AF_INET6 10, 24, 28 or 30); Linux cooked SLL (113) and SLL2 (276).
//! * Unsupported link types: a **pcap** file (one link type for the whole file) fails at
//!   [`CaptureReader::open`] with [`CaptureError::UnsupportedLinkType`]. In **pcapng**, packets of
//!   an interface with an unsupported link type are skipped and counted in
//!   [`CaptureStats::skipped_unsupported_link`] (the link types are listed by
//!   [`CaptureReader::unsupported_link_types`]); packets of the other interfaces are still read.
//! * Frames that carry no IP (ARP, LLDP, STP, ...) are skipped and counted; frames cut short inside
//!   the link-layer headers are skipped and counted as truncated. Packets whose IP part was cut
//!   short by the snap length are yielded (`l3` shorter than the IP length field says).
//! * The L3 slice is trimmed to the IP length field (IPv4 total length, IPv6 40 + payload length)
//!   when that field is consistent and smaller than what was captured, so Ethernet padding and
//!   FCS never reach the pipeline. A zero length field (TSO, jumbogram) is left alone.
//! * `orig_len` is the original length of the whole frame as recorded in the capture (link-layer
//!   header included).
//! * `interface` is 0 for pcap; for pcapng it is the index of the interface description among all
//!   interfaces of the file (equal to the EPB interface id for single-section files).
//! * Simple Packet Blocks carry no timestamp; they get the timestamp of the previous packet.
//! * A damaged or truncated file: all packets before the damage are yielded, then one
//!   [`CaptureError::Corrupt`] with the byte offset of the bad record, then `None`. A packet
//!   block whose framing is intact but whose content is inconsistent (unknown interface id,
//!   captured length larger than the block) is skipped and counted in
//!   [`CaptureStats::skipped_malformed`]. No input makes the reader panic or loop forever, and
//!   memory use is bounded by the largest record actually present (records claiming more than
//!   64 MiB are rejected).
//!
//! # What pcap-file 2.0 does and does not do here
//!
//! pcap-file parses the pcap file header (magic, byte order, micro/nanosecond resolution, link
//! type), frames pcap records and pcapng blocks (length and trailer checks, per-section byte order)
//! and decodes Section Header and Interface Description blocks. It is **not** used for:
//! * pcap record validation: `PcapPacket` rejects every record whose `orig_len` exceeds the snap
//!   length, i.e. every truncated packet of a capture taken with `-s`; we use raw records.
//! * pcapng packet blocks: `EnhancedPacketBlock::timestamp` ignores `if_tsresol`/`if_tsoffset`
//!   (it treats the raw tick count as nanoseconds, so default microsecond files come out 1000x
//!   off), `SimplePacketBlock` returns the padding as packet data and ignores the snap length, and
//!   a malformed option makes the whole packet fail. We decode those blocks ourselves.
//! * buffering: its `ReadBuffer` is private, allocates 8 MB per reader, reports no offsets and
//!   returns the same error forever after a failure.
//!
//! It is also stricter than the pcapng spec for SHB/IDB options (option list without
//! `opt_endofopt`, non-UTF-8 strings, and an `if_tzone` bug that rejects every IDB carrying that
//! option); when it rejects an SHB or IDB whose framing is intact we decode the fields we need
//! ourselves instead of failing the file.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod input;
mod link;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::Read;
use std::path::Path;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::PcapNgParser;
use pcap_file::{Endianness, TsResolution};

use error::corrupt;
pub use error::CaptureError;
use input::Input;
use link::{extract, Extracted, Link};

/// The L3 packet: the bytes start at the IP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L3<'a> {
    /// An IPv4 packet.
    Ipv4(&'a [u8]),
    /// An IPv6 packet.
    Ipv6(&'a [u8]),
}

impl<'a> L3<'a> {
    /// The packet bytes, starting at the IP header.
    pub fn bytes(&self) -> &'a [u8] {
        match *self {
            L3::Ipv4(b) | L3::Ipv6(b) => b,
        }
    }

    /// True for [`L3::Ipv6`].
    pub fn is_ipv6(&self) -> bool {
        matches!(self, L3::Ipv6(_))
    }
}

/// One packet read from a capture. Borrows the reader's buffer until the next call to
/// [`CaptureReader::next_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapturedPacket<'a> {
    /// Capture timestamp, microseconds since the UNIX epoch (saturating at 0 and `u64::MAX`).
    pub ts_micros: u64,
    /// The IP packet, link layer stripped (see the crate docs about trimming).
    pub l3: L3<'a>,
    /// Original length of the frame on the wire, link-layer header included, as recorded.
    pub orig_len: u32,
    /// Interface index: 0 for pcap, the file-wide interface index for pcapng.
    pub interface: u32,
}

/// Counters; `packets == ip_packets + skipped_non_ip + skipped_truncated +
/// skipped_unsupported_link + skipped_malformed` always holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packet records (pcap records, pcapng EPB/SPB/PB) read.
    pub packets: u64,
    /// Packets yielded.
    pub ip_packets: u64,
    /// Frames without IP (ARP, LLDP, STP, ...).
    pub skipped_non_ip: u64,
    /// Frames cut short before the IP header started.
    pub skipped_truncated: u64,
    /// pcapng packets on interfaces whose link type is not supported.
    pub skipped_unsupported_link: u64,
    /// pcapng packet blocks with intact framing but inconsistent content.
    pub skipped_malformed: u64,
    /// Errors returned by [`CaptureReader::next_packet`] (0 or 1: errors are final).
    pub errors: u64,
}

/// The container format, as detected from the magic number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureFormat {
    /// libpcap format.
    Pcap,
    /// pcapng.
    PcapNg,
}

/// Streaming reader over a pcap or pcapng capture; see the crate docs.
pub struct CaptureReader<R = File> {
    input: Input<R>,
    format: Format,
    stats: CaptureStats,
    unsupported: Vec<u32>,
    done: bool,
}

impl<R> std::fmt::Debug for CaptureReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureReader")
            .field("format", &self.format())
            .field("stats", &self.stats)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Largest pcapng block / pcap record accepted (pcap records are further limited to
/// max(snaplen, 256 KiB)).
const MAX_RECORD: usize = 64 * 1024 * 1024;
/// libpcap's maximum snap length; the pcap record limit is never below it.
const PCAP_MIN_LIMIT: usize = 256 * 1024;
const PCAP_FILE_HDR: usize = 24;
const PCAP_REC_HDR: usize = 16;

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 0x0000_0001;
const PB: u32 = 0x0000_0002;
const SPB: u32 = 0x0000_0003;
const EPB: u32 = 0x0000_0006;

impl CaptureReader<File> {
    /// Opens a capture file (pcap or pcapng, detected by magic) and reads its file header.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, CaptureError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|source| CaptureError::Open { path: path.to_path_buf(), source })?;
        Self::from_reader(file)
    }
}

impl<R: Read> CaptureReader<R> {
    /// Wraps any reader (no need for a `BufReader`: the capture reader buffers itself) and reads
    /// the file header.
    pub fn from_reader(reader: R) -> Result<Self, CaptureError> {
        let mut input = Input::new(reader);
        input.fill(4)?;
        let head = input.available();
        let magic = match *head {
            [a, b, c, d, ..] => [a, b, c, d],
            [] => return Err(corrupt(0, "empty input")),
            _ => return Err(corrupt(0, format!("input too short ({} bytes) for a capture file", head.len()))),
        };
        let format = match magic {
            [0xD4, 0xC3, 0xB2, 0xA1]
            | [0xA1, 0xB2, 0xC3, 0xD4]
            | [0x4D, 0x3C, 0xB2, 0xA1]
            | [0xA1, 0xB2, 0x3C, 0x4D] => Format::Pcap(PcapState::open(&mut input)?),
            [0x0A, 0x0D, 0x0D, 0x0A] => Format::PcapNg(Box::new(NgState::new()?)),
            [0x34, 0xCD, 0xB2, 0xA1] | [0xA1, 0xB2, 0xCD, 0x34] => {
                return Err(CaptureError::UnknownFormat {
                    magic,
                    detail: "Kuznetzov/Nokia modified pcap is not supported (convert with editcap)",
                })
            }
            [0x1F, 0x8B, ..] => {
                return Err(CaptureError::UnknownFormat { magic, detail: "gzip-compressed file, decompress it first" })
            }
            _ => return Err(CaptureError::UnknownFormat { magic, detail: "unrecognised magic number" }),
        };
        let mut rd =
            CaptureReader { input, format, stats: CaptureStats::default(), unsupported: Vec::new(), done: false };
        if let Format::PcapNg(ng) = &mut rd.format {
            // Read the leading section header now so that a damaged header fails `open`.
            match ng.step(&mut rd.input, &mut rd.unsupported)? {
                Step::Other => {}
                _ => return Err(corrupt(0, "pcapng file does not start with a section header block")),
            }
        }
        Ok(rd)
    }

    /// The next IP packet, `None` at the end of the capture. After an `Err` (always final) it
    /// returns `None`.
    pub fn next_packet(&mut self) -> Option<Result<CapturedPacket<'_>, CaptureError>> {
        loop {
            if self.done {
                return None;
            }
            let step = match &mut self.format {
                Format::Pcap(p) => p.step(&mut self.input),
                Format::PcapNg(ng) => ng.step(&mut self.input, &mut self.unsupported),
            };
            let rec = match step {
                Ok(Step::Packet(rec)) => rec,
                Ok(Step::Other) => continue,
                Ok(Step::Malformed) => {
                    self.stats.packets += 1;
                    self.stats.skipped_malformed += 1;
                    continue;
                }
                Ok(Step::End) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    self.stats.errors += 1;
                    return Some(Err(e));
                }
            };
            self.stats.packets += 1;
            let link = match rec.link {
                IfLink::Supported(link) => link,
                IfLink::Unsupported(_) => {
                    self.stats.skipped_unsupported_link += 1;
                    continue;
                }
                IfLink::Invalid => {
                    self.stats.skipped_malformed += 1;
                    continue;
                }
            };
            let frame = self.input.buf().get(rec.data_start..rec.data_start + rec.data_len).unwrap_or_default();
            match extract(link, frame) {
                Extracted::NonIp => self.stats.skipped_non_ip += 1,
                Extracted::Truncated => self.stats.skipped_truncated += 1,
                Extracted::Ip { v6, start, len } => {
                    self.stats.ip_packets += 1;
                    let from = rec.data_start + start;
                    let bytes = self.input.buf().get(from..from + len).unwrap_or_default();
                    let l3 = if v6 { L3::Ipv6(bytes) } else { L3::Ipv4(bytes) };
                    return Some(Ok(CapturedPacket {
                        ts_micros: rec.ts_micros,
                        l3,
                        orig_len: rec.orig_len,
                        interface: rec.interface,
                    }));
                }
            }
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> CaptureStats {
        self.stats
    }

    /// Link types of pcapng interfaces seen so far whose packets are skipped (deduplicated).
    pub fn unsupported_link_types(&self) -> &[u32] {
        &self.unsupported
    }
}

impl<R> CaptureReader<R> {
    /// The detected container format.
    pub fn format(&self) -> CaptureFormat {
        match self.format {
            Format::Pcap(_) => CaptureFormat::Pcap,
            Format::PcapNg(_) => CaptureFormat::PcapNg,
        }
    }
}

enum Format {
    Pcap(PcapState),
    PcapNg(Box<NgState>),
}

/// What one container step produced.
enum Step {
    Packet(Rec),
    /// A non-packet block (or a section/interface definition).
    Other,
    /// A packet block that cannot be used although the file structure is intact.
    Malformed,
    End,
}

/// A packet record located in the input buffer.
struct Rec {
    ts_micros: u64,
    orig_len: u32,
    interface: u32,
    link: IfLink,
    /// Index of the frame in `Input::buf`.
    data_start: usize,
    data_len: usize,
}

#[derive(Clone, Copy, Debug)]
enum IfLink {
    Supported(Link),
    Unsupported(u32),
    /// The interface description could not be decoded at all.
    Invalid,
}

fn rd_u16(b: &[u8], big: bool) -> u16 {
    let a = [b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn rd_u32(b: &[u8], big: bool) -> u32 {
    let mut a = [0u8; 4];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn rd_u64(b: &[u8], big: bool) -> u64 {
    let mut a = [0u8; 8];
    for (d, s) in a.iter_mut().zip(b) {
        *d = *s;
    }
    if big {
        u64::from_be_bytes(a)
    } else {
        u64::from_le_bytes(a)
    }
}

// ---------------------------------------------------------------------------------------------
// pcap

struct PcapState {
    parser: PcapParser,
    big_endian: bool,
    nanos: bool,
    link: Link,
    snaplen: u32,
    max_record: usize,
}

impl PcapState {
    fn open<R: Read>(input: &mut Input<R>) -> Result<Self, CaptureError> {
        if !input.fill(PCAP_FILE_HDR)? {
            return Err(corrupt(0, "file ends inside the pcap file header"));
        }
        let (_, parser) = PcapParser::new(&input.available()[..PCAP_FILE_HDR])
            .map_err(|e| corrupt(0, format!("bad pcap file header: {e}")))?;
        input.consume(PCAP_FILE_HDR);
        let header = parser.header();
        // Only the low 16 bits are the link type; the upper ones may carry FCS information.
        let link_type = u32::from(header.datalink) & 0xFFFF;
        let link = Link::from_link_type(link_type).ok_or(CaptureError::UnsupportedLinkType(link_type))?;
        let max_record = (header.snaplen as usize).clamp(PCAP_MIN_LIMIT, MAX_RECORD);
        Ok(PcapState {
            parser,
            big_endian: header.endianness == Endianness::Big,
            nanos: header.ts_resolution == TsResolution::NanoSecond,
            link,
            snaplen: header.snaplen,
            max_record,
        })
    }

    fn step<R: Read>(&mut self, input: &mut Input<R>) -> Result<Step, CaptureError> {
        let off = input.offset();
        if !input.fill(PCAP_REC_HDR)? {
            let left = input.available().len();
            if left == 0 {
                return Ok(Step::End);
            }
            return Err(corrupt(off, format!("file ends inside a packet record header ({left} of 16 bytes)")));
        }
        let caplen = rd_u32(&input.available()[8..12], self.big_endian) as usize;
        if caplen > self.max_record {
            return Err(corrupt(
                off,
                format!(
                    "packet record claims {caplen} captured bytes, more than the limit of {} (snaplen {})",
                    self.max_record, self.snaplen
                ),
            ));
        }
        let need = PCAP_REC_HDR + caplen;
        if !input.fill(need)? {
            let have = input.available().len() - PCAP_REC_HDR;
            return Err(corrupt(
                off,
                format!("file ends inside a packet record ({caplen} captured bytes announced, {have} present)"),
            ));
        }
        // pcap-file frames the record; its `PcapPacket` validation is skipped on purpose (it
        // rejects orig_len > snaplen, i.e. every truncated packet, and usec >= 1_000_000).
        let (_, raw) = self
            .parser
            .next_raw_packet(&input.available()[..need])
            .map_err(|e| corrupt(off, format!("bad packet record: {e}")))?;
        let frac = u64::from(raw.ts_frac);
        let ts_micros = u64::from(raw.ts_sec) * 1_000_000 + if self.nanos { frac / 1000 } else { frac };
        let rec = Rec {
            ts_micros,
            orig_len: raw.orig_len,
            interface: 0,
            link: IfLink::Supported(self.link),
            data_start: input.pos() + PCAP_REC_HDR,
            data_len: raw.data.len(),
        };
        input.consume(need);
        Ok(Step::Packet(rec))
    }
}

// ---------------------------------------------------------------------------------------------
// pcapng

#[derive(Clone, Copy, Debug)]
struct Iface {
    /// File-wide interface index.
    global: u32,
    link: IfLink,
    snaplen: u32,
    tsresol: u8,
    tsoffset: i64,
}

struct NgState {
    /// pcap-file's block parser; only used for framing and SHB/IDB decoding.
    parser: PcapNgParser,
    big_endian: bool,
    /// Interfaces of the current section.
    ifaces: Vec<Iface>,
    next_global: u32,
    last_ts: u64,
}

impl NgState {
    fn new() -> Result<Self, CaptureError> {
        Ok(NgState {
            parser: fresh_ng_parser(false)?,
            big_endian: false,
            ifaces: Vec::new(),
            next_global: 0,
            last_ts: 0,
        })
    }

    fn step<R: Read>(&mut self, input: &mut Input<R>, unsupported: &mut Vec<u32>) -> Result<Step, CaptureError> {
        let off = input.offset();
        if !input.fill(12)? {
            let left = input.available().len();
            if left == 0 {
                return Ok(Step::End);
            }
            return Err(corrupt(off, format!("file ends inside a block header ({left} of 12 bytes)")));
        }
        let head = input.available();
        // The SHB type is a byte-order palindrome; its byte order comes from its magic.
        let btype = rd_u32(&head[0..4], self.big_endian);
        let big = if btype == SHB {
            match head[8..12] {
                [0x1A, 0x2B, 0x3C, 0x4D] => true,
                [0x4D, 0x3C, 0x2B, 0x1A] => false,
                _ => return Err(corrupt(off, "section header block with an invalid byte-order magic")),
            }
        } else {
            self.big_endian
        };
        let len = rd_u32(&head[4..8], big) as usize;
        if len < 12 || len & 3 != 0 {
            return Err(corrupt(off, format!("invalid block total length {len} (block type {btype:#x})")));
        }
        if len > MAX_RECORD {
            return Err(corrupt(
                off,
                format!("block of {len} bytes (type {btype:#x}) exceeds the {MAX_RECORD}-byte limit"),
            ));
        }
        if !input.fill(len)? {
            let have = input.available().len();
            return Err(corrupt(
                off,
                format!("file ends inside a block (type {btype:#x}, {len} bytes announced, {have} present)"),
            ));
        }
        let block_start = input.pos();
        let block = &input.available()[..len];
        // Framing (lengths, trailer) and SHB/IDB decoding by pcap-file.
        let lib_ok = match self.parser.next_raw_block(block) {
            Ok(_) => true,
            Err(e) => {
                let trailer_ok = rd_u32(&block[len - 4..], big) as usize == len;
                if !(trailer_ok && (btype == SHB || btype == IDB)) {
                    return Err(corrupt(off, format!("bad block (type {btype:#x}): {e}")));
                }
                // pcap-file rejected the options of an SHB/IDB whose framing is intact: decode
                // the fields we need ourselves (see crate docs).
                false
            }
        };
        let body = &block[8..len - 4];
        let step = match btype {
            SHB => {
                if body.len() < 16 {
                    return Err(corrupt(off, "section header block too short"));
                }
                let major = rd_u16(&body[4..6], big);
                if major != 1 {
                    return Err(corrupt(
                        off,
                        format!("unsupported pcapng version {major}.{}", rd_u16(&body[6..8], big)),
                    ));
                }
                if !lib_ok {
                    self.parser = fresh_ng_parser(big)?;
                }
                self.big_endian = big;
                self.ifaces.clear();
                Step::Other
            }
            IDB => {
                let decoded = if lib_ok { self.parser.interfaces().last().map(idb_from_lib) } else { None };
                let (link, snaplen, tsresol, tsoffset) = decoded.unwrap_or_else(|| idb_lenient(body, big));
                if let IfLink::Unsupported(lt) = link {
                    if !unsupported.contains(&lt) {
                        unsupported.push(lt);
                    }
                }
                self.ifaces.push(Iface { global: self.next_global, link, snaplen, tsresol, tsoffset });
                self.next_global = self.next_global.saturating_add(1);
                Step::Other
            }
            EPB | PB if body.len() < 20 => Step::Malformed,
            EPB | PB => {
                let if_id = if btype == EPB { rd_u32(&body[0..4], big) } else { u32::from(rd_u16(&body[0..2], big)) };
                let ticks = (u64::from(rd_u32(&body[4..8], big)) << 32) | u64::from(rd_u32(&body[8..12], big));
                let caplen = rd_u32(&body[12..16], big) as usize;
                let orig_len = rd_u32(&body[16..20], big);
                match self.ifaces.get(if_id as usize) {
                    Some(iface) if caplen <= body.len() - 20 => {
                        let ts_micros = ticks_to_micros(ticks, iface.tsresol, iface.tsoffset);
                        self.last_ts = ts_micros;
                        Step::Packet(Rec {
                            ts_micros,
                            orig_len,
                            interface: iface.global,
                            link: iface.link,
                            data_start: block_start + 8 + 20,
                            data_len: caplen,
                        })
                    }
                    _ => Step::Malformed,
                }
            }
            SPB if body.len() < 4 => Step::Malformed,
            SPB => match self.ifaces.first() {
                Some(iface) => {
                    let orig_len = rd_u32(&body[0..4], big);
                    let mut caplen = (orig_len as usize).min(body.len() - 4);
                    if iface.snaplen != 0 {
                        caplen = caplen.min(iface.snaplen as usize);
                    }
                    Step::Packet(Rec {
                        ts_micros: self.last_ts,
                        orig_len,
                        interface: iface.global,
                        link: iface.link,
                        data_start: block_start + 8 + 4,
                        data_len: caplen,
                    })
                }
                None => Step::Malformed,
            },
            _ => Step::Other,
        };
        input.consume(len);
        Ok(step)
    }
}

/// A pcap-file pcapng parser in the given byte order with no interfaces. pcap-file offers no
/// other way to (re)start a section when it rejected the real section header's options.
fn fresh_ng_parser(big: bool) -> Result<PcapNgParser, CaptureError> {
    let w16 = |v: u16| if big { v.to_be_bytes() } else { v.to_le_bytes() };
    let w32 = |v: u32| if big { v.to_be_bytes() } else { v.to_le_bytes() };
    let mut shb = Vec::with_capacity(28);
    shb.extend(SHB.to_be_bytes());
    shb.extend(w32(28));
    shb.extend(w32(0x1A2B_3C4D));
    shb.extend(w16(1));
    shb.extend(w16(0));
    shb.extend([0xFF; 8]); // section length: unknown
    shb.extend(w32(28));
    PcapNgParser::new(&shb)
        .map(|(_, p)| p)
        .map_err(|e| corrupt(0, format!("internal: pcap-file rejected a minimal section header: {e}")))
}

fn if_link(link_type: u32) -> IfLink {
    match Link::from_link_type(link_type) {
        Some(l) => IfLink::Supported(l),
        None => IfLink::Unsupported(link_type),
    }
}

type IdbFields = (IfLink, u32, u8, i64);

fn idb_from_lib(idb: &pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock<'_>) -> IdbFields {
    let (mut tsresol, mut tsoffset) = (6u8, 0i64);
    for opt in &idb.options {
        match *opt {
            InterfaceDescriptionOption::IfTsResol(r) => tsresol = r,
            // The spec defines if_tsoffset as a signed 64-bit value; pcap-file stores it as u64.
            InterfaceDescriptionOption::IfTsOffset(o) => tsoffset = o as i64,
            _ => {}
        }
    }
    (if_link(u32::from(idb.linktype)), idb.snaplen, tsresol, tsoffset)
}

/// IDB decoding that tolerates what the spec tolerates (or what writers get wrong): missing
/// `opt_endofopt`, bad strings, odd option lengths. Only link type, snap length, `if_tsresol` and
/// `if_tsoffset` matter here.
fn idb_lenient(body: &[u8], big: bool) -> IdbFields {
    if body.len() < 8 {
        return (IfLink::Invalid, 0, 6, 0);
    }
    let link = if_link(u32::from(rd_u16(&body[0..2], big)));
    let snaplen = rd_u32(&body[4..8], big);
    let (mut tsresol, mut tsoffset) = (6u8, 0i64);
    let mut opts = &body[8..];
    while opts.len() >= 4 {
        let code = rd_u16(&opts[0..2], big);
        let olen = usize::from(rd_u16(&opts[2..4], big));
        let Some(val) = opts.get(4..4 + olen) else { break };
        match (code, olen) {
            (0, _) => break,
            (9, 1) => tsresol = val[0],
            (14, 8) => tsoffset = rd_u64(val, big) as i64,
            _ => {}
        }
        opts = opts.get(4 + olen + (4 - olen % 4) % 4..).unwrap_or_default();
    }
    (link, snaplen, tsresol, tsoffset)
}

/// Converts a pcapng timestamp (in units of `if_tsresol`) to microseconds since the epoch,
/// adding `if_tsoffset` seconds. Saturates instead of overflowing.
fn ticks_to_micros(ticks: u64, tsresol: u8, offset_secs: i64) -> u64 {
    let t = u128::from(ticks);
    let micros: u128 = if tsresol & 0x80 == 0 {
        // Units of 10^-tsresol seconds.
        let e = u32::from(tsresol);
        if e >= 6 {
            match 10u128.checked_pow(e - 6) {
                Some(div) => t / div,
                None => 0,
            }
        } else {
            t * 10u128.pow(6 - e)
        }
    } else {
        // Units of 2^-(tsresol & 0x7f) seconds; t * 10^6 < 2^84 cannot overflow.
        (t * 1_000_000) >> u32::from(tsresol & 0x7F)
    };
    let total = micros as i128 + i128::from(offset_secs) * 1_000_000;
    total.clamp(0, i128::from(u64::MAX)) as u64
}
