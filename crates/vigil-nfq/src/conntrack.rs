//! A small, typed ctnetlink client: look up, re-mark and delete conntrack
//! entries by their original-direction tuple.
//!
//! vigil offloads decided flows by setting a connmark bit; when a reloaded
//! policy blocks such a flow, [`Conntrack::set_mark`] clears the bit (the
//! next packet is queued to user space again) or [`Conntrack::delete`] drops
//! the entry (the next packet creates a new entry, which is queued again).
//! [`Conntrack::get`] reads an entry, including its counters when
//! `net.netfilter.nf_conntrack_acct=1`; [`Conntrack::dump`] lists the whole
//! table (both families), e.g. to reconcile counters after conntrack events
//! were lost (see [`crate::ct_events`]).
//!
//! Layout (see `include/uapi/linux/netfilter/nfnetlink_conntrack.h`): same
//! `NETLINK_NETFILTER` socket family and nfgenmsg header as
//! nfnetlink_queue, subsystem [`NFNL_SUBSYS_CTNETLINK`]; nfgenmsg family is
//! `AF_INET`/`AF_INET6` of the tuple. The tuple is
//! `CTA_TUPLE_ORIG { CTA_TUPLE_IP { CTA_IP_V4_SRC/DST | CTA_IP_V6_SRC/DST },
//! CTA_TUPLE_PROTO { CTA_PROTO_NUM, ports | ICMP id/type/code } }`, nests
//! carry `NLA_F_NESTED`, attribute contents are big endian.
//!
//! Scope:
//! * Only the **default conntrack zone** (no `CTA_ZONE` is sent): entries in
//!   other zones are not found (`get` → `None`, `delete`/`set_mark` →
//!   `false`).
//! * The tuple is the **original** direction, as the client sent it (before
//!   NAT).
//! * Every request carries `NLM_F_ACK` and waits for the kernel's answer;
//!   `ENOENT` means "no such entry", any other refusal is
//!   [`NfqError::Kernel`] naming the operation and the tuple.
//!
//! The encoders ([`encode_get`], [`encode_delete`], [`encode_set_mark`]) and
//! the decoder ([`parse_entry`]) are pure functions; decoding never panics.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::NfqError;
use crate::queue::{open_netlink_socket, poll_in, send_all};
use crate::wire::{
    self, attr_u32, attrs, end_nest, finish_msg, put_attr, put_be32, start_nest, start_nfnl_msg, NlMsgHdr, WireError,
    NFGENMSG_LEN, NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, NLM_F_ACK, NLM_F_REQUEST,
};
pub use crate::wire::{CTA_ID, CTA_MARK};

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/// nfnetlink subsystem id of ctnetlink.
pub const NFNL_SUBSYS_CTNETLINK: u16 = 1;

/// `enum cntl_msg_types` (subset).
pub const IPCTNL_MSG_CT_NEW: u16 = 0;
pub const IPCTNL_MSG_CT_GET: u16 = 1;
pub const IPCTNL_MSG_CT_DELETE: u16 = 2;
/// A dump that atomically reads and zeroes the counters.
pub const IPCTNL_MSG_CT_GET_CTRZERO: u16 = 3;

/// `enum ctattr_type` (subset; `CTA_MARK` and `CTA_ID` are re-exported from
/// [`crate::wire`]).
pub const CTA_TUPLE_ORIG: u16 = 1;
pub const CTA_TUPLE_REPLY: u16 = 2;
pub const CTA_STATUS: u16 = 3;
pub const CTA_PROTOINFO: u16 = 4;
pub const CTA_TIMEOUT: u16 = 7;
pub const CTA_COUNTERS_ORIG: u16 = 9;
pub const CTA_COUNTERS_REPLY: u16 = 10;
pub const CTA_ZONE: u16 = 18;
pub const CTA_TIMESTAMP: u16 = 20;
pub const CTA_MARK_MASK: u16 = 21;
/// When the event was generated (Linux >= 6.2, with timestamps on).
pub const CTA_TIMESTAMP_EVENT: u16 = 27;

/// `enum ctattr_protoinfo` / `enum ctattr_protoinfo_tcp` (subset).
pub const CTA_PROTOINFO_TCP: u16 = 1;
pub const CTA_PROTOINFO_TCP_STATE: u16 = 1;

/// `enum ctattr_tstamp`.
pub const CTA_TIMESTAMP_START: u16 = 1;
pub const CTA_TIMESTAMP_STOP: u16 = 2;

/// `nlmsg_flags` of dumps and events (not in [`crate::wire`]).
pub const NLM_F_MULTI: u16 = 0x2;
/// The dump was interrupted by a table change: entries may be missing or
/// repeated.
pub const NLM_F_DUMP_INTR: u16 = 0x10;
/// `NLM_F_ROOT | NLM_F_MATCH`.
pub const NLM_F_DUMP: u16 = 0x300;
/// On an event: `NLM_F_CREATE | NLM_F_EXCL` mark a NEW (not UPDATE) event.
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;

/// `enum ctattr_tuple`.
pub const CTA_TUPLE_IP: u16 = 1;
pub const CTA_TUPLE_PROTO: u16 = 2;

/// `enum ctattr_ip`.
pub const CTA_IP_V4_SRC: u16 = 1;
pub const CTA_IP_V4_DST: u16 = 2;
pub const CTA_IP_V6_SRC: u16 = 3;
pub const CTA_IP_V6_DST: u16 = 4;

/// `enum ctattr_l4proto`.
pub const CTA_PROTO_NUM: u16 = 1;
pub const CTA_PROTO_SRC_PORT: u16 = 2;
pub const CTA_PROTO_DST_PORT: u16 = 3;
pub const CTA_PROTO_ICMP_ID: u16 = 4;
pub const CTA_PROTO_ICMP_TYPE: u16 = 5;
pub const CTA_PROTO_ICMP_CODE: u16 = 6;
pub const CTA_PROTO_ICMPV6_ID: u16 = 7;
pub const CTA_PROTO_ICMPV6_TYPE: u16 = 8;
pub const CTA_PROTO_ICMPV6_CODE: u16 = 9;

/// `enum ctattr_counters`.
pub const CTA_COUNTERS_PACKETS: u16 = 1;
pub const CTA_COUNTERS_BYTES: u16 = 2;
pub const CTA_COUNTERS32_PACKETS: u16 = 3;
pub const CTA_COUNTERS32_BYTES: u16 = 4;

/// `enum ip_conntrack_status` bits (subset) of [`CtEntry::status`].
pub const IPS_EXPECTED: u32 = 1 << 0;
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_ASSURED: u32 = 1 << 2;
pub const IPS_CONFIRMED: u32 = 1 << 3;
pub const IPS_SRC_NAT: u32 = 1 << 4;
pub const IPS_DST_NAT: u32 = 1 << 5;
pub const IPS_DYING: u32 = 1 << 9;
pub const IPS_OFFLOAD: u32 = 1 << 14;

/// IP protocol numbers with port-based tuples in conntrack.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_DCCP: u8 = 33;
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;

/// `(NFNL_SUBSYS_CTNETLINK << 8) | msg`.
pub const fn ct_msg_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_CTNETLINK << 8) | msg
}

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// Encoding/decoding failures specific to ctnetlink.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CtError {
    /// The tuple's source and destination are of different address families.
    #[error("conntrack tuple mixes address families: {src} -> {dst}")]
    MixedFamilies { src: IpAddr, dst: IpAddr },
    /// A conntrack message lacks an attribute it must have.
    #[error("conntrack message without {0}")]
    MissingAttr(&'static str),
    /// The message does not have the documented netlink layout.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// One direction of a connection, as conntrack keys it.
///
/// For ICMP/ICMPv6 (echo and the other query types conntrack tracks) the
/// kernel keys on id, type and code instead of ports; they are stored here
/// as `sport = id` and `dport = type << 8 | code` (see [`CtTuple::icmp`]).
/// Protocols other than TCP, UDP, UDP-Lite, SCTP, DCCP, GRE and ICMP are
/// keyed on addresses and protocol only; their ports are ignored when
/// encoding and 0 when decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtTuple {
    /// IP protocol number (`IPPROTO_*`).
    pub proto: u8,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub sport: u16,
    pub dport: u16,
}

