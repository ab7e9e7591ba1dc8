//! The pipeline: parse, track, decide. One instance per worker.

use crate::flow::{Counters, Direction, EndReason, Flow, FlowDecision, FlowKey, FlowRecord, L7Facts, TcpState};
use crate::policy::{FlowFacts, Policy, RuleAction};
use crate::table::{FlowTable, FlowTableConfig};
use crate::time::Timestamp;
use std::sync::Arc;
use vigil_dpi::{Classifier, ClassifierConfig, Dir, DnsCache, DpiContext, PacketView, SignatureDb};
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
}

/// The pipeline's answer for one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The flow's decision is final and offload is enabled: the shell should tell the kernel to
    /// stop queueing this connection (connmark).
    pub offload: bool,
    pub rule: Option<Arc<str>>,
}

impl Decision {
    fn accept() -> Self {
        Decision { action: Action::Accept, offload: false, rule: None }
    }
}

/// What the pipeline reports besides verdicts.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A flow ended (closed, idle, evicted, shutdown): its full record.
    FlowEnd(Box<FlowRecord>),
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
}

/// What classification shares across workers: the signature database (swapped on reload) and
/// the DNS-learned names.
#[derive(Debug, Clone)]
pub struct Classification {
    pub sigdb: Arc<SignatureDb>,
    pub dns_cache: Arc<DnsCache>,
    pub config: ClassifierConfig,
}

impl Classification {
    fn context(&self) -> DpiContext<'_> {
        DpiContext { sigdb: &self.sigdb, dns_cache: &self.dns_cache, config: self.config }
    }
}

pub struct Pipeline {
    cfg: PipelineConfig,
    table: FlowTable,
    policy: Arc<Policy>,
    events: Vec<Event>,
    stats: PipelineStats,
}

impl Pipeline {
    pub fn new(cfg: PipelineConfig, policy: Arc<Policy>) -> Self {
        let table = FlowTable::new(cfg.flows.clone());
        Pipeline { cfg, table, policy, events: Vec::new(), stats: PipelineStats::default() }
    }

    /// Replaces the policy. Flows already decided keep their decision; undecided flows use the
    /// new policy from their next packet on.
    pub fn set_policy(&mut self, policy: Arc<Policy>) {
        self.policy = policy;
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
        let decision = self.track_and_decide(&info, meta, now);
        match decision.action {
            Action::Accept => self.stats.accepted += 1,
            Action::Drop => self.stats.dropped += 1,
        }
        decision
    }

    fn track_and_decide(&mut self, info: &PacketInfo<'_>, meta: &PacketMeta, now: Timestamp) -> Decision {
        let (key, lo_to_hi) = FlowKey::of(info);
        let classify = self.cfg.classify.is_some();
        let (flow, created, evicted) = self.table.get_or_insert_with(key, || {
            let mut flow = new_flow(key, lo_to_hi, info, meta, now);
            if classify {
                flow.classifier = Some(Box::new(Classifier::new(key.l4, flow.client(), flow.server())));
            }
            flow
        });
        if created {
            self.stats.flows_created += 1;
        }
        if let Some((evicted, reason)) = evicted {
            self.stats.flows_evicted += 1;
            self.stats.flows_ended += 1;
            let rec = finalize(&self.cfg, evicted, reason);
            self.events.push(Event::FlowEnd(Box::new(rec)));
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
            if !cls.wants_more() {
                flow.l7 = L7Facts::from_classifier(cls);
                flow.classifier = None;
            }
        }

        if flow.decision.is_none() {
            let (src, sport) = flow.client();
            let (dst, dport) = flow.server();
            let m = policy.evaluate(&FlowFacts { l4: key.l4, src, sport, dst, dport });
            // Rules match on addresses, ports and L4 only, all known from the first packet.
            flow.decision = Some(FlowDecision { action: m.action, rule: m.rule, is_final: true });
        }
        // A flow still being classified stays in userspace: offloading it would blind the classifier.
        let classified = flow.classifier.is_none();
        let d = flow.decision.as_ref().expect("decided above");
        let action = match d.action {
            RuleAction::Allow => Action::Accept,
            RuleAction::Block => Action::Drop,
        };
        // Offload only accepted flows: a dropped packet never reaches the chain that saves the mark.
        let offload = offload_enabled && d.is_final && classified && action == Action::Accept && !flow.offloaded;
        if offload {
            flow.offloaded = true;
            self.stats.flows_offloaded += 1;
        }
        let rule = d.rule.clone();
        if let Some(reason) = ended {
            flow.ended_by.get_or_insert(reason);
        }
        if reclass {
            self.table.reclass(&key);
        }
        Decision { action, offload, rule }
    }

    /// Expires idle flows. Call about once a second.
    pub fn poll(&mut self, now: Timestamp) {
        let (cfg, events) = (&self.cfg, &mut self.events);
        let n = self.table.expire(now, &mut |f, why| events.push(Event::FlowEnd(Box::new(finalize(cfg, f, why)))));
        self.stats.flows_ended += n as u64;
    }

    /// Ends every flow (shutdown or end of capture).
    pub fn finish(&mut self, reason: EndReason) {
        let (cfg, events) = (&self.cfg, &mut self.events);
        let mut n = 0;
        self.table.drain(reason, &mut |f, why| {
            n += 1;
            events.push(Event::FlowEnd(Box::new(finalize(cfg, f, why))))
        });
        self.stats.flows_ended += n;
    }

    /// Replaces the signature database (reload); flows being classified use it from now on.
    pub fn set_signatures(&mut self, sigdb: Arc<SignatureDb>) {
        if let Some(c) = self.cfg.classify.as_mut() {
            c.sigdb = sigdb;
        }
    }
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
        Pipeline::new(PipelineConfig { flows, offload, classify: None }, policy)
    }

    fn records(p: &mut Pipeline) -> Vec<FlowRecord> {
        p.drain_events()
            .map(|e| match e {
                Event::FlowEnd(r) => *r,
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
    fn policy_swap_applies_to_new_flows_only() {
        let mut p = pipeline("", true);
        let m = PacketMeta::default();
        let pkt = v4(17, C, 7000, S, 9999, 0, b"x");
        assert_eq!(p.process(&pkt, &m, Timestamp::from_secs(1)).action, Action::Accept);
        let cfg: PolicyConfig = toml::from_str("default='block'").unwrap();
        p.set_policy(Arc::new(Policy::compile(&cfg).unwrap()));
        assert_eq!(p.process(&pkt, &m, Timestamp::from_secs(2)).action, Action::Accept);
        let other = v4(17, C, 7001, S, 9999, 0, b"x");
        assert_eq!(p.process(&other, &m, Timestamp::from_secs(2)).action, Action::Drop);
    }
}
