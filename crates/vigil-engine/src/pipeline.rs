//! The pipeline: parse, track, decide. One instance per worker.

use crate::flow::{
    BlockRecord, Counters, Direction, DnsRecord, EndReason, Flow, FlowDecision, FlowKey, FlowRecord, FlowVerdict,
    L7Facts, TcpState,
};
use crate::policy::{Evaluation, FlowFacts, L7View, Policy, RuleAction};
use crate::table::{FlowTable, FlowTableConfig};
use crate::time::Timestamp;
use std::sync::Arc;
use vigil_dpi::{Classifier, ClassifierConfig, Dir, DnsCache, DpiContext, PacketView, RelatedFlows, SignatureDb};
use vigil_wire::{tcp, L4Proto, PacketInfo};

/// What the shell knows about a packet besides its bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct PacketMeta {
    pub in_ifindex: Option<u32>,
    pub out_ifindex: Option<u32>,
    /// The packet's mark as the kernel queued it.
    pub mark: u32,
    pub src_mac: Option<[u8; 6]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Accept,
    Drop,
    /// Keep the packet until its flow is decided (`hold_undecided`): the shell answers it when
    /// an `Event::Release` for the flow comes, or accepts it after its hold timeout.
    Hold,
}

/// The pipeline's answer for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The flow's decision is final and offload is enabled: the shell should tell the kernel to
    /// stop queueing this connection (connmark).
    pub offload: bool,
    pub rule: Option<Arc<str>>,
    /// A mark to set on the packet (policy `mark` action).
    pub mark: Option<u32>,
    /// Packets the shell must send (TCP resets, ICMP unreachable, an HTTP block page): `reject`.
    pub inject: Vec<Vec<u8>>,
    /// The flow the packet belongs to (0 for packets outside flows), for held packets.
    pub flow_id: u64,
}

impl Decision {
    fn accept() -> Self {
        Decision { action: Action::Accept, offload: false, rule: None, mark: None, inject: Vec::new(), flow_id: 0 }
    }
}

/// The kernel's accounting of a whole connection (conntrack counters, both directions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnCounters {
    pub packets_c2s: u64,
    pub bytes_c2s: u64,
    pub packets_s2c: u64,
    pub bytes_s2c: u64,
}

/// A connection, by its original direction (client to server), for the kernel's conntrack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connection {
    pub l4: L4Proto,
    pub client: (std::net::IpAddr, u16),
    pub server: (std::net::IpAddr, u16),
}

/// What the pipeline reports besides verdicts.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A flow ended (closed, idle, evicted, shutdown): its full record.
    FlowEnd(Box<FlowRecord>),
    /// An offloaded flow is now blocked (policy reload, schedule): the kernel must send it back
    /// (delete its conntrack entry) so that its next packet is queued and dropped.
    Revoke(Connection),
    /// A long session is still running: its record so far (`interim = true`).
    FlowUpdate(Box<FlowRecord>),
    /// A DNS query was answered.
    Dns(Box<DnsRecord>),
    /// A flow was blocked or rejected.
    Block(Box<BlockRecord>),
    /// A flow with held packets was decided: the shell answers them (in order) with this.
    Release { flow_id: u64, pass: bool, mark: Option<u32> },
}

/// Counters kept by one pipeline; the shells sum them across workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PipelineStats {
    pub packets: u64,
    pub bytes: u64,
    pub accepted: u64,
    pub dropped: u64,
    /// Packets that could not be parsed (accepted: vigil fails open on what it cannot read).
    pub malformed: u64,
    /// Non-first fragments (no ports): accepted.
    pub fragments: u64,
    pub flows_created: u64,
    pub flows_ended: u64,
    pub flows_evicted: u64,
    pub flows_offloaded: u64,
    pub flows_active: u64,
    /// Packets that passed while their flow's policy decision waited for classification.
    pub pending_passed: u64,
    /// Packets injected for `reject` (resets, ICMP, block pages).
    pub injected: u64,
    /// Offloaded flows sent back to userspace by a policy change.
    pub revoked: u64,
    /// Packets held while their flow's decision waited (`hold_undecided`).
    pub held: u64,
}

impl std::ops::AddAssign for PipelineStats {
    fn add_assign(&mut self, o: Self) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.accepted += o.accepted;
        self.dropped += o.dropped;
        self.malformed += o.malformed;
        self.fragments += o.fragments;
        self.flows_created += o.flows_created;
        self.flows_ended += o.flows_ended;
        self.flows_evicted += o.flows_evicted;
        self.flows_offloaded += o.flows_offloaded;
        self.flows_active += o.flows_active;
        self.pending_passed += o.pending_passed;
        self.injected += o.injected;
        self.revoked += o.revoked;
        self.held += o.held;
    }
}

/// Pipeline settings that are not policy.
#[derive(Debug, Clone, Default)]
pub struct PipelineConfig {
    pub flows: FlowTableConfig,
    /// Hand decided flows back to the kernel (the shell sets the connmark).
    pub offload: bool,
    /// Classify flows (protocol, application, name); None: L3/L4 only.
    pub classify: Option<Classification>,
    /// Distinguishes this pipeline's flow ids from other workers' and earlier runs' (the high
    /// 24 bits of every id).
    pub flow_id_salt: u64,
    /// Report long sessions every this often while they run (None: only when they end).
    pub interim_interval: Option<std::time::Duration>,
    /// Hold the payload-carrying packets of flows whose decision waits for classification,
    /// instead of passing them (handshake packets still pass: holding them would stall the
    /// connection that must bring the deciding data).
    pub hold_undecided: bool,
}

/// What classification shares across workers: the signature database (swapped on reload), the
/// DNS-learned names, and what flows teach about related flows (FTP data connections, call sockets).
#[derive(Debug, Clone)]
pub struct Classification {
    pub sigdb: Arc<SignatureDb>,
    pub dns_cache: Arc<DnsCache>,
    pub related: Arc<RelatedFlows>,
    pub config: ClassifierConfig,
}

impl Classification {
    fn context(&self) -> DpiContext<'_> {
        DpiContext { sigdb: &self.sigdb, dns_cache: &self.dns_cache, related: &self.related, config: self.config }
    }

    /// `sigdb` with empty caches and the default classifier settings (the pipeline's tests).
    #[cfg(test)]
    fn fresh(sigdb: Arc<SignatureDb>) -> Classification {
        Classification {
            sigdb,
            dns_cache: Arc::new(DnsCache::new(1024)),
            related: Default::default(),
            config: Default::default(),
        }
    }
}

pub struct Pipeline {
    cfg: PipelineConfig,
    table: FlowTable,
    policy: Arc<Policy>,
    events: Vec<Event>,
    stats: PipelineStats,
    /// Interface names by index, told by the shell (the kernel reports indexes).
    ifnames: std::collections::HashMap<u32, Arc<str>>,
    /// Minute of the last schedule re-check (schedules have minute resolution).
    schedule_minute: u64,
    next_flow_id: u64,
    /// Last sweep for interim updates.
    interim_swept: Timestamp,
}

/// Resets and block pages a rejected flow may trigger at most (retransmissions would otherwise
/// make vigil a packet generator).
const MAX_REJECT_ANSWERS: u8 = 3;

impl Pipeline {
    pub fn new(cfg: PipelineConfig, policy: Arc<Policy>) -> Self {
        let table = FlowTable::new(cfg.flows.clone());
        Pipeline {
            cfg,
            table,
            policy,
            events: Vec::new(),
            stats: PipelineStats::default(),
            ifnames: Default::default(),
            schedule_minute: 0,
            next_flow_id: 0,
            interim_swept: Timestamp::default(),
        }
    }