impl CtTuple {
    /// A port-based tuple.
    pub fn new(proto: u8, src: SocketAddr, dst: SocketAddr) -> Self {
        CtTuple { proto, src: src.ip(), dst: dst.ip(), sport: src.port(), dport: dst.port() }
    }

    pub fn tcp(src: SocketAddr, dst: SocketAddr) -> Self {
        Self::new(IPPROTO_TCP, src, dst)
    }

    pub fn udp(src: SocketAddr, dst: SocketAddr) -> Self {
        Self::new(IPPROTO_UDP, src, dst)
    }

    /// An ICMP (IPv4 addresses) or ICMPv6 (IPv6 addresses) tuple.
    pub fn icmp(src: IpAddr, dst: IpAddr, id: u16, icmp_type: u8, code: u8) -> Self {
        let proto = if src.is_ipv6() { IPPROTO_ICMPV6 } else { IPPROTO_ICMP };
        CtTuple { proto, src, dst, sport: id, dport: u16::from_be_bytes([icmp_type, code]) }
    }

    /// The same connection seen from the other end (addresses and ports
    /// swapped). For ICMP this is not the kernel's reply tuple (the type
    /// changes too).
    pub fn reversed(&self) -> Self {
        CtTuple { proto: self.proto, src: self.dst, dst: self.src, sport: self.dport, dport: self.sport }
    }

    fn is_icmp(&self) -> bool {
        self.proto == IPPROTO_ICMP || self.proto == IPPROTO_ICMPV6
    }

    /// `AF_INET` or `AF_INET6`; an error when source and destination differ.
    pub fn family(&self) -> Result<u8, CtError> {
        match (self.src, self.dst) {
            (IpAddr::V4(_), IpAddr::V4(_)) => Ok(libc::AF_INET as u8),
            (IpAddr::V6(_), IpAddr::V6(_)) => Ok(libc::AF_INET6 as u8),
            (src, dst) => Err(CtError::MixedFamilies { src, dst }),
        }
    }
}

fn has_ports(proto: u8) -> bool {
    matches!(proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_UDPLITE | IPPROTO_SCTP | IPPROTO_DCCP | IPPROTO_GRE)
}

fn proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        IPPROTO_ICMP => "icmp",
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_DCCP => "dccp",
        IPPROTO_GRE => "gre",
        IPPROTO_ICMPV6 => "icmpv6",
        IPPROTO_SCTP => "sctp",
        IPPROTO_UDPLITE => "udplite",
        _ => return None,
    })
}

impl fmt::Display for CtTuple {
    /// `tcp 10.0.0.1:40000 -> [2001:db8::1]:443`, `icmp 10.0.0.1 -> 10.0.0.2 id 7 type 8 code 0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match proto_name(self.proto) {
            Some(n) => write!(f, "{n} ")?,
            None => write!(f, "proto {} ", self.proto)?,
        }
        if self.is_icmp() {
            let [ty, code] = self.dport.to_be_bytes();
            write!(f, "{} -> {} id {} type {ty} code {code}", self.src, self.dst, self.sport)
        } else if has_ports(self.proto) {
            write!(f, "{} -> {}", SocketAddr::new(self.src, self.sport), SocketAddr::new(self.dst, self.dport))
        } else {
            write!(f, "{} -> {}", self.src, self.dst)
        }
    }
}

/// A conntrack entry as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct CtEntry {
    /// `CTA_ID`: the kernel's id of the entry (stable while it lives).
    pub id: u32,
    /// `CTA_MARK` (0 when the kernel did not send it).
    pub mark: u32,
    pub orig: CtTuple,
    pub reply: CtTuple,
    /// `CTA_COUNTERS_ORIG`/`_REPLY`: present when `nf_conntrack_acct` was on
    /// when the entry was created.
    pub packets_orig: Option<u64>,
    pub bytes_orig: Option<u64>,
    pub packets_reply: Option<u64>,
    pub bytes_reply: Option<u64>,
    /// `CTA_STATUS`: `IPS_*` bits.
    pub status: u32,
    /// `CTA_TIMEOUT`: seconds until the entry expires (absent in DESTROY
    /// events).
    pub timeout: Option<u32>,
    /// `CTA_ZONE` (0, the default zone, when absent).
    pub zone: u16,
    /// `CTA_TIMESTAMP_START`/`_STOP`: wall-clock nanoseconds since the Unix
    /// epoch when the entry was created / destroyed; present when
    /// `net.netfilter.nf_conntrack_timestamp` was on when the entry was
    /// created (`stop` only in DESTROY events).
    pub timestamp_start: Option<u64>,
    pub timestamp_stop: Option<u64>,
    /// `CTA_TIMESTAMP_EVENT`: wall-clock nanoseconds when the kernel
    /// generated this event (events only; Linux >= 6.2 with
    /// `nf_conntrack_timestamp` on).
    pub timestamp_event: Option<u64>,
    /// `CTA_PROTOINFO_TCP_STATE`: `enum tcp_conntrack` (3 = ESTABLISHED,
    /// 7 = TIME_WAIT, 8 = CLOSE, ...), TCP only.
    pub tcp_state: Option<u8>,
}

impl CtEntry {
    /// Bytes in both directions (L3 lengths); `None` without accounting.
    pub fn bytes_total(&self) -> Option<u64> {
        Some(self.bytes_orig?.saturating_add(self.bytes_reply?))
    }

    /// Packets in both directions; `None` without accounting.
    pub fn packets_total(&self) -> Option<u64> {
        Some(self.packets_orig?.saturating_add(self.packets_reply?))
    }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

fn put_tuple(buf: &mut Vec<u8>, ty: u16, t: &CtTuple) {
    let tuple = start_nest(buf, ty);
    let ip = start_nest(buf, CTA_TUPLE_IP);
    match (t.src, t.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            put_attr(buf, CTA_IP_V4_SRC, &s.octets());
            put_attr(buf, CTA_IP_V4_DST, &d.octets());
        }
        // Families are checked by the callers (CtTuple::family).
        (s, d) => {
            put_attr(buf, CTA_IP_V6_SRC, &v6_octets(s));
            put_attr(buf, CTA_IP_V6_DST, &v6_octets(d));
        }
    }
    end_nest(buf, ip);
    let proto = start_nest(buf, CTA_TUPLE_PROTO);
    put_attr(buf, CTA_PROTO_NUM, &[t.proto]);
    if t.is_icmp() {
        let (id, ty, code) = if t.proto == IPPROTO_ICMP {
            (CTA_PROTO_ICMP_ID, CTA_PROTO_ICMP_TYPE, CTA_PROTO_ICMP_CODE)
        } else {
            (CTA_PROTO_ICMPV6_ID, CTA_PROTO_ICMPV6_TYPE, CTA_PROTO_ICMPV6_CODE)
        };
        let [icmp_type, icmp_code] = t.dport.to_be_bytes();
        put_attr(buf, id, &t.sport.to_be_bytes());
        put_attr(buf, ty, &[icmp_type]);
        put_attr(buf, code, &[icmp_code]);
    } else if has_ports(t.proto) {
        put_attr(buf, CTA_PROTO_SRC_PORT, &t.sport.to_be_bytes());
        put_attr(buf, CTA_PROTO_DST_PORT, &t.dport.to_be_bytes());
    }
    end_nest(buf, proto);
    end_nest(buf, tuple);
}

