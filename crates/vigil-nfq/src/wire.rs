//! Pure encode/decode of nfnetlink_queue messages.
//!
//! Nothing in this module touches a socket, so all of it is unit-testable
//! without privileges. Layout notes (see `include/uapi/linux/netfilter/
//! nfnetlink_queue.h` and `include/uapi/linux/netlink.h`):
//!
//! * `struct nlmsghdr` (16 bytes) is **host** endian.
//! * `struct nfgenmsg` (4 bytes: family, version, `__be16 res_id`) follows;
//!   `res_id` is the queue number in network byte order.
//! * Attributes (`struct nlattr`: `u16 len`, `u16 type`, host endian) are
//!   4-byte aligned; their *contents* are big endian for nfnetlink.
//!
//! Decoding never panics: every length is checked, and malformed input is
//! reported as a [`WireError`].

use std::time::Duration;

// ---------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------

/// Size of `struct nlmsghdr`.
pub const NLMSG_HDRLEN: usize = 16;
/// Size of `struct nfgenmsg`.
pub const NFGENMSG_LEN: usize = 4;
/// Size of `struct nlattr`.
pub const NLA_HDRLEN: usize = 4;

/// Netlink control message types.
pub const NLMSG_NOOP: u16 = 1;
pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLMSG_OVERRUN: u16 = 4;

/// Netlink message flags.
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_ACK: u16 = 0x4;
/// In an `NLMSG_ERROR`: the echoed request was capped to its header.
pub const NLM_F_CAPPED: u16 = 0x100;
/// In an `NLMSG_ERROR`: extended-ack TLVs follow.
pub const NLM_F_ACK_TLVS: u16 = 0x200;
/// Extended ack attribute: human-readable error message.
pub const NLMSGERR_ATTR_MSG: u16 = 1;

/// Attribute type flags that must be masked off before comparing types.
pub const NLA_F_NESTED: u16 = 1 << 15;
pub const NLA_F_NET_BYTEORDER: u16 = 1 << 14;
pub const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | NLA_F_NET_BYTEORDER);

/// nfnetlink subsystem id of nfnetlink_queue.
pub const NFNL_SUBSYS_QUEUE: u16 = 3;
pub const NFNETLINK_V0: u8 = 0;

/// `enum nfqnl_msg_types`.
pub const NFQNL_MSG_PACKET: u16 = 0;
pub const NFQNL_MSG_VERDICT: u16 = 1;
pub const NFQNL_MSG_CONFIG: u16 = 2;
pub const NFQNL_MSG_VERDICT_BATCH: u16 = 3;

/// `enum nfqnl_attr_type`.
pub const NFQA_PACKET_HDR: u16 = 1;
pub const NFQA_VERDICT_HDR: u16 = 2;
pub const NFQA_MARK: u16 = 3;
pub const NFQA_TIMESTAMP: u16 = 4;
pub const NFQA_IFINDEX_INDEV: u16 = 5;
pub const NFQA_IFINDEX_OUTDEV: u16 = 6;
pub const NFQA_IFINDEX_PHYSINDEV: u16 = 7;
pub const NFQA_IFINDEX_PHYSOUTDEV: u16 = 8;
pub const NFQA_HWADDR: u16 = 9;
pub const NFQA_PAYLOAD: u16 = 10;
pub const NFQA_CT: u16 = 11;
pub const NFQA_CT_INFO: u16 = 12;
pub const NFQA_CAP_LEN: u16 = 13;
pub const NFQA_SKB_INFO: u16 = 14;
pub const NFQA_EXP: u16 = 15;
pub const NFQA_UID: u16 = 16;
pub const NFQA_GID: u16 = 17;
pub const NFQA_SECCTX: u16 = 18;
pub const NFQA_VLAN: u16 = 19;
pub const NFQA_L2HDR: u16 = 20;
pub const NFQA_PRIORITY: u16 = 21;

/// `enum nfqnl_attr_config`.
pub const NFQA_CFG_CMD: u16 = 1;
pub const NFQA_CFG_PARAMS: u16 = 2;
pub const NFQA_CFG_QUEUE_MAXLEN: u16 = 3;
pub const NFQA_CFG_MASK: u16 = 4;
pub const NFQA_CFG_FLAGS: u16 = 5;

/// `enum nfqnl_msg_config_cmds`.
pub const NFQNL_CFG_CMD_BIND: u8 = 1;
pub const NFQNL_CFG_CMD_UNBIND: u8 = 2;
pub const NFQNL_CFG_CMD_PF_BIND: u8 = 3;
pub const NFQNL_CFG_CMD_PF_UNBIND: u8 = 4;

/// `enum nfqnl_config_mode`.
pub const NFQNL_COPY_NONE: u8 = 0;
pub const NFQNL_COPY_META: u8 = 1;
pub const NFQNL_COPY_PACKET: u8 = 2;

/// Queue flags (`NFQA_CFG_FLAGS` / `NFQA_CFG_MASK`).
pub const NFQA_CFG_F_FAIL_OPEN: u32 = 1 << 0;
pub const NFQA_CFG_F_CONNTRACK: u32 = 1 << 1;
pub const NFQA_CFG_F_GSO: u32 = 1 << 2;
pub const NFQA_CFG_F_UID_GID: u32 = 1 << 3;
pub const NFQA_CFG_F_SECCTX: u32 = 1 << 4;

/// `NFQA_SKB_INFO` bits.
pub const NFQA_SKB_CSUMNOTREADY: u32 = 1 << 0;
pub const NFQA_SKB_GSO: u32 = 1 << 1;
pub const NFQA_SKB_CSUM_NOTVERIFIED: u32 = 1 << 2;

/// `enum ctattr_type` (subset).
pub const CTA_MARK: u16 = 8;
pub const CTA_ID: u16 = 12;

