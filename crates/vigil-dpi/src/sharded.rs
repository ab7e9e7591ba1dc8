//! The bounded, expiring map behind the caches the workers share (`DnsCache`, `RelatedFlows`).
//!
//! Workers insert and look up concurrently, so the map is split into shards (one mutex each,
//! picked by a hash of the key) to keep them from queueing on one lock. Each shard holds at most
//! its share of the capacity; when full, it first drops expired entries, then the oldest eighth
//! (batch eviction keeps inserts amortised O(1) instead of scanning the shard on every insert).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};

/// Shards per map (tests size maps by it).
pub(crate) const SHARDS: usize = 16;

/// What eviction needs to know of an entry.
pub(crate) trait Expiring {
    /// When the entry stops being valid (microseconds since the epoch).
    fn expires(&self) -> u64;
    /// Its age for eviction: the older (smaller), the sooner it goes.
    fn last_touched(&self) -> u64;
}

#[derive(Debug)]
pub(crate) struct ShardedMap<K, V> {
    shards: Box<[Mutex<HashMap<K, V>>]>,
    per_shard: usize,
}

/// FNV-1a: cheap, and spreads neighbouring addresses and ports across shards.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

impl<K: Hash + Eq, V: Expiring> ShardedMap<K, V> {
    /// A map holding about `capacity` entries (at least one per shard).
    pub(crate) fn new(capacity: usize) -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// The shard holding `key`, locked. A poisoned lock only means another worker panicked
    /// mid-insert; the map is still usable.
    pub(crate) fn lock(&self, key: &K) -> MutexGuard<'_, HashMap<K, V>> {
        let mut h = Fnv(0xcbf2_9ce4_8422_2325);
        key.hash(&mut h);
        let m = &self.shards[(h.finish() as usize) % self.shards.len()];
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes room for one more entry in `shard` (locked by the caller): expired entries first,
    /// then the oldest eighth. `removed` sees every key dropped.
    pub(crate) fn make_room(&self, shard: &mut HashMap<K, V>, now: u64, mut removed: impl FnMut(&K)) {
        if shard.len() < self.per_shard {
            return;
        }
        shard.retain(|k, e| {
            let keep = e.expires() > now;
            if !keep {
                removed(k);
            }
            keep
        });
        if shard.len() < self.per_shard {
            return;
        }
        let mut ages: Vec<u64> = shard.values().map(Expiring::last_touched).collect();
        let drop = (self.per_shard / 8).max(1).min(ages.len());
        let (_, cutoff, _) = ages.select_nth_unstable(drop - 1);
        let cutoff = *cutoff;
        let mut left = drop;
        shard.retain(|k, e| {
            if left > 0 && e.last_touched() <= cutoff {
                left -= 1;
                removed(k);
                false
            } else {
                true
            }
        });
    }

    /// Entries held (expired ones included until they are evicted).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).len()).sum()
    }
}