fn v6_octets(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V6(a) => a.octets(),
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
    }
}

/// Header + `CTA_TUPLE_ORIG` + `extra` attributes; nothing is appended on
/// error.
fn encode_with_tuple(
    buf: &mut Vec<u8>,
    msg: u16,
    seq: u32,
    t: &CtTuple,
    extra: impl FnOnce(&mut Vec<u8>),
) -> Result<usize, CtError> {
    let family = t.family()?;
    let before = buf.len();
    let start = start_nfnl_msg(buf, ct_msg_type(msg), NLM_F_REQUEST | NLM_F_ACK, seq, family, 0);
    put_tuple(buf, CTA_TUPLE_ORIG, t);
    extra(buf);
    finish_msg(buf, start);
    Ok(buf.len() - before)
}

/// `IPCTNL_MSG_CT_GET` of the entry whose original tuple is `t`
/// (`NLM_F_REQUEST | NLM_F_ACK`). Returns the number of bytes appended.
pub fn encode_get(buf: &mut Vec<u8>, seq: u32, t: &CtTuple) -> Result<usize, CtError> {
    encode_with_tuple(buf, IPCTNL_MSG_CT_GET, seq, t, |_| {})
}

/// `IPCTNL_MSG_CT_DELETE` of the entry whose original tuple is `t`.
///
/// The tuple is always present: a delete *without* a tuple would flush the
/// whole table of that family.
pub fn encode_delete(buf: &mut Vec<u8>, seq: u32, t: &CtTuple) -> Result<usize, CtError> {
    encode_with_tuple(buf, IPCTNL_MSG_CT_DELETE, seq, t, |_| {})
}

/// `IPCTNL_MSG_CT_NEW` *without* `NLM_F_CREATE` (update an existing entry,
/// `ENOENT` otherwise) setting the connmark.
///
/// With `mask = None` the mark is replaced by `mark`. With `Some(mask)` the
/// kernel computes `(old & !mask) ^ CTA_MARK`; `CTA_MARK` is sent as
/// `mark & mask`, so the result is `(old & !mask) | (mark & mask)`.
pub fn encode_set_mark(
    buf: &mut Vec<u8>,
    seq: u32,
    t: &CtTuple,
    mark: u32,
    mask: Option<u32>,
) -> Result<usize, CtError> {
    encode_with_tuple(buf, IPCTNL_MSG_CT_NEW, seq, t, |buf| match mask {
        Some(mask) => {
            put_be32(buf, CTA_MARK, mark & mask);
            put_be32(buf, CTA_MARK_MASK, mask);
        }
        None => put_be32(buf, CTA_MARK, mark),
    })
}

/// What a dump lists and whether it zeroes counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct DumpRequest {
    /// `AF_INET`, `AF_INET6`, or 0 (`AF_UNSPEC`) for both.
    pub family: u8,
    /// Only entries with `mark & mask == value & mask` (`CTA_MARK` +
    /// `CTA_MARK_MASK`, filtered in the kernel).
    pub mark: Option<(u32, u32)>,
    /// `IPCTNL_MSG_CT_GET_CTRZERO`: each entry's counters are read and reset
    /// to zero atomically.
    pub zero_counters: bool,
}

impl DumpRequest {
    /// Every entry of both families.
    pub fn all() -> Self {
        DumpRequest::default()
    }

    /// Entries with `mark & mask == value & mask`.
    pub fn with_mark(mut self, value: u32, mask: u32) -> Self {
        self.mark = Some((value & mask, mask));
        self
    }

    /// Only `AF_INET` or `AF_INET6` entries.
    pub fn with_family(mut self, family: u8) -> Self {
        self.family = family;
        self
    }

    /// Read and zero the counters ([`IPCTNL_MSG_CT_GET_CTRZERO`]).
    pub fn zeroing_counters(mut self) -> Self {
        self.zero_counters = true;
        self
    }
}

