//! The flow table: bounded, with per-protocol idle timeouts and least-recently-seen eviction.
//!
//! Expiry uses lazy queues, one per timeout class (TCP opening, established, closed; UDP; ICMP;
//! other). Within a class the timeout is the same for every flow, so its queue stays in order.
//! Every flow has one live entry, stamped with its last-seen time when queued; popping an entry
//! whose time is up either expires the flow or re-queues it with its current last-seen time. The
//! packet path touches a queue only when a TCP connection changes class, and expiry costs
//! amortised O(1) per flow per timeout period of its own class.

use crate::flow::{EndReason, Flow, FlowKey, TcpState};
use crate::time::Timestamp;
use serde::Deserialize;
use std::collections::hash_map::Entry;
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

/// Timeout classes, each with its own queue.
const CLASSES: usize = 6;

fn class_of(flow: &Flow) -> usize {
    match (flow.key.l4, flow.tcp) {
        (L4Proto::Tcp, Some(TcpState::Closed)) => 2,
        (L4Proto::Tcp, Some(TcpState::Established | TcpState::Closing)) => 1,
        (L4Proto::Tcp, _) => 0,
        (L4Proto::Udp, _) => 3,
        (L4Proto::Icmp | L4Proto::Icmpv6, _) => 4,
        _ => 5,
    }
}

impl FlowTableConfig {
    fn class_timeout(&self, class: usize) -> Duration {
        let s = match class {
            0 => self.tcp_opening_timeout,
            1 => self.tcp_established_timeout,
            2 => self.tcp_closed_timeout,
            3 => self.udp_timeout,
            4 => self.icmp_timeout,
            _ => self.other_timeout,
        };
        Duration::from_secs(s)
    }
}

struct Slot {
    flow: Flow,
    /// Timestamp and class queue of this flow's one live entry.
    queued_at: Timestamp,
    queued_class: usize,
}

/// foldhash instead of SipHash: the flow lookup is the packet path's hottest operation, and
/// foldhash's per-process random seed still keeps precomputed collision floods out.
type FlowMap = HashMap<FlowKey, Slot, foldhash::fast::RandomState>;

pub struct FlowTable {
    cfg: FlowTableConfig,
    flows: FlowMap,
    idle: [VecDeque<(FlowKey, Timestamp)>; CLASSES],
}

impl FlowTable {
    pub fn new(cfg: FlowTableConfig) -> Self {
        let cap = cfg.max_flows.min(65_536);
        FlowTable { cfg, flows: HashMap::with_capacity_and_hasher(cap, Default::default()), idle: Default::default() }
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

    /// The flow of `key`, made by `make` when there is none (one hash lookup for a known flow).
    /// A new flow in a full table first evicts the least recently seen one, returned with it.
    /// The bool says whether the flow is new.
    pub fn get_or_insert_with(
        &mut self,
        key: FlowKey,
        make: impl FnOnce() -> Flow,
    ) -> (&mut Flow, bool, Option<(Flow, EndReason)>) {
        let mut evicted = None;
        if self.flows.len() >= self.cfg.max_flows.max(1) && !self.flows.contains_key(&key) {
            evicted = self.evict_one();
        }
        match self.flows.entry(key) {
            Entry::Occupied(o) => (&mut o.into_mut().flow, false, evicted),
            Entry::Vacant(v) => {
                let flow = make();
                let (now, class) = (flow.last_seen, class_of(&flow));
                self.idle[class].push_back((key, now));
                (&mut v.insert(Slot { flow, queued_at: now, queued_class: class }).flow, true, evicted)
            }
        }
    }

    /// Moves a flow to the queue of its current timeout class (call when its TCP state changed
    /// class, e.g. established -> closed), so that it expires on the new class's schedule.
    pub fn reclass(&mut self, key: &FlowKey) {
        if let Some(slot) = self.flows.get_mut(key) {
            let class = class_of(&slot.flow);
            if class != slot.queued_class {
                slot.queued_class = class;
                slot.queued_at = slot.flow.last_seen;
                self.idle[class].push_back((*key, slot.queued_at));
            }
        }
    }

    /// The class a flow would be queued in (for callers that detect a change).
    pub fn class_of(flow: &Flow) -> usize {
        class_of(flow)
    }

    fn is_live(&self, class: usize, key: &FlowKey, stamp: Timestamp) -> bool {
        matches!(self.flows.get(key), Some(s) if s.queued_at == stamp && s.queued_class == class)
    }

    /// Evicts the least recently queued flow across all classes.
    fn evict_one(&mut self) -> Option<(Flow, EndReason)> {
        loop {
            // Drop stale fronts, then take the oldest live front.
            for c in 0..CLASSES {
                while let Some(&(k, t)) = self.idle[c].front() {
                    if self.is_live(c, &k, t) {
                        break;
                    }
                    self.idle[c].pop_front();
                }
            }
            let (c, _) =
                (0..CLASSES).filter_map(|c| self.idle[c].front().map(|&(_, t)| (c, t))).min_by_key(|&(_, t)| t)?;
            let (key, _) = self.idle[c].pop_front()?;
            if let Some(slot) = self.flows.remove(&key) {
                return Some((slot.flow, EndReason::Eviction));
            }
        }
    }

    /// Expires idle flows; they go to `out` with the reason they ended.
    pub fn expire(&mut self, now: Timestamp, out: &mut impl FnMut(Flow, EndReason)) -> usize {
        let mut expired = 0;
        for c in 0..CLASSES {
            let timeout = self.cfg.class_timeout(c).max(Duration::from_secs(1));
            let mut budget = self.idle[c].len();
            while budget > 0 {
                budget -= 1;
                let Some(&(key, stamp)) = self.idle[c].front() else { break };
                if now.saturating_sub(stamp) < timeout {
                    break; // queued in order: nothing behind this one is due yet
                }
                self.idle[c].pop_front();
                let Some(slot) = self.flows.get_mut(&key) else { continue };
                if slot.queued_at != stamp || slot.queued_class != c {
                    continue; // a newer entry stands for this flow
                }
                let class = class_of(&slot.flow);
                if now.saturating_sub(slot.flow.last_seen) >= self.cfg.class_timeout(class) {
                    let slot = self.flows.remove(&key).expect("present");
                    let why = slot.flow.ended_by.unwrap_or(EndReason::Timeout);
                    out(slot.flow, why);
                    expired += 1;
                } else {
                    slot.queued_at = slot.flow.last_seen;
                    slot.queued_class = class;
                    self.idle[class].push_back((key, slot.queued_at));
                }
            }
        }
        expired
    }

    /// Removes every flow (shutdown, end of a capture), reporting each with `reason` unless the
    /// connection had already ended.
    pub fn drain(&mut self, reason: EndReason, out: &mut impl FnMut(Flow, EndReason)) {
        for q in &mut self.idle {
            q.clear();
        }
        let mut flows: Vec<Slot> = self.flows.drain().map(|(_, s)| s).collect();
        // In start order, ties by id: replay output must not depend on the map's hash seed.
        flows.sort_by_key(|s| (s.flow.first_seen, s.flow.id));
        for s in flows {
            let why = s.flow.ended_by.unwrap_or(reason);
            out(s.flow, why);
        }
    }

    /// Removes a flow (its queue entry goes stale and is skipped later).
    pub fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        self.flows.remove(key).map(|s| s.flow)
    }

    /// Visits every flow (policy re-evaluation).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Flow)) {
        for slot in self.flows.values_mut() {
            f(&mut slot.flow);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Flow> {
        self.flows.values().map(|s| &s.flow)
    }
}