    /// Teaches the pipeline an interface's name (for `interfaces_in`/`interfaces_out` rules).
    pub fn set_interface_name(&mut self, index: u32, name: &str) {
        self.ifnames.insert(index, Arc::from(name));
    }

    pub fn knows_interface(&self, index: u32) -> bool {
        self.ifnames.contains_key(&index)
    }

    /// Replaces the policy and re-evaluates every live flow with it: a flow whose decision changes
    /// takes the new one from its next packet on, and an offloaded flow that is now blocked is
    /// revoked (an `Event::Revoke` for the shell to send it back from the kernel).
    pub fn set_policy(&mut self, policy: Arc<Policy>, now: Timestamp) {
        self.policy = policy;
        self.reevaluate(now);
    }

    /// Re-decides every flow that has a decision (reload, schedule boundary).
    pub fn reevaluate(&mut self, now: Timestamp) {
        let policy = self.policy.clone();
        let resolver = self.cfg.classify.as_ref().map(|c| c.dns_cache.clone());
        let ifnames = &self.ifnames;
        let events = &mut self.events;
        let stats = &mut self.stats;
        self.table.for_each_mut(|flow| {
            let Some(old) = flow.decision.clone() else { return };
            // A connection that already ended keeps the decision it lived under (its record
            // must say what happened to it).
            if flow.ended_by.is_some() {
                return;
            }
            let l7 = l7_view(flow);
            let facts = flow_facts(flow, l7, ifnames, resolver.as_deref(), now);
            let Evaluation::Decided(m) = policy.evaluate(&facts) else { return };
            if m.action == old.action && m.rule == old.rule && m.mark == old.mark {
                return;
            }
            if old.action.passes() && !m.action.passes() {
                if m.log {
                    events.push(Event::Block(Box::new(block_record(flow, m.action, m.rule.clone(), "revoked", now))));
                }
                // Revoke whether offloaded or not: a flow past the `queue_packets` cap has left
                // the queue too, and only a fresh conntrack entry brings its packets back.
                events.push(Event::Revoke(connection(flow)));
                stats.revoked += 1;
                flow.offloaded = false;
            }
            flow.decision = Some(FlowDecision::from_match(m));
        });
    }

    pub fn policy(&self) -> &Arc<Policy> {
        &self.policy
    }

    pub fn stats(&self) -> PipelineStats {
        PipelineStats { flows_active: self.table.len() as u64, ..self.stats }
    }

    pub fn flows(&self) -> &FlowTable {
        &self.table
    }

