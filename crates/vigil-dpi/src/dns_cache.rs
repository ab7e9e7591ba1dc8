//! The IP -> name cache learned from DNS answers, shared by all workers: bounded, TTL-aware.
//!
//! Workers insert on every DNS response they see and look up once per classified flow, so the
//! cache is split into shards (one mutex each, picked by a hash of the address) to keep workers
//! from queueing on one lock. Each shard holds at most its share of the capacity; when full, it
//! first drops expired entries, then the oldest eighth (batch eviction keeps inserts amortised
//! O(1) instead of scanning the shard on every insert).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

/// Shortest time an answer is kept: clients connect some time after resolving, and OS and
/// browser caches hold answers for minutes even when the TTL says seconds.
pub const MIN_TTL_SECS: u32 = 300;
/// Longest time an answer is kept, whatever the TTL says: addresses get reassigned.
pub const MAX_TTL_SECS: u32 = 24 * 3600;

const SHARDS: usize = 16;

#[derive(Debug)]
struct Entry {
    name: Arc<str>,
    inserted: u64,
    expires: u64,
}

#[derive(Debug, Default)]
struct Shard {
    map: HashMap<IpAddr, Entry>,
}

impl Shard {
    /// Makes room for one more entry: expired ones first, then the oldest eighth.
    fn make_room(&mut self, cap: usize, now: u64) {
        if self.map.len() < cap {
            return;
        }
        self.map.retain(|_, e| e.expires > now);
        if self.map.len() < cap {
            return;
        }
        let mut ages: Vec<u64> = self.map.values().map(|e| e.inserted).collect();
        let drop = (cap / 8).max(1).min(ages.len());
        let (_, cutoff, _) = ages.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        let mut left = drop;
        self.map.retain(|_, e| {
            if left > 0 && e.inserted <= cutoff {
                left -= 1;
                false
            } else {
                true
            }
        });
    }
}

/// Shared by the workers (`&self` methods, internally synchronized).
#[derive(Debug)]
pub struct DnsCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

impl Default for DnsCache {
    fn default() -> Self {
        DnsCache::new(65_536)
    }
}

/// FNV-1a over the address bytes: cheap, and spreads neighbouring addresses across shards.
fn shard_of(addr: &IpAddr) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |b: &[u8]| {
        for &x in b {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    match addr {
        IpAddr::V4(a) => feed(&a.octets()),
        IpAddr::V6(a) => feed(&a.octets()),
    }
    (h as usize) % SHARDS
}

impl DnsCache {
    /// A cache holding about `capacity` addresses (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        DnsCache { shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(), per_shard }
    }

    /// A poisoned lock only means another worker panicked mid-insert; the map is still usable.
    fn shard(&self, addr: &IpAddr) -> MutexGuard<'_, Shard> {
        let m = &self.shards[shard_of(addr) % self.shards.len()];
        m.lock().unwrap_or_else(|p| p.into_inner())
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
        let mut shard = self.shard(&addr);
        if let Some(e) = shard.map.get_mut(&addr) {
            if &*e.name != name {
                e.name = Arc::from(name);
            }
            e.inserted = now_micros;
            e.expires = expires;
            return;
        }
        shard.make_room(self.per_shard, now_micros);
        shard.map.insert(addr, Entry { name: Arc::from(name), inserted: now_micros, expires });
    }

    /// The name a client resolved to reach `addr`, if still fresh.
    pub fn lookup(&self, addr: IpAddr, now_micros: u64) -> Option<Arc<str>> {
        let mut shard = self.shard(&addr);
        match shard.map.get(&addr) {
            Some(e) if e.expires > now_micros => Some(Arc::clone(&e.name)),
            Some(_) => {
                shard.map.remove(&addr);
                None
            }
            None => None,
        }
    }

    /// Entries held (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).map.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