/// Netfilter verdicts.
pub const NF_DROP: u32 = 0;
pub const NF_ACCEPT: u32 = 1;
pub const NF_REPEAT: u32 = 4;

/// Largest payload that fits in one `NFQA_PAYLOAD` attribute (`nla_len`
/// is a `u16`).
pub const MAX_VERDICT_PAYLOAD: usize = u16::MAX as usize - NLA_HDRLEN;

/// `(NFNL_SUBSYS_QUEUE << 8) | msg`.
pub const fn nfq_msg_type(msg: u16) -> u16 {
    (NFNL_SUBSYS_QUEUE << 8) | msg
}

/// Round up to netlink's 4-byte alignment.
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A received message did not have the layout the kernel documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated { what: &'static str, need: usize, have: usize },
    #[error("netlink message length {len} is invalid ({remaining} bytes remain in the datagram)")]
    BadMessageLength { len: usize, remaining: usize },
    #[error("attribute length {len} is invalid ({remaining} bytes remain)")]
    BadAttrLength { len: usize, remaining: usize },
    #[error("attribute {name} has length {len}, expected {expected}")]
    BadAttrSize { name: &'static str, len: usize, expected: usize },
    #[error("packet message without NFQA_PACKET_HDR")]
    MissingPacketHeader,
    #[error("unexpected message type {0:#06x}")]
    UnexpectedType(u16),
    #[error("verdict payload of {len} bytes exceeds the maximum of {max}")]
    PayloadTooLarge { len: usize, max: usize },
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

/// Copy mode of a queue (`enum nfqnl_config_mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    None,
    Meta,
    Packet,
}

impl CopyMode {
    fn raw(self) -> u8 {
        match self {
            CopyMode::None => NFQNL_COPY_NONE,
            CopyMode::Meta => NFQNL_COPY_META,
            CopyMode::Packet => NFQNL_COPY_PACKET,
        }
    }
}

/// One configuration request (`NFQNL_MSG_CONFIG`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigRequest {
    /// `NFQNL_CFG_CMD_BIND` the queue to this socket.
    Bind,
    /// `NFQNL_CFG_CMD_UNBIND`.
    Unbind,
    /// Legacy `NFQNL_CFG_CMD_PF_BIND` (no-op on kernels >= 3.8).
    PfBind(u16),
    /// Legacy `NFQNL_CFG_CMD_PF_UNBIND` (no-op on kernels >= 3.8).
    PfUnbind(u16),
    /// `NFQA_CFG_PARAMS`: copy mode and copy range.
    Params { mode: CopyMode, range: u32 },
    /// `NFQA_CFG_QUEUE_MAXLEN`.
    MaxLen(u32),
    /// `NFQA_CFG_FLAGS` + `NFQA_CFG_MASK`.
    Flags { flags: u32, mask: u32 },
}

/// What a verdict does with the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerdictAction {
    Accept,
    Drop,
    /// `NF_REPEAT`: run the hook again (the packet may be queued again).
    Repeat,
}

impl VerdictAction {
    /// The kernel's `NF_*` value.
    pub fn raw(self) -> u32 {
        match self {
            VerdictAction::Accept => NF_ACCEPT,
            VerdictAction::Drop => NF_DROP,
            VerdictAction::Repeat => NF_REPEAT,
        }
    }
}

/// A verdict on one queued packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'p> {
    /// Packet id from [`Packet::id`].
    pub id: u32,
    pub action: VerdictAction,
    /// New `skb->mark` (`NFQA_MARK`).
    pub mark: Option<u32>,
    /// New conntrack mark, sent as `NFQA_CT { CTA_MARK }`. Only honoured by
    /// the kernel when conntrack glue is available; `Queue` refuses it
    /// (`NfqError::Unsupported`) when `Capabilities::conntrack` is false.
    pub connmark: Option<u32>,
    /// Replacement L3 packet (`NFQA_PAYLOAD`). The caller must have fixed the
    /// checksums already; the kernel marks the skb `CHECKSUM_NONE`.
    pub payload: Option<&'p [u8]>,
}

impl<'p> Verdict<'p> {
    pub fn new(id: u32, action: VerdictAction) -> Self {
        Verdict { id, action, mark: None, connmark: None, payload: None }
    }
    pub fn accept(id: u32) -> Self {
        Self::new(id, VerdictAction::Accept)
    }
    pub fn drop(id: u32) -> Self {
        Self::new(id, VerdictAction::Drop)
    }
    pub fn repeat(id: u32) -> Self {
        Self::new(id, VerdictAction::Repeat)
    }
    pub fn with_mark(mut self, mark: u32) -> Self {
        self.mark = Some(mark);
        self
    }
    pub fn with_connmark(mut self, connmark: u32) -> Self {
        self.connmark = Some(connmark);
        self
    }
    pub fn with_payload(mut self, payload: &'p [u8]) -> Self {
        self.payload = Some(payload);
        self
    }

    /// Bytes this verdict occupies once encoded.
    pub fn encoded_len(&self) -> usize {
        let mut n = NLMSG_HDRLEN + NFGENMSG_LEN + NLA_HDRLEN + 8;
        if self.mark.is_some() {
            n += NLA_HDRLEN + 4;
        }
        if self.connmark.is_some() {
            n += 2 * NLA_HDRLEN + 4;
        }
        if let Some(p) = self.payload {
            n += align4(NLA_HDRLEN + p.len());
        }
        n
    }
}

/// Append a netlink + nfgenmsg header; returns the offset of the header so
/// [`finish_msg`] can patch the length.
fn start_msg(buf: &mut Vec<u8>, msg: u16, flags: u16, seq: u32, queue_num: u16) -> usize {
    start_nfnl_msg(buf, nfq_msg_type(msg), flags, seq, libc::AF_UNSPEC as u8, queue_num)
}

