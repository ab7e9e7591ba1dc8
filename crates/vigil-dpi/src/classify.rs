//! The per-flow classifier: runs the dissectors, then names the application.

use crate::dissect::{self, Dissector, Step};
use crate::dns_cache::DnsCache;
use crate::facts::{DnsAnswer, Facts, NameSource};
use crate::sigdb::SignatureDb;
use crate::view::PacketView;
use std::net::IpAddr;
use vigil_wire::{tcp, L4Proto};

/// Classification settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClassifierConfig {
    /// Packets offered to the dissectors before classification gives up on a flow.
    pub max_packets: u32,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig { max_packets: 32 }
    }
}

/// Shared, read-mostly state the classifier consults.
#[derive(Clone, Copy)]
pub struct DpiContext<'a> {
    pub sigdb: &'a SignatureDb,
    pub dns_cache: &'a DnsCache,
    pub config: ClassifierConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Several candidates still see packets.
    Probing,
    /// One dissector owns the flow and extracts more.
    Extracting,
    /// Nothing more to learn.
    Done,
}

pub struct Classifier {
    l4: L4Proto,
    client: (IpAddr, u16),
    server: (IpAddr, u16),
    candidates: Vec<Box<dyn Dissector>>,
    owner: Option<Box<dyn Dissector>>,
    facts: Facts,
    phase: Phase,
    /// Packets offered to dissectors so far.
    offered: u32,
    /// Flow packets seen when classification completed.
    decided_after: Option<u32>,
    /// Flow packets seen when the flow was identified: its protocol known and, if it carries a
    /// name, the name too (a TLS flow is identified at its ClientHello, complete after the
    /// ServerHello).
    identified_after: Option<u32>,
    /// DNS queries waiting for their answer: (transaction id, time), for the answer's latency.
    dns_pending: Vec<(u16, u64)>,
    /// DNS answers seen since the last `take_dns_log`.
    dns_log: Vec<DnsLogEntry>,
}

/// One answered DNS query, for the DNS log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsLogEntry {
    pub ts_micros: u64,
    pub query: String,
    pub qtype: u16,
    pub rcode: u8,
    /// Addresses and CNAME targets, as text.
    pub answers: Vec<String>,
    /// Time from the query to this answer, when the query was seen.
    pub latency_us: Option<u64>,
}

/// Queries remembered per flow while waiting for answers (bounded: a flood of unanswered
/// queries must not grow memory).
const DNS_PENDING_MAX: usize = 16;

impl std::fmt::Debug for Classifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Classifier")
            .field("phase", &self.phase)
            .field("owner", &self.owner.as_ref().map(|d| d.name()))
            .field("candidates", &self.candidates.len())
            .field("facts", &self.facts)
            .finish()
    }
}

/// The protocol usually served on a well-known server port. Only for flows no dissector
/// recognised, and only for ports whose protocol vigil can also dissect, so that a guess is the
/// answer DPI would most likely have given had the flow carried enough payload.
fn guess_by_port(l4: L4Proto, port: u16) -> Option<&'static str> {
    Some(match (l4, port) {
        (L4Proto::Tcp, 80 | 8080) => "HTTP",
        (L4Proto::Tcp, 443 | 8443) => "TLS",
        (L4Proto::Tcp, 22) => "SSH",
        (L4Proto::Tcp, 21) => "FTP_CONTROL",
        (L4Proto::Tcp, 25 | 587) => "SMTP",
        (L4Proto::Tcp, 465) => "SMTPS",
        (L4Proto::Tcp, 110) => "POP3",
        (L4Proto::Tcp, 995) => "POP3S",
        (L4Proto::Tcp, 143) => "IMAP",
        (L4Proto::Tcp, 993) => "IMAPS",
        (L4Proto::Tcp | L4Proto::Udp, 53) => "DNS",
        (L4Proto::Tcp | L4Proto::Udp, 88) => "Kerberos",
        (L4Proto::Tcp | L4Proto::Udp, 389) => "LDAP",
        (L4Proto::Tcp, 445) => "SMBv23",
        (L4Proto::Tcp, 139) | (L4Proto::Udp, 137 | 138) => "NetBIOS",
        (L4Proto::Tcp, 3389) => "RDP",
        (L4Proto::Tcp, 1883) => "MQTT",
        (L4Proto::Udp, 123) => "NTP",
        (L4Proto::Udp, 67 | 68) => "DHCP",
        (L4Proto::Udp, 546 | 547) => "DHCPV6",
        (L4Proto::Udp, 5353) => "MDNS",
        (L4Proto::Udp, 1900) => "SSDP",
        (L4Proto::Tcp | L4Proto::Udp, 5060) => "SIP",
        (L4Proto::Tcp | L4Proto::Udp, 3478) => "STUN",
        (L4Proto::Udp, 443) => "QUIC",
        (L4Proto::Tcp | L4Proto::Udp, 1194) => "OpenVPN",
        (L4Proto::Udp, 51820) => "WireGuard",
        (L4Proto::Udp, 500 | 4500) => "IPSec",
        _ => return None,
    })
}

