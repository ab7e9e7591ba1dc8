//! What one flow teaches about other flows, shared by all workers: bounded and expiring.
//!
//! Two kinds of knowledge, one entry type (a name and its expiry), told apart by the key:
//!
//! - **Announced connections.** An FTP control connection announces its data connections (PASV,
//!   EPSV, PORT, EPRT): "`from` will connect to `to`", from a port nobody announced. The entry
//!   names the protocol ("FTP_DATA"); it is one-shot (the first matching connection consumes it)
//!   and expires [`ANNOUNCED_TTL_SECS`] after the announcement. A new TCP flow looks it up once,
//!   at its first packet, before any dissector sees the flow.
//! - **Call sockets.** A WebRTC/VoIP client runs the STUN checks, TURN allocations and media of one
//!   call from one UDP socket. When a flow's STUN messages name the call's application (a TURN
//!   realm, vendor attributes), the socket(s) that sent STUN requests on it are remembered with that
//!   application, so that the socket's other STUN/DTLS/RTP flows, which carry no such evidence, get
//!   it too. An entry lives [`SOCKET_IDLE_SECS`] after its last use (taught or looked up).
//!
//! Workers insert and look up concurrently; each kind has its own map (half the capacity, so a
//! flood of one kind cannot evict the other), sharded and evicting expired, then least recently
//! used entries ([`crate::sharded`], as the DNS cache does). A count of live entries and the latest
//! expiry of each kind let the common case, a new TCP flow while no FTP transfer is being set up
//! (or only stale announcements remain), skip the lock entirely; call-socket lookups happen only
//! for STUN-family flows.

use crate::facts::Announced;
use crate::sharded::{Expiring, ShardedMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// How long an announced connection is awaited (clients connect right after the reply; two
/// minutes leave room for slow servers and dialogs).
pub const ANNOUNCED_TTL_SECS: u64 = 120;
/// How long a call socket is remembered after its last use (a call's socket serves it for
/// minutes, not hours; the port is then reused for anything).
pub const SOCKET_IDLE_SECS: u64 = 600;
/// Default capacity (entries, both kinds together).
pub const DEFAULT_ENTRIES: usize = 16_384;

const SEC: u64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// A TCP connection `from` is expected to open to `to`.
    Announced { from: IpAddr, to: (IpAddr, u16) },
    /// A UDP socket that ran a call's STUN agent.
    Socket((IpAddr, u16)),
}

impl Key {
    fn kind(&self) -> usize {
        match self {
            Key::Announced { .. } => 0,
            Key::Socket(_) => 1,
        }
    }
}

#[derive(Debug)]
struct Entry {
    /// The protocol of an announced connection; the application of a call socket.
    name: &'static str,
    /// Last insert or use, for eviction order.
    used: u64,
    expires: u64,
}

impl Expiring for Entry {
    fn expires(&self) -> u64 {
        self.expires
    }
    fn last_touched(&self) -> u64 {
        self.used
    }
}

/// Shared by the workers (`&self` methods, internally synchronized).
#[derive(Debug)]
pub struct RelatedFlows {
    /// One map per kind (`Key::kind`), each with half the capacity: a flood of FTP announcements
    /// cannot evict call sockets, nor the reverse.
    maps: [ShardedMap<Key, Entry>; 2],
    /// Live entries by kind, updated under the shard locks: a lookup of a kind with none skips the
    /// lock.
    live: [AtomicUsize; 2],
    /// The latest expiry of any entry taught, by kind: once it has passed, every entry of the kind
    /// is dead (even if not yet evicted) and lookups skip the lock too.
    latest_expiry: [AtomicU64; 2],
}

impl Default for RelatedFlows {
    fn default() -> Self {
        RelatedFlows::new(DEFAULT_ENTRIES)
    }
}

