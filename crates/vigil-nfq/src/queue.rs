//! The socket side: open/configure a queue, receive batches, send verdicts.

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::error::NfqError;
use crate::wire::{self, ConfigRequest, CopyMode, Message, Packet, Verdict, VerdictAction};

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

/// Soft limit of one verdict datagram. A single verdict carrying a large
/// replacement payload may exceed it on its own (it is then sent alone).
const MAX_SEND_DATAGRAM: usize = 64 * 1024;
/// Room for the netlink/nfnetlink headers and metadata attributes of a
/// received packet message, on top of the copied payload.
const RECV_HEADROOM: usize = 4096;
/// `UIO_MAXIOV`: most datagrams one sendmmsg call takes.
const MAX_MMSG: usize = 1024;

/// How to open a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// `--queue-num` of the NFQUEUE rule (full 16-bit range).
    pub queue_num: u16,
    /// Bytes of each packet copied to user space (0 or >= 0xffff: whole packet
    /// up to the kernel's maximum).
    pub copy_range: u32,
    /// `NFQA_CFG_QUEUE_MAXLEN`: packets the kernel holds before it drops (or,
    /// with `fail_open`, accepts) new ones.
    pub max_len: u32,
    /// `NFQA_CFG_F_FAIL_OPEN`: accept instead of drop when the queue is full.
    pub fail_open: bool,
    /// `NFQA_CFG_F_GSO`: deliver unsegmented GSO packets.
    pub gso: bool,
    /// Try `NFQA_CFG_F_CONNTRACK`; degrade gracefully when unsupported.
    pub conntrack: bool,
    /// `NFQA_CFG_F_UID_GID`: report the socket owner of local packets.
    pub uid_gid: bool,
    /// Receive buffer size (`SO_RCVBUFFORCE`, falling back to `SO_RCVBUF`).
    pub rcvbuf: usize,
    /// Most datagrams (packets) read by one [`Queue::recv`] call.
    pub recv_batch: usize,
    /// How long to wait for the kernel to acknowledge a config request.
    pub ack_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            queue_num: 0,
            copy_range: 0xffff,
            max_len: 4096,
            fail_open: true,
            gso: true,
            conntrack: true,
            uid_gid: false,
            rcvbuf: 8 << 20,
            recv_batch: 32,
            ack_timeout: Duration::from_secs(2),
        }
    }
}

impl QueueConfig {
    /// Defaults for queue `queue_num`.
    pub fn new(queue_num: u16) -> Self {
        QueueConfig { queue_num, ..Default::default() }
    }
}

/// Features that are active on an open queue: requested *and* accepted by
/// the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Conntrack info in packets (`NFQA_CT`) and connmark in verdicts.
    pub conntrack: bool,
    pub gso: bool,
    pub fail_open: bool,
    pub uid_gid: bool,
}

/// Counters of a queue. All monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Packets received and handed out in batches.
    pub received: u64,
    /// `ENOBUFS` from recv: the socket buffer overflowed and the kernel
    /// dropped (or, with fail-open, accepted) packets.
    pub enobufs: u64,
    /// Single verdict messages sent.
    pub verdicts_sent: u64,
    /// Batch verdict messages sent.
    pub batch_verdicts: u64,
    /// Verdicts that failed: `sendmsg` errors plus errors the kernel reported
    /// asynchronously (as `NLMSG_ERROR` in the receive stream).
    pub send_errors: u64,
    /// Of `send_errors`: `ENOENT`, the kernel no longer had the packet id
    /// (verdict after unbind, duplicate verdict, ...).
    pub unknown_ids: u64,
    /// Received messages that could not be decoded (skipped).
    pub parse_errors: u64,
}

/// A verdict the kernel refused, reported asynchronously.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictError {
    /// Packet id of the verdict (max id for a batch verdict).
    pub packet_id: u32,
    /// The verdict was a batch verdict.
    pub batch: bool,
    /// Positive errno.
    pub errno: i32,
}

