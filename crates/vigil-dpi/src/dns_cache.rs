//! The IP -> name cache learned from DNS answers, shared by all workers: bounded, TTL-aware.

use std::net::IpAddr;
use std::sync::Arc;

/// Shared by the workers (`&self` methods, internally synchronized).
#[derive(Debug, Default)]
pub struct DnsCache {}

impl DnsCache {
    pub fn new(_capacity: usize) -> Self {
        DnsCache {}
    }
    /// Remembers that `addr` was the answer for `name`, for `ttl` seconds (clamped).
    pub fn insert(&self, _addr: IpAddr, _name: &str, _ttl: u32, _now_micros: u64) {}
    /// The name a client resolved to reach `addr`, if still fresh.
    pub fn lookup(&self, _addr: IpAddr, _now_micros: u64) -> Option<Arc<str>> {
        None
    }
    pub fn len(&self) -> usize {
        0
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