/// A dump request (`NLM_F_REQUEST | NLM_F_DUMP`) of the conntrack table.
/// Returns the number of bytes appended.
pub fn encode_dump(buf: &mut Vec<u8>, seq: u32, req: &DumpRequest) -> usize {
    let before = buf.len();
    let msg = if req.zero_counters { IPCTNL_MSG_CT_GET_CTRZERO } else { IPCTNL_MSG_CT_GET };
    let start = start_nfnl_msg(buf, ct_msg_type(msg), NLM_F_REQUEST | NLM_F_DUMP, seq, req.family, 0);
    if let Some((value, mask)) = req.mark {
        put_be32(buf, CTA_MARK, value);
        put_be32(buf, CTA_MARK_MASK, mask);
    }
    finish_msg(buf, start);
    buf.len() - before
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

fn attr_u8(name: &'static str, data: &[u8]) -> Result<u8, WireError> {
    match data {
        [b] => Ok(*b),
        _ => Err(WireError::BadAttrSize { name, len: data.len(), expected: 1 }),
    }
}

fn attr_u16(name: &'static str, data: &[u8]) -> Result<u16, WireError> {
    match data {
        [a, b] => Ok(u16::from_be_bytes([*a, *b])),
        _ => Err(WireError::BadAttrSize { name, len: data.len(), expected: 2 }),
    }
}

fn attr_u64(name: &'static str, data: &[u8]) -> Result<u64, WireError> {
    let a: [u8; 8] = data.try_into().map_err(|_| WireError::BadAttrSize { name, len: data.len(), expected: 8 })?;
    Ok(u64::from_be_bytes(a))
}

fn attr_v4(name: &'static str, data: &[u8]) -> Result<IpAddr, WireError> {
    let a: [u8; 4] = data.try_into().map_err(|_| WireError::BadAttrSize { name, len: data.len(), expected: 4 })?;
    Ok(IpAddr::V4(Ipv4Addr::from(a)))
}

fn attr_v6(name: &'static str, data: &[u8]) -> Result<IpAddr, WireError> {
    let a: [u8; 16] = data.try_into().map_err(|_| WireError::BadAttrSize { name, len: data.len(), expected: 16 })?;
    Ok(IpAddr::V6(Ipv6Addr::from(a)))
}

/// Decode the contents of a `CTA_TUPLE_ORIG`/`CTA_TUPLE_REPLY` nest.
pub fn parse_tuple(nest: &[u8]) -> Result<CtTuple, CtError> {
    let (mut src, mut dst, mut proto) = (None, None, None);
    let (mut sport, mut dport) = (0u16, 0u16);
    let (mut icmp_type, mut icmp_code) = (0u8, 0u8);
    for a in attrs(nest) {
        let (ty, data) = a?;
        match ty {
            CTA_TUPLE_IP => {
                for a in attrs(data) {
                    let (ty, data) = a?;
                    match ty {
                        CTA_IP_V4_SRC => src = Some(attr_v4("CTA_IP_V4_SRC", data)?),
                        CTA_IP_V4_DST => dst = Some(attr_v4("CTA_IP_V4_DST", data)?),
                        CTA_IP_V6_SRC => src = Some(attr_v6("CTA_IP_V6_SRC", data)?),
                        CTA_IP_V6_DST => dst = Some(attr_v6("CTA_IP_V6_DST", data)?),
                        _ => {}
                    }
                }
            }
            CTA_TUPLE_PROTO => {
                for a in attrs(data) {
                    let (ty, data) = a?;
                    match ty {
                        CTA_PROTO_NUM => proto = Some(attr_u8("CTA_PROTO_NUM", data)?),
                        CTA_PROTO_SRC_PORT => sport = attr_u16("CTA_PROTO_SRC_PORT", data)?,
                        CTA_PROTO_DST_PORT => dport = attr_u16("CTA_PROTO_DST_PORT", data)?,
                        CTA_PROTO_ICMP_ID | CTA_PROTO_ICMPV6_ID => sport = attr_u16("CTA_PROTO_ICMP_ID", data)?,
                        CTA_PROTO_ICMP_TYPE | CTA_PROTO_ICMPV6_TYPE => {
                            icmp_type = attr_u8("CTA_PROTO_ICMP_TYPE", data)?
                        }
                        CTA_PROTO_ICMP_CODE | CTA_PROTO_ICMPV6_CODE => {
                            icmp_code = attr_u8("CTA_PROTO_ICMP_CODE", data)?
                        }
                        _ => {}
                    }
                }
            }
            _ => {} // CTA_TUPLE_ZONE, future attributes
        }
    }
    let proto = proto.ok_or(CtError::MissingAttr("CTA_PROTO_NUM"))?;
    if proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6 {
        dport = u16::from_be_bytes([icmp_type, icmp_code]);
    }
    Ok(CtTuple {
        proto,
        src: src.ok_or(CtError::MissingAttr("CTA_TUPLE_IP source address"))?,
        dst: dst.ok_or(CtError::MissingAttr("CTA_TUPLE_IP destination address"))?,
        sport,
        dport,
    })
}

/// `(packets, bytes)` of a `CTA_COUNTERS_*` nest.
fn parse_counters(nest: &[u8]) -> Result<(Option<u64>, Option<u64>), CtError> {
    let (mut packets, mut bytes) = (None, None);
    for a in attrs(nest) {
        let (ty, data) = a?;
        match ty {
            CTA_COUNTERS_PACKETS => packets = Some(attr_u64("CTA_COUNTERS_PACKETS", data)?),
            CTA_COUNTERS_BYTES => bytes = Some(attr_u64("CTA_COUNTERS_BYTES", data)?),
            CTA_COUNTERS32_PACKETS => packets = Some(u64::from(attr_u32("CTA_COUNTERS32_PACKETS", data)?)),
            CTA_COUNTERS32_BYTES => bytes = Some(u64::from(attr_u32("CTA_COUNTERS32_BYTES", data)?)),
            _ => {} // CTA_COUNTERS_PAD
        }
    }
    Ok((packets, bytes))
}

/// `(start, stop)` of a `CTA_TIMESTAMP` nest.
fn parse_timestamp(nest: &[u8]) -> Result<(Option<u64>, Option<u64>), CtError> {
    let (mut start, mut stop) = (None, None);
    for a in attrs(nest) {
        let (ty, data) = a?;
        match ty {
            CTA_TIMESTAMP_START => start = Some(attr_u64("CTA_TIMESTAMP_START", data)?),
            CTA_TIMESTAMP_STOP => stop = Some(attr_u64("CTA_TIMESTAMP_STOP", data)?),
            _ => {} // CTA_TIMESTAMP_PAD
        }
    }
    Ok((start, stop))
}

/// `CTA_PROTOINFO_TCP_STATE` of a `CTA_PROTOINFO` nest (other protocols'
/// protoinfo: `None`).
fn parse_tcp_state(nest: &[u8]) -> Result<Option<u8>, CtError> {
    let mut state = None;
    for a in attrs(nest) {
        let (ty, data) = a?;
        if ty == CTA_PROTOINFO_TCP {
            for a in attrs(data) {
                let (ty, data) = a?;
                if ty == CTA_PROTOINFO_TCP_STATE {
                    state = Some(attr_u8("CTA_PROTOINFO_TCP_STATE", data)?);
                }
            }
        }
    }
    Ok(state)
}

/// Whether `ty` is a ctnetlink message carrying one entry: the answer to
/// `IPCTNL_MSG_CT_GET` and dump entries (`CT_NEW` on Linux 6.18; the
/// request's type, `CT_GET`/`CT_GET_CTRZERO`, is accepted too), or an event
/// (`CT_NEW` for new and update events, `CT_DELETE` for destroy events).
pub fn is_entry_msg_type(ty: u16) -> bool {
    [IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_GET_CTRZERO]
        .iter()
        .any(|&m| ty == ct_msg_type(m))
}

/// Decode one conntrack entry message (header included): the answer to
/// `IPCTNL_MSG_CT_GET`, a dump entry or an event (see
/// [`is_entry_msg_type`]). Unknown attributes are ignored.
pub fn parse_entry(msg: &[u8]) -> Result<CtEntry, CtError> {
    let hdr = NlMsgHdr::parse(msg)?;
    if !is_entry_msg_type(hdr.ty) {
        return Err(WireError::UnexpectedType(hdr.ty).into());
    }
    let len = hdr.len as usize;
    if len > msg.len() || len < NLMSG_HDRLEN {
        return Err(WireError::BadMessageLength { len, remaining: msg.len() }.into());
    }
    let body = msg.get(NLMSG_HDRLEN + NFGENMSG_LEN..len).ok_or(WireError::Truncated {
        what: "nfgenmsg",
        need: NLMSG_HDRLEN + NFGENMSG_LEN,
        have: len,
    })?;
    let (mut id, mut status, mut orig, mut reply) = (None, None, None, None);
    let mut e = CtEntry {
        id: 0,
        mark: 0,
        orig: CtTuple {
            proto: 0,
            src: Ipv4Addr::UNSPECIFIED.into(),
            dst: Ipv4Addr::UNSPECIFIED.into(),
            sport: 0,
            dport: 0,
        },
        reply: CtTuple {
            proto: 0,
            src: Ipv4Addr::UNSPECIFIED.into(),
            dst: Ipv4Addr::UNSPECIFIED.into(),
            sport: 0,
            dport: 0,
        },
        packets_orig: None,
        bytes_orig: None,
        packets_reply: None,
        bytes_reply: None,
        status: 0,
        timeout: None,
        zone: 0,
        timestamp_start: None,
        timestamp_stop: None,
        timestamp_event: None,
        tcp_state: None,
    };
    for a in attrs(body) {
        let (ty, data) = a?;
        match ty {
            CTA_TUPLE_ORIG => orig = Some(parse_tuple(data)?),
            CTA_TUPLE_REPLY => reply = Some(parse_tuple(data)?),
            CTA_STATUS => status = Some(attr_u32("CTA_STATUS", data)?),
            CTA_TIMEOUT => e.timeout = Some(attr_u32("CTA_TIMEOUT", data)?),
            CTA_MARK => e.mark = attr_u32("CTA_MARK", data)?,
            CTA_ID => id = Some(attr_u32("CTA_ID", data)?),
            CTA_COUNTERS_ORIG => (e.packets_orig, e.bytes_orig) = parse_counters(data)?,
            CTA_COUNTERS_REPLY => (e.packets_reply, e.bytes_reply) = parse_counters(data)?,
            CTA_ZONE => e.zone = attr_u16("CTA_ZONE", data)?,
            CTA_TIMESTAMP => (e.timestamp_start, e.timestamp_stop) = parse_timestamp(data)?,
            CTA_TIMESTAMP_EVENT => e.timestamp_event = Some(attr_u64("CTA_TIMESTAMP_EVENT", data)?),
            CTA_PROTOINFO => e.tcp_state = parse_tcp_state(data)?,
            _ => {}
        }
    }
    e.orig = orig.ok_or(CtError::MissingAttr("CTA_TUPLE_ORIG"))?;
    e.reply = reply.ok_or(CtError::MissingAttr("CTA_TUPLE_REPLY"))?;
    e.id = id.ok_or(CtError::MissingAttr("CTA_ID"))?;
    e.status = status.ok_or(CtError::MissingAttr("CTA_STATUS"))?;
    Ok(e)
}

// ---------------------------------------------------------------------------
// Socket
// ---------------------------------------------------------------------------

/// Receive buffer: one entry is a few hundred bytes; a GET answer is one
/// entry plus the ACK.
const RECV_BUF: usize = 64 * 1024;
/// Retries when the kernel answers `EAGAIN` (it does after auto-loading
/// `nf_conntrack_netlink`, expecting the request to be repeated).
const EAGAIN_RETRIES: u32 = 3;

/// A ctnetlink socket in the network namespace of the thread that opened it.
///
/// Requests are synchronous: each waits for the kernel's answer (at most
/// [`Conntrack::set_timeout`], default 2 s). Not `Sync`; one per thread.
#[derive(Debug)]
pub struct Conntrack {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
    timeout: Duration,
    /// Masked mark updates (`CTA_MARK_MASK`) are done by the kernel; false
    /// after the kernel refused the mask, or when forced by the caller.
    kernel_mask: bool,
}

/// What the kernel answered to one request.
enum Answer {
    /// Acknowledged; the entry message when the request returned one.
    Ok(Option<Vec<u8>>),
    /// `ENOENT`.
    NotFound,
}

impl Conntrack {
    /// Open a `NETLINK_NETFILTER` socket in the calling thread's network
    /// namespace.
    pub fn open() -> Result<Conntrack, NfqError> {
        let fd = open_netlink_socket()?;
        Ok(Conntrack { fd, seq: 0, buf: vec![0; RECV_BUF], timeout: Duration::from_secs(2), kernel_mask: true })
    }

    /// How long a request waits for the kernel's answer.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Whether [`Conntrack::set_mark`] with a partial mask sends
    /// `CTA_MARK_MASK` (atomic in the kernel) rather than reading the entry
    /// and writing the computed mark.
    pub fn kernel_mark_mask(&self) -> bool {
        self.kernel_mask
    }

    /// Force read-modify-write for masked mark updates (`false`), e.g. on
    /// kernels old enough to silently ignore `CTA_MARK_MASK` on update, or
    /// go back to kernel-side masking (`true`).
    pub fn set_kernel_mark_mask(&mut self, on: bool) {
        self.kernel_mask = on;
    }

    /// Delete the entry whose original tuple is `t`. `Ok(false)` when there
    /// is no such entry.
    pub fn delete(&mut self, t: &CtTuple) -> Result<bool, NfqError> {
        let a = self.call("delete", t, |buf, seq| encode_delete(buf, seq, t))?;
        Ok(matches!(a, Answer::Ok(_)))
    }

    /// Set the bits of `mask` in the connmark to those of `mark`, keeping the
    /// others: `new = (old & !mask) | (mark & mask)`. `mask = u32::MAX`
    /// replaces the mark. `Ok(false)` when there is no such entry.
    ///
    /// A partial mask is sent as `CTA_MARK_MASK` and applied atomically by
    /// the kernel. If the kernel refuses the attribute (`EINVAL` or
    /// `EOPNOTSUPP`), this handle switches to read-modify-write (`get`, then
    /// an update with the computed mark), which can race with concurrent
    /// mark changes by rules in the kernel.
    pub fn set_mark(&mut self, t: &CtTuple, mark: u32, mask: u32) -> Result<bool, NfqError> {
        let full = mask == u32::MAX;
        if full || self.kernel_mask {
            let m = if full { None } else { Some(mask) };
            match self.call("set mark on", t, |buf, seq| encode_set_mark(buf, seq, t, mark, m)) {
                Ok(a) => return Ok(matches!(a, Answer::Ok(_))),
                Err(NfqError::Kernel { errno, .. })
                    if !full && (errno == libc::EINVAL || errno == libc::EOPNOTSUPP) =>
                {
                    log::info!(
                        "conntrack: kernel refused a masked mark update (errno {errno}); \
                         using read-modify-write from now on"
                    );
                    self.kernel_mask = false;
                }
                Err(e) => return Err(e),
            }
        }
        let Some(cur) = self.get(t)? else { return Ok(false) };
        let new = (cur.mark & !mask) | (mark & mask);
        if new == cur.mark {
            return Ok(true);
        }
        let a = self.call("set mark on", t, |buf, seq| encode_set_mark(buf, seq, t, new, None))?;
        Ok(matches!(a, Answer::Ok(_)))
    }

    /// Read the entry whose original tuple is `t`; `None` when absent.
    pub fn get(&mut self, t: &CtTuple) -> Result<Option<CtEntry>, NfqError> {
        match self.get_raw(t)? {
            Some(raw) => Ok(Some(parse_entry(&raw)?)),
            None => Ok(None),
        }
    }

    /// Like [`Conntrack::get`], but return the kernel's netlink message
    /// undecoded (for logging and test fixtures; decode with
    /// [`parse_entry`]).
    pub fn get_raw(&mut self, t: &CtTuple) -> Result<Option<Vec<u8>>, NfqError> {
        match self.call("get", t, |buf, seq| encode_get(buf, seq, t))? {
            Answer::Ok(Some(raw)) => Ok(Some(raw)),
            // An ACK without an entry: not expected from the kernel.
            Answer::Ok(None) => Err(NfqError::Conntrack(CtError::MissingAttr("entry in the answer to get"))),
            Answer::NotFound => Ok(None),
        }
    }

    /// List every conntrack entry of both families (`IPCTNL_MSG_CT_GET`
    /// with `NLM_F_DUMP`, `AF_UNSPEC`), calling `f` for each. Returns how
    /// many entries were delivered.
    ///
    /// A dump is not a snapshot: entries created or destroyed while it runs
    /// may or may not be listed (and when the kernel flags the dump as
    /// interrupted, `NLM_F_DUMP_INTR`, one may be listed twice). Entries the
    /// decoder refuses are skipped (logged); they are not counted.
    pub fn dump(&mut self, f: impl FnMut(CtEntry)) -> Result<usize, NfqError> {
        self.dump_with(&DumpRequest::all(), f)
    }

    /// [`Conntrack::dump`] of the entries whose connmark has `value` in the
    /// bits of `mask` (filtered by the kernel), e.g. only offloaded flows.
    pub fn dump_marked(&mut self, value: u32, mask: u32, f: impl FnMut(CtEntry)) -> Result<usize, NfqError> {
        self.dump_with(&DumpRequest::all().with_mark(value, mask), f)
    }

    /// [`Conntrack::dump`] that also **resets every listed entry's
    /// counters** (`IPCTNL_MSG_CT_GET_CTRZERO`): each entry reports the
    /// traffic since the previous zeroing. The counters of later DESTROY
    /// events and of `get` then only cover the time since the last zeroing
    /// too, so a caller must use one scheme consistently.
    pub fn dump_zero_counters(&mut self, f: impl FnMut(CtEntry)) -> Result<usize, NfqError> {
        self.dump_with(&DumpRequest::all().zeroing_counters(), f)
    }

    /// A dump as described by `req`; see [`Conntrack::dump`].
    pub fn dump_with(&mut self, req: &DumpRequest, mut f: impl FnMut(CtEntry)) -> Result<usize, NfqError> {
        let mut tries = 0;
        loop {
            let seq = self.next_seq();
            let mut msg = Vec::with_capacity(64);
            encode_dump(&mut msg, seq, req);
            send_all(self.fd.as_raw_fd(), &msg).map_err(|source| NfqError::Io { op: "send conntrack dump", source })?;
            match self.read_dump(seq, &mut f) {
                // EAGAIN comes before any entry (module auto-load).
                Err(NfqError::Kernel { errno, .. }) if errno == libc::EAGAIN && tries < EAGAIN_RETRIES => tries += 1,
                r => return r,
            }
        }
    }

    /// Read the multipart answer to dump `seq` until `NLMSG_DONE`. The
    /// timeout applies to each datagram, not to the whole dump.
    fn read_dump(&mut self, seq: u32, f: &mut dyn FnMut(CtEntry)) -> Result<usize, NfqError> {
        let mut count = 0;
        let mut interrupted = false;
        loop {
            let deadline = Instant::now() + self.timeout;
            let n = self.recv_before(
                deadline,
                &|| "dump conntrack table".into(),
                "recv conntrack dump",
                "conntrack dump datagram",
            )?;
            for m in wire::messages(&self.buf[..n]) {
                let m = m?;
                let hdr = NlMsgHdr::parse(m)?;
                if hdr.seq != seq {
                    continue; // a late answer to an earlier request
                }
                interrupted |= hdr.flags & NLM_F_DUMP_INTR != 0;
                match hdr.ty {
                    NLMSG_ERROR => {
                        let e = wire::parse_error(m)?;
                        if e.errno != 0 {
                            let ext_msg = e.ext_msg.map(str::to_owned);
                            return Err(NfqError::Kernel {
                                op: "dump conntrack table".into(),
                                errno: e.errno,
                                ext_msg,
                            });
                        }
                    }
                    NLMSG_DONE => {
                        // The payload is the dump's final status (0 or -errno).
                        let status = m
                            .get(NLMSG_HDRLEN..NLMSG_HDRLEN + 4)
                            .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                        if status < 0 {
                            let errno = status.checked_neg().unwrap_or(i32::MAX);
                            return Err(NfqError::Kernel { op: "dump conntrack table".into(), errno, ext_msg: None });
                        }
                        if interrupted {
                            log::debug!("conntrack: dump interrupted by table changes (NLM_F_DUMP_INTR)");
                        }
                        return Ok(count);
                    }
                    ty if is_entry_msg_type(ty) => match parse_entry(m) {
                        Ok(e) => {
                            count += 1;
                            f(e);
                        }
                        Err(e) => log::warn!("conntrack: skipping undecodable dump entry: {e}"),
                    },
                    _ => {}
                }
            }
        }
    }

    /// Receive one datagram into `buf` before `deadline`: its length. `op` names what timed out,
    /// `recv_op` a failed recv, `what` the datagram should it not fit.
    fn recv_before(
        &mut self,
        deadline: Instant,
        op: &dyn Fn() -> String,
        recv_op: &'static str,
        what: &'static str,
    ) -> Result<usize, NfqError> {
        let fd = self.fd.as_raw_fd();
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(NfqError::NoAck { op: op(), timeout_ms: self.timeout.as_millis() as u64 });
            }
            if !poll_in(fd, deadline - now)? {
                continue;
            }
            // SAFETY: `buf` is a valid writable buffer of the given length.
            let n = unsafe {
                libc::recv(fd, self.buf.as_mut_ptr().cast(), self.buf.len(), libc::MSG_DONTWAIT | libc::MSG_TRUNC)
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) | Some(libc::ENOBUFS) => continue,
                    _ => return Err(NfqError::Io { op: recv_op, source: e }),
                }
            }
            let n = n as usize;
            if n > self.buf.len() {
                return Err(WireError::Truncated { what, need: n, have: self.buf.len() }.into());
            }
            return Ok(n);
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Encode with a fresh sequence number, send, wait for the answer;
    /// repeat on `EAGAIN`.
    fn call(
        &mut self,
        what: &str,
        t: &CtTuple,
        encode: impl Fn(&mut Vec<u8>, u32) -> Result<usize, CtError>,
    ) -> Result<Answer, NfqError> {
        let op = || format!("{what} conntrack entry {t}");
        let mut tries = 0;
        loop {
            let seq = self.next_seq();
            let mut req = Vec::with_capacity(128);
            encode(&mut req, seq)?;
            send_all(self.fd.as_raw_fd(), &req)
                .map_err(|source| NfqError::Io { op: "send conntrack request", source })?;
            match self.wait_answer(seq, &op) {
                Err(NfqError::Kernel { errno, .. }) if errno == libc::EAGAIN && tries < EAGAIN_RETRIES => tries += 1,
                r => return r,
            }
        }
    }

    fn wait_answer(&mut self, seq: u32, op: &dyn Fn() -> String) -> Result<Answer, NfqError> {
        let deadline = Instant::now() + self.timeout;
        let mut entry = None;
        loop {
            let n = self.recv_before(deadline, op, "recv conntrack answer", "conntrack answer datagram")?;
            for m in wire::messages(&self.buf[..n]) {
                let m = m?;
                let hdr = NlMsgHdr::parse(m)?;
                if hdr.seq != seq {
                    continue; // a late answer to an earlier (timed out) request
                }
                match hdr.ty {
                    NLMSG_ERROR => {
                        let e = wire::parse_error(m)?;
                        return match e.errno {
                            0 => Ok(Answer::Ok(entry)),
                            libc::ENOENT => Ok(Answer::NotFound),
                            errno => Err(NfqError::Kernel { op: op(), errno, ext_msg: e.ext_msg.map(str::to_owned) }),
                        };
                    }
                    NLMSG_DONE => return Ok(Answer::Ok(entry)),
                    ty if ty == ct_msg_type(IPCTNL_MSG_CT_NEW) => entry = Some(m.to_vec()),
                    _ => {}
                }
            }
        }
    }
}