#[derive(Debug, Default)]
struct Rx {
    /// `slots * slot_size` bytes; datagram i lives at `i * slot_size`.
    slab: Vec<u8>,
    slot_size: usize,
    slots: usize,
    /// (offset, len) of each received datagram in `slab`.
    dgrams: Vec<(usize, usize)>,
    /// (offset, len) of each valid packet message in `slab`.
    packets: Vec<(usize, usize)>,
    verdict_errors: Vec<VerdictError>,
    /// Datagrams carrying packets that arrived while waiting for an ACK.
    pending: VecDeque<Vec<u8>>,
    c: RxCounters,
}

#[derive(Debug, Default)]
struct RxCounters {
    received: u64,
    enobufs: u64,
    parse_errors: u64,
    async_errors: u64,
    unknown_ids: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Chunk {
    end: usize,
    verdicts: u64,
    batches: u64,
}

#[derive(Debug)]
struct Tx {
    fd: RawFd,
    queue_num: u16,
    conntrack: bool,
    buf: Vec<u8>,
    /// Closed datagrams in `buf`.
    chunks: Vec<Chunk>,
    /// The datagram being filled (starts at the last chunk's end).
    cur: Chunk,
    verdicts_sent: u64,
    batch_verdicts: u64,
    send_errors: u64,
}

/// A bound nfnetlink_queue.
///
/// Not `Sync`; move it to the worker thread that serves the queue.
#[derive(Debug)]
pub struct Queue {
    fd: OwnedFd,
    cfg: QueueConfig,
    caps: Capabilities,
    seq: u32,
    bound: bool,
    rx: Rx,
    tx: Tx,
}

impl Queue {
    /// Open a netlink socket, bind it to `cfg.queue_num` and configure copy
    /// mode, queue length and flags. Every step is acknowledged by the
    /// kernel; a refusal is reported as [`NfqError::Kernel`] naming the step.
    pub fn open(cfg: &QueueConfig) -> Result<Queue, NfqError> {
        let fd = open_netlink_socket()?;
        let raw = fd.as_raw_fd();
        let rcvbuf = cfg.rcvbuf.min(i32::MAX as usize) as libc::c_int;
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, rcvbuf).is_err() {
            if let Err(e) = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, rcvbuf) {
                log::warn!("nfq: cannot set receive buffer to {rcvbuf}: {e}");
            }
        }
        // A replaced payload can make one verdict ~64 KiB; netlink refuses a
        // datagram larger than sndbuf - 32 with EMSGSIZE.
        let sndbuf = 1 << 20;
        if setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, sndbuf).is_err() {
            let _ = setsockopt_int(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, sndbuf);
        }

        let payload_max =
            if cfg.copy_range == 0 || cfg.copy_range >= 0xffff { 0xffff } else { cfg.copy_range as usize };
        let slot_size = wire::align4(payload_max + RECV_HEADROOM);
        let slots = cfg.recv_batch.clamp(1, MAX_MMSG);

        let mut q = Queue {
            cfg: cfg.clone(),
            caps: Capabilities::default(),
            seq: 0,
            bound: false,
            rx: Rx { slab: vec![0; slot_size * slots], slot_size, slots, ..Default::default() },
            tx: Tx {
                fd: raw,
                queue_num: cfg.queue_num,
                conntrack: false,
                buf: Vec::with_capacity(MAX_SEND_DATAGRAM),
                chunks: Vec::new(),
                cur: Chunk::default(),
                verdicts_sent: 0,
                batch_verdicts: 0,
                send_errors: 0,
            },
            fd,
        };
        let n = cfg.queue_num;

        q.request(format!("bind queue {n}"), ConfigRequest::Bind)?;
        q.bound = true; // from here on, Drop unbinds
        q.request(
            format!("set copy mode PACKET (range {}) on queue {n}", cfg.copy_range),
            ConfigRequest::Params { mode: CopyMode::Packet, range: cfg.copy_range },
        )?;
        q.request(format!("set max length {} on queue {n}", cfg.max_len), ConfigRequest::MaxLen(cfg.max_len))?;
        q.caps.fail_open = cfg.fail_open && q.try_flag("FAIL_OPEN", wire::NFQA_CFG_F_FAIL_OPEN)?;
        q.caps.gso = cfg.gso && q.try_flag("GSO", wire::NFQA_CFG_F_GSO)?;
        q.caps.uid_gid = cfg.uid_gid && q.try_flag("UID_GID", wire::NFQA_CFG_F_UID_GID)?;
        q.caps.conntrack = cfg.conntrack && q.try_flag("CONNTRACK", wire::NFQA_CFG_F_CONNTRACK)?;
        q.tx.conntrack = q.caps.conntrack;
        log::debug!("nfq: queue {n} open, capabilities {:?}", q.caps);
        Ok(q)
    }

    /// Set one queue flag; `Ok(false)` when the kernel says EOPNOTSUPP.
    fn try_flag(&mut self, name: &str, flag: u32) -> Result<bool, NfqError> {
        let op = format!("set flag {name} on queue {}", self.cfg.queue_num);
        let req = ConfigRequest::Flags { flags: flag, mask: flag };
        // The kernel answers EAGAIN after auto-loading a module (conntrack
        // glue) and expects the request to be repeated.
        let mut tries = 0;
        loop {
            match self.request(op.clone(), req) {
                Ok(()) => return Ok(true),
                Err(NfqError::Kernel { errno, .. }) if errno == libc::EOPNOTSUPP => {
                    log::info!("nfq: queue {}: {name} not supported by the kernel", self.cfg.queue_num);
                    return Ok(false);
                }
                Err(NfqError::Kernel { errno, .. }) if errno == libc::EAGAIN && tries < 3 => {
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Send one config request with NLM_F_ACK and wait for its answer.
    /// Packets arriving meanwhile are kept for the next `recv`.
    fn request(&mut self, op: String, req: ConfigRequest) -> Result<(), NfqError> {
        let seq = self.next_seq();
        let mut msg = Vec::with_capacity(64);
        wire::encode_config(&mut msg, self.cfg.queue_num, seq, req, true);
        send_all(self.fd.as_raw_fd(), &msg).map_err(|source| NfqError::Io { op: "send config request", source })?;

        let deadline = Instant::now() + self.cfg.ack_timeout;
        let cfg_type = wire::nfq_msg_type(wire::NFQNL_MSG_CONFIG);
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(NfqError::NoAck { op, timeout_ms: self.cfg.ack_timeout.as_millis() as u64 });
            }
            if !poll_in(self.fd.as_raw_fd(), deadline - now)? {
                continue;
            }
            let slot = &mut self.rx.slab[..self.rx.slot_size];
            // SAFETY: `slot` is a valid writable buffer of the given length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), slot.as_mut_ptr().cast(), slot.len(), libc::MSG_DONTWAIT) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                    Some(libc::ENOBUFS) => {
                        self.rx.c.enobufs += 1;
                        continue;
                    }
                    _ => return Err(NfqError::Io { op: "recv config answer", source: e }),
                }
            }
            let dgram = &self.rx.slab[..n as usize];
            let mut answer = None;
            let mut has_packet = false;
            for m in wire::messages(dgram) {
                let Ok(m) = m else {
                    self.rx.c.parse_errors += 1;
                    break;
                };
                match wire::parse_message(m) {
                    Ok(Message::Error(e)) if e.request.seq == seq && e.request.ty == cfg_type => {
                        answer = Some((e.errno, e.ext_msg.map(str::to_owned)));
                    }
                    Ok(Message::Error(e)) => {
                        self.rx.c.note_async_error(&e);
                    }
                    Ok(Message::Packet(_)) => has_packet = true,
                    Ok(Message::Other(_)) => {}
                    Err(_) => self.rx.c.parse_errors += 1,
                }
            }
            if has_packet {
                self.rx.pending.push_back(dgram.to_vec());
            }
            match answer {
                Some((0, _)) => return Ok(()),
                Some((errno, ext_msg)) => return Err(NfqError::Kernel { op, errno, ext_msg }),
                None => {}
            }
        }
    }

    /// Wait up to `timeout` for packets and read as many as are ready (up to
    /// `QueueConfig::recv_batch`) in one `recvmmsg`. An empty batch means the
    /// timeout expired or the call was interrupted; check your stop flag and
    /// call again.
    ///
    /// Asynchronous verdict errors from the kernel are counted in
    /// [`QueueStats`] and listed in [`RecvBatch::verdict_errors`]; `ENOBUFS`
    /// is counted and never returned.
    pub fn recv(&mut self, timeout: Duration) -> Result<RecvBatch<'_>, NfqError> {
        let rx = &mut self.rx;
        rx.dgrams.clear();
        rx.packets.clear();
        rx.verdict_errors.clear();

        let mut lens: Vec<(usize, bool)> = Vec::new();
        if !rx.pending.is_empty() {
            while lens.len() < rx.slots {
                let Some(d) = rx.pending.pop_front() else { break };
                let off = lens.len() * rx.slot_size;
                let n = d.len().min(rx.slot_size);
                rx.slab[off..off + n].copy_from_slice(&d[..n]);
                lens.push((n, false));
            }
        } else if poll_in(self.fd.as_raw_fd(), timeout)? {
            recv_mmsg(self.fd.as_raw_fd(), rx, &mut lens)?;
        }

        for (i, &(len, truncated)) in lens.iter().enumerate() {
            let off = i * rx.slot_size;
            if truncated {
                rx.c.parse_errors += 1;
                continue;
            }
            rx.dgrams.push((off, len));
            let base = rx.slab.as_ptr() as usize;
            for m in wire::messages(&rx.slab[off..off + len]) {
                let m = match m {
                    Ok(m) => m,
                    Err(e) => {
                        log::debug!("nfq: bad datagram: {e}");
                        rx.c.parse_errors += 1;
                        break;
                    }
                };
                let moff = m.as_ptr() as usize - base;
                match wire::parse_message(m) {
                    Ok(Message::Packet(_)) => {
                        rx.packets.push((moff, m.len()));
                        rx.c.received += 1;
                    }
                    Ok(Message::Error(e)) => {
                        if let Some(ve) = rx.c.note_async_error(&e) {
                            rx.verdict_errors.push(ve);
                        }
                    }
                    Ok(Message::Other(_)) => {}
                    Err(e) => {
                        log::debug!("nfq: bad packet message: {e}");
                        rx.c.parse_errors += 1;
                    }
                }
            }
        }

        Ok(RecvBatch {
            slab: &self.rx.slab,
            packets: &self.rx.packets,
            dgrams: &self.rx.dgrams,
            verdict_errors: &self.rx.verdict_errors,
            tx: &mut self.tx,
        })
    }

    /// Queue a verdict in the send buffer (no system call). See
    /// [`Queue::flush`].
    ///
    /// Errors: [`NfqError::Unsupported`] when `connmark` is set but the queue
    /// has no conntrack support (the kernel would silently ignore it);
    /// [`crate::WireError::PayloadTooLarge`] for a payload over 65531 bytes.
    pub fn push_verdict(&mut self, v: &Verdict<'_>) -> Result<(), NfqError> {
        self.tx.push_verdict(v)
    }

    /// Queue an `NFQNL_MSG_VERDICT_BATCH` accepting **every** packet of this
    /// queue with id <= `max_id` (ids increase monotonically, modulo
    /// wrap-around at 2^32). Only use it when no packet with a lower id is
    /// still pending a different decision, otherwise that packet is accepted
    /// too.
    pub fn push_batch_accept(&mut self, max_id: u32, mark: Option<u32>) {
        self.tx.push_batch(max_id, VerdictAction::Accept, mark)
    }

    /// Like [`Queue::push_batch_accept`] with any action.
    pub fn push_batch_verdict(&mut self, max_id: u32, action: VerdictAction, mark: Option<u32>) {
        self.tx.push_batch(max_id, action, mark)
    }

    /// Send every buffered verdict, several per datagram and all datagrams
    /// in one `sendmmsg` where possible. A failing datagram is counted in
    /// `send_errors` and skipped; the first error is returned after the rest
    /// was sent.
    pub fn flush(&mut self) -> Result<(), NfqError> {
        self.tx.flush()
    }

    /// `push_verdict` + `flush`.
    pub fn verdict(&mut self, v: &Verdict<'_>) -> Result<(), NfqError> {
        self.tx.push_verdict(v)?;
        self.tx.flush()
    }

    /// Verdicts buffered and not yet flushed.
    pub fn pending_verdicts(&self) -> usize {
        let t = &self.tx;
        (t.chunks.iter().map(|c| c.verdicts + c.batches).sum::<u64>() + t.cur.verdicts + t.cur.batches) as usize
    }

    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    pub fn config(&self) -> &QueueConfig {
        &self.cfg
    }

    pub fn queue_num(&self) -> u16 {
        self.cfg.queue_num
    }

    pub fn stats(&self) -> QueueStats {
        QueueStats {
            received: self.rx.c.received,
            enobufs: self.rx.c.enobufs,
            verdicts_sent: self.tx.verdicts_sent,
            batch_verdicts: self.tx.batch_verdicts,
            send_errors: self.tx.send_errors + self.rx.c.async_errors,
            unknown_ids: self.rx.c.unknown_ids,
            parse_errors: self.rx.c.parse_errors,
        }
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Flush buffered verdicts, then unbind the queue and wait for the
    /// kernel's ACK. Packets still queued are dropped by the kernel.
    pub fn unbind(mut self) -> Result<(), NfqError> {
        let flushed = self.tx.flush();
        self.bound = false;
        let op = format!("unbind queue {}", self.cfg.queue_num);
        self.request(op, ConfigRequest::Unbind)?;
        flushed
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        if !self.bound {
            return;
        }
        let _ = self.tx.flush();
        let seq = self.next_seq();
        let mut msg = Vec::with_capacity(32);
        wire::encode_config(&mut msg, self.cfg.queue_num, seq, ConfigRequest::Unbind, false);
        // Best effort: closing the socket releases the queue anyway.
        let _ = send_all(self.fd.as_raw_fd(), &msg);
    }
}

