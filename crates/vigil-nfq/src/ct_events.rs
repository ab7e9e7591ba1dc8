//! Conntrack events: a `NETLINK_NETFILTER` socket subscribed to ctnetlink's
//! multicast groups, delivering NEW / UPDATE / DESTROY events as
//! [`CtEntry`]s.
//!
//! vigil offloads decided flows, so its own per-flow counters stop early; the
//! kernel's counters keep running. A DESTROY event carries the entry's final
//! counters (`CTA_COUNTERS_ORIG`/`_REPLY`) when `nf_conntrack_acct` was on
//! when the entry was created, and `CTA_TIMESTAMP` start/stop when
//! `nf_conntrack_timestamp` was.
//!
//! Events are broadcast without flow control: when the socket's receive
//! buffer is full the kernel drops events and the next `recv` fails with
//! `ENOBUFS`. [`CtEvents`] deliberately does **not** set
//! `NETLINK_NO_ENOBUFS`: it counts the overrun ([`CtEventStats::enobufs`]),
//! reports it in [`CtEventBatch::overrun`] and keeps receiving. The caller
//! then reconciles with a dump ([`crate::Conntrack::dump`]): live entries
//! still have their counters; flows that ended during the overrun are gone
//! and their last counters are lost.
//!
//! Kernel behaviour worth knowing (observed on Linux 6.18 by
//! `tests/ct_events_kernel.rs`):
//! * Events are per network namespace: the socket must be opened in the
//!   namespace whose conntrack table is of interest.
//! * With `net.netfilter.nf_conntrack_events=2` (the default, "auto"), the
//!   kernel attaches the event extension only to entries created while a
//!   ctnetlink listener exists: entries created before vigil subscribed may
//!   never produce a DESTROY event (the "listener exists" check is not per
//!   namespace, so a listener elsewhere changes that). Set the sysctl to 1,
//!   or account such entries from a dump.
//! * A closed TCP connection's entry lives on in TIME_WAIT
//!   (`nf_conntrack_tcp_timeout_time_wait`, 120 s) and its DESTROY event
//!   comes when the garbage collector reaps it, up to about a minute after
//!   it expired. `CTA_TIMESTAMP_STOP` is back-dated to the expiry;
//!   `CTA_TIMESTAMP_EVENT` (Linux >= 6.2) tells when the event was made.
//! * DESTROY events carry tuples, id, status, mark, counters, TCP state and
//!   timestamps, but no timeout. Counters are L3 bytes (IP header
//!   included) per packet as conntrack saw it, one GSO super-packet
//!   counting once with its own headers.
//! * Joining the groups needs `CAP_NET_ADMIN` in the namespace.

use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::time::Duration;

use crate::conntrack::{
    ct_msg_type, parse_entry, CtEntry, CtError, IPCTNL_MSG_CT_DELETE, IPCTNL_MSG_CT_NEW, NFNL_SUBSYS_CTNETLINK,
    NLM_F_CREATE,
};
use crate::error::NfqError;
use crate::queue::{open_netlink_socket, poll_in};
use crate::wire::{self, NlMsgHdr, WireError};

/// `enum nfnetlink_groups` (conntrack part).
pub const NFNLGRP_CONNTRACK_NEW: u32 = 1;
pub const NFNLGRP_CONNTRACK_UPDATE: u32 = 2;
pub const NFNLGRP_CONNTRACK_DESTROY: u32 = 3;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_ADD_MEMBERSHIP: libc::c_int = 1;

/// Default receive buffer asked for (the kernel doubles it for overhead).
/// One event costs about 1 KiB of buffer (skb truesize), so this absorbs
/// bursts of several thousand events.
pub const DEFAULT_EVENT_RCVBUF: usize = 8 << 20;
/// Receive buffer of one datagram: an event is one message of a few hundred
/// bytes.
const DATAGRAM_BUF: usize = 64 * 1024;
/// Datagrams read by one `recv` at most, so a flood cannot starve the
/// caller's other work.
const MAX_DATAGRAMS_PER_RECV: usize = 1024;

/// Which event groups to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CtGroups {
    pub new: bool,
    pub destroy: bool,
    pub update: bool,
}