/// Protocols that carry other applications.
fn is_carrier(protocol: &str) -> bool {
    matches!(
        protocol,
        "TLS"
            | "DTLS"
            | "QUIC"
            | "HTTP"
            | "HTTP2"
            | "DNS"
            | "MDNS"
            | "LLMNR"
            | "STUN"
            | "RTP"
            | "RTCP"
            | "SRTP"
            | "SIP"
            | "ICMP"
            | "ICMPV6"
            | "IGMP"
            | "GRE"
            | "SCTP"
            | "SMTP"
            | "SMTPS"
            | "IMAP"
            | "IMAPS"
            | "POP3"
            | "POP3S"
            | "SSDP"
            | "DHCP"
            | "DHCPV6"
            | "NTP"
    )
}

/// Protocols named by the IP header alone.
fn by_ip_protocol(l4: L4Proto) -> Option<&'static str> {
    Some(match l4 {
        L4Proto::Icmp => "ICMP",
        L4Proto::Icmpv6 => "ICMPV6",
        L4Proto::Other(2) => "IGMP",
        L4Proto::Other(47) => "GRE",
        L4Proto::Other(50) | L4Proto::Other(51) => "IPSec",
        L4Proto::Other(132) => "SCTP",
        L4Proto::Other(89) => "OSPF",
        L4Proto::Other(112) => "VRRP",
        _ => return None,
    })
}

impl Classifier {
    pub fn new(l4: L4Proto, client: (IpAddr, u16), server: (IpAddr, u16)) -> Self {
        let mut c = Classifier {
            l4,
            client,
            server,
            candidates: dissect::candidates(l4),
            owner: None,
            facts: Facts::default(),
            phase: Phase::Probing,
            offered: 0,
            decided_after: None,
            identified_after: None,
            dns_pending: Vec::new(),
            dns_log: Vec::new(),
        };
        if let Some(name) = by_ip_protocol(l4) {
            c.facts.protocol = Some(name);
        }
        if c.candidates.is_empty() {
            c.phase = Phase::Done;
        }
        c
    }

    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    /// True while more packets could teach something (the flow should stay in userspace).
    pub fn wants_more(&self) -> bool {
        self.phase != Phase::Done
    }

    /// Flow packets it took to classify, once done.
    pub fn decided_after(&self) -> Option<u32> {
        self.decided_after
    }

    /// Flow packets it took to identify the flow (protocol, and name where it carries one).
    pub fn identified_after(&self) -> Option<u32> {
        self.identified_after.or(self.decided_after)
    }

    /// Offers one packet. `pkt.index` is the packet's position in the flow.
    pub fn on_packet(&mut self, pkt: &PacketView<'_>, ctx: &DpiContext<'_>) {
        if self.phase == Phase::Done {
            // Flows named by the IP header alone (ICMP, ESP...) are complete at their first packet.
            self.complete(ctx, pkt.index + 1, pkt.ts_micros);
            return;
        }
        let syn = pkt.tcp_flags & tcp::SYN != 0;
        if pkt.payload.is_empty() && !syn {
            return;
        }
        if !pkt.payload.is_empty() {
            self.offered += 1;
        }
        match self.phase {
            Phase::Probing => self.probe(pkt),
            Phase::Extracting => {
                let step = match self.owner.as_mut() {
                    Some(owner) => owner.on_packet(pkt, &mut self.facts),
                    None => Step::Done,
                };
                if matches!(step, Step::Done | Step::NotMine) {
                    self.phase = Phase::Done;
                }
            }
            Phase::Done => {}
        }
        self.learn_dns(ctx, pkt.ts_micros);
        if self.identified_after.is_none()
            && self.facts.protocol.is_some()
            && (self.facts.hostname.is_some() || self.phase == Phase::Done)
        {
            self.identified_after = Some(pkt.index + 1);
            // Name the application now: a policy decides on it at this packet (a blocked TLS flow
            // at its ClientHello), before classification completes.
            self.name(ctx, pkt.ts_micros);
        }
        if self.phase != Phase::Done && self.offered >= ctx.config.max_packets {
            self.phase = Phase::Done; // the budget is spent: decide with what is known
        }
        if self.phase == Phase::Done {
            self.complete(ctx, pkt.index + 1, pkt.ts_micros);
        }
    }