impl AsRawFd for Queue {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl AsFd for Queue {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl RxCounters {
    /// Account an `NLMSG_ERROR` that is not the answer we wait for.
    fn note_async_error(&mut self, e: &wire::NlError<'_>) -> Option<VerdictError> {
        if e.errno == 0 {
            return None; // a stray ACK
        }
        self.async_errors += 1;
        if e.errno == libc::ENOENT {
            self.unknown_ids += 1;
        }
        let vty = wire::nfq_msg_type(wire::NFQNL_MSG_VERDICT);
        let bty = wire::nfq_msg_type(wire::NFQNL_MSG_VERDICT_BATCH);
        if e.request.ty == vty || e.request.ty == bty {
            // Verdicts are sent with seq = packet id.
            let ve = VerdictError { packet_id: e.request.seq, batch: e.request.ty == bty, errno: e.errno };
            log::debug!("nfq: kernel refused verdict: {ve:?}");
            Some(ve)
        } else {
            log::warn!("nfq: kernel reported errno {} for message type {:#06x}", e.errno, e.request.ty);
            None
        }
    }
}

impl Tx {
    fn close_chunk(&mut self) {
        if self.buf.len() > self.cur.end || self.cur.verdicts + self.cur.batches > 0 {
            self.cur.end = self.buf.len();
            self.chunks.push(self.cur);
            self.cur = Chunk { end: self.buf.len(), ..Chunk::default() };
        }
    }