impl CtGroups {
    /// DESTROY only: final counters of every flow.
    pub const DESTROY: CtGroups = CtGroups { new: false, destroy: true, update: false };
    pub const ALL: CtGroups = CtGroups { new: true, destroy: true, update: true };

    fn ids(self) -> impl Iterator<Item = u32> {
        [
            (self.new, NFNLGRP_CONNTRACK_NEW),
            (self.update, NFNLGRP_CONNTRACK_UPDATE),
            (self.destroy, NFNLGRP_CONNTRACK_DESTROY),
        ]
        .into_iter()
        .filter_map(|(on, g)| on.then_some(g))
    }
}

/// What happened to the entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CtEventKind {
    /// A new entry was confirmed (its first packet passed).
    New,
    /// Status, mark, helper, timeout (TCP state)... changed.
    Update,
    /// The entry was removed (expired, deleted, flushed); it carries the
    /// final counters.
    Destroy,
}

/// One conntrack event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtEvent {
    pub kind: CtEventKind,
    /// Tuples, id, status, mark, zone; counters when accounting is on;
    /// timestamps when `nf_conntrack_timestamp` is on. DESTROY events carry
    /// no timeout.
    pub entry: CtEntry,
}

/// Decode one event message (header included). The kind comes from the
/// message type (`CT_DELETE` = destroy) and, for `CT_NEW`, the flags
/// (`NLM_F_CREATE` = new, otherwise update).
pub fn parse_event(msg: &[u8]) -> Result<CtEvent, CtError> {
    let hdr = NlMsgHdr::parse(msg)?;
    let kind = if hdr.ty == ct_msg_type(IPCTNL_MSG_CT_DELETE) {
        CtEventKind::Destroy
    } else if hdr.ty == ct_msg_type(IPCTNL_MSG_CT_NEW) {
        if hdr.flags & NLM_F_CREATE != 0 {
            CtEventKind::New
        } else {
            CtEventKind::Update
        }
    } else {
        return Err(WireError::UnexpectedType(hdr.ty).into());
    };
    Ok(CtEvent { kind, entry: parse_entry(msg)? })
}

/// Counters of a [`CtEvents`] socket since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct CtEventStats {
    /// Events decoded and handed out (all kinds).
    pub events: u64,
    pub news: u64,
    pub updates: u64,
    pub destroys: u64,
    /// `recv` failed with `ENOBUFS`: the kernel dropped events (an unknown
    /// number) because the receive buffer was full.
    pub enobufs: u64,
    /// Datagrams larger than the receive buffer (their events are lost).
    pub truncated: u64,
    /// Messages that could not be decoded (skipped).
    pub parse_errors: u64,
    /// Datagrams not sent by the kernel (another process writing to our
    /// port id), dropped.
    pub foreign: u64,
    pub datagrams: u64,
}

/// Events received by one [`CtEvents::recv`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtEventBatch {
    pub events: Vec<CtEvent>,
    /// Events may have been lost since the previous `recv` (`ENOBUFS`, a
    /// truncated datagram or an undecodable message): reconcile with a dump.
    pub overrun: bool,
}

impl CtEventBatch {
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn clear(&mut self) {
        self.events.clear();
        self.overrun = false;
    }
}

/// A ctnetlink event subscription in the network namespace of the thread
/// that opened it. Not `Sync`; one reader.
#[derive(Debug)]
pub struct CtEvents {
    fd: OwnedFd,
    groups: CtGroups,
    buf: Vec<u8>,
    stats: CtEventStats,
}

impl CtEvents {
    /// Join `groups` with a [`DEFAULT_EVENT_RCVBUF`] receive buffer.
    pub fn subscribe(groups: CtGroups) -> Result<CtEvents, NfqError> {
        Self::subscribe_with_rcvbuf(groups, DEFAULT_EVENT_RCVBUF)
    }