/// Append a netlink + nfgenmsg header for any nfnetlink subsystem
/// (`msg_type` = `subsys << 8 | msg`); returns the offset of the header so
/// [`finish_msg`] can patch the length.
pub(crate) fn start_nfnl_msg(buf: &mut Vec<u8>, msg_type: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
    let start = buf.len();
    buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched later
    buf.extend_from_slice(&msg_type.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_pid: 0 = kernel
    buf.push(family); // nfgen_family
    buf.push(NFNETLINK_V0);
    buf.extend_from_slice(&res_id.to_be_bytes());
    start
}

pub(crate) fn finish_msg(buf: &mut [u8], start: usize) {
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

/// Open a nested attribute (`NLA_F_NESTED` is added); returns its offset
/// for [`end_nest`].
pub(crate) fn start_nest(buf: &mut Vec<u8>, ty: u16) -> usize {
    let at = buf.len();
    put_attr(buf, ty | NLA_F_NESTED, &[]);
    at
}

/// Patch the length of the nest opened at `at` to cover everything since.
pub(crate) fn end_nest(buf: &mut [u8], at: usize) {
    let len = (buf.len() - at) as u16;
    buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// Append one attribute (header + data + padding).
pub(crate) fn put_attr(buf: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = NLA_HDRLEN + data.len();
    debug_assert!(len <= u16::MAX as usize);
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len() + (align4(len) - len), 0);
}

pub(crate) fn put_be32(buf: &mut Vec<u8>, ty: u16, v: u32) {
    put_attr(buf, ty, &v.to_be_bytes());
}

/// Encode one `NFQNL_MSG_CONFIG` message for `queue_num`. Returns the number
/// of bytes appended.
pub fn encode_config(buf: &mut Vec<u8>, queue_num: u16, seq: u32, req: ConfigRequest, ack: bool) -> usize {
    let flags = NLM_F_REQUEST | if ack { NLM_F_ACK } else { 0 };
    let before = buf.len();
    let start = start_msg(buf, NFQNL_MSG_CONFIG, flags, seq, queue_num);
    let cmd = |buf: &mut Vec<u8>, c: u8, pf: u16| {
        let pf = pf.to_be_bytes();
        put_attr(buf, NFQA_CFG_CMD, &[c, 0, pf[0], pf[1]]);
    };
    match req {
        ConfigRequest::Bind => cmd(buf, NFQNL_CFG_CMD_BIND, 0),
        ConfigRequest::Unbind => cmd(buf, NFQNL_CFG_CMD_UNBIND, 0),
        ConfigRequest::PfBind(pf) => cmd(buf, NFQNL_CFG_CMD_PF_BIND, pf),
        ConfigRequest::PfUnbind(pf) => cmd(buf, NFQNL_CFG_CMD_PF_UNBIND, pf),
        ConfigRequest::Params { mode, range } => {
            // struct nfqnl_msg_config_params is packed: be32 + u8 = 5 bytes.
            let r = range.to_be_bytes();
            put_attr(buf, NFQA_CFG_PARAMS, &[r[0], r[1], r[2], r[3], mode.raw()]);
        }
        ConfigRequest::MaxLen(n) => put_be32(buf, NFQA_CFG_QUEUE_MAXLEN, n),
        ConfigRequest::Flags { flags, mask } => {
            put_be32(buf, NFQA_CFG_FLAGS, flags);
            put_be32(buf, NFQA_CFG_MASK, mask);
        }
    }
    finish_msg(buf, start);
    buf.len() - before
}

/// Encode one `NFQNL_MSG_VERDICT` (without `NLM_F_ACK`). Returns the number
/// of bytes appended; on error nothing is appended.
pub fn encode_verdict(buf: &mut Vec<u8>, queue_num: u16, seq: u32, v: &Verdict<'_>) -> Result<usize, WireError> {
    if let Some(p) = v.payload {
        if p.len() > MAX_VERDICT_PAYLOAD {
            return Err(WireError::PayloadTooLarge { len: p.len(), max: MAX_VERDICT_PAYLOAD });
        }
    }
    let before = buf.len();
    buf.reserve(v.encoded_len());
    let start = start_msg(buf, NFQNL_MSG_VERDICT, NLM_F_REQUEST, seq, queue_num);
    put_verdict_hdr(buf, v.action.raw(), v.id);
    if let Some(mark) = v.mark {
        put_be32(buf, NFQA_MARK, mark);
    }
    if let Some(cm) = v.connmark {
        let nest = start_nest(buf, NFQA_CT);
        put_be32(buf, CTA_MARK, cm);
        end_nest(buf, nest);
    }
    if let Some(p) = v.payload {
        put_attr(buf, NFQA_PAYLOAD, p);
    }
    finish_msg(buf, start);
    Ok(buf.len() - before)
}

fn put_verdict_hdr(buf: &mut Vec<u8>, verdict: u32, id: u32) {
    // struct nfqnl_msg_verdict_hdr { __be32 verdict; __be32 id; }
    let mut hdr = [0u8; 8];
    hdr[..4].copy_from_slice(&verdict.to_be_bytes());
    hdr[4..].copy_from_slice(&id.to_be_bytes());
    put_attr(buf, NFQA_VERDICT_HDR, &hdr);
}

/// Encode one `NFQNL_MSG_VERDICT_BATCH`: the verdict applies to every packet
/// of the queue with id <= `max_id`. Returns the number of bytes appended.
pub fn encode_batch_verdict(
    buf: &mut Vec<u8>,
    queue_num: u16,
    seq: u32,
    max_id: u32,
    action: VerdictAction,
    mark: Option<u32>,
) -> usize {
    let before = buf.len();
    let start = start_msg(buf, NFQNL_MSG_VERDICT_BATCH, NLM_F_REQUEST, seq, queue_num);
    put_verdict_hdr(buf, action.raw(), max_id);
    if let Some(mark) = mark {
        put_be32(buf, NFQA_MARK, mark);
    }
    finish_msg(buf, start);
    buf.len() - before
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

fn ne_u16(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}
fn ne_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// A decoded `struct nlmsghdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlMsgHdr {
    pub len: u32,
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub pid: u32,
}

impl NlMsgHdr {
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < NLMSG_HDRLEN {
            return Err(WireError::Truncated { what: "nlmsghdr", need: NLMSG_HDRLEN, have: b.len() });
        }
        Ok(NlMsgHdr { len: ne_u32(b, 0), ty: ne_u16(b, 4), flags: ne_u16(b, 6), seq: ne_u32(b, 8), pid: ne_u32(b, 12) })
    }
}

/// Iterator over the netlink messages of one datagram. Yields each message
/// as a slice (header included, trailing padding excluded). A bad length
/// ends the iteration with one `Err`.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
    failed: bool,
}