impl AsRawFd for Conntrack {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Conntrack {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn delete_ipv4_tcp_exact_bytes() {
        let t = CtTuple::tcp(sa("10.0.0.1:40000"), sa("10.0.0.2:443"));
        let mut buf = Vec::new();
        let n = encode_delete(&mut buf, 7, &t).unwrap();
        #[rustfmt::skip]
        let want: &[u8] = &[
            72, 0, 0, 0,   0x02, 0x01,   0x05, 0x00,   7, 0, 0, 0,   0, 0, 0, 0, // nlmsghdr: CT_DELETE, REQUEST|ACK
            2, 0, 0, 0,                          // nfgenmsg: AF_INET, v0, res_id 0
            52, 0, 0x01, 0x80,                   // CTA_TUPLE_ORIG | NLA_F_NESTED
              20, 0, 0x01, 0x80,                 //   CTA_TUPLE_IP | NESTED
                8, 0, 1, 0,   10, 0, 0, 1,       //     CTA_IP_V4_SRC
                8, 0, 2, 0,   10, 0, 0, 2,       //     CTA_IP_V4_DST
              28, 0, 0x02, 0x80,                 //   CTA_TUPLE_PROTO | NESTED
                5, 0, 1, 0,   6, 0, 0, 0,        //     CTA_PROTO_NUM = 6 (+3 pad)
                6, 0, 2, 0,   0x9c, 0x40, 0, 0,  //     CTA_PROTO_SRC_PORT = be16 40000
                6, 0, 3, 0,   0x01, 0xbb, 0, 0,  //     CTA_PROTO_DST_PORT = be16 443
        ];
        assert_eq!(buf, want);
        assert_eq!(n, 72);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn delete_ipv6_udp_exact_bytes() {
        let t = CtTuple::udp(sa("[2001:db8::1]:53"), sa("[2001:db8::2]:5353"));
        let mut buf = vec![0xee]; // appends after existing content
        let n = encode_delete(&mut buf, 0x01020304, &t).unwrap();
        #[rustfmt::skip]
        let want: &[u8] = &[
            0xee,
            96, 0, 0, 0,   0x02, 0x01,   0x05, 0x00,   4, 3, 2, 1,   0, 0, 0, 0,
            10, 0, 0, 0,                         // AF_INET6
            76, 0, 0x01, 0x80,                   // CTA_TUPLE_ORIG
              44, 0, 0x01, 0x80,                 //   CTA_TUPLE_IP
                20, 0, 3, 0,                     //     CTA_IP_V6_SRC
                  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
                20, 0, 4, 0,                     //     CTA_IP_V6_DST
                  0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2,
              28, 0, 0x02, 0x80,                 //   CTA_TUPLE_PROTO
                5, 0, 1, 0,   17, 0, 0, 0,
                6, 0, 2, 0,   0, 53, 0, 0,
                6, 0, 3, 0,   0x14, 0xe9, 0, 0,
        ];
        assert_eq!(buf, want);
        assert_eq!(n, 96);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn set_mark_and_get_exact_bytes() {
        let t = CtTuple::tcp(sa("10.0.0.1:40000"), sa("10.0.0.2:443"));
        let mut del = Vec::new();
        encode_delete(&mut del, 9, &t).unwrap();

        let mut buf = Vec::new();
        encode_set_mark(&mut buf, 9, &t, 0xffff_ffff, Some(0x2000_0000)).unwrap();
        assert_eq!(buf.len(), 88);
        assert_eq!(&buf[0..4], &88u32.to_ne_bytes());
        assert_eq!(&buf[4..6], &[0x00, 0x01], "CT_NEW");
        assert_eq!(&buf[6..8], &[0x05, 0x00], "REQUEST|ACK, no CREATE/EXCL");
        assert_eq!(&buf[8..72], &del[8..72], "same seq, nfgenmsg and tuple as the delete");
        assert_eq!(&buf[72..80], &[8, 0, 8, 0, 0x20, 0, 0, 0], "CTA_MARK = mark & mask");
        assert_eq!(&buf[80..88], &[8, 0, 21, 0, 0x20, 0, 0, 0], "CTA_MARK_MASK");

        buf.clear();
        encode_set_mark(&mut buf, 9, &t, 0x1234, None).unwrap();
        assert_eq!(buf.len(), 80);
        assert_eq!(&buf[72..80], &[8, 0, 8, 0, 0, 0, 0x12, 0x34]);

        buf.clear();
        encode_get(&mut buf, 9, &t).unwrap();
        assert_eq!(&buf[4..6], &[0x01, 0x01], "CT_GET");
        assert_eq!(&buf[6..], &del[6..]);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn icmp_and_portless_tuples() {
        let t = CtTuple::icmp("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap(), 0x1234, 8, 0);
        assert_eq!(t.to_string(), "icmp 10.0.0.1 -> 10.0.0.2 id 4660 type 8 code 0");
        let mut buf = Vec::new();
        encode_get(&mut buf, 1, &t).unwrap();
        #[rustfmt::skip]
        let proto: &[u8] = &[
            36, 0, 0x02, 0x80,
              5, 0, 1, 0,   1, 0, 0, 0,
              6, 0, 4, 0,   0x12, 0x34, 0, 0,   // CTA_PROTO_ICMP_ID
              5, 0, 5, 0,   8, 0, 0, 0,         // CTA_PROTO_ICMP_TYPE
              5, 0, 6, 0,   0, 0, 0, 0,         // CTA_PROTO_ICMP_CODE
        ];
        assert_eq!(&buf[44..], proto);

        let t6 = CtTuple::icmp("::1".parse().unwrap(), "::2".parse().unwrap(), 1, 128, 0);
        assert_eq!(t6.proto, IPPROTO_ICMPV6);
        buf.clear();
        encode_get(&mut buf, 1, &t6).unwrap();
        assert_eq!(&buf[buf.len() - 24..buf.len() - 20], &[6, 0, 7, 0], "CTA_PROTO_ICMPV6_ID");

        // GRE-less "other" protocol: protocol number only.
        let t = CtTuple {
            proto: 50,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            sport: 1,
            dport: 2,
        };
        assert_eq!(t.to_string(), "proto 50 10.0.0.1 -> 10.0.0.2");
        buf.clear();
        encode_delete(&mut buf, 1, &t).unwrap();
        assert_eq!(&buf[44..], &[12, 0, 0x02, 0x80, 5, 0, 1, 0, 50, 0, 0, 0]);
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn dump_requests_exact_bytes() {
        let mut buf = Vec::new();
        assert_eq!(encode_dump(&mut buf, 3, &DumpRequest::all()), 20);
        #[rustfmt::skip]
        let want: &[u8] = &[
            20, 0, 0, 0,   0x01, 0x01,   0x01, 0x03,   3, 0, 0, 0,   0, 0, 0, 0, // CT_GET, REQUEST|DUMP
            0, 0, 0, 0,                          // AF_UNSPEC: both families
        ];
        assert_eq!(buf, want);
        buf.clear();
        let req = DumpRequest::all().with_family(libc::AF_INET6 as u8).with_mark(0xffff_ffff, 0x2000_0000);
        assert_eq!(encode_dump(&mut buf, 3, &req), 36);
        assert_eq!(buf[16], 10);
        assert_eq!(&buf[20..36], &[8, 0, 8, 0, 0x20, 0, 0, 0, 8, 0, 21, 0, 0x20, 0, 0, 0], "value & mask, mask");
        buf.clear();
        encode_dump(&mut buf, 3, &DumpRequest::all().zeroing_counters());
        assert_eq!(&buf[4..8], &[0x03, 0x01, 0x01, 0x03], "CT_GET_CTRZERO");
    }

    #[test]
    fn mixed_families_are_refused_without_output() {
        let t = CtTuple::tcp(sa("10.0.0.1:1"), sa("[::1]:2"));
        let mut buf = Vec::new();
        assert!(matches!(encode_delete(&mut buf, 1, &t), Err(CtError::MixedFamilies { .. })));
        assert!(matches!(encode_set_mark(&mut buf, 1, &t, 1, None), Err(CtError::MixedFamilies { .. })));
        assert!(buf.is_empty());
        let e = NfqError::from(CtError::MixedFamilies { src: t.src, dst: t.dst });
        assert_eq!(e.to_string(), "conntrack tuple mixes address families: 10.0.0.1 -> ::1");
    }

    #[test]
    fn tuple_display_and_reverse() {
        let t = CtTuple::tcp(sa("10.0.0.1:40000"), sa("10.0.0.2:443"));
        assert_eq!(t.to_string(), "tcp 10.0.0.1:40000 -> 10.0.0.2:443");
        assert_eq!(t.reversed().to_string(), "tcp 10.0.0.2:443 -> 10.0.0.1:40000");
        let t = CtTuple::new(IPPROTO_SCTP, sa("[2001:db8::1]:5000"), sa("[2001:db8::2]:38412"));
        assert_eq!(t.to_string(), "sctp [2001:db8::1]:5000 -> [2001:db8::2]:38412");
    }

    #[test]
    fn kernel_error_names_the_operation() {
        let t = CtTuple::tcp(sa("10.0.0.1:40000"), sa("10.0.0.2:443"));
        let e = NfqError::Kernel { op: format!("delete conntrack entry {t}"), errno: libc::EPERM, ext_msg: None };
        assert_eq!(
            e.to_string(),
            "kernel refused to delete conntrack entry tcp 10.0.0.1:40000 -> 10.0.0.2:443: \
             Operation not permitted (needs CAP_NET_ADMIN in the network namespace)"
        );
    }

    // -- decoding -----------------------------------------------------------

    /// A synthetic entry message built with the encoders' own helpers.
    fn entry_msg(v6: bool) -> Vec<u8> {
        let (a, b) =
            if v6 { (sa("[::1]:1000"), sa("[::1]:2000")) } else { (sa("127.0.0.1:1000"), sa("127.0.0.1:2000")) };
        let t = CtTuple::udp(a, b);
        let mut buf = Vec::new();
        let fam = t.family().unwrap();
        let start = start_nfnl_msg(&mut buf, ct_msg_type(IPCTNL_MSG_CT_NEW), 0, 5, fam, 0);
        put_tuple(&mut buf, CTA_TUPLE_ORIG, &t);
        put_tuple(&mut buf, CTA_TUPLE_REPLY, &t.reversed());
        put_be32(&mut buf, CTA_STATUS, IPS_CONFIRMED | IPS_SEEN_REPLY);
        put_be32(&mut buf, CTA_TIMEOUT, 30);
        let c = start_nest(&mut buf, CTA_COUNTERS_ORIG);
        put_attr(&mut buf, CTA_COUNTERS_PACKETS, &3u64.to_be_bytes());
        put_attr(&mut buf, CTA_COUNTERS_BYTES, &300u64.to_be_bytes());
        end_nest(&mut buf, c);
        let c = start_nest(&mut buf, CTA_COUNTERS_REPLY);
        put_be32(&mut buf, CTA_COUNTERS32_PACKETS, 1);
        put_be32(&mut buf, CTA_COUNTERS32_BYTES, 100);
        end_nest(&mut buf, c);
        put_be32(&mut buf, CTA_MARK, 0x2000_0001);
        put_be32(&mut buf, CTA_ID, 0xabcd);
        put_attr(&mut buf, 999, &[1, 2, 3]); // unknown: ignored
        finish_msg(&mut buf, start);
        buf
    }

    #[test]
    fn synthetic_entry_roundtrip() {
        for v6 in [false, true] {
            let m = entry_msg(v6);
            let e = parse_entry(&m).unwrap();
            assert_eq!(e.orig.proto, IPPROTO_UDP);
            assert_eq!((e.orig.sport, e.orig.dport), (1000, 2000));
            assert_eq!(e.reply, e.orig.reversed());
            assert_eq!(e.orig.src.is_ipv6(), v6);
            assert_eq!(e.status, IPS_CONFIRMED | IPS_SEEN_REPLY);
            assert_eq!(e.timeout, Some(30));
            assert_eq!((e.packets_orig, e.bytes_orig), (Some(3), Some(300)));
            assert_eq!((e.packets_reply, e.bytes_reply), (Some(1), Some(100)));
            assert_eq!((e.mark, e.id), (0x2000_0001, 0xabcd));
        }
    }

    /// `CT_GET` answers recorded from Linux 6.18 by the root test
    /// `tests/conntrack_kernel.rs` (`VIGIL_WRITE_FIXTURES=1`): a TCP
    /// connection over lo with 15 bytes sent and 5 answered, accounting on.
    #[cfg(target_endian = "little")]
    const FIXTURE_V4: &[u8] = include_bytes!("../tests/fixtures/ct_get_ipv4_tcp.bin");
    #[cfg(target_endian = "little")]
    const FIXTURE_V6: &[u8] = include_bytes!("../tests/fixtures/ct_get_ipv6_tcp.bin");

    #[test]
    #[cfg(target_endian = "little")]
    fn kernel_get_answers_decode() {
        for (raw, v6) in [(FIXTURE_V4, false), (FIXTURE_V6, true)] {
            let hdr = NlMsgHdr::parse(raw).unwrap();
            assert_eq!(hdr.ty, ct_msg_type(IPCTNL_MSG_CT_NEW), "the answer to GET is a NEW message");
            assert_eq!(hdr.len as usize, raw.len());
            assert_eq!(raw[16], if v6 { 10 } else { 2 }, "nfgen_family");
            let e = parse_entry(raw).unwrap();
            assert_eq!(e.orig.proto, IPPROTO_TCP);
            let lo: IpAddr = if v6 { "::1".parse().unwrap() } else { "127.0.0.1".parse().unwrap() };
            assert_eq!((e.orig.src, e.orig.dst), (lo, lo));
            assert_eq!(e.reply, e.orig.reversed());
            assert_eq!(e.status, IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED);
            assert_eq!(e.mark, 0);
            assert_eq!(e.timeout, Some(432_000), "established TCP: 5 days");
            // SYN, ACK, data, ACK / SYN-ACK, ACK, data; L3 lengths.
            assert_eq!((e.packets_orig, e.packets_reply), (Some(4), Some(3)));
            let (bo, br) = if v6 { (311, 229) } else { (231, 169) };
            assert_eq!((e.bytes_orig, e.bytes_reply), (Some(bo), Some(br)));
            assert_ne!(e.id, 0);
            // The kernel's CTA_TUPLE_ORIG is byte-identical to ours.
            let mut req = Vec::new();
            let n = encode_get(&mut req, 1, &e.orig).unwrap();
            assert_eq!(&req[20..n], &raw[20..n]);
        }
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        let good = entry_msg(false);
        // Every truncation of a valid message (with a consistent nlmsg_len):
        // an error while it cuts into or before CTA_ID, the last required
        // attribute (the unknown 8-byte attribute follows it); never a panic.
        let id_end = good.len() - 8;
        for cut in 0..good.len() {
            let mut m = good[..cut].to_vec();
            if m.len() >= 4 {
                m[0..4].copy_from_slice(&(cut as u32).to_ne_bytes());
            }
            let r = parse_entry(&m);
            assert!(cut >= id_end || r.is_err(), "cut at {cut}: {r:?}");
            // The original nlmsg_len with a short buffer: always an error.
            assert!(parse_entry(&good[..cut]).is_err());
        }
        // Every single-byte corruption: whatever the result, no panic.
        for i in 0..good.len() {
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                let mut m = good.clone();
                m[i] = v;
                let _ = parse_entry(&m);
            }
        }
        // Wrong message type (expectation subsystem, NEW).
        let mut m = good.clone();
        m[4..6].copy_from_slice(&0x0200u16.to_ne_bytes());
        assert_eq!(parse_entry(&m), Err(CtError::Wire(WireError::UnexpectedType(0x0200))));
        // Dump entries carry the request's type.
        for ty in [IPCTNL_MSG_CT_GET, IPCTNL_MSG_CT_GET_CTRZERO, IPCTNL_MSG_CT_DELETE] {
            m[4..6].copy_from_slice(&ct_msg_type(ty).to_ne_bytes());
            assert_eq!(parse_entry(&m), parse_entry(&good));
        }
        // nlmsg_len beyond the buffer.
        let mut m = good.clone();
        m[0..4].copy_from_slice(&10_000u32.to_ne_bytes());
        assert!(matches!(parse_entry(&m), Err(CtError::Wire(WireError::BadMessageLength { .. }))));
        assert!(parse_entry(&[]).is_err());
    }

    #[test]
    fn missing_and_bad_attributes() {
        let hdr = |body: &[u8]| {
            let mut buf = Vec::new();
            let start = start_nfnl_msg(&mut buf, ct_msg_type(IPCTNL_MSG_CT_NEW), 0, 1, 2, 0);
            buf.extend_from_slice(body);
            finish_msg(&mut buf, start);
            buf
        };
        assert_eq!(parse_entry(&hdr(&[])), Err(CtError::MissingAttr("CTA_TUPLE_ORIG")));
        // A tuple without protocol number.
        let mut body = Vec::new();
        let n = start_nest(&mut body, CTA_TUPLE_ORIG);
        end_nest(&mut body, n);
        assert_eq!(parse_entry(&hdr(&body)), Err(CtError::MissingAttr("CTA_PROTO_NUM")));
        // IPv4 address of the wrong size.
        let mut body = Vec::new();
        let n = start_nest(&mut body, CTA_TUPLE_ORIG);
        let ip = start_nest(&mut body, CTA_TUPLE_IP);
        put_attr(&mut body, CTA_IP_V4_SRC, &[1, 2, 3]);
        end_nest(&mut body, ip);
        end_nest(&mut body, n);
        assert!(matches!(parse_entry(&hdr(&body)), Err(CtError::Wire(WireError::BadAttrSize { .. }))));
        // Counter of the wrong size.
        assert!(parse_counters(&[8, 0, 1, 0, 0, 0, 0, 1]).is_err());
        // Nest whose inner attribute overruns it.
        assert!(matches!(
            parse_tuple(&[8, 0, 1, 0x80, 40, 0, 1, 0]),
            Err(CtError::Wire(WireError::BadAttrLength { .. }))
        ));
    }
}