    /// Takes the events produced since the last call.
    pub fn drain_events(&mut self) -> std::vec::Drain<'_, Event> {
        self.events.drain(..)
    }

    /// Decides one L3 packet (IPv4 or IPv6, starting at the IP header).
    pub fn process(&mut self, packet: &[u8], meta: &PacketMeta, now: Timestamp) -> Decision {
        self.stats.packets += 1;
        self.stats.bytes += packet.len() as u64;
        let info = match vigil_wire::parse_l3(packet) {
            Ok(info) => info,
            Err(_) => {
                self.stats.malformed += 1;
                self.stats.accepted += 1;
                return Decision::accept();
            }
        };
        if info.later_fragment {
            self.stats.fragments += 1;
            self.stats.accepted += 1;
            return Decision::accept();
        }
        let decision = self.track_and_decide(packet, &info, meta, now);
        match decision.action {
            Action::Accept => self.stats.accepted += 1,
            Action::Drop => self.stats.dropped += 1,
            Action::Hold => self.stats.held += 1,
        }
        decision
    }

    fn track_and_decide(
        &mut self,
        packet: &[u8],
        info: &PacketInfo<'_>,
        meta: &PacketMeta,
        now: Timestamp,
    ) -> Decision {
        let (key, lo_to_hi) = FlowKey::of(info);
        let classify = self.cfg.classify.is_some();
        let id = (self.cfg.flow_id_salt << 40) | (self.next_flow_id & ((1 << 40) - 1));
        let ifnames = &self.ifnames;
        let (flow, created, evicted) = self.table.get_or_insert_with(key, || {
            let mut flow = new_flow(key, lo_to_hi, info, meta, now);
            flow.id = id;
            flow.in_if = meta.in_ifindex.and_then(|i| ifnames.get(&i).cloned());
            flow.out_if = meta.out_ifindex.and_then(|i| ifnames.get(&i).cloned());
            if classify {
                flow.classifier = Some(Box::new(Classifier::new(key.l4, flow.client(), flow.server())));
            }
            flow
        });
        if created {
            self.stats.flows_created += 1;
            self.next_flow_id += 1;
        }
        if let Some((evicted, reason)) = evicted {
            self.stats.flows_evicted += 1;
            self.stats.flows_ended += 1;
            if logged(&evicted) {
                let rec = finalize(&self.cfg, evicted, reason);
                self.events.push(Event::FlowEnd(Box::new(rec)));
            }
        }
        let policy = &self.policy;
        let offload_enabled = self.cfg.offload;
        let dir = flow.direction(lo_to_hi);
        let counters = match dir {
            Direction::ClientToServer => &mut flow.c2s,
            Direction::ServerToClient => &mut flow.s2c,
        };
        counters.packets += 1;
        counters.bytes += info.wire_len as u64;
        flow.last_seen = now;
        let class_before = FlowTable::class_of(flow);
        let ended = info.tcp_flags.and_then(|flags| update_tcp(flow, dir, flags));
        let reclass = FlowTable::class_of(flow) != class_before;
        let (client, server) = (flow.client(), flow.server());
        let index = (flow.c2s.packets + flow.s2c.packets).saturating_sub(1) as u32;
        if let (Some(cls), Some(c)) = (flow.classifier.as_mut(), self.cfg.classify.as_ref()) {
            let view = PacketView {
                dir: match dir {
                    Direction::ClientToServer => Dir::ToServer,
                    Direction::ServerToClient => Dir::ToClient,
                },
                l4: key.l4,
                client,
                server,
                payload: info.payload,
                tcp_seq: info.tcp_seq,
                tcp_flags: info.tcp_flags.unwrap_or(0),
                index,
                ts_micros: now.micros(),
            };
            cls.on_packet(&view, &c.context());
            for e in cls.take_dns_log() {
                self.events.push(Event::Dns(Box::new(DnsRecord {
                    ts: Timestamp::from_micros(e.ts_micros),
                    proto: key.l4.name().into_owned(),
                    client: client.0,
                    sport: client.1,
                    server: server.0,
                    dport: server.1,
                    query: e.query,
                    qtype: e.qtype,
                    rcode: e.rcode,
                    answers: e.answers,
                    latency_us: e.latency_us,
                    flow_id: flow.id,
                })));
            }
            if !cls.wants_more() {
                flow.l7 = L7Facts::from_classifier(cls);
                flow.classifier = None;
            }
        }

        if flow.decision.is_none() {
            let resolver = self.cfg.classify.as_ref().map(|c| c.dns_cache.as_ref());
            let facts = flow_facts(flow, l7_view(flow), &self.ifnames, resolver, now);
            if let Evaluation::Decided(m) = policy.evaluate(&facts) {
                if !m.action.passes() && m.log {
                    let reason = if m.rule.is_some() { "policy" } else { "default" };
                    self.events.push(Event::Block(Box::new(block_record(flow, m.action, m.rule.clone(), reason, now))));
                }
                // Packets that passed while the decision waited made the kernel confirm the
                // connection, and they count towards the `queue_packets` cap: without a fresh
                // conntrack entry, the packets past the cap would skip vigil and pass.
                if !m.action.passes() && flow.c2s.packets + flow.s2c.packets > 1 {
                    self.events.push(Event::Revoke(connection(flow)));
                    self.stats.revoked += 1;
                }
                flow.decision = Some(FlowDecision::from_match(m));
            }
        }
        if let Some(reason) = ended {
            flow.ended_by.get_or_insert(reason);
        }
        let (is_http, host) = (flow.l7_protocol_is_http(), flow_host(flow).map(str::to_owned));
        let held_before = flow.held;
        let Some(d) = flow.decision.as_mut() else {
            // Waiting for classification to decide: the packet passes (a blocked TLS or QUIC flow
            // is decided at its ClientHello, which is then dropped), or with `hold_undecided` a
            // packet carrying payload is held until the decision.
            let flow_id = flow.id;
            let hold = self.cfg.hold_undecided && !info.payload.is_empty();
            if hold {
                flow.held += 1;
            } else {
                self.stats.pending_passed += 1;
            }
            if reclass {
                self.table.reclass(&key);
            }
            return Decision {
                action: if hold { Action::Hold } else { Action::Accept },
                flow_id,
                ..Decision::accept()
            };
        };
        if held_before > 0 {
            self.events.push(Event::Release { flow_id: flow.id, pass: d.action.passes(), mark: d.mark });
            flow.held = 0;
        }
        let action = if d.action.passes() { Action::Accept } else { Action::Drop };
        let mut inject = Vec::new();
        if d.action == RuleAction::Reject && d.answers < MAX_REJECT_ANSWERS {
            d.answers += 1;
            inject = reject_answers(packet, info, dir, is_http, d.rule.as_deref(), host.as_deref());
            self.stats.injected += inject.len() as u64;
        }
        let d = flow.decision.as_ref().expect("decided");
        // A flow still being classified stays in userspace: offloading it would blind the
        // classifier. Marked flows stay too: every packet must carry the mark.
        let classified = flow.classifier.is_none();
        let offload = offload_enabled && classified && d.action == RuleAction::Allow && !flow.offloaded;
        if offload {
            flow.offloaded = true;
            self.stats.flows_offloaded += 1;
        }
        let (rule, mark) = (d.rule.clone(), d.mark);
        let flow_id_now = flow.id;
        if reclass {
            self.table.reclass(&key);
        }
        Decision { action, offload, rule, mark, inject, flow_id: flow_id_now }
    }

    /// Expires idle flows, and re-checks decisions when a schedule may have changed (each
    /// minute, if the policy has schedules). Call about once a second.
    pub fn poll(&mut self, now: Timestamp) {
        self.interim_updates(now);
        let minute = now.micros() / 60_000_000;
        if self.policy.has_schedules() && minute != self.schedule_minute {
            self.schedule_minute = minute;
            self.reevaluate(now);
        }
        let (cfg, events) = (&self.cfg, &mut self.events);
        let n = self.table.expire(now, &mut |f, why| {
            if logged(&f) {
                events.push(Event::FlowEnd(Box::new(finalize(cfg, f, why))))
            }
        });
        self.stats.flows_ended += n as u64;
    }

    /// Ends every flow (shutdown or end of capture).
    pub fn finish(&mut self, reason: EndReason) {
        let (cfg, events) = (&self.cfg, &mut self.events);
        let mut n = 0;
        self.table.drain(reason, &mut |f, why| {
            n += 1;
            if logged(&f) {
                events.push(Event::FlowEnd(Box::new(finalize(cfg, f, why))))
            }
        });
        self.stats.flows_ended += n;
    }

    /// The kernel's counters for a connection (a conntrack DESTROY event, or a periodic dump).
    /// An offloaded flow's counters stop when it leaves the queue; the kernel's count the whole
    /// connection, so they replace vigil's. When the kernel destroyed the connection (`ended`),
    /// the session is over: its record is emitted now, with the kernel's counts. Returns whether
    /// the connection was one of this pipeline's flows.
    pub fn account(&mut self, conn: &Connection, c: ConnCounters, ended: bool, now: Timestamp) -> bool {
        let (key, _) = FlowKey::between(conn.l4, conn.client, conn.server);
        let Some(flow) = self.table.get_mut(&key) else { return false };
        // The kernel's "original" direction is the client's unless vigil picked up the flow
        // mid-stream the other way round.
        let same_way = flow.client() == conn.client;
        let (c2s, s2c) = if same_way {
            ((c.packets_c2s, c.bytes_c2s), (c.packets_s2c, c.bytes_s2c))
        } else {
            ((c.packets_s2c, c.bytes_s2c), (c.packets_c2s, c.bytes_c2s))
        };
        if flow.offloaded && c2s.1 + s2c.1 >= flow.c2s.bytes + flow.s2c.bytes {
            flow.c2s.packets = c2s.0;
            flow.c2s.bytes = c2s.1;
            flow.s2c.packets = s2c.0;
            flow.s2c.bytes = s2c.1;
            flow.kernel_counted = true;
            flow.last_seen = flow.last_seen.max(now);
        }
        // A blocked flow's conntrack entry is deleted by vigil itself (revocation): that is not the
        // end of the flow, whose later packets must still meet its decision.
        let blocked = flow.decision.as_ref().is_some_and(|d| !d.action.passes());
        if ended && !blocked {
            flow.ended_by.get_or_insert(if conn.l4 == L4Proto::Tcp { EndReason::Fin } else { EndReason::Timeout });
            if let Some(flow) = self.table.remove(&key) {
                self.stats.flows_ended += 1;
                if logged(&flow) {
                    let why = flow.ended_by.unwrap_or(EndReason::Timeout);
                    let rec = finalize(&self.cfg, flow, why);
                    self.events.push(Event::FlowEnd(Box::new(rec)));
                }
            }
        }
        true
    }

    /// Reports sessions that have run for `interim_interval` since they were last reported. The
    /// sweep runs at most every tenth of the interval, so a report is at most 10% late.
    fn interim_updates(&mut self, now: Timestamp) {
        let Some(every) = self.cfg.interim_interval else { return };
        if now.saturating_sub(self.interim_swept) < every / 10 {
            return;
        }
        self.interim_swept = now;
        let events = &mut self.events;
        self.table.for_each_mut(|flow| {
            if flow.ended_by.is_none()
                && now.saturating_sub(flow.first_seen) >= every
                && now.saturating_sub(flow.last_reported) >= every
                && flow.decision.as_ref().is_none_or(|d| d.log)
            {
                flow.last_reported = now;
                let mut rec = flow.record(EndReason::Timeout);
                if let Some(c) = &flow.classifier {
                    // Classification still running: report what is known so far.
                    let l7 = L7Facts::from_classifier(c);
                    rec.protocol = l7.protocol.unwrap_or_else(|| Arc::from("Unknown"));
                    rec.app = l7.app;
                    rec.category = l7.category;
                    rec.hostname = l7.hostname;
                    rec.details = l7.details.map(|d| *d).unwrap_or_default();
                }
                rec.interim = true;
                events.push(Event::FlowUpdate(Box::new(rec)));
            }
        });
    }

    /// Replaces the signature database (reload); flows being classified use it from now on.
    pub fn set_signatures(&mut self, sigdb: Arc<SignatureDb>) {
        if let Some(c) = self.cfg.classify.as_mut() {
            c.sigdb = sigdb;
        }
    }
}