/// Split a datagram into netlink messages.
pub fn messages(datagram: &[u8]) -> Messages<'_> {
    Messages { rest: datagram, failed: false }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<&'a [u8], WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let hdr = match NlMsgHdr::parse(self.rest) {
            Ok(h) => h,
            Err(e) => {
                self.failed = true;
                return Some(Err(e));
            }
        };
        let len = hdr.len as usize;
        if len < NLMSG_HDRLEN || len > self.rest.len() {
            self.failed = true;
            return Some(Err(WireError::BadMessageLength { len, remaining: self.rest.len() }));
        }
        let msg = &self.rest[..len];
        let adv = align4(len).min(self.rest.len());
        self.rest = &self.rest[adv..];
        Some(Ok(msg))
    }
}

/// Iterator over netlink attributes: yields `(type & NLA_TYPE_MASK, data)`.
/// A bad attribute length ends the iteration with one `Err`.
#[derive(Debug, Clone)]
pub struct Attrs<'a> {
    rest: &'a [u8],
    failed: bool,
}

pub fn attrs(b: &[u8]) -> Attrs<'_> {
    Attrs { rest: b, failed: false }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Result<(u16, &'a [u8]), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < NLA_HDRLEN {
            self.failed = true;
            return Some(Err(WireError::Truncated { what: "nlattr", need: NLA_HDRLEN, have: self.rest.len() }));
        }
        let len = ne_u16(self.rest, 0) as usize;
        let ty = ne_u16(self.rest, 2) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > self.rest.len() {
            self.failed = true;
            return Some(Err(WireError::BadAttrLength { len, remaining: self.rest.len() }));
        }
        let data = &self.rest[NLA_HDRLEN..len];
        let adv = align4(len).min(self.rest.len());
        self.rest = &self.rest[adv..];
        Some(Ok((ty, data)))
    }
}

pub(crate) fn attr_u32(name: &'static str, data: &[u8]) -> Result<u32, WireError> {
    if data.len() != 4 {
        return Err(WireError::BadAttrSize { name, len: data.len(), expected: 4 });
    }
    Ok(be_u32(data, 0))
}

/// A queued packet: a zero-copy view into the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Packet<'a> {
    /// Queue-local packet id; quote it in the verdict.
    pub id: u32,
    /// Ethertype in host order (`0x0800` IPv4, `0x86dd` IPv6).
    pub hw_protocol: u16,
    /// Netfilter hook (`NF_INET_PRE_ROUTING` = 0 ... `POST_ROUTING` = 4).
    pub hook: u8,
    /// `skb->mark` (0 when the kernel did not send `NFQA_MARK`).
    pub mark: u32,
    pub indev: Option<u32>,
    pub outdev: Option<u32>,
    pub physindev: Option<u32>,
    pub physoutdev: Option<u32>,
    /// Source MAC (`NFQA_HWADDR`) when the hardware address is 6 bytes long.
    pub hw_addr: Option<[u8; 6]>,
    /// The L3 packet (possibly truncated to the queue's copy range).
    pub payload: &'a [u8],
    /// `NFQA_SKB_INFO` bits (`NFQA_SKB_*`).
    pub skb_info: u32,
    /// `NFQA_CAP_LEN`: the original packet length; only sent by the kernel
    /// when the payload was truncated by the copy range.
    pub cap_len: Option<u32>,
    /// `NFQA_TIMESTAMP` as time since the UNIX epoch.
    pub timestamp: Option<Duration>,
    /// `CTA_ID` from `NFQA_CT`.
    pub ct_id: Option<u32>,
    /// `CTA_MARK` from `NFQA_CT`.
    pub ct_mark: Option<u32>,
    /// `NFQA_CT_INFO` (`enum ip_conntrack_info`).
    pub ct_info: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// `NFQA_PRIORITY` (`skb->priority`).
    pub priority: Option<u32>,
    raw: &'a [u8],
}

impl<'a> Packet<'a> {
    /// The whole netlink message this view was decoded from.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }
    /// The kernel has not filled in the checksum yet (`CHECKSUM_PARTIAL`):
    /// L4 checksum fields hold only the pseudo-header sum.
    pub fn csum_not_ready(&self) -> bool {
        self.skb_info & NFQA_SKB_CSUMNOTREADY != 0
    }
    /// The payload is an unsegmented GSO super-packet.
    pub fn is_gso(&self) -> bool {
        self.skb_info & NFQA_SKB_GSO != 0
    }
    /// The checksum has not been verified (only meaningful on input).
    pub fn csum_not_verified(&self) -> bool {
        self.skb_info & NFQA_SKB_CSUM_NOTVERIFIED != 0
    }
    /// Length of the packet in the kernel (>= `payload.len()`).
    pub fn orig_len(&self) -> usize {
        match self.cap_len {
            Some(n) => n as usize,
            None => self.payload.len(),
        }
    }
    /// The payload was truncated by the copy range.
    pub fn is_truncated(&self) -> bool {
        self.orig_len() > self.payload.len()
    }
}