    /// Join `groups`, asking for a receive buffer of `rcvbuf` bytes
    /// (`SO_RCVBUFFORCE`, which ignores `net.core.rmem_max` but needs
    /// `CAP_NET_ADMIN`; `SO_RCVBUF` otherwise). The kernel doubles the value
    /// and enforces a minimum of a few KiB.
    pub fn subscribe_with_rcvbuf(groups: CtGroups, rcvbuf: usize) -> Result<CtEvents, NfqError> {
        if groups.ids().next().is_none() {
            return Err(NfqError::Unsupported("conntrack event subscription without any group"));
        }
        let fd = open_netlink_socket()?;
        let raw = fd.as_raw_fd();
        let want = rcvbuf.min(i32::MAX as usize / 2) as libc::c_int;
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, want).is_err() {
            if let Err(e) = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, want) {
                log::warn!("conntrack events: cannot set receive buffer to {want}: {e}");
            }
        }
        for g in groups.ids() {
            if let Err(source) = setsockopt_int(raw, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g as libc::c_int) {
                let op = match g {
                    NFNLGRP_CONNTRACK_NEW => "join NFNLGRP_CONNTRACK_NEW",
                    NFNLGRP_CONNTRACK_UPDATE => "join NFNLGRP_CONNTRACK_UPDATE",
                    _ => "join NFNLGRP_CONNTRACK_DESTROY",
                };
                if source.raw_os_error() == Some(libc::EPERM) {
                    return Err(NfqError::Kernel {
                        op: format!("{op} (conntrack events)"),
                        errno: libc::EPERM,
                        ext_msg: None,
                    });
                }
                return Err(NfqError::Io { op, source });
            }
        }
        log::debug!("conntrack events: subscribed to {groups:?}, rcvbuf {:?}", getsockopt_int(raw, libc::SO_RCVBUF));
        Ok(CtEvents { fd, groups, buf: vec![0; DATAGRAM_BUF], stats: CtEventStats::default() })
    }

    /// The groups joined.
    pub fn groups(&self) -> CtGroups {
        self.groups
    }

    /// The receive buffer the kernel granted (`SO_RCVBUF`, already doubled).
    pub fn rcvbuf(&self) -> Result<usize, NfqError> {
        getsockopt_int(self.fd.as_raw_fd(), libc::SO_RCVBUF)
            .map(|v| v.max(0) as usize)
            .map_err(|source| NfqError::Io { op: "getsockopt(SO_RCVBUF)", source })
    }

    /// Wait up to `timeout` for events and read those ready (at most 1024
    /// datagrams). An empty batch without `overrun` means the timeout
    /// expired or the call was interrupted.
    ///
    /// `ENOBUFS` is not an error: it is counted, flagged in
    /// [`CtEventBatch::overrun`] and reading goes on.
    pub fn recv(&mut self, timeout: Duration) -> Result<CtEventBatch, NfqError> {
        let mut batch = CtEventBatch::default();
        self.recv_into(&mut batch, timeout)?;
        Ok(batch)
    }

    /// [`CtEvents::recv`] into a reused batch (cleared first).
    pub fn recv_into(&mut self, batch: &mut CtEventBatch, timeout: Duration) -> Result<(), NfqError> {
        batch.clear();
        let fd = self.fd.as_raw_fd();
        if !poll_in(fd, timeout)? {
            return Ok(());
        }
        for _ in 0..MAX_DATAGRAMS_PER_RECV {
            // SAFETY: sockaddr_nl is plain old data; all-zero is valid.
            let mut from: libc::sockaddr_nl = unsafe { mem::zeroed() };
            let mut from_len = mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            // SAFETY: `buf` and `from` are valid writable buffers of the
            // lengths passed.
            let n = unsafe {
                libc::recvfrom(
                    fd,
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    libc::MSG_DONTWAIT | libc::MSG_TRUNC,
                    (&mut from as *mut libc::sockaddr_nl).cast(),
                    &mut from_len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => break,
                    Some(libc::ENOBUFS) => {
                        self.stats.enobufs += 1;
                        batch.overrun = true;
                        log::debug!("conntrack events: ENOBUFS, events were lost");
                        continue;
                    }
                    _ => return Err(NfqError::Io { op: "recv conntrack events", source: e }),
                }
            }
            self.stats.datagrams += 1;
            let n = n as usize;
            if n > self.buf.len() {
                self.stats.truncated += 1;
                batch.overrun = true;
                continue;
            }
            if from.nl_pid != 0 {
                self.stats.foreign += 1;
                continue;
            }
            let errors = decode_datagram(&self.buf[..n], &mut batch.events, &mut self.stats);
            if errors > 0 {
                self.stats.parse_errors += errors;
                batch.overrun = true;
            }
        }
        Ok(())
    }

    /// Counters since the socket was opened.
    pub fn stats(&self) -> CtEventStats {
        self.stats
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Decode every message of one datagram into `out`, counting kinds in
/// `stats`; returns the number of messages that could not be decoded.
/// Control messages (`NLMSG_NOOP`/`DONE`/`ERROR`) and other nfnetlink
/// subsystems' messages are ignored.
pub fn decode_datagram(dgram: &[u8], out: &mut Vec<CtEvent>, stats: &mut CtEventStats) -> u64 {
    let mut errors = 0;
    for m in wire::messages(dgram) {
        let Ok(m) = m else {
            errors += 1;
            break;
        };
        let Ok(hdr) = NlMsgHdr::parse(m) else {
            errors += 1;
            continue;
        };
        if hdr.ty >> 8 != NFNL_SUBSYS_CTNETLINK {
            continue;
        }
        match parse_event(m) {
            Ok(ev) => {
                stats.events += 1;
                match ev.kind {
                    CtEventKind::New => stats.news += 1,
                    CtEventKind::Update => stats.updates += 1,
                    CtEventKind::Destroy => stats.destroys += 1,
                }
                out.push(ev);
            }
            Err(e) => {
                log::debug!("conntrack events: undecodable message: {e}");
                errors += 1;
            }
        }
    }
    errors
}

impl AsRawFd for CtEvents {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for CtEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a valid pointer to a c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&v as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn getsockopt_int(fd: RawFd, opt: libc::c_int) -> io::Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid pointers to a c_int and its length.
    let rc = unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, opt, (&mut v as *mut libc::c_int).cast(), &mut len) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::{
        IPCTNL_MSG_CT_GET, IPPROTO_TCP, IPS_ASSURED, IPS_CONFIRMED, IPS_DYING, IPS_SEEN_REPLY, NLM_F_EXCL, NLM_F_MULTI,
    };
    use crate::wire::{messages, NLMSG_DONE};
    use std::net::IpAddr;

    /// DESTROY events recorded from Linux 6.18 by the root test
    /// `tests/ct_events_kernel.rs` (`VIGIL_WRITE_FIXTURES=1`): a TCP
    /// connection over lo that carried exactly 10 MiB client -> server,
    /// accounting and timestamps on.
    #[cfg(target_endian = "little")]
    const DESTROY_V4: &[u8] = include_bytes!("../tests/fixtures/ct_destroy_ipv4_tcp.bin");
    #[cfg(target_endian = "little")]
    const DESTROY_V6: &[u8] = include_bytes!("../tests/fixtures/ct_destroy_ipv6_tcp.bin");
    /// The answer to a dump (`AF_UNSPEC`) with one IPv4 and one IPv6 TCP
    /// connection (1000 bytes each way): two `CT_NEW | NLM_F_MULTI`
    /// entries and `NLMSG_DONE`, sequence number 77.
    #[cfg(target_endian = "little")]
    const DUMP: &[u8] = include_bytes!("../tests/fixtures/ct_dump_tcp.bin");

    const TEN_MB: u64 = 10 * 1024 * 1024;

    #[test]
    #[cfg(target_endian = "little")]
    fn kernel_destroy_events_decode() {
        // (fixture, v6, packets orig/reply, bytes orig/reply)
        for (raw, v6, po, pr, bo, br) in
            [(DESTROY_V4, false, 124, 83, 10_492_216, 4_324), (DESTROY_V6, true, 132, 77, 10_495_720, 5_552)]
        {
            let mut out = Vec::new();
            let mut st = CtEventStats::default();
            assert_eq!(decode_datagram(raw, &mut out, &mut st), 0);
            assert_eq!((st.events, st.destroys, st.news), (1, 1, 0));
            let [ev] = out[..] else { panic!("one event: {out:?}") };
            assert_eq!(ev, parse_event(raw).unwrap());
            assert_eq!(ev.kind, CtEventKind::Destroy);
            let e = ev.entry;
            let lo: IpAddr = if v6 { "::1".parse().unwrap() } else { "127.0.0.1".parse().unwrap() };
            assert_eq!((e.orig.proto, e.orig.src, e.orig.dst), (IPPROTO_TCP, lo, lo));
            assert_eq!(e.reply, e.orig.reversed());
            assert_eq!(e.status, IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED | IPS_DYING);
            assert_eq!(e.timeout, None, "no CTA_TIMEOUT in DESTROY events");
            assert_eq!(e.tcp_state, Some(7), "TIME_WAIT");
            assert_eq!((e.packets_orig, e.packets_reply), (Some(po), Some(pr)));
            assert_eq!((e.bytes_orig, e.bytes_reply), (Some(bo), Some(br)));
            // L3 bytes: payload + one IP+TCP header with the timestamps
            // option per (GSO) packet; the SYN and SYN-ACK carry 8 more
            // option bytes (MSS, SACK permitted, window scale).
            let hdr = if v6 { 60 + 12 } else { 40 + 12 };
            assert_eq!(br, pr * hdr + 8);
            let extra = bo - (TEN_MB + po * hdr + 8);
            if v6 {
                // 56 of the IPv6 data packets count 8 bytes more: an
                // extension header (likely the hop-by-hop jumbo option of
                // BIG TCP super-packets over 64 KiB on lo).
                assert_eq!(extra, 448);
            } else {
                assert_eq!(extra, 0);
            }
            let total = e.bytes_total().unwrap();
            assert!((TEN_MB..TEN_MB + TEN_MB / 100).contains(&total));
            assert_eq!(e.packets_total(), Some(po + pr));
            // Timestamps: the stop time is the expiry (TIME_WAIT 1 s after
            // the close), back-dated by the kernel; the event itself was
            // generated when the garbage collector reaped the entry, ~55 s
            // later.
            let (start, stop, event) =
                (e.timestamp_start.unwrap(), e.timestamp_stop.unwrap(), e.timestamp_event.unwrap());
            assert!(start < stop && stop - start < 2_000_000_000, "{start} {stop}");
            assert!(event > stop && event - stop < 120_000_000_000, "{stop} {event}");
            assert_eq!((e.mark, e.zone), (0, 0));
            assert_ne!(e.id, 0);
        }
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn kernel_dump_answer_decodes() {
        let mut entries = Vec::new();
        let mut done = false;
        for m in messages(DUMP) {
            let m = m.unwrap();
            let h = NlMsgHdr::parse(m).unwrap();
            assert_eq!(h.seq, 77);
            assert!(!done, "nothing after NLMSG_DONE");
            if h.ty == NLMSG_DONE {
                assert_eq!(&m[16..20], &[0, 0, 0, 0], "dump status 0");
                done = true;
                continue;
            }
            assert_eq!(h.ty, ct_msg_type(IPCTNL_MSG_CT_NEW));
            assert_eq!(h.flags & NLM_F_MULTI, NLM_F_MULTI);
            entries.push(parse_entry(m).unwrap());
        }
        assert!(done);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries.iter().filter(|e| e.orig.src.is_ipv6()).count(), 1, "both families: {entries:?}");
        for e in &entries {
            assert_eq!(e.orig.proto, IPPROTO_TCP);
            assert_eq!(e.tcp_state, Some(3), "ESTABLISHED");
            assert!(e.timeout.is_some() && e.timestamp_start.is_some() && e.timestamp_stop.is_none());
            assert_eq!(e.timestamp_event, None, "not an event");
            let hdr = if e.orig.src.is_ipv6() { 72 } else { 52 };
            assert_eq!(e.bytes_orig.unwrap(), 1000 + e.packets_orig.unwrap() * hdr + 8, "+8: SYN options");
        }
        // As events (which a dump is not) they would be updates: CT_NEW
        // without NLM_F_CREATE.
        let mut out = Vec::new();
        assert_eq!(decode_datagram(DUMP, &mut out, &mut CtEventStats::default()), 0);
        assert!(out.len() == 2 && out.iter().all(|e| e.kind == CtEventKind::Update));
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn event_kind_from_type_and_flags() {
        let mut m = DESTROY_V4.to_vec();
        m[4..6].copy_from_slice(&ct_msg_type(IPCTNL_MSG_CT_NEW).to_ne_bytes());
        m[6..8].copy_from_slice(&(NLM_F_CREATE | NLM_F_EXCL).to_ne_bytes());
        assert_eq!(parse_event(&m).unwrap().kind, CtEventKind::New);
        m[6..8].copy_from_slice(&0u16.to_ne_bytes());
        assert_eq!(parse_event(&m).unwrap().kind, CtEventKind::Update);
        // A dump-type message is an entry but not an event.
        m[4..6].copy_from_slice(&ct_msg_type(IPCTNL_MSG_CT_GET).to_ne_bytes());
        assert!(parse_entry(&m).is_ok());
        assert_eq!(parse_event(&m), Err(CtError::Wire(WireError::UnexpectedType(0x0101))));
        let mut st = CtEventStats::default();
        assert_eq!(decode_datagram(&m, &mut Vec::new(), &mut st), 1);
        // Other subsystems (expectation events, 0x02xx) are ignored.
        m[4..6].copy_from_slice(&0x0200u16.to_ne_bytes());
        assert_eq!(decode_datagram(&m, &mut Vec::new(), &mut st), 0);
        assert_eq!(st.events, 0);
    }

    /// Deterministic xorshift for the mutation loop.
    fn rng(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    #[cfg(target_endian = "little")]
    fn malformed_events_are_counted_not_panics() {
        for raw in [DESTROY_V4, DESTROY_V6, DUMP] {
            let first_len = NlMsgHdr::parse(raw).unwrap().len as usize;
            // Every prefix, with the original and with a consistent length.
            for cut in 0..raw.len() {
                let mut st = CtEventStats::default();
                let mut out = Vec::new();
                let errs = decode_datagram(&raw[..cut], &mut out, &mut st);
                if cut > 0 && cut < first_len {
                    assert!(errs >= 1, "cut {cut}");
                    assert!(out.is_empty());
                }
                let mut m = raw[..cut].to_vec();
                if m.len() >= 4 {
                    m[0..4].copy_from_slice(&(cut.min(first_len) as u32).to_ne_bytes());
                }
                let _ = decode_datagram(&m, &mut out, &mut st);
                let _ = parse_event(&m);
            }
            // Every single-byte corruption.
            for i in 0..raw.len() {
                for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
                    let mut m = raw.to_vec();
                    m[i] = v;
                    let _ = decode_datagram(&m, &mut Vec::new(), &mut CtEventStats::default());
                    let _ = parse_event(&m);
                }
            }
            // Random multi-byte corruptions.
            let mut s = 0x9e37_79b9_7f4a_7c15u64;
            for _ in 0..20_000 {
                let mut m = raw.to_vec();
                for _ in 0..1 + rng(&mut s) % 4 {
                    let i = (rng(&mut s) % m.len() as u64) as usize;
                    m[i] = rng(&mut s) as u8;
                }
                let mut st = CtEventStats::default();
                let mut out = Vec::new();
                let errs = decode_datagram(&m, &mut out, &mut st);
                assert_eq!(st.events as usize, out.len());
                assert!(errs <= 8);
            }
        }
        let mut st = CtEventStats::default();
        assert_eq!(decode_datagram(&[], &mut Vec::new(), &mut st), 0);
        assert_eq!(decode_datagram(&[1, 2, 3], &mut Vec::new(), &mut st), 1);
        assert!(parse_event(&[]).is_err());
    }

    #[test]
    fn groups() {
        assert_eq!(CtGroups::DESTROY.ids().collect::<Vec<_>>(), vec![NFNLGRP_CONNTRACK_DESTROY]);
        assert_eq!(CtGroups::ALL.ids().collect::<Vec<_>>(), vec![1, 2, 3]);
        assert_eq!(CtGroups::default().ids().count(), 0);
        let e = CtEvents::subscribe(CtGroups::default()).unwrap_err();
        assert!(matches!(e, NfqError::Unsupported(_)), "{e}");
    }

    #[test]
    fn ct_events_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<CtEvents>();
        assert_send::<CtEventBatch>();
    }
}