/// The application-layer view the policy sees: None while classification has not identified the
/// flow; the classifier's facts once it has; the final facts once complete.
fn l7_view(flow: &Flow) -> Option<L7View<'_>> {
    match &flow.classifier {
        Some(c) if c.identified_after().is_none() => None,
        Some(c) => {
            let f = c.facts();
            Some(L7View {
                protocol: f.protocol,
                app: f.app.as_deref(),
                category: f.category.as_deref(),
                hostname: f.hostname.as_deref(),
            })
        }
        None => Some(L7View {
            protocol: flow.l7.protocol.as_deref(),
            app: flow.l7.app.as_deref(),
            category: flow.l7.category.as_deref(),
            hostname: flow.l7.hostname.as_deref(),
        }),
    }
}

fn flow_host(flow: &Flow) -> Option<&str> {
    match &flow.classifier {
        Some(c) => c.facts().hostname.as_deref(),
        None => flow.l7.hostname.as_deref(),
    }
}

fn flow_facts<'a>(
    flow: &'a Flow,
    l7: Option<L7View<'a>>,
    ifnames: &'a std::collections::HashMap<u32, Arc<str>>,
    dns: Option<&DnsCache>,
    now: Timestamp,
) -> FlowFacts<'a> {
    let (src, sport) = flow.client();
    let (dst, dport) = flow.server();
    FlowFacts {
        l4: flow.key.l4,
        src,
        sport,
        dst,
        dport,
        in_if: flow.in_ifindex.and_then(|i| ifnames.get(&i)).map(|n| &**n),
        out_if: flow.out_ifindex.and_then(|i| ifnames.get(&i)).map(|n| &**n),
        src_mac: flow.src_mac,
        l7,
        resolved: dns.map(|c| c.lookup(dst, now.micros()).is_some()),
        now_micros: now.micros(),
    }
}