/// Decode one `NFQNL_MSG_PACKET` netlink message (header included).
pub fn parse_packet(msg: &[u8]) -> Result<Packet<'_>, WireError> {
    let hdr = NlMsgHdr::parse(msg)?;
    if hdr.ty != nfq_msg_type(NFQNL_MSG_PACKET) {
        return Err(WireError::UnexpectedType(hdr.ty));
    }
    let len = hdr.len as usize;
    if len > msg.len() || len < NLMSG_HDRLEN {
        return Err(WireError::BadMessageLength { len, remaining: msg.len() });
    }
    let msg = &msg[..len];
    if len < NLMSG_HDRLEN + NFGENMSG_LEN {
        return Err(WireError::Truncated { what: "nfgenmsg", need: NLMSG_HDRLEN + NFGENMSG_LEN, have: len });
    }
    let mut p = Packet {
        id: 0,
        hw_protocol: 0,
        hook: 0,
        mark: 0,
        indev: None,
        outdev: None,
        physindev: None,
        physoutdev: None,
        hw_addr: None,
        payload: &[],
        skb_info: 0,
        cap_len: None,
        timestamp: None,
        ct_id: None,
        ct_mark: None,
        ct_info: None,
        uid: None,
        gid: None,
        priority: None,
        raw: msg,
    };
    let mut have_hdr = false;
    for a in attrs(&msg[NLMSG_HDRLEN + NFGENMSG_LEN..]) {
        let (ty, data) = a?;
        match ty {
            NFQA_PACKET_HDR => {
                // packed { be32 packet_id; be16 hw_protocol; u8 hook; }
                if data.len() < 7 {
                    return Err(WireError::BadAttrSize { name: "NFQA_PACKET_HDR", len: data.len(), expected: 7 });
                }
                p.id = be_u32(data, 0);
                p.hw_protocol = u16::from_be_bytes([data[4], data[5]]);
                p.hook = data[6];
                have_hdr = true;
            }
            NFQA_MARK => p.mark = attr_u32("NFQA_MARK", data)?,
            NFQA_TIMESTAMP => {
                if data.len() != 16 {
                    return Err(WireError::BadAttrSize { name: "NFQA_TIMESTAMP", len: data.len(), expected: 16 });
                }
                let sec = be_u64(data, 0);
                let usec = be_u64(data, 8);
                // Reject nonsense instead of overflowing.
                p.timestamp = if usec < 1_000_000 { Some(Duration::new(sec, (usec as u32) * 1000)) } else { None };
            }
            NFQA_IFINDEX_INDEV => p.indev = Some(attr_u32("NFQA_IFINDEX_INDEV", data)?),
            NFQA_IFINDEX_OUTDEV => p.outdev = Some(attr_u32("NFQA_IFINDEX_OUTDEV", data)?),
            NFQA_IFINDEX_PHYSINDEV => p.physindev = Some(attr_u32("NFQA_IFINDEX_PHYSINDEV", data)?),
            NFQA_IFINDEX_PHYSOUTDEV => p.physoutdev = Some(attr_u32("NFQA_IFINDEX_PHYSOUTDEV", data)?),
            NFQA_HWADDR => {
                // { be16 hw_addrlen; u16 pad; u8 hw_addr[8]; }
                if data.len() != 12 {
                    return Err(WireError::BadAttrSize { name: "NFQA_HWADDR", len: data.len(), expected: 12 });
                }
                let alen = u16::from_be_bytes([data[0], data[1]]);
                if alen == 6 {
                    let mut mac = [0u8; 6];
                    mac.copy_from_slice(&data[4..10]);
                    p.hw_addr = Some(mac);
                }
            }
            NFQA_PAYLOAD => p.payload = data,
            NFQA_CT => {
                for ca in attrs(data) {
                    let (cty, cdata) = ca?;
                    match cty {
                        CTA_ID => p.ct_id = Some(attr_u32("CTA_ID", cdata)?),
                        CTA_MARK => p.ct_mark = Some(attr_u32("CTA_MARK", cdata)?),
                        _ => {}
                    }
                }
            }
            NFQA_CT_INFO => p.ct_info = Some(attr_u32("NFQA_CT_INFO", data)?),
            NFQA_CAP_LEN => p.cap_len = Some(attr_u32("NFQA_CAP_LEN", data)?),
            NFQA_SKB_INFO => p.skb_info = attr_u32("NFQA_SKB_INFO", data)?,
            NFQA_UID => p.uid = Some(attr_u32("NFQA_UID", data)?),
            NFQA_GID => p.gid = Some(attr_u32("NFQA_GID", data)?),
            NFQA_PRIORITY => p.priority = Some(attr_u32("NFQA_PRIORITY", data)?),
            _ => {} // forward compatible: ignore unknown attributes
        }
    }
    if !have_hdr {
        return Err(WireError::MissingPacketHeader);
    }
    Ok(p)
}

/// A decoded `NLMSG_ERROR` (an ACK when `errno == 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NlError<'a> {
    /// Positive errno (0 = ACK).
    pub errno: i32,
    /// Header of the request this answers (echoed by the kernel).
    pub request: NlMsgHdr,
    /// Extended-ack message (`NLMSGERR_ATTR_MSG`), if the kernel sent one.
    pub ext_msg: Option<&'a str>,
}

