//! The IP -> name cache learned from DNS answers, shared by all workers: bounded, TTL-aware.
//!
//! Workers insert on every DNS response they see and look up once per classified flow; the map is
//! sharded and evicts expired, then oldest entries ([`crate::sharded`]).

use crate::sharded::{Expiring, ShardedMap};
use std::net::IpAddr;
use std::sync::Arc;

/// Shortest time an answer is kept: clients connect some time after resolving, and OS and
/// browser caches hold answers for minutes even when the TTL says seconds.
pub const MIN_TTL_SECS: u32 = 300;
/// Longest time an answer is kept, whatever the TTL says: addresses get reassigned.
pub const MAX_TTL_SECS: u32 = 24 * 3600;

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    inserted: u64,
    expires: u64,
}

impl Expiring for Entry {
    fn expires(&self) -> u64 {
        self.expires
    }
    fn last_touched(&self) -> u64 {
        self.inserted
    }
}

/// Shared by the workers (`&self` methods, internally synchronized).
#[derive(Debug)]
pub struct DnsCache {
    map: ShardedMap<IpAddr, Entry>,
}

impl Default for DnsCache {
    fn default() -> Self {
        DnsCache::new(65_536)
    }
}

impl DnsCache {
    /// A cache holding about `capacity` addresses (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        DnsCache { map: ShardedMap::new(capacity) }
    }

    /// Remembers that `addr` was the answer for `name`, for `ttl` seconds (clamped). The newest
    /// answer for an address wins.
    pub fn insert(&self, addr: IpAddr, name: &str, ttl: u32, now_micros: u64) {
        let name = name.trim_end_matches('.');
        if name.is_empty() {
            return;
        }
        let ttl = ttl.clamp(MIN_TTL_SECS, MAX_TTL_SECS);
        let expires = now_micros.saturating_add(u64::from(ttl) * 1_000_000);
        let mut shard = self.map.lock(&addr);
        if let Some(e) = shard.get_mut(&addr) {
            if &*e.name != name {
                e.name = Arc::from(name);
            }
            e.inserted = now_micros;
            e.expires = expires;
            return;
        }
        self.map.make_room(&mut shard, now_micros, |_| {});
        shard.insert(addr, Entry { name: Arc::from(name), inserted: now_micros, expires });
    }

    /// The name a client resolved to reach `addr`, if still fresh.
    pub fn lookup(&self, addr: IpAddr, now_micros: u64) -> Option<Arc<str>> {
        let mut shard = self.map.lock(&addr);
        match shard.get(&addr) {
            Some(e) if e.expires > now_micros => Some(Arc::clone(&e.name)),
            Some(_) => {
                shard.remove(&addr);
                None
            }
            None => None,
        }
    }

    /// Entries held (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.map.len()
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

    const SEC: u64 = 1_000_000;

    fn v4(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(n))
    }

    #[test]
    fn insert_lookup_and_newest_wins() {
        let c = DnsCache::new(100);
        let a = v4(0x0a00_0001);
        assert!(c.lookup(a, 0).is_none());
        c.insert(a, "www.example.com.", 600, 10 * SEC);
        assert_eq!(c.lookup(a, 11 * SEC).as_deref(), Some("www.example.com"));
        c.insert(a, "cdn.example.net", 600, 20 * SEC);
        assert_eq!(c.lookup(a, 21 * SEC).as_deref(), Some("cdn.example.net"));
        assert_eq!(c.len(), 1);
        let b = IpAddr::V6(Ipv6Addr::LOCALHOST);
        c.insert(b, "six.example", 600, 0);
        assert_eq!(c.lookup(b, SEC).as_deref(), Some("six.example"));
        c.insert(b, "", 600, 0); // ignored
        assert_eq!(c.lookup(b, SEC).as_deref(), Some("six.example"));
    }

    #[test]
    fn ttl_is_clamped_and_expires() {
        let c = DnsCache::new(100);
        let a = v4(1);
        c.insert(a, "short.example", 5, 0); // 5 s becomes MIN_TTL_SECS
        assert!(c.lookup(a, u64::from(MIN_TTL_SECS - 1) * SEC).is_some());
        assert!(c.lookup(a, u64::from(MIN_TTL_SECS) * SEC).is_none());
        assert_eq!(c.len(), 0, "an expired entry is dropped on lookup");
        c.insert(a, "long.example", u32::MAX, 0);
        assert!(c.lookup(a, u64::from(MAX_TTL_SECS - 1) * SEC).is_some());
        assert!(c.lookup(a, u64::from(MAX_TTL_SECS) * SEC).is_none());
        // A timestamp near the end of time must not overflow.
        c.insert(a, "late.example", 60, u64::MAX - 5);
        assert!(c.lookup(a, u64::MAX - 4).is_some());
    }

    #[test]
    fn capacity_is_bounded_and_evicts_oldest() {
        let c = DnsCache::new(64);
        for i in 0..10_000u32 {
            c.insert(v4(i), "n.example", 3600, u64::from(i) * SEC);
        }
        assert!(c.len() <= 64 + SHARDS, "len {}", c.len());
        // The newest survive, the oldest are gone.
        assert!(c.lookup(v4(9_999), 10_000 * SEC).is_some());
        assert!(c.lookup(v4(0), 10_000 * SEC).is_none());
    }

    #[test]
    fn expired_entries_make_room_first() {
        let c = DnsCache::new(SHARDS); // one entry per shard
        let a = v4(7);
        c.insert(a, "old.example", 60, 0);
        let later = 10_000 * SEC;
        c.insert(a, "new.example", 60, later);
        assert_eq!(c.lookup(a, later + 1).as_deref(), Some("new.example"));
    }

    #[test]
    fn shared_between_threads() {
        fn is_sync_send<T: Sync + Send>() {}
        is_sync_send::<DnsCache>();
        let c = Arc::new(DnsCache::new(10_000));
        let handles: Vec<_> = (0..4u32)
            .map(|t| {
                let c = Arc::clone(&c);
                std::thread::spawn(move || {
                    for i in 0..1000u32 {
                        let a = v4(t << 16 | i);
                        c.insert(a, &format!("h{t}-{i}.example"), 600, 0);
                        assert!(c.lookup(a, SEC).is_some());
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("worker thread");
        }
        assert_eq!(c.len(), 4000);
        assert_eq!(c.lookup(v4(3 << 16 | 999), SEC).as_deref(), Some("h3-999.example"));
    }
}