    fn cur_len(&self) -> usize {
        self.buf.len() - self.chunks.last().map_or(0, |c| c.end)
    }

    fn make_room(&mut self, need: usize) {
        if self.cur_len() > 0 && self.cur_len() + need > MAX_SEND_DATAGRAM {
            self.close_chunk();
        }
    }

    fn push_verdict(&mut self, v: &Verdict<'_>) -> Result<(), NfqError> {
        if v.connmark.is_some() && !self.conntrack {
            return Err(NfqError::Unsupported("connmark in a verdict needs conntrack support on the queue"));
        }
        self.make_room(v.encoded_len());
        wire::encode_verdict(&mut self.buf, self.queue_num, v.id, v)?;
        self.cur.verdicts += 1;
        Ok(())
    }

    fn push_batch(&mut self, max_id: u32, action: VerdictAction, mark: Option<u32>) {
        self.make_room(40);
        wire::encode_batch_verdict(&mut self.buf, self.queue_num, max_id, max_id, action, mark);
        self.cur.batches += 1;
    }

    fn flush(&mut self) -> Result<(), NfqError> {
        self.close_chunk();
        if self.chunks.is_empty() {
            return Ok(());
        }
        let mut first_err: Option<io::Error> = None;
        let mut i = 0;
        while i < self.chunks.len() {
            let batch_end = (i + MAX_MMSG).min(self.chunks.len());
            let mut iovs: Vec<libc::iovec> = Vec::with_capacity(batch_end - i);
            let mut start = if i == 0 { 0 } else { self.chunks[i - 1].end };
            for c in &self.chunks[i..batch_end] {
                iovs.push(libc::iovec {
                    iov_base: self.buf[start..].as_ptr() as *mut libc::c_void,
                    iov_len: c.end - start,
                });
                start = c.end;
            }
            let mut hdrs = mmsg_headers(&mut iovs);
            // SAFETY: hdrs/iovs point into self.buf, alive for the call.
            let rc = unsafe { libc::sendmmsg(self.fd, hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, 0) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EINTR) {
                    continue;
                }
                // The first datagram failed: count and skip it.
                let c = self.chunks[i];
                self.send_errors += c.verdicts + c.batches;
                log::debug!("nfq: sending verdicts failed: {e}");
                first_err.get_or_insert(e);
                i += 1;
            } else if rc == 0 {
                // Not expected for vlen > 0; never loop forever on it.
                let c = self.chunks[i];
                self.send_errors += c.verdicts + c.batches;
                i += 1;
            } else {
                let sent = (rc as usize).min(batch_end - i);
                for c in &self.chunks[i..i + sent] {
                    self.verdicts_sent += c.verdicts;
                    self.batch_verdicts += c.batches;
                }
                i += sent;
            }
        }
        self.buf.clear();
        self.chunks.clear();
        self.cur = Chunk::default();
        match first_err {
            Some(source) => Err(NfqError::Io { op: "send verdicts", source }),
            None => Ok(()),
        }
    }
}

/// One `recvmmsg` into the slab slots; pushes (len, truncated) per datagram.
fn recv_mmsg(fd: RawFd, rx: &mut Rx, lens: &mut Vec<(usize, bool)>) -> Result<(), NfqError> {
    let slot_size = rx.slot_size;
    let mut iovs: Vec<libc::iovec> = rx
        .slab
        .chunks_exact_mut(slot_size)
        .map(|s| libc::iovec { iov_base: s.as_mut_ptr().cast(), iov_len: s.len() })
        .collect();
    let mut hdrs = mmsg_headers(&mut iovs);
    let mut retries = 0;
    loop {
        // SAFETY: hdrs/iovs describe writable slab memory alive for the call.
        let rc = unsafe {
            libc::recvmmsg(fd, hdrs.as_mut_ptr(), hdrs.len() as libc::c_uint, libc::MSG_DONTWAIT, std::ptr::null_mut())
        };
        if rc >= 0 {
            for h in &hdrs[..rc as usize] {
                let truncated = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                lens.push(((h.msg_len as usize).min(slot_size), truncated));
            }
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOBUFS) => {
                // The socket overflowed; the data after it is still there.
                rx.c.enobufs += 1;
                retries += 1;
                if retries > 4 {
                    return Ok(());
                }
            }
            Some(libc::EAGAIN) | Some(libc::EINTR) => return Ok(()),
            _ => return Err(NfqError::Io { op: "recvmmsg", source: e }),
        }
    }
}