/// Decode an `NLMSG_ERROR` message (header included).
pub fn parse_error(msg: &[u8]) -> Result<NlError<'_>, WireError> {
    let hdr = NlMsgHdr::parse(msg)?;
    if hdr.ty != NLMSG_ERROR {
        return Err(WireError::UnexpectedType(hdr.ty));
    }
    let len = (hdr.len as usize).min(msg.len());
    let body = &msg[NLMSG_HDRLEN.min(len)..len];
    if body.len() < 4 + NLMSG_HDRLEN {
        return Err(WireError::Truncated { what: "nlmsgerr", need: 4 + NLMSG_HDRLEN, have: body.len() });
    }
    let error = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
    let request = NlMsgHdr::parse(&body[4..])?;
    let mut ext_msg = None;
    if hdr.flags & NLM_F_ACK_TLVS != 0 {
        // The echoed request is capped to its header when NLM_F_CAPPED is
        // set (always for ACKs), otherwise it is complete.
        let echoed =
            if hdr.flags & NLM_F_CAPPED != 0 || error == 0 { NLMSG_HDRLEN } else { align4(request.len as usize) };
        if let Some(tlvs) = body.get(4 + echoed..) {
            for (ty, data) in attrs(tlvs).flatten() {
                if ty == NLMSGERR_ATTR_MSG {
                    let s = data.split(|&c| c == 0).next().unwrap_or(&[]);
                    ext_msg = std::str::from_utf8(s).ok();
                }
            }
        }
    }
    Ok(NlError { errno: error.checked_neg().unwrap_or(i32::MAX), request, ext_msg })
}

/// One message of a received datagram, classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    Packet(Packet<'a>),
    /// `NLMSG_ERROR`: an ACK (`errno == 0`) or an error.
    Error(NlError<'a>),
    /// Anything else (NOOP, DONE, unknown types): ignored by the queue.
    Other(u16),
}