impl RelatedFlows {
    /// A cache holding about `capacity` entries (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        let half = capacity.div_ceil(2);
        RelatedFlows {
            maps: [ShardedMap::new(half), ShardedMap::new(half)],
            live: [AtomicUsize::new(0), AtomicUsize::new(0)],
            latest_expiry: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    /// Whether a lookup of `kind` at `now` can find anything: a live entry not yet past the
    /// latest expiry taught.
    fn any(&self, kind: usize, now: u64) -> bool {
        self.live[kind].load(Ordering::Acquire) > 0 && now < self.latest_expiry[kind].load(Ordering::Acquire)
    }

    fn removed(&self, key: &Key) {
        self.live[key.kind()].fetch_sub(1, Ordering::AcqRel);
    }

    fn insert(&self, key: Key, name: &'static str, expires: u64, now: u64) {
        let map = &self.maps[key.kind()];
        self.latest_expiry[key.kind()].fetch_max(expires, Ordering::AcqRel);
        let mut shard = map.lock(&key);
        if let Some(e) = shard.get_mut(&key) {
            *e = Entry { name, used: now, expires };
            return;
        }
        map.make_room(&mut shard, now, |k| self.removed(k));
        shard.insert(key, Entry { name, used: now, expires });
        self.live[key.kind()].fetch_add(1, Ordering::AcqRel);
    }

    /// Remembers an announced connection for [`ANNOUNCED_TTL_SECS`]. Announcing it again renews it.
    pub fn expect(&self, a: &Announced, now_micros: u64) {
        let key = Key::Announced { from: a.from, to: a.to };
        self.insert(key, a.protocol, now_micros.saturating_add(ANNOUNCED_TTL_SECS * SEC), now_micros);
    }

    /// The protocol of the connection `from` -> `to`, if it was announced and is still awaited;
    /// the announcement is consumed.
    pub fn take_announced(&self, from: IpAddr, to: (IpAddr, u16), now_micros: u64) -> Option<&'static str> {
        if !self.any(0, now_micros) {
            return None;
        }
        let key = Key::Announced { from, to };
        let e = self.maps[0].lock(&key).remove(&key)?;
        self.removed(&key);
        (e.expires > now_micros).then_some(e.name)
    }

    /// Remembers that the UDP socket `socket` ran the STUN agent of a call of `app`; the newest
    /// application taught for a socket wins.
    pub fn learn_socket(&self, socket: (IpAddr, u16), app: &'static str, now_micros: u64) {
        self.insert(Key::Socket(socket), app, now_micros.saturating_add(SOCKET_IDLE_SECS * SEC), now_micros);
    }