/// A batch of received packets. Borrows the queue's receive buffer; the
/// packets handed out by [`RecvBatch::packets`] do not borrow the batch
/// itself, so verdicts can be pushed while iterating:
///
/// ```no_run
/// # use vigil_nfq::{Queue, QueueConfig, Verdict};
/// # use std::time::Duration;
/// # let mut q = Queue::open(&QueueConfig::new(0)).unwrap();
/// let mut batch = q.recv(Duration::from_millis(100))?;
/// for pkt in batch.packets() {
///     batch.push_verdict(&Verdict::accept(pkt.id))?;
/// }
/// batch.flush()?;
/// # Ok::<(), vigil_nfq::NfqError>(())
/// ```
#[derive(Debug)]
pub struct RecvBatch<'a> {
    slab: &'a [u8],
    packets: &'a [(usize, usize)],
    dgrams: &'a [(usize, usize)],
    verdict_errors: &'a [VerdictError],
    tx: &'a mut Tx,
}

impl<'a> RecvBatch<'a> {
    /// Number of packets.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The packets, in arrival order.
    pub fn packets(&self) -> Packets<'a> {
        Packets { slab: self.slab, spans: self.packets.iter() }
    }

    pub fn get(&self, i: usize) -> Option<Packet<'a>> {
        let &(off, len) = self.packets.get(i)?;
        wire::parse_packet(self.slab.get(off..off + len)?).ok()
    }

    /// The raw datagrams of this batch, as the kernel sent them.
    pub fn datagrams(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let slab = self.slab;
        self.dgrams.iter().filter_map(move |&(off, len)| slab.get(off..off + len))
    }

    /// Verdicts the kernel refused, as reported in this batch.
    pub fn verdict_errors(&self) -> &'a [VerdictError] {
        self.verdict_errors
    }

    /// See [`Queue::push_verdict`].
    pub fn push_verdict(&mut self, v: &Verdict<'_>) -> Result<(), NfqError> {
        self.tx.push_verdict(v)
    }

    /// See [`Queue::push_batch_accept`].
    pub fn push_batch_accept(&mut self, max_id: u32, mark: Option<u32>) {
        self.tx.push_batch(max_id, VerdictAction::Accept, mark)
    }

    /// See [`Queue::flush`].
    pub fn flush(&mut self) -> Result<(), NfqError> {
        self.tx.flush()
    }
}

