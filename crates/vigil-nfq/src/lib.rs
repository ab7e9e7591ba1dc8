//! # vigil-nfq
//!
//! A small, typed nfnetlink_queue client on plain `libc` sockets.
//!
//! * [`Queue::open`] binds a queue and configures it; every step is
//!   acknowledged and a refusal names the step ([`NfqError::Kernel`]).
//! * [`Queue::recv`] waits (with a timeout, so workers can notice a stop
//!   flag) and reads up to `recv_batch` packets with one `recvmmsg`; the
//!   [`Packet`]s are zero-copy views into the queue's receive buffer.
//! * Verdicts are buffered ([`Queue::push_verdict`],
//!   [`Queue::push_batch_accept`]) and sent several per datagram by
//!   [`Queue::flush`]. They are sent without `NLM_F_ACK`; the kernel reports
//!   failures (e.g. `ENOENT` for an id it no longer holds) asynchronously,
//!   which [`Queue::recv`] counts in [`QueueStats`] and lists in
//!   [`RecvBatch::verdict_errors`] (a verdict's netlink sequence number is its
//!   packet id).
//! * [`wire`] holds the pure encoders/decoders, usable without a socket.
//! * [`Conntrack`] ([`conntrack`]) looks up, re-marks and deletes conntrack
//!   entries over ctnetlink (default zone only), and dumps the table
//!   ([`Conntrack::dump`]).
//! * [`CtEvents`] ([`ct_events`]) subscribes to conntrack NEW / UPDATE /
//!   DESTROY events; DESTROY events carry the final counters of offloaded
//!   flows. Lost events (`ENOBUFS`) are counted and flagged, not fatal.
//!
//! Nothing in this crate panics on malformed input: bad messages are counted
//! in [`QueueStats::parse_errors`] and skipped.
//!
//! Caveat: packets that reach the queue between the bind and the copy-mode
//! request of [`Queue::open`] are delivered by the kernel without payload
//! (its default copy mode). They are handed out by the first `recv`; a
//! caller that needs the payload can answer them with
//! [`VerdictAction::Repeat`] to have them queued again.

pub mod conntrack;
pub mod ct_events;
mod error;
mod queue;
pub mod wire;

pub use conntrack::{Conntrack, CtEntry, CtError, CtTuple, DumpRequest};
pub use ct_events::{CtEvent, CtEventBatch, CtEventKind, CtEventStats, CtEvents, CtGroups};
pub use error::NfqError;
pub use queue::{Capabilities, Packets, Queue, QueueConfig, QueueStats, RecvBatch, VerdictError};
pub use wire::{Packet, Verdict, VerdictAction, WireError};