/// The packets that tell both ends a flow was rejected: an HTTP block page for a plain HTTP
/// request, TCP resets otherwise, ICMP port unreachable for UDP. Built from the packet being
/// dropped, so sequence numbers are the ones each end expects.
fn reject_answers(
    packet: &[u8],
    info: &PacketInfo<'_>,
    dir: Direction,
    is_http: bool,
    rule: Option<&str>,
    host: Option<&str>,
) -> Vec<Vec<u8>> {
    use vigil_wire::build;
    match info.l4 {
        L4Proto::Tcp => {
            if is_http && dir == Direction::ClientToServer && !info.payload.is_empty() {
                let page = build::block_page_html(rule.unwrap_or("default"), host.unwrap_or(""));
                if let Ok(pkts) = build::http_block_page(packet, &page) {
                    return vec![pkts.to_sender, pkts.to_destination];
                }
            }
            if info.tcp_flags.is_some_and(|f| f & tcp::RST != 0) {
                return Vec::new();
            }
            build::reject_tcp(packet).map(|p| vec![p.to_sender, p.to_destination]).unwrap_or_default()
        }
        L4Proto::Udp => build::icmp_unreachable(packet).map(|p| vec![p]).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// A flow's connection as the kernel's conntrack knows it (client to server).
fn connection(flow: &Flow) -> Connection {
    Connection { l4: flow.key.l4, client: flow.client(), server: flow.server() }
}

fn block_record(flow: &Flow, action: RuleAction, rule: Option<Arc<str>>, reason: &str, now: Timestamp) -> BlockRecord {
    let (client, server) = (flow.client(), flow.server());
    let l7 = l7_view(flow).unwrap_or_default();
    BlockRecord {
        ts: now,
        flow_id: flow.id,
        proto: flow.key.l4.name().into_owned(),
        client: client.0,
        sport: client.1,
        server: server.0,
        dport: server.1,
        rule,
        action: FlowVerdict::from(action),
        reason: reason.to_string(),
        protocol: l7.protocol.map(Arc::from),
        hostname: l7.hostname.map(Arc::from),
        app: l7.app.map(Arc::from),
        category: l7.category.map(Arc::from),
    }
}

/// Flows decided by a rule with `log = false` are not reported.
fn logged(flow: &Flow) -> bool {
    flow.decision.as_ref().is_none_or(|d| d.log)
}

/// A flow's final record; classification still in progress is completed with what is known.
fn finalize(cfg: &PipelineConfig, mut flow: Flow, reason: EndReason) -> FlowRecord {
    if let (Some(mut cls), Some(c)) = (flow.classifier.take(), cfg.classify.as_ref()) {
        let packets = (flow.c2s.packets + flow.s2c.packets) as u32;
        cls.finish(&c.context(), packets, flow.last_seen.micros());
        flow.l7 = L7Facts::from_classifier(&cls);
    }
    flow.record(reason)
}

fn new_flow(key: FlowKey, lo_to_hi: bool, info: &PacketInfo<'_>, meta: &PacketMeta, now: Timestamp) -> Flow {
    // The client is the sender of the first packet, except when the first packet is visibly a
    // reply (SYN+ACK), or a mid-stream TCP packet from a well-known port to an ephemeral one.
    let mut sender_is_client = true;
    let mut midstream = false;
    let mut tcp_state = None;
    if let Some(flags) = info.tcp_flags {
        let syn = flags & tcp::SYN != 0;
        let ack = flags & tcp::ACK != 0;
        if syn && !ack {
            tcp_state = Some(TcpState::SynSent);
        } else if syn && ack {
            sender_is_client = false;
            tcp_state = Some(TcpState::SynReceived);
            midstream = true;
        } else {
            midstream = true;
            tcp_state = Some(TcpState::Established);
            if info.src_port < 1024 && info.dst_port >= 1024 {
                sender_is_client = false;
            }
        }
    }
    Flow {
        key,
        client_is_lo: lo_to_hi == sender_is_client,
        first_seen: now,
        last_seen: now,
        c2s: Counters::default(),
        s2c: Counters::default(),
        tcp: tcp_state,
        fin_c2s: false,
        fin_s2c: false,
        midstream,
        decision: None,
        ended_by: None,
        offloaded: false,
        l7: L7Facts::default(),
        classifier: None,
        in_ifindex: meta.in_ifindex,
        out_ifindex: meta.out_ifindex,
        src_mac: meta.src_mac,
        in_if: None,
        out_if: None,
        last_reported: now,
        id: 0,
        kernel_counted: false,
        held: 0,
    }
}

/// Advances the TCP state; returns the end reason when this packet ends the connection.
fn update_tcp(flow: &mut Flow, dir: Direction, flags: u8) -> Option<EndReason> {
    if flow.key.l4 != L4Proto::Tcp {
        return None;
    }
    let state = flow.tcp.get_or_insert(TcpState::SynSent);
    if flags & tcp::RST != 0 {
        *state = TcpState::Closed;
        return Some(EndReason::Rst);
    }
    if flags & tcp::FIN != 0 {
        match dir {
            Direction::ClientToServer => flow.fin_c2s = true,
            Direction::ServerToClient => flow.fin_s2c = true,
        }
    }
    let syn = flags & tcp::SYN != 0;
    let ack = flags & tcp::ACK != 0;
    let next = match *state {
        TcpState::SynSent if syn && ack && dir == Direction::ServerToClient => TcpState::SynReceived,
        TcpState::SynReceived if ack && !syn && dir == Direction::ClientToServer => TcpState::Established,
        s => s,
    };
    *state = if flow.fin_c2s && flow.fin_s2c {
        TcpState::Closed
    } else if flow.fin_c2s || flow.fin_s2c {
        TcpState::Closing
    } else {
        next
    };
    (*state == TcpState::Closed).then_some(EndReason::Fin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::FlowVerdict;
    use crate::policy::PolicyConfig;
    use vigil_dpi::SignatureDb;

    /// Builds an IPv4 TCP or UDP packet (checksums are not the pipeline's concern).
    fn v4(l4: u8, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let l4len = if l4 == 6 { 20 } else { 8 };
        let total = 20 + l4len + payload.len();
        let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, l4, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        if l4 == 6 {
            p.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        } else {
            p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            p.extend_from_slice(&[0, 0]);
        }
        p.extend_from_slice(payload);
        p
    }

    const C: [u8; 4] = [192, 168, 1, 10];
    const S: [u8; 4] = [10, 0, 0, 1];

    fn pipeline(policy_toml: &str, offload: bool) -> Pipeline {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(default)]
            policy: PolicyConfig,
        }
        let doc: Doc = toml::from_str(policy_toml).unwrap();
        let policy = Arc::new(Policy::compile(&doc.policy).unwrap());
        let flows = FlowTableConfig { max_flows: 4, ..FlowTableConfig::default() };
        Pipeline::new(PipelineConfig { flows, offload, classify: None, ..Default::default() }, policy)
    }

    fn records(p: &mut Pipeline) -> Vec<FlowRecord> {
        p.drain_events()
            .filter_map(|e| match e {
                Event::FlowEnd(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn tcp_connection_is_counted_both_ways_and_ends_on_fin() {
        let mut p = pipeline("", false);
        let m = PacketMeta::default();
        let t = |s: u64| Timestamp::from_secs(1000 + s);
        let syn = v4(6, C, 40000, S, 80, tcp::SYN, b"");
        assert_eq!(p.process(&syn, &m, t(0)).action, Action::Accept);
        p.process(&v4(6, S, 80, C, 40000, tcp::SYN | tcp::ACK, b""), &m, t(0));
        p.process(&v4(6, C, 40000, S, 80, tcp::ACK, b"GET / HTTP/1.1\r\n\r\n"), &m, t(1));
        p.process(&v4(6, S, 80, C, 40000, tcp::ACK, &[0u8; 1000]), &m, t(1));
        p.process(&v4(6, C, 40000, S, 80, tcp::FIN | tcp::ACK, b""), &m, t(2));
        p.process(&v4(6, S, 80, C, 40000, tcp::FIN | tcp::ACK, b""), &m, t(2));
        let flow = p.flows().iter().next().unwrap();
        assert_eq!(flow.tcp, Some(TcpState::Closed));
        p.poll(t(5));
        assert!(records(&mut p).is_empty(), "closed flows linger for tcp_closed_timeout");
        p.poll(t(13));
        let r = records(&mut p);
        assert_eq!(r.len(), 1);
        let r = &r[0];
        assert_eq!(
            (r.src.to_string().as_str(), r.sport, r.dst.to_string().as_str(), r.dport),
            ("192.168.1.10", 40000, "10.0.0.1", 80)
        );
        assert_eq!((r.packets_c2s, r.packets_s2c), (3, 3));
        assert_eq!(r.bytes_c2s, 40 + 58 + 40);
        assert_eq!(r.bytes_s2c, 40 + 1040 + 40);
        assert_eq!(r.end_reason, EndReason::Fin);
        assert_eq!(r.verdict, FlowVerdict::Allow);
        assert_eq!(p.stats().flows_ended, 1);
    }

    #[test]
    fn blocked_port_drops_every_packet_and_names_the_rule() {
        let mut p = pipeline("[[policy.rules]]\nname='no-telnet'\naction='block'\ndst_ports=[23]\n", true);
        let m = PacketMeta::default();
        for i in 0..3 {
            let d = p.process(&v4(6, C, 40001, S, 23, tcp::SYN, b""), &m, Timestamp::from_secs(i));
            assert_eq!(d.action, Action::Drop);
            assert_eq!(d.rule.as_deref(), Some("no-telnet"));
            assert!(!d.offload, "dropped flows are never offloaded");
        }
        let d = p.process(&v4(6, C, 40002, S, 22, tcp::SYN, b""), &m, Timestamp::from_secs(3));
        assert_eq!((d.action, d.offload), (Action::Accept, true));
        // Offload is signalled once per flow.
        let d = p.process(&v4(6, C, 40002, S, 22, tcp::ACK, b""), &m, Timestamp::from_secs(3));
        assert_eq!((d.action, d.offload), (Action::Accept, false));
        let s = p.stats();
        assert_eq!((s.dropped, s.accepted, s.flows_offloaded), (3, 2, 1));
        p.finish(EndReason::Shutdown);
        let r = records(&mut p);
        assert_eq!(r.len(), 2);
        assert_eq!((r[0].verdict, r[0].rule.as_deref(), r[0].packets_c2s), (FlowVerdict::Block, Some("no-telnet"), 3));
        assert_eq!(r[1].end_reason, EndReason::Shutdown);
        assert!(r[1].offloaded);
    }

    #[test]
    fn flows_ended_at_shutdown_come_out_in_start_order_whatever_the_hash_seed() {
        let policy = Arc::new(Policy::default());
        let flows = FlowTableConfig { max_flows: 1000, ..FlowTableConfig::default() };
        let mut p = Pipeline::new(PipelineConfig { flows, classify: None, ..Default::default() }, policy);
        let m = PacketMeta::default();
        // 200 flows in the same microsecond (a capture's timestamps often tie), then 10 later.
        for port in 0..210u16 {
            let t = Timestamp::from_secs(1 + u64::from(port / 200));
            p.process(&v4(17, C, 10_000 + port, S, 53, 0, b"x"), &m, t);
        }
        p.finish(EndReason::Shutdown);
        let ports: Vec<u16> = records(&mut p).iter().map(|r| r.sport).collect();
        assert_eq!(ports, (10_000..10_210).collect::<Vec<u16>>());
    }

    #[test]
    fn reply_first_midstream_picks_the_client_side() {
        let mut p = pipeline("", false);
        let m = PacketMeta::default();
        // First packet seen is the server's SYN+ACK: the client is its destination.
        p.process(&v4(6, S, 443, C, 50000, tcp::SYN | tcp::ACK, b""), &m, Timestamp::from_secs(1));
        // Mid-stream data from a well-known port: the client is the ephemeral side.
        p.process(&v4(6, S, 22, C, 50001, tcp::ACK, b"x"), &m, Timestamp::from_secs(1));
        p.finish(EndReason::Shutdown);
        for r in records(&mut p) {
            assert_eq!(r.src.to_string(), "192.168.1.10");
            assert!(r.midstream);
            assert_eq!(r.packets_s2c, 1);
        }
    }

    #[test]
    fn udp_expires_and_table_evicts_least_recent() {
        let mut p = pipeline("", false);
        let m = PacketMeta::default();
        for port in 0..6u16 {
            p.process(&v4(17, C, 5000 + port, S, 53, 0, b"q"), &m, Timestamp::from_secs(u64::from(port)));
        }
        // max_flows = 4: the two oldest were evicted.
        assert_eq!(p.flows().len(), 4);
        let ev = records(&mut p);
        assert_eq!(ev.iter().map(|r| r.sport).collect::<Vec<_>>(), vec![5000, 5001]);
        assert!(ev.iter().all(|r| r.end_reason == EndReason::Eviction));
        // Keep one flow alive; the others idle out after udp_timeout (120 s).
        p.process(&v4(17, S, 53, C, 5005, 0, b"a"), &m, Timestamp::from_secs(100));
        p.poll(Timestamp::from_secs(130));
        let ev = records(&mut p);
        assert_eq!(ev.iter().map(|r| r.sport).collect::<Vec<_>>(), vec![5002, 5003, 5004]);
        assert!(ev.iter().all(|r| r.end_reason == EndReason::Timeout));
        p.poll(Timestamp::from_secs(219));
        assert!(records(&mut p).is_empty());
        p.poll(Timestamp::from_secs(221));
        assert_eq!(records(&mut p).len(), 1);
        assert!(p.flows().is_empty());
    }

    #[test]
    fn malformed_packets_are_accepted_and_counted() {
        let mut p = pipeline("[policy]\ndefault='block'\n", false);
        let m = PacketMeta::default();
        for bad in [&[][..], &[0x45, 0, 0], &[0x99; 60], &[0x60; 10]] {
            assert_eq!(p.process(bad, &m, Timestamp::from_secs(1)).action, Action::Accept);
        }
        assert_eq!(p.stats().malformed, 4);
        assert_eq!(p.process(&v4(17, C, 1, S, 2, 0, b""), &m, Timestamp::from_secs(1)).action, Action::Drop);
    }

    #[test]
    fn policy_swap_re_decides_live_flows_and_revokes_offloaded_ones() {
        let mut p = pipeline("", true);
        let m = PacketMeta::default();
        let pkt = v4(17, C, 7000, S, 9999, 0, b"x");
        let d = p.process(&pkt, &m, Timestamp::from_secs(1));
        assert_eq!((d.action, d.offload), (Action::Accept, true));
        let cfg: PolicyConfig = toml::from_str("default='block'").unwrap();
        p.set_policy(Arc::new(Policy::compile(&cfg).unwrap()), Timestamp::from_secs(2));
        let events: Vec<Event> = p.drain_events().collect();
        let revoked: Vec<&Event> = events.iter().filter(|e| matches!(e, Event::Revoke(_))).collect();
        assert!(
            matches!(&revoked[..], [Event::Revoke(c)] if c.client == (C.into(), 7000) && c.server == (S.into(), 9999)),
            "{events:?}"
        );
        assert!(
            events.iter().any(|e| matches!(e, Event::Block(b) if b.reason == "revoked")),
            "a revoked flow is reported as blocked: {events:?}"
        );
        // The flow's packets that come back from the kernel are dropped.
        assert_eq!(p.process(&pkt, &m, Timestamp::from_secs(2)).action, Action::Drop);
        assert_eq!(p.stats().revoked, 1);
    }

    fn classifying(policy_toml: &str) -> Pipeline {
        #[derive(serde::Deserialize)]
        struct Doc {
            #[serde(default)]
            policy: PolicyConfig,
        }
        let doc: Doc = toml::from_str(policy_toml).unwrap();
        let sigdb = Arc::new(SignatureDb::builtin().unwrap());
        let groups = Default::default();
        let lists = Default::default();
        let ctx = crate::policy::CompileContext { groups: &groups, lists: &lists, sigdb: Some(&sigdb) };
        let policy = Arc::new(Policy::compile_with(&doc.policy, &ctx).unwrap());
        let classify = Classification::fresh(sigdb);
        Pipeline::new(
            PipelineConfig {
                flows: FlowTableConfig::default(),
                offload: true,
                classify: Some(classify),
                ..Default::default()
            },
            policy,
        )
    }

    fn http_get(host: &str) -> Vec<u8> {
        v4(
            6,
            C,
            41000,
            S,
            80,
            tcp::ACK | tcp::PSH,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n\r\n").as_bytes(),
        )
    }

    #[test]
    fn l7_rules_wait_for_identification_then_decide_at_that_packet() {
        let mut p = classifying(
            "[[policy.rules]]\nname='no-netflix'\naction='block'\napps=['NetFlix']\n\
             [[policy.rules]]\nname='blocked-test'\naction='reject'\nhostnames=['*.blocked.test']\n",
        );
        let m = PacketMeta::default();
        let t = Timestamp::from_secs(5);
        // Handshake packets pass while the rules cannot be decided yet.
        assert_eq!(p.process(&v4(6, C, 41000, S, 80, tcp::SYN, b""), &m, t).action, Action::Accept);
        assert_eq!(p.process(&v4(6, S, 80, C, 41000, tcp::SYN | tcp::ACK, b""), &m, t).action, Action::Accept);
        let d = p.process(&v4(6, C, 41000, S, 80, tcp::ACK, b""), &m, t);
        assert_eq!((d.action, d.offload, d.rule), (Action::Accept, false, None));
        assert!(p.stats().pending_passed >= 3);
        // The request names www.netflix.com: decided and dropped at that very packet.
        let d = p.process(&http_get("www.netflix.com"), &m, t);
        assert_eq!((d.action, d.rule.as_deref()), (Action::Drop, Some("no-netflix")));
        assert!(d.inject.is_empty(), "block is silent");

        // reject on plain HTTP answers the client with a block page and the server with a reset.
        let mut p =
            classifying("[[policy.rules]]\nname='blocked-test'\naction='reject'\nhostnames=['*.blocked.test']\n");
        p.process(&v4(6, C, 41000, S, 80, tcp::SYN, b""), &m, t);
        let d = p.process(&http_get("ads.blocked.test"), &m, t);
        assert_eq!((d.action, d.rule.as_deref()), (Action::Drop, Some("blocked-test")));
        assert_eq!(d.inject.len(), 2);
        let page = vigil_wire::parse_l3(&d.inject[0]).unwrap();
        assert_eq!(page.dst.to_string(), "192.168.1.10");
        let text = String::from_utf8_lossy(page.payload);
        assert!(text.starts_with("HTTP/1.1 403") && text.contains("blocked-test"), "{text}");
        let rst = vigil_wire::parse_l3(&d.inject[1]).unwrap();
        assert_eq!(rst.dst.to_string(), "10.0.0.1");
        assert!(rst.tcp_flags.unwrap() & tcp::RST != 0);
        // An allowed name is decided at the same packet and offloaded once classified.
        let mut p =
            classifying("[[policy.rules]]\nname='blocked-test'\naction='block'\nhostnames=['*.blocked.test']\n");
        p.process(&v4(6, C, 41001, S, 80, tcp::SYN, b""), &m, t);
        let mut req = http_get("www.example.org");
        req[20..22].copy_from_slice(&41001u16.to_be_bytes());
        let d = p.process(&req, &m, t);
        assert_eq!(d.action, Action::Accept);
        assert_eq!(d.rule, None);
    }

    #[test]
    fn an_announced_ftp_data_connection_is_decided_at_its_syn() {
        let mut p = classifying("[[policy.rules]]\nname='no-ftp-data'\naction='block'\nprotocols=['FTP_DATA']\n");
        let m = PacketMeta::default();
        let t = Timestamp::from_secs(5);
        let seg = |src, sport, dst, dport, flags, seq: u32, payload: &[u8]| {
            let mut pkt = v4(6, src, sport, dst, dport, flags, payload);
            pkt[24..28].copy_from_slice(&seq.to_be_bytes());
            pkt
        };
        let (syn, ack) = (tcp::SYN, tcp::ACK | tcp::PSH);
        p.process(&seg(C, 40000, S, 21, syn, 0, b""), &m, t);
        p.process(&seg(S, 21, C, 40000, syn | tcp::ACK, 0, b""), &m, t);
        // The control connection is identified at its greeting (the rule does not match it: it is
        // decided and passes), but stays in userspace: its control lines are still read.
        let d = p.process(&seg(S, 21, C, 40000, ack, 1, b"220 (vsFTPd 3.0.3)\r\n"), &m, t);
        assert_eq!((d.action, d.offload), (Action::Accept, false));
        p.process(&seg(C, 40000, S, 21, ack, 1, b"PASV\r\n"), &m, t);
        p.process(&seg(S, 21, C, 40000, ack, 21, b"227 Entering Passive Mode (10,0,0,1,100,85).\r\n"), &m, t);
        // The data connection is FTP_DATA at its SYN: blocked before it carries a byte.
        let d = p.process(&seg(C, 40001, S, 25685, syn, 0, b""), &m, t);
        assert_eq!((d.action, d.rule.as_deref()), (Action::Drop, Some("no-ftp-data")));
        // The announcement was one-shot: the next connection to the port waits for its payload.
        let d = p.process(&seg(C, 40002, S, 25685, syn, 0, b""), &m, t);
        assert_eq!((d.action, d.rule), (Action::Accept, None));
    }

    #[test]
    fn reject_udp_answers_with_icmp_unreachable_and_require_dns_sees_the_cache() {
        let mut p = classifying(
            "[[policy.rules]]\nname='no-unresolved-quic'\naction='reject'\nl4='udp'\ndst_ports=[443]\nrequire_dns=true\n",
        );
        let m = PacketMeta::default();
        let t = Timestamp::from_secs(5);
        let d = p.process(&v4(17, C, 50000, S, 443, 0, &[0u8; 40]), &m, t);
        assert_eq!((d.action, d.rule.as_deref()), (Action::Drop, Some("no-unresolved-quic")));
        assert_eq!(d.inject.len(), 1);
        let icmp = vigil_wire::parse_l3(&d.inject[0]).unwrap();
        assert_eq!((icmp.l4, icmp.dst.to_string()), (L4Proto::Icmp, "192.168.1.10".to_string()));
        // Once a client resolved the server's address through DNS the gateway saw, it passes.
        if let Some(c) = p.cfg.classify.as_ref() {
            c.dns_cache.insert(S.into(), "quic.example.org", 300, t.micros());
        }
        let d = p.process(&v4(17, C, 50001, S, 443, 0, &[0u8; 40]), &m, t);
        assert_eq!(d.action, Action::Accept);
    }
}

#[cfg(test)]
mod late_block_tests {
    use super::*;
    use crate::policy::PolicyConfig;
    use vigil_dpi::SignatureDb;

    /// A flow blocked after packets passed while the decision waited has a confirmed conntrack
    /// entry that counts towards the queue cap: the block must come with a revocation.
    #[test]
    fn a_flow_blocked_after_passing_packets_is_revoked() {
        let cfg: PolicyConfig = toml::from_str(
            "[[rules]]\nname='names'\naction='block'\nhostnames=['*.blocked.test']\n\
             [[rules]]\nname='no-5353'\naction='block'\nl4='udp'\ndst_ports=[5353]\n",
        )
        .unwrap();
        let classify = Classification::fresh(Arc::new(SignatureDb::builtin().unwrap()));
        let mut p = Pipeline::new(
            PipelineConfig { classify: Some(classify), offload: true, ..Default::default() },
            Arc::new(Policy::compile(&cfg).unwrap()),
        );
        let mut revoked_at = None;
        for i in 0..40u64 {
            let payload = format!("msg-{i}");
            let mut pkt = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 1, 2, 198, 18, 2, 2];
            pkt.extend_from_slice(&40000u16.to_be_bytes());
            pkt.extend_from_slice(&5353u16.to_be_bytes());
            pkt.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            pkt.extend_from_slice(&[0, 0]);
            pkt.extend_from_slice(payload.as_bytes());
            let total = pkt.len() as u16;
            pkt[2..4].copy_from_slice(&total.to_be_bytes());
            let d = p.process(&pkt, &PacketMeta::default(), Timestamp::from_secs(100 + i));
            if p.drain_events().any(|e| matches!(e, Event::Revoke(_))) {
                revoked_at.get_or_insert((i, d.action));
            }
        }
        let (at, action) = revoked_at.expect("the late block was revoked");
        assert!(at > 0, "decided after the first packet in this setup");
        assert_eq!(action, Action::Drop);
    }
}

#[cfg(test)]
mod accounting_tests {
    use super::*;

    fn udp(sport: u16, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 1, 2, 198, 18, 2, 2];
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&4000u16.to_be_bytes());
        p.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        p.extend_from_slice(&[0, 0]);
        p.extend_from_slice(payload);
        let total = p.len() as u16;
        p[2..4].copy_from_slice(&total.to_be_bytes());
        p
    }

    fn conn(sport: u16) -> Connection {
        Connection {
            l4: L4Proto::Udp,
            client: ("198.18.1.2".parse().unwrap(), sport),
            server: ("198.18.2.2".parse().unwrap(), 4000),
        }
    }

    #[test]
    fn kernel_counters_replace_an_offloaded_flows_and_a_destroy_ends_it() {
        let mut p = Pipeline::new(PipelineConfig { offload: true, ..Default::default() }, Arc::new(Policy::default()));
        let d = p.process(&udp(5000, b"hello"), &PacketMeta::default(), Timestamp::from_secs(10));
        assert!(d.offload);
        let c = ConnCounters { packets_c2s: 70_000, bytes_c2s: 100_000_000, packets_s2c: 10, bytes_s2c: 600 };
        // A dump: counters updated, the session goes on.
        assert!(p.account(&conn(5000), c, false, Timestamp::from_secs(20)));
        assert_eq!(p.drain_events().count(), 0);
        // The DESTROY: the session ends with the kernel's counts.
        assert!(p.account(&conn(5000), c, true, Timestamp::from_secs(30)));
        let recs: Vec<FlowRecord> =
            p.drain_events().filter_map(|e| if let Event::FlowEnd(r) = e { Some(*r) } else { None }).collect();
        assert_eq!(recs.len(), 1);
        let r = &recs[0];
        assert_eq!((r.bytes_c2s, r.packets_c2s, r.bytes_s2c), (100_000_000, 70_000, 600));
        assert_eq!(r.bytes_source, "conntrack");
        assert!(p.flows().is_empty());
        // Unknown connections are not ours.
        assert!(!p.account(&conn(5001), c, true, Timestamp::from_secs(30)));
    }

    #[test]
    fn a_blocked_flow_survives_its_own_revocation() {
        let cfg: crate::policy::PolicyConfig = toml::from_str("default = 'block'").unwrap();
        let mut p = Pipeline::new(
            PipelineConfig { offload: true, ..Default::default() },
            Arc::new(Policy::compile(&cfg).unwrap()),
        );
        assert_eq!(p.process(&udp(6000, b"x"), &PacketMeta::default(), Timestamp::from_secs(1)).action, Action::Drop);
        p.account(&conn(6000), ConnCounters::default(), true, Timestamp::from_secs(2));
        assert_eq!(p.flows().len(), 1, "still tracked: its next packets are dropped without a new decision");
    }
}

#[cfg(test)]
mod hold_tests {
    use super::*;
    use vigil_dpi::SignatureDb;

    fn tcp(flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
        let total = 40 + payload.len();
        let mut p =
            vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 6, 0, 0, 198, 18, 1, 2, 198, 18, 2, 2];
        p.extend_from_slice(&41000u16.to_be_bytes());
        p.extend_from_slice(&80u16.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn pipeline(hold: bool) -> Pipeline {
        let cfg: crate::policy::PolicyConfig =
            toml::from_str("[[rules]]\nname='held'\naction='block'\nhostnames=['*.hold.test']\n").unwrap();
        let classify = Classification::fresh(Arc::new(SignatureDb::builtin().unwrap()));
        Pipeline::new(
            PipelineConfig { classify: Some(classify), hold_undecided: hold, offload: true, ..Default::default() },
            Arc::new(Policy::compile(&cfg).unwrap()),
        )
    }

    #[test]
    fn payload_of_undecided_flows_is_held_then_released_with_the_decision() {
        let m = PacketMeta::default();
        let t = Timestamp::from_secs(9);
        for (host, pass) in [("www.hold.test", false), ("www.example.org", true)] {
            let mut p = pipeline(true);
            // The handshake passes: holding it would stall the connection.
            assert_eq!(p.process(&tcp(tcp::SYN, 100, b""), &m, t).action, Action::Accept);
            // A request line without a Host yet: undecided, held.
            let d1 = p.process(&tcp(tcp::ACK | tcp::PSH, 101, b"GET / HTTP/1.1\r\n"), &m, t);
            assert_eq!(d1.action, Action::Hold);
            assert!(p.drain_events().all(|e| !matches!(e, Event::Release { .. })));
            // The Host arrives: decided at this packet, and the held packet follows the decision.
            let d2 = p.process(&tcp(tcp::ACK | tcp::PSH, 117, format!("Host: {host}\r\n\r\n").as_bytes()), &m, t);
            let releases: Vec<Event> = p.drain_events().filter(|e| matches!(e, Event::Release { .. })).collect();
            assert!(
                matches!(releases[..], [Event::Release { flow_id, pass: p, .. }] if flow_id == d1.flow_id && p == pass),
                "{host}: {releases:?}"
            );
            assert_eq!(d2.action, if pass { Action::Accept } else { Action::Drop }, "{host}");
        }
        // Without hold, undecided packets pass.
        let mut p = pipeline(false);
        p.process(&tcp(tcp::SYN, 100, b""), &m, t);
        assert_eq!(p.process(&tcp(tcp::ACK | tcp::PSH, 101, b"GET / HTTP/1.1\r\n"), &m, t).action, Action::Accept);
    }
}

#[cfg(test)]
mod details_tests {
    use super::*;
    use vigil_dpi::SignatureDb;

    const CLIENT: [u8; 4] = [198, 18, 1, 2];
    const SERVER: [u8; 4] = [198, 18, 2, 2];

    /// A TCP segment between CLIENT:41000 and SERVER:`port`, `to_server` or back.
    fn tcp(port: u16, to_server: bool, flags: u8, seq: u32, payload: &[u8]) -> Vec<u8> {
        let total = 40 + payload.len();
        let (src, dst, sport, dport) =
            if to_server { (CLIENT, SERVER, 41000, port) } else { (SERVER, CLIENT, port, 41000) };
        let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0, 0, 64, 6, 0, 0];
        p.extend_from_slice(&src);
        p.extend_from_slice(&dst);
        p.extend_from_slice(&sport.to_be_bytes());
        p.extend_from_slice(&dport.to_be_bytes());
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 1, 5 << 4, flags, 0xff, 0xff, 0, 0, 0, 0]);
        p.extend_from_slice(payload);
        p
    }

    fn pipeline(interim: Option<std::time::Duration>) -> Pipeline {
        let classify = Classification::fresh(Arc::new(SignatureDb::builtin().unwrap()));
        Pipeline::new(
            PipelineConfig { classify: Some(classify), interim_interval: interim, ..Default::default() },
            Arc::new(Policy::default()),
        )
    }

    fn flow_records(p: &mut Pipeline) -> Vec<FlowRecord> {
        p.drain_events()
            .filter_map(|e| match e {
                Event::FlowEnd(r) | Event::FlowUpdate(r) => Some(*r),
                _ => None,
            })
            .collect()
    }

    /// Opens a connection to `port` and sends `c2s` then `s2c` (each a segment when not empty).
    fn exchange(p: &mut Pipeline, port: u16, c2s: &[u8], s2c: &[u8], t: Timestamp) {
        let m = PacketMeta::default();
        p.process(&tcp(port, true, tcp::SYN, 100, b""), &m, t);
        p.process(&tcp(port, false, tcp::SYN | tcp::ACK, 500, b""), &m, t);
        p.process(&tcp(port, true, tcp::ACK, 101, b""), &m, t);
        if !c2s.is_empty() {
            p.process(&tcp(port, true, tcp::ACK | tcp::PSH, 101, c2s), &m, t);
        }
        if !s2c.is_empty() {
            p.process(&tcp(port, false, tcp::ACK | tcp::PSH, 501, s2c), &m, t);
        }
    }

    #[test]
    fn ssh_banners_and_http_request_reach_the_record() {
        let t = Timestamp::from_secs(50);
        let mut p = pipeline(None);
        exchange(&mut p, 22, b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n", b"SSH-2.0-OpenSSH_8.4p1\r\n", t);
        p.finish(EndReason::Shutdown);
        let r = flow_records(&mut p);
        assert_eq!(r.len(), 1);
        assert_eq!(&*r[0].protocol, "SSH");
        assert_eq!(r[0].details.client_banner.as_deref(), Some("SSH-2.0-OpenSSH_9.2p1 Debian-2"));
        assert_eq!(r[0].details.server_banner.as_deref(), Some("SSH-2.0-OpenSSH_8.4p1"));
        assert_eq!((r[0].details.tls_version.as_deref(), r[0].details.user_agent.as_deref()), (None, None));

        let mut p = pipeline(None);
        let req = b"GET /a/b?c=d HTTP/1.1\r\nHost: www.example.org\r\nUser-Agent: curl/8.5.0\r\n\r\n";
        exchange(&mut p, 80, req, b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Length: 0\r\n\r\n", t);
        p.finish(EndReason::Shutdown);
        let r = flow_records(&mut p);
        assert_eq!(&*r[0].protocol, "HTTP");
        assert_eq!(
            (
                r[0].details.http_method.as_deref(),
                r[0].details.http_path.as_deref(),
                r[0].details.user_agent.as_deref()
            ),
            (Some("GET"), Some("/a/b"), Some("curl/8.5.0")),
            "the query string (it may carry credentials) is left out"
        );
        // The JSON line has them under those names, and nothing of the rest.
        let v = serde_json::to_value(&r[0]).unwrap();
        assert_eq!(v["user_agent"], "curl/8.5.0");
        for k in ["tls_version", "ech", "cert_names", "client_banner", "dhcp_hostname", "dhcp_vendor_class"] {
            assert!(v.get(k).is_none(), "{k}: {v}");
        }
    }

    #[test]
    fn an_interim_record_has_the_details_known_so_far() {
        let mut p = pipeline(Some(std::time::Duration::from_secs(10)));
        let t = Timestamp::from_secs(50);
        // Only the client's banner so far.
        exchange(&mut p, 22, b"SSH-2.0-OpenSSH_9.2p1\r\n", b"", t);
        p.poll(Timestamp::from_secs(61));
        let r = flow_records(&mut p);
        assert_eq!(r.len(), 1);
        assert!(r[0].interim);
        assert_eq!(r[0].details.client_banner.as_deref(), Some("SSH-2.0-OpenSSH_9.2p1"));
        assert_eq!(r[0].details.server_banner, None);
    }

    #[test]
    fn a_flow_without_details_carries_none() {
        // Per flow, the details cost one pointer until a flow has some.
        assert_eq!(std::mem::size_of::<Option<Box<crate::flow::L7Details>>>(), std::mem::size_of::<usize>());
        let mut p = pipeline(None);
        exchange(&mut p, 4444, b"\x00\x01\x02\x03", b"", Timestamp::from_secs(5));
        assert!(p.flows().iter().all(|f| f.l7.details.is_none()));
        p.finish(EndReason::Shutdown);
        let r = flow_records(&mut p);
        assert_eq!(r[0].details, crate::flow::L7Details::default());
    }
}