impl<'a> IntoIterator for &RecvBatch<'a> {
    type Item = Packet<'a>;
    type IntoIter = Packets<'a>;
    fn into_iter(self) -> Packets<'a> {
        self.packets()
    }
}

/// Iterator over the packets of a [`RecvBatch`].
#[derive(Debug, Clone)]
pub struct Packets<'a> {
    slab: &'a [u8],
    spans: std::slice::Iter<'a, (usize, usize)>,
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;
    fn next(&mut self) -> Option<Packet<'a>> {
        for &(off, len) in self.spans.by_ref() {
            // Already validated in `recv`; re-parsing cannot fail, but a
            // failure would only skip the packet.
            if let Some(p) = self.slab.get(off..off + len).and_then(|m| wire::parse_packet(m).ok()) {
                return Some(p);
            }
        }
        None
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.spans.len()))
    }
}

/// A `NETLINK_NETFILTER` socket in the calling thread's network namespace:
/// non-blocking, close-on-exec, bound (the kernel picks the port id), with
/// extended and capped ACKs where the kernel supports them.
pub(crate) fn open_netlink_socket() -> Result<OwnedFd, NfqError> {
    // SAFETY: plain socket(2) call; the fd is owned right below.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            libc::NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        return Err(NfqError::io("socket(AF_NETLINK, NETLINK_NETFILTER)"));
    }
    // SAFETY: `raw` is a fresh, valid descriptor we exclusively own.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };

    // SAFETY: sockaddr_nl is plain old data; all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: addr is a valid sockaddr_nl of the length passed.
    let rc = unsafe {
        libc::bind(
            raw,
            &addr as *const libc::sockaddr_nl as *const libc::sockaddr,
            mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(NfqError::io("bind(AF_NETLINK)"));
    }

    for (opt, name) in [(NETLINK_EXT_ACK, "NETLINK_EXT_ACK"), (NETLINK_CAP_ACK, "NETLINK_CAP_ACK")] {
        if setsockopt_int(raw, SOL_NETLINK, opt, 1).is_err() {
            log::debug!("nfq: setsockopt({name}) failed (old kernel?)");
        }
    }
    Ok(fd)
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: passes a valid pointer to a c_int of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

pub(crate) fn send_all(fd: RawFd, buf: &[u8]) -> io::Result<()> {
    loop {
        // SAFETY: buf is valid for reads of its length.
        let rc = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) };
        if rc >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Wait until `fd` is readable or `timeout` passes. `Ok(false)` on timeout
/// or EINTR.
pub(crate) fn poll_in(fd: RawFd, timeout: Duration) -> Result<bool, NfqError> {
    let mut ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    if ms == 0 && !timeout.is_zero() {
        ms = 1;
    }
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EINTR) {
            return Ok(false);
        }
        return Err(NfqError::Io { op: "poll", source: e });
    }
    Ok(rc > 0)
}

