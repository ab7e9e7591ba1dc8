//! The flow table: bounded, with per-protocol idle timeouts and least-recently-seen eviction.
//!
//! Expiry uses a lazy queue: every flow has exactly one entry, stamped with the flow's last-seen
//! time when it was queued. Popping an entry either expires the flow or re-queues it with its
//! current last-seen time, so the packet path never touches the queue and the cost of expiry is
//! amortised O(1) per flow per timeout period.

use crate::flow::{EndReason, Flow, FlowKey, TcpState};
use crate::time::Timestamp;
use serde::Deserialize;
use std::collections::{HashMap, VecDeque};
use std::time::Duration;
use vigil_wire::L4Proto;

/// Idle timeouts (seconds) and the size cap. `[engine.flows]` in the config.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FlowTableConfig {
    /// Hard cap on flows per worker; the least recently seen flow is evicted beyond it.
    pub max_flows: usize,
    /// TCP connections whose handshake has not completed.
    pub tcp_opening_timeout: u64,
    pub tcp_established_timeout: u64,
    /// After FIN both ways or RST: long enough to absorb the last ACKs and retransmissions.
    pub tcp_closed_timeout: u64,
    pub udp_timeout: u64,
    pub icmp_timeout: u64,
    pub other_timeout: u64,
}

impl Default for FlowTableConfig {
    fn default() -> Self {
        FlowTableConfig {
            max_flows: 262_144,
            tcp_opening_timeout: 30,
            tcp_established_timeout: 3600,
            tcp_closed_timeout: 10,
            udp_timeout: 120,
            icmp_timeout: 30,
            other_timeout: 120,
        }
    }
}

impl FlowTableConfig {
    fn timeout(&self, flow: &Flow) -> Duration {
        let s = match (flow.key.l4, flow.tcp) {
            (L4Proto::Tcp, Some(TcpState::Closed)) => self.tcp_closed_timeout,
            (L4Proto::Tcp, Some(TcpState::Established | TcpState::Closing)) => self.tcp_established_timeout,
            (L4Proto::Tcp, _) => self.tcp_opening_timeout,
            (L4Proto::Udp, _) => self.udp_timeout,
            (L4Proto::Icmp | L4Proto::Icmpv6, _) => self.icmp_timeout,
            _ => self.other_timeout,
        };
        Duration::from_secs(s)
    }
    fn min_timeout(&self) -> Duration {
        let all = [
            self.tcp_opening_timeout,
            self.tcp_established_timeout,
            self.tcp_closed_timeout,
            self.udp_timeout,
            self.icmp_timeout,
            self.other_timeout,
        ];
        Duration::from_secs(all.into_iter().min().unwrap_or(1).max(1))
    }
}

struct Slot {
    flow: Flow,
    /// Timestamp of this flow's one entry in the idle queue.
    queued_at: Timestamp,
    /// Set when the connection ended (FIN both ways, RST): reported as the end reason.
    ended_by: Option<EndReason>,
}

pub struct FlowTable {
    cfg: FlowTableConfig,
    flows: HashMap<FlowKey, Slot>,
    idle: VecDeque<(FlowKey, Timestamp)>,
}

impl FlowTable {
    pub fn new(cfg: FlowTableConfig) -> Self {
        let cap = cfg.max_flows.min(65_536);
        FlowTable { cfg, flows: HashMap::with_capacity(cap), idle: VecDeque::with_capacity(cap) }
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
    pub fn config(&self) -> &FlowTableConfig {
        &self.cfg
    }

    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        self.flows.get_mut(key).map(|s| &mut s.flow)
    }
    pub fn get(&self, key: &FlowKey) -> Option<&Flow> {
        self.flows.get(key).map(|s| &s.flow)
    }

    /// Inserts a new flow, evicting the least recently seen one if the table is full. Returns the
    /// evicted flow, if any.
    pub fn insert(&mut self, flow: Flow) -> Option<(Flow, EndReason)> {
        let mut evicted = None;
        if self.flows.len() >= self.cfg.max_flows.max(1) {
            evicted = self.evict_one();
        }
        let key = flow.key;
        let now = flow.last_seen;
        self.flows.insert(key, Slot { flow, queued_at: now, ended_by: None });
        self.idle.push_back((key, now));
        evicted
    }

    /// Records that the connection is over, so its record says why.
    pub fn mark_ended(&mut self, key: &FlowKey, reason: EndReason) {
        if let Some(s) = self.flows.get_mut(key) {
            s.ended_by.get_or_insert(reason);
        }
    }

    fn evict_one(&mut self) -> Option<(Flow, EndReason)> {
        while let Some((key, stamp)) = self.idle.pop_front() {
            let live = matches!(self.flows.get(&key), Some(s) if s.queued_at == stamp);
            if live {
                let slot = self.flows.remove(&key)?;
                return Some((slot.flow, EndReason::Eviction));
            }
        }
        None
    }

    /// Expires idle flows; they go to `out` with the reason they ended.
    pub fn expire(&mut self, now: Timestamp, out: &mut impl FnMut(Flow, EndReason)) -> usize {
        let min = self.cfg.min_timeout();
        let mut expired = 0;
        let mut budget = self.idle.len();
        while budget > 0 {
            budget -= 1;
            let Some(&(key, stamp)) = self.idle.front() else { break };
            if now.saturating_sub(stamp) < min {
                break; // nothing queued after this one can have expired yet
            }
            self.idle.pop_front();
            let Some(slot) = self.flows.get_mut(&key) else { continue };
            if slot.queued_at != stamp {
                continue;
            }
            let deadline = self.cfg.timeout(&slot.flow);
            if now.saturating_sub(slot.flow.last_seen) >= deadline {
                let slot = self.flows.remove(&key).expect("present");
                out(slot.flow, slot.ended_by.unwrap_or(EndReason::Timeout));
                expired += 1;
            } else {
                slot.queued_at = slot.flow.last_seen;
                self.idle.push_back((key, slot.queued_at));
            }
        }
        expired
    }

    /// Removes every flow (shutdown, end of a capture), reporting each with `reason` unless the
    /// connection had already ended.
    pub fn drain(&mut self, reason: EndReason, out: &mut impl FnMut(Flow, EndReason)) {
        self.idle.clear();
        let mut flows: Vec<Slot> = self.flows.drain().map(|(_, s)| s).collect();
        flows.sort_by_key(|s| s.flow.first_seen);
        for s in flows {
            out(s.flow, s.ended_by.unwrap_or(reason));
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.flows.values().map(|s| &s.flow)
    }
}