    /// The call application of the UDP socket `socket`, if one was taught and used recently; a hit
    /// counts as a use (the entry lives on).
    pub fn socket_app(&self, socket: (IpAddr, u16), now_micros: u64) -> Option<&'static str> {
        if !self.any(1, now_micros) {
            return None;
        }
        let key = Key::Socket(socket);
        let mut shard = self.maps[1].lock(&key);
        let e = shard.get_mut(&key)?;
        if e.expires <= now_micros {
            shard.remove(&key);
            self.removed(&key);
            return None;
        }
        e.used = now_micros;
        e.expires = now_micros.saturating_add(SOCKET_IDLE_SECS * SEC);
        self.latest_expiry[1].fetch_max(e.expires, Ordering::AcqRel);
        Some(e.name)
    }

    /// Entries held (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.maps.iter().map(ShardedMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sharded::SHARDS;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    fn ftp(from: IpAddr, to: (IpAddr, u16)) -> Announced {
        Announced { protocol: "FTP_DATA", from, to }
    }

    const CLIENT: u32 = 0xc0a8_01d4; // 192.168.1.212
    const SERVER: u32 = 0x5a82_4649; // 90.130.70.73

    #[test]
    fn expired_announcements_let_lookups_skip_the_lock_again() {
        let c = RelatedFlows::new(DEFAULT_ENTRIES);
        c.expect(&ftp(v4(CLIENT), (v4(SERVER), 40000)), 0);
        assert!(c.any(0, SEC));
        // Never consumed (the client gave up): once past its expiry, nothing can match.
        let later = (ANNOUNCED_TTL_SECS + 1) * SEC;
        assert!(!c.any(0, later));
        assert_eq!(c.take_announced(v4(CLIENT), (v4(SERVER), 40000), later), None);
        // A socket renewed by its lookups stays findable past its first expiry.
        let s = (v4(CLIENT), 5000);
        c.learn_socket(s, "SignalVoip", 0);
        let t = (SOCKET_IDLE_SECS - 1) * SEC;
        assert_eq!(c.socket_app(s, t), Some("SignalVoip"));
        assert_eq!(c.socket_app(s, t + 10 * SEC), Some("SignalVoip"));
    }

    #[test]
    fn a_flood_of_announcements_does_not_evict_call_sockets() {
        let c = RelatedFlows::new(64);
        let s = (v4(CLIENT), 5000);
        c.learn_socket(s, "SignalVoip", 0);
        for port in 1..=10_000u16 {
            c.expect(&ftp(v4(CLIENT), (v4(SERVER), port)), SEC);
        }
        assert_eq!(c.socket_app(s, 2 * SEC), Some("SignalVoip"));
        assert!(c.len() <= 64 + 2 * crate::sharded::SHARDS, "len {}", c.len());
    }

    #[test]
    fn announced_connections_are_one_shot() {
        let c = RelatedFlows::new(100);
        assert_eq!(c.take_announced(v4(CLIENT), (v4(SERVER), 25685), 0), None);
        c.expect(&ftp(v4(CLIENT), (v4(SERVER), 25685)), 10 * SEC);
        // Another client, address or port is not the announced connection, and leaves it alone.
        assert_eq!(c.take_announced(v4(CLIENT + 1), (v4(SERVER), 25685), 11 * SEC), None);
        assert_eq!(c.take_announced(v4(CLIENT), (v4(SERVER + 1), 25685), 11 * SEC), None);
        assert_eq!(c.take_announced(v4(CLIENT), (v4(SERVER), 25686), 11 * SEC), None);
        assert_eq!(c.take_announced(v4(CLIENT), (v4(SERVER), 25685), 11 * SEC), Some("FTP_DATA"));
        assert_eq!(c.take_announced(v4(CLIENT), (v4(SERVER), 25685), 12 * SEC), None, "consumed");
        assert!(c.is_empty());
        // The kinds never mix: a socket entry is not an announced connection.
        c.learn_socket((v4(SERVER), 25685), "SignalVoip", 0);
        assert_eq!(c.take_announced(v4(CLIENT), (v4(SERVER), 25685), SEC), None);
        assert_eq!(c.socket_app((v4(SERVER), 25685), SEC), Some("SignalVoip"));
    }

    #[test]
    fn announced_connections_expire() {
        let c = RelatedFlows::new(100);
        let to = (IpAddr::V6(Ipv6Addr::LOCALHOST), 50_000);
        c.expect(&ftp(v4(CLIENT), to), 0);
        assert_eq!(c.take_announced(v4(CLIENT), to, ANNOUNCED_TTL_SECS * SEC), None);
        // Past the latest expiry, lookups skip the lock; eviction reclaims the entry.
        assert!(!c.any(0, ANNOUNCED_TTL_SECS * SEC));
        // Announcing again renews; a timestamp near the end of time does not overflow.
        c.expect(&ftp(v4(CLIENT), to), 0);
        c.expect(&ftp(v4(CLIENT), to), 100 * SEC);
        assert_eq!(c.len(), 1);
        assert_eq!(c.take_announced(v4(CLIENT), to, (ANNOUNCED_TTL_SECS + 99) * SEC), Some("FTP_DATA"));
        c.expect(&ftp(v4(CLIENT), to), u64::MAX - 5);
        assert_eq!(c.take_announced(v4(CLIENT), to, u64::MAX - 4), Some("FTP_DATA"));
    }

    #[test]
    fn sockets_live_while_used() {
        let c = RelatedFlows::new(100);
        let s = (v4(0xc0a8_0ca9), 43068);
        assert_eq!(c.socket_app(s, 0), None);
        c.learn_socket(s, "SignalVoip", 0);
        assert_eq!(c.socket_app((s.0, s.1 + 1), SEC), None, "same address, other socket");
        assert_eq!(c.socket_app((v4(1), s.1), SEC), None, "same port, other address");
        // Each use renews the entry.
        let mut t = 0;
        for _ in 0..5 {
            t += (SOCKET_IDLE_SECS - 1) * SEC;
            assert_eq!(c.socket_app(s, t), Some("SignalVoip"));
        }
        assert_eq!(c.socket_app(s, t + SOCKET_IDLE_SECS * SEC), None, "idle too long");
        assert!(!c.any(1, t + SOCKET_IDLE_SECS * SEC));
        // The newest application taught wins.
        c.learn_socket(s, "SignalVoip", 0);
        c.learn_socket(s, "WhatsAppCall", SEC);
        assert_eq!(c.socket_app(s, 2 * SEC), Some("WhatsAppCall"));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn capacity_is_bounded_and_evicts_least_recently_used() {
        let c = RelatedFlows::new(64);
        // A flood of announcements and sockets (hostile control connections, many calls) cannot
        // grow memory; within the TTL, the least recently used go first.
        for i in 0..10_000u32 {
            let now = u64::from(i) * SEC / 1000;
            c.expect(&ftp(v4(i), (v4(SERVER), i as u16 | 1)), now);
            c.learn_socket((v4(i), 3478), "SignalVoip", now);
        }
        assert!(c.len() <= 64 + SHARDS, "len {}", c.len());
        let now = 10 * SEC;
        assert_eq!(c.take_announced(v4(9_999), (v4(SERVER), 9_999 | 1), now), Some("FTP_DATA"));
        assert_eq!(c.socket_app((v4(9_999), 3478), now), Some("SignalVoip"));
        assert_eq!(c.take_announced(v4(0), (v4(SERVER), 1), now), None, "the oldest are gone");
        assert_eq!(c.socket_app((v4(0), 3478), now), None);
        // The live counts follow evictions and removals.
        assert_eq!(c.live[0].load(Ordering::Relaxed) + c.live[1].load(Ordering::Relaxed), c.len());
    }

    #[test]
    fn expired_entries_make_room_first() {
        let c = RelatedFlows::new(SHARDS); // one entry per shard
        let s = (v4(9), 9);
        c.learn_socket(s, "SignalVoip", 0);
        c.learn_socket((v4(10), 10), "SignalVoip", 0);
        c.learn_socket((v4(11), 11), "SignalVoip", 0);
        let later = 10_000 * SEC;
        c.learn_socket(s, "ZoomVideo", later);
        assert_eq!(c.socket_app(s, later + 1), Some("ZoomVideo"));
        assert_eq!(c.live[1].load(Ordering::Relaxed), c.len());
    }

    #[test]
    fn shared_between_threads() {
        fn is_sync_send<T: Sync + Send>() {}
        is_sync_send::<RelatedFlows>();
        let c = Arc::new(RelatedFlows::new(10_000));
        let handles: Vec<_> = (0..4u32)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..1000u32 {
                        let a = v4(t << 16 | i);
                        c.expect(&ftp(a, (v4(SERVER), 2000)), 0);
                        c.learn_socket((a, 3478), "SignalVoip", 0);
                        assert_eq!(c.take_announced(a, (v4(SERVER), 2000), SEC), Some("FTP_DATA"));
                        assert_eq!(c.socket_app((a, 3478), SEC), Some("SignalVoip"));
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("worker thread");
        }
        assert_eq!(c.len(), 4000);
        assert_eq!(c.live[0].load(Ordering::Relaxed), 0);
        assert_eq!(c.live[1].load(Ordering::Relaxed), 4000);
    }
}