/// One `mmsghdr` per buffer, for sendmmsg/recvmmsg (no address, no control data).
fn mmsg_headers(iovs: &mut [libc::iovec]) -> Vec<libc::mmsghdr> {
    iovs.iter_mut()
        .map(|iov| {
            // SAFETY: all-zero is a valid mmsghdr (null name/control).
            let mut h: libc::mmsghdr = unsafe { mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx() -> Tx {
        Tx {
            fd: -1,
            queue_num: 1,
            conntrack: false,
            buf: Vec::new(),
            chunks: Vec::new(),
            cur: Chunk::default(),
            verdicts_sent: 0,
            batch_verdicts: 0,
            send_errors: 0,
        }
    }

    #[test]
    fn verdicts_are_packed_into_datagrams_below_64k() {
        let mut t = tx();
        let payload = [0u8; 1000];
        for id in 0..100 {
            t.push_verdict(&Verdict::accept(id).with_payload(&payload)).unwrap();
        }
        t.push_batch(200, VerdictAction::Accept, None);
        let big = vec![0u8; 65000];
        t.push_verdict(&Verdict::accept(300).with_payload(&big)).unwrap();
        t.close_chunk();
        let mut start = 0;
        let mut total = 0;
        for c in &t.chunks {
            let len = c.end - start;
            assert!(len <= MAX_SEND_DATAGRAM || c.verdicts == 1, "chunk {len}");
            // Every chunk holds whole messages.
            let n = wire::messages(&t.buf[start..c.end]).inspect(|m| assert!(m.is_ok())).count() as u64;
            assert_eq!(n, c.verdicts + c.batches);
            total += n;
            start = c.end;
        }
        assert_eq!(total, 102);
        assert_eq!(t.chunks.len(), 3, "2 for 100 x 1 KiB, 1 for the 65000-byte one");
        // Verdict seq numbers carry the packet id.
        let first = wire::messages(&t.buf).next().unwrap().unwrap();
        assert_eq!(wire::NlMsgHdr::parse(first).unwrap().seq, 0);
    }

    #[test]
    fn queue_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<Queue>();
        assert_send::<QueueConfig>();
    }

    #[test]
    fn connmark_without_conntrack_is_refused() {
        let mut t = tx();
        let e = t.push_verdict(&Verdict::accept(1).with_connmark(5)).unwrap_err();
        assert!(matches!(e, NfqError::Unsupported(_)));
        assert!(t.buf.is_empty());
        t.conntrack = true;
        t.push_verdict(&Verdict::accept(1).with_connmark(5)).unwrap();
    }

    #[test]
    fn flush_with_nothing_buffered_makes_no_syscall() {
        let mut t = tx(); // fd -1: a syscall would fail
        t.flush().unwrap();
    }

    #[test]
    fn flush_error_is_counted() {
        let mut t = tx(); // fd -1: sendmmsg fails with EBADF
        t.push_verdict(&Verdict::accept(1)).unwrap();
        t.push_verdict(&Verdict::accept(2)).unwrap();
        let e = t.flush().unwrap_err();
        assert_eq!(e.errno(), Some(libc::EBADF));
        assert_eq!(t.send_errors, 2);
        assert!(t.buf.is_empty() && t.chunks.is_empty());
    }
}