    fn probe(&mut self, pkt: &PacketView<'_>) {
        let mut i = 0;
        while i < self.candidates.len() {
            match self.candidates[i].on_packet(pkt, &mut self.facts) {
                Step::NotMine => {
                    // `remove`, not `swap_remove`: candidates keep their priority order.
                    self.candidates.remove(i);
                }
                Step::NeedMore => i += 1,
                step @ (Step::Identified | Step::Done) => {
                    let owner = self.candidates.remove(i);
                    self.candidates = Vec::new();
                    self.owner = Some(owner);
                    self.phase = if step == Step::Done { Phase::Done } else { Phase::Extracting };
                    return;
                }
            }
        }
        if self.candidates.is_empty() {
            self.phase = Phase::Done;
        }
    }

    /// DNS answers seen on this flow teach the shared cache which name each address had.
    /// Each DNS message is taken once: queries wait for their answer (latency), answers go to the
    /// DNS log and teach the shared cache which name each address had.
    fn learn_dns(&mut self, ctx: &DpiContext<'_>, now: u64) {
        let Some(dns) = self.facts.dns.take() else { return };
        if !dns.is_response {
            if self.dns_pending.len() >= DNS_PENDING_MAX {
                self.dns_pending.remove(0);
            }
            self.dns_pending.push((dns.id, now));
            return;
        }
        let latency_us = self
            .dns_pending
            .iter()
            .position(|&(id, _)| id == dns.id)
            .map(|i| now.saturating_sub(self.dns_pending.remove(i).1));
        let mut answers = Vec::with_capacity(dns.answers.len());
        // Names a client asked for are the ones worth remembering: follow CNAMEs back to the query.
        let query = dns.query.clone();
        for a in dns.answers {
            match a {
                DnsAnswer::Addr { name, addr, ttl } => {
                    ctx.dns_cache.insert(addr, query.as_deref().unwrap_or(&name), ttl, now);
                    answers.push(addr.to_string());
                }
                DnsAnswer::Cname { target, .. } => answers.push(target),
            }
        }
        if let Some(q) = query {
            self.dns_log.push(DnsLogEntry {
                ts_micros: now,
                query: q,
                qtype: dns.qtype.unwrap_or(0),
                rcode: dns.rcode.unwrap_or(0),
                answers,
                latency_us,
            });
        }
    }

    /// DNS answers seen since the last call (for the DNS log).
    pub fn take_dns_log(&mut self) -> Vec<DnsLogEntry> {
        std::mem::take(&mut self.dns_log)
    }

    fn complete(&mut self, ctx: &DpiContext<'_>, packets: u32, now: u64) {
        if self.decided_after.is_some() {
            return;
        }
        self.decided_after = Some(packets);
        self.owner = None;
        self.candidates = Vec::new();
        self.name(ctx, now);
    }

    /// Fills hostname (from the DNS cache when the flow carried none) and application.
    fn name(&mut self, ctx: &DpiContext<'_>, now: u64) {
        if self.facts.protocol.is_none() {
            if let Some(guess) = guess_by_port(self.l4, self.server.1) {
                self.facts.protocol = Some(guess);
                self.facts.protocol_guessed = true;
            }
        }
        if self.facts.hostname.is_none() {
            if let Some(name) = ctx.dns_cache.lookup(self.server.0, now) {
                self.facts.set_hostname(&name, NameSource::DnsCache);
            }
        }
        ctx.sigdb.classify(&mut self.facts, self.client, self.server, self.l4);
        // A dissector's own identification that the database does not list still names the flow
        // (e.g. SMBv1 inside NetBIOS datagrams).
        if self.facts.app.is_none() {
            if let Some(hint) = self.facts.app_hint {
                self.facts.app = Some(std::sync::Arc::from(hint));
            }
        }
        // A protocol that is not a carrier for other applications is itself the application
        // (Kerberos, BitTorrent, OpenVPN, NTP...); a port guess marks both as guessed. Carriers
        // (TLS, QUIC, HTTP, DNS, STUN, RTP...) name an application only when something identified
        // what they carry.
        if self.facts.app.is_none() {
            if let Some(p) = self.facts.protocol.filter(|p| !is_carrier(p)) {
                self.facts.app = Some(std::sync::Arc::from(p));
            }
        }
    }

    /// The flow ended before classification completed: name it with what is known.
    pub fn finish(&mut self, ctx: &DpiContext<'_>, packets: u32, now: u64) {
        self.phase = Phase::Done;
        self.complete(ctx, packets, now);
    }
}