/// Decode one netlink message (as yielded by [`messages`]).
pub fn parse_message(msg: &[u8]) -> Result<Message<'_>, WireError> {
    let hdr = NlMsgHdr::parse(msg)?;
    match hdr.ty {
        NLMSG_ERROR => parse_error(msg).map(Message::Error),
        t if t == nfq_msg_type(NFQNL_MSG_PACKET) => parse_packet(msg).map(Message::Packet),
        t => Ok(Message::Other(t)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host-endian nlmsghdr bytes.
    fn nlh(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&ty.to_ne_bytes());
        v.extend_from_slice(&flags.to_ne_bytes());
        v.extend_from_slice(&seq.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v
    }

    /// Host-endian nlattr header.
    fn nla(len: u16, ty: u16) -> Vec<u8> {
        let mut v = len.to_ne_bytes().to_vec();
        v.extend_from_slice(&ty.to_ne_bytes());
        v
    }

    #[test]
    fn verdict_with_mark_exact_bytes() {
        let mut buf = Vec::new();
        let n = encode_verdict(&mut buf, 7, 5, &Verdict::accept(5).with_mark(0x2a)).unwrap();
        let mut want = nlh(40, 0x0301, NLM_F_REQUEST, 5);
        want.extend_from_slice(&[0, 0, 0x00, 0x07]); // AF_UNSPEC, v0, be16 queue 7
        want.extend(nla(12, NFQA_VERDICT_HDR));
        want.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 5]); // be32 NF_ACCEPT, be32 id
        want.extend(nla(8, NFQA_MARK));
        want.extend_from_slice(&[0, 0, 0, 0x2a]);
        assert_eq!(buf, want);
        assert_eq!(n, 40);
        assert_eq!(Verdict::accept(5).with_mark(0x2a).encoded_len(), 40);
    }

    #[test]
    fn verdict_with_connmark_and_payload_exact_bytes() {
        let mut buf = vec![0xee]; // appends after existing content
        let v = Verdict::drop(0x01020304).with_connmark(0x11223344).with_payload(&[1, 2, 3, 4, 5]);
        let n = encode_verdict(&mut buf, 0x9c40, 9, &v).unwrap();
        assert_eq!(n, v.encoded_len());
        let mut want = vec![0xee];
        want.extend(nlh(16 + 4 + 12 + 12 + 12, 0x0301, NLM_F_REQUEST, 9));
        want.extend_from_slice(&[0, 0, 0x9c, 0x40]);
        want.extend(nla(12, NFQA_VERDICT_HDR));
        want.extend_from_slice(&[0, 0, 0, 0, 1, 2, 3, 4]); // NF_DROP
        want.extend(nla(12, NFQA_CT | NLA_F_NESTED));
        want.extend(nla(8, CTA_MARK));
        want.extend_from_slice(&[0x11, 0x22, 0x33, 0x44]);
        want.extend(nla(9, NFQA_PAYLOAD));
        want.extend_from_slice(&[1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(buf, want);
    }

    #[test]
    fn verdict_payload_too_large_appends_nothing() {
        let big = vec![0u8; MAX_VERDICT_PAYLOAD + 1];
        let mut buf = Vec::new();
        let e = encode_verdict(&mut buf, 1, 1, &Verdict::accept(1).with_payload(&big));
        assert!(matches!(e, Err(WireError::PayloadTooLarge { .. })));
        assert!(buf.is_empty());
        let ok = vec![0u8; MAX_VERDICT_PAYLOAD];
        let n = encode_verdict(&mut buf, 1, 1, &Verdict::accept(1).with_payload(&ok)).unwrap();
        assert_eq!(n, buf.len());
        // The payload attribute length still fits the u16.
        assert_eq!(&buf[32..34], &(u16::MAX).to_ne_bytes());
    }

    #[test]
    fn repeat_verdict_value() {
        let mut buf = Vec::new();
        encode_verdict(&mut buf, 0, 1, &Verdict::repeat(1)).unwrap();
        assert_eq!(&buf[24..28], &NF_REPEAT.to_be_bytes());
    }

    #[test]
    fn batch_verdict_exact_bytes() {
        let mut buf = Vec::new();
        encode_batch_verdict(&mut buf, 3, 77, 77, VerdictAction::Accept, Some(0xabcdef01));
        let mut want = nlh(40, 0x0303, NLM_F_REQUEST, 77);
        want.extend_from_slice(&[0, 0, 0, 3]);
        want.extend(nla(12, NFQA_VERDICT_HDR));
        want.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 77]);
        want.extend(nla(8, NFQA_MARK));
        want.extend_from_slice(&[0xab, 0xcd, 0xef, 0x01]);
        assert_eq!(buf, want);

        buf.clear();
        encode_batch_verdict(&mut buf, 3, 1, 9, VerdictAction::Drop, None);
        assert_eq!(buf.len(), 32);
        assert_eq!(&buf[24..32], &[0, 0, 0, 0, 0, 0, 0, 9]);
    }

    #[test]
    fn config_bind_exact_bytes() {
        let mut buf = Vec::new();
        encode_config(&mut buf, 40000, 1, ConfigRequest::Bind, true);
        let mut want = nlh(28, 0x0302, NLM_F_REQUEST | NLM_F_ACK, 1);
        want.extend_from_slice(&[0, 0, 0x9c, 0x40]);
        want.extend(nla(8, NFQA_CFG_CMD));
        // struct nfqnl_msg_config_cmd { u8 command; u8 _pad; be16 pf; }
        want.extend_from_slice(&[NFQNL_CFG_CMD_BIND, 0, 0, 0]);
        assert_eq!(buf, want);

        buf.clear();
        encode_config(&mut buf, 0, 2, ConfigRequest::PfBind(libc::AF_INET6 as u16), false);
        assert_eq!(&buf[6..8], &NLM_F_REQUEST.to_ne_bytes());
        assert_eq!(&buf[24..28], &[NFQNL_CFG_CMD_PF_BIND, 0, 0, 10]);
    }

    #[test]
    fn config_params_packed_exact_bytes() {
        let mut buf = Vec::new();
        let range = 0xffff;
        encode_config(&mut buf, 7, 3, ConfigRequest::Params { mode: CopyMode::Packet, range }, true);
        let mut want = nlh(32, 0x0302, NLM_F_REQUEST | NLM_F_ACK, 3);
        want.extend_from_slice(&[0, 0, 0, 7]);
        // packed { be32 copy_range; u8 copy_mode; } = 5 bytes, nla_len 9
        want.extend(nla(9, NFQA_CFG_PARAMS));
        want.extend_from_slice(&[0, 0, 0xff, 0xff, NFQNL_COPY_PACKET, 0, 0, 0]);
        assert_eq!(buf, want);
    }

    #[test]
    fn config_maxlen_and_flags_exact_bytes() {
        let mut buf = Vec::new();
        encode_config(&mut buf, 7, 4, ConfigRequest::MaxLen(4096), true);
        assert_eq!(buf.len(), 28);
        assert_eq!(&buf[20..24], &nla(8, NFQA_CFG_QUEUE_MAXLEN)[..]);
        assert_eq!(&buf[24..28], &[0, 0, 0x10, 0]);

        buf.clear();
        let f = NFQA_CFG_F_FAIL_OPEN | NFQA_CFG_F_GSO;
        encode_config(&mut buf, 7, 5, ConfigRequest::Flags { flags: f, mask: f }, true);
        assert_eq!(buf.len(), 36);
        assert_eq!(&buf[20..24], &nla(8, NFQA_CFG_FLAGS)[..]);
        assert_eq!(&buf[24..28], &[0, 0, 0, 5]);
        assert_eq!(&buf[28..32], &nla(8, NFQA_CFG_MASK)[..]);
        assert_eq!(&buf[32..36], &[0, 0, 0, 5]);
    }

    #[test]
    fn several_messages_in_one_buffer_iterate() {
        let mut buf = Vec::new();
        encode_verdict(&mut buf, 1, 1, &Verdict::accept(1).with_payload(&[9; 3])).unwrap();
        encode_batch_verdict(&mut buf, 1, 2, 2, VerdictAction::Accept, None);
        let msgs: Vec<_> = messages(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(msgs.len(), 2);
        assert_eq!(NlMsgHdr::parse(msgs[1]).unwrap().ty, 0x0303);
    }

    fn packet_msg(attrs_bytes: &[u8]) -> Vec<u8> {
        let mut v = nlh((20 + attrs_bytes.len()) as u32, 0x0300, 0, 0);
        v.extend_from_slice(&[2, 0, 0, 7]);
        v.extend_from_slice(attrs_bytes);
        v
    }

    fn hdr_attr(id: u32) -> Vec<u8> {
        let mut a = nla(11, NFQA_PACKET_HDR);
        a.extend_from_slice(&id.to_be_bytes());
        a.extend_from_slice(&[0x08, 0x00, 3, 0]);
        a
    }

    #[test]
    fn synthetic_packet_with_ct_and_timestamp() {
        let mut a = hdr_attr(42);
        a.extend(nla(20, NFQA_CT | NLA_F_NESTED));
        a.extend(nla(8, CTA_ID));
        a.extend_from_slice(&0xdeadbeefu32.to_be_bytes());
        a.extend(nla(8, CTA_MARK));
        a.extend_from_slice(&7u32.to_be_bytes());
        a.extend(nla(8, NFQA_CT_INFO));
        a.extend_from_slice(&2u32.to_be_bytes());
        a.extend(nla(20, NFQA_TIMESTAMP));
        a.extend_from_slice(&1_700_000_000u64.to_be_bytes());
        a.extend_from_slice(&250_000u64.to_be_bytes());
        a.extend(nla(8, NFQA_CAP_LEN));
        a.extend_from_slice(&1500u32.to_be_bytes());
        a.extend(nla(8, NFQA_SKB_INFO));
        a.extend_from_slice(&(NFQA_SKB_GSO | NFQA_SKB_CSUMNOTREADY).to_be_bytes());
        a.extend(nla(6, NFQA_PAYLOAD));
        a.extend_from_slice(&[0x45, 0x00, 0, 0]);
        a.extend(nla(12, 999)); // unknown attribute: ignored
        a.extend_from_slice(&[0; 8]);
        let m = packet_msg(&a);
        let p = parse_packet(&m).unwrap();
        assert_eq!(p.id, 42);
        assert_eq!(p.hw_protocol, 0x0800);
        assert_eq!(p.hook, 3);
        assert_eq!(p.ct_id, Some(0xdeadbeef));
        assert_eq!(p.ct_mark, Some(7));
        assert_eq!(p.ct_info, Some(2));
        assert_eq!(p.timestamp, Some(Duration::new(1_700_000_000, 250_000_000)));
        assert_eq!(p.payload, &[0x45, 0x00]);
        assert_eq!(p.orig_len(), 1500);
        assert!(p.is_truncated() && p.is_gso() && p.csum_not_ready());
        assert!(!p.csum_not_verified());
        assert_eq!(p.raw(), &m[..]);
    }

    #[test]
    fn malformed_packets_are_errors() {
        // No packet header.
        let m = packet_msg(&[]);
        assert_eq!(parse_packet(&m), Err(WireError::MissingPacketHeader));
        // Short packet header.
        let mut a = nla(8, NFQA_PACKET_HDR);
        a.extend_from_slice(&[0; 4]);
        assert!(matches!(parse_packet(&packet_msg(&a)), Err(WireError::BadAttrSize { .. })));
        // Attribute length beyond the message.
        let mut a = hdr_attr(1);
        a.extend(nla(200, NFQA_PAYLOAD));
        a.extend_from_slice(&[0; 4]);
        assert!(matches!(parse_packet(&packet_msg(&a)), Err(WireError::BadAttrLength { .. })));
        // Attribute length below the header size.
        let mut a = hdr_attr(1);
        a.extend(nla(2, NFQA_MARK));
        assert!(matches!(parse_packet(&packet_msg(&a)), Err(WireError::BadAttrLength { .. })));
        // Nested NFQA_CT whose inner attribute overruns the nest.
        let mut a = hdr_attr(1);
        a.extend(nla(12, NFQA_CT | NLA_F_NESTED));
        a.extend(nla(40, CTA_MARK));
        a.extend_from_slice(&[0; 4]);
        assert!(matches!(parse_packet(&packet_msg(&a)), Err(WireError::BadAttrLength { .. })));
        // u32 attribute of the wrong size.
        let mut a = hdr_attr(1);
        a.extend(nla(6, NFQA_MARK));
        a.extend_from_slice(&[0, 0, 0, 0]);
        assert!(matches!(parse_packet(&packet_msg(&a)), Err(WireError::BadAttrSize { .. })));
        // nlmsg_len larger than the buffer / smaller than a header.
        let mut m = packet_msg(&hdr_attr(1));
        m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(matches!(parse_packet(&m), Err(WireError::BadMessageLength { .. })));
        assert!(matches!(messages(&m).next(), Some(Err(WireError::BadMessageLength { .. }))));
        m[0..4].copy_from_slice(&3u32.to_ne_bytes());
        assert!(matches!(messages(&m).next(), Some(Err(WireError::BadMessageLength { .. }))));
        // nfgenmsg missing.
        let m = nlh(16, 0x0300, 0, 0);
        assert!(matches!(parse_packet(&m), Err(WireError::Truncated { .. })));
        // Wrong type.
        let m = nlh(16, 0x0301, 0, 0);
        assert_eq!(parse_packet(&m), Err(WireError::UnexpectedType(0x0301)));
        // Bogus timestamp usec: ignored, not a panic.
        let mut a = hdr_attr(1);
        a.extend(nla(20, NFQA_TIMESTAMP));
        a.extend_from_slice(&u64::MAX.to_be_bytes());
        a.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(parse_packet(&packet_msg(&a)).unwrap().timestamp, None);
        // Empty / tiny inputs.
        assert!(parse_message(&[]).is_err());
        assert!(parse_message(&[1, 2, 3]).is_err());
        assert!(messages(&[]).next().is_none());
    }

    #[test]
    fn error_message_with_ext_ack() {
        // NLMSG_ERROR, errno -EOPNOTSUPP, capped request header, ext msg TLV.
        let mut body = (-libc::EOPNOTSUPP).to_ne_bytes().to_vec();
        body.extend(nlh(36, 0x0302, NLM_F_REQUEST | NLM_F_ACK, 11));
        body.extend(nla(4 + 6, NLMSGERR_ATTR_MSG));
        body.extend_from_slice(b"nope!\0\0\0");
        let mut m = nlh((16 + body.len()) as u32, NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, 11);
        m.extend(body);
        let Message::Error(e) = parse_message(&m).unwrap() else { panic!("not an error message") };
        assert_eq!(e.errno, libc::EOPNOTSUPP);
        assert_eq!(e.request.seq, 11);
        assert_eq!(e.request.ty, 0x0302);
        assert_eq!(e.ext_msg, Some("nope!"));
        // Truncated error message.
        assert!(parse_error(&m[..24]).is_err());
        // i32::MIN errno does not overflow.
        let mut m2 = m.clone();
        m2[16..20].copy_from_slice(&i32::MIN.to_ne_bytes());
        assert_eq!(parse_error(&m2).unwrap().errno, i32::MAX);
    }
}
