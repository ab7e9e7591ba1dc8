//! The per-flow classifier: runs the dissectors, then names the application.

use crate::dissect::{self, Dissector, Step};
use crate::dns_cache::DnsCache;
use crate::facts::{AppSource, DnsAnswer, Facts, NameSource};
use crate::related::RelatedFlows;
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
    /// Announced connections and call sockets (see [`crate::related`]).
    pub related: &'a RelatedFlows,
    pub config: ClassifierConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Several candidates still see packets.
    Probing,
    /// One dissector owns the flow and extracts more.
    Extracting,
    /// The dissectors are done (the flow is identified), but a UDP call-media flow (STUN, DTLS,
    /// RTP...) without an application waits, within the packet budget, for its socket's
    /// application: the flow that teaches it (a TURN allocation whose answer carries the realm)
    /// may start after this one. It stays in userspace meanwhile.
    Awaiting,
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
    /// The first packet was seen (an announced connection is recognised there).
    started: bool,
    /// The flow's client / server socket was taught to the related-flow cache as a call socket.
    taught: [bool; 2],
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

/// Protocols of a call's UDP socket (ICE checks, TURN, DTLS-SRTP, media): the ones that may take
/// their application from another flow of the same socket. Never TLS, QUIC, DNS and the like.
fn is_call_media(protocol: &str) -> bool {
    matches!(protocol, "STUN" | "DTLS" | "RTP" | "RTCP" | "SRTP")
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
            started: false,
            taught: [false; 2],
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
        if !self.started {
            self.started = true;
            if self.announced_connection(ctx, pkt.ts_micros) {
                self.complete(ctx, pkt.index + 1, pkt.ts_micros);
                return;
            }
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
            Phase::Awaiting | Phase::Done => {}
        }
        self.learn_dns(ctx, pkt.ts_micros);
        self.learn_announced(ctx, pkt.ts_micros);
        self.relate_socket(ctx, pkt.ts_micros);
        if self.phase == Phase::Done && self.awaits_socket() {
            self.phase = Phase::Awaiting;
        }
        // Identified: the protocol, and the name where the flow carries one. The dissectors being
        // done is enough (an application that comes to an awaiting flow later names it in its
        // record, but a policy decides now, as it would have without the wait).
        let dissected = matches!(self.phase, Phase::Awaiting | Phase::Done)
            || self.owner.as_ref().is_some_and(|o| o.named_when_identified());
        if self.identified_after.is_none()
            && self.facts.protocol.is_some()
            && (self.facts.hostname.is_some() || dissected)
        {
            self.identified_after = Some(pkt.index + 1);
            // Name the application now: a policy decides on it at this packet (a blocked TLS flow
            // at its ClientHello), before classification completes.
            self.name(ctx, pkt.ts_micros);
        }
        if self.phase == Phase::Awaiting && !self.awaits_socket() {
            self.phase = Phase::Done; // its socket's application came, or the database named it
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

    /// A TCP connection a control connection announced (FTP data): named at its first packet, before
    /// any dissector could claim its content (a file) as something else, and complete.
    fn announced_connection(&mut self, ctx: &DpiContext<'_>, now: u64) -> bool {
        if self.l4 != L4Proto::Tcp {
            return false;
        }
        let Some(protocol) = ctx.related.take_announced(self.client.0, self.server, now) else { return false };
        self.facts.protocol = Some(protocol);
        self.facts.app_source = Some(AppSource::Announced);
        self.phase = Phase::Done;
        true
    }

    /// Connections this flow announced (FTP PASV/PORT...) go to the related-flow cache. The
    /// dissector bounds how many one flow may announce.
    fn learn_announced(&mut self, ctx: &DpiContext<'_>, now: u64) {
        for a in self.facts.announced.drain(..) {
            ctx.related.expect(&a, now);
        }
    }

    /// Call sockets: a UDP call-media flow whose STUN messages named the application teaches it
    /// for the socket(s) that sent STUN requests on it (a client's, or both ICE peers'; never a
    /// STUN/TURN server's, which only answers). One without an application of its own takes the
    /// application taught for its client's or its server's socket (an ICE peer may open the flow
    /// towards the call's socket). Inherited knowledge is not taught further.
    fn relate_socket(&mut self, ctx: &DpiContext<'_>, now: u64) {
        if self.l4 != L4Proto::Udp || !self.facts.protocol.is_some_and(is_call_media) {
            return;
        }
        if let Some(app) = self.facts.app_hint {
            for (i, socket) in [self.client, self.server].into_iter().enumerate() {
                if self.facts.stun_requesters[i] && !self.taught[i] {
                    ctx.related.learn_socket(socket, app, now);
                    self.taught[i] = true;
                }
            }
        } else if self.facts.related_app.is_none() {
            self.facts.related_app =
                ctx.related.socket_app(self.client, now).or_else(|| ctx.related.socket_app(self.server, now));
        }
    }

    /// A call-media flow with no application yet (of its own, of its socket, or named by the
    /// signature database from weaker evidence such as the server address or port).
    fn awaits_socket(&self) -> bool {
        self.l4 == L4Proto::Udp
            && self.facts.protocol.is_some_and(is_call_media)
            && self.facts.app_hint.is_none()
            && self.facts.related_app.is_none()
            && self.facts.app.is_none()
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
        // Knowledge that came late (the flow ended while it waited) still names it.
        self.relate_socket(ctx, now);
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
            } else if let Some(app) = self.facts.related_app {
                self.facts.app = Some(std::sync::Arc::from(app));
                self.facts.app_source = Some(AppSource::Socket);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::facts::Announced;
    use crate::view::Dir;
    use std::net::Ipv4Addr;

    const SEC: u64 = 1_000_000;
    const CLIENT: [u8; 4] = [192, 168, 12, 169];

    fn ip(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    struct World {
        sigdb: SignatureDb,
        dns: DnsCache,
        related: RelatedFlows,
        config: ClassifierConfig,
    }

    impl World {
        fn new() -> Self {
            World {
                sigdb: SignatureDb::builtin().expect("builtin signatures"),
                dns: DnsCache::new(64),
                related: RelatedFlows::new(64),
                config: ClassifierConfig::default(),
            }
        }
        fn ctx(&self) -> DpiContext<'_> {
            DpiContext { sigdb: &self.sigdb, dns_cache: &self.dns, related: &self.related, config: self.config }
        }
    }

    /// One flow being classified, fed packet by packet.
    struct Flow {
        c: Classifier,
        l4: L4Proto,
        client: (IpAddr, u16),
        server: (IpAddr, u16),
        index: u32,
        seq: [u32; 2],
    }

    impl Flow {
        fn new(l4: L4Proto, client: ([u8; 4], u16), server: ([u8; 4], u16)) -> Self {
            let (client, server) = ((ip(client.0), client.1), (ip(server.0), server.1));
            Flow { c: Classifier::new(l4, client, server), l4, client, server, index: 0, seq: [1, 1] }
        }
        fn send(&mut self, w: &World, dir: Dir, flags: u8, payload: &[u8], t: u64) {
            let pkt = PacketView {
                dir,
                l4: self.l4,
                client: self.client,
                server: self.server,
                payload,
                tcp_seq: if flags & tcp::SYN != 0 { 0 } else { self.seq[dir.index()] },
                tcp_flags: flags,
                index: self.index,
                ts_micros: t,
            };
            self.seq[dir.index()] += payload.len() as u32;
            self.index += 1;
            self.c.on_packet(&pkt, &w.ctx());
        }
        fn facts(&self) -> &Facts {
            self.c.facts()
        }
        fn finish(&mut self, w: &World, t: u64) {
            self.c.finish(&w.ctx(), self.index, t);
        }
    }

    use crate::dissect::testutil::stun_message as stun;

    fn binding() -> Vec<u8> {
        stun(0x0001, &[])
    }

    /// A TURN allocation whose 401 answer carries REALM "signal.org" (stun_signal.pcapng).
    fn signal_allocation(w: &World, client_port: u16, t: u64) -> Flow {
        let mut f = Flow::new(L4Proto::Udp, (CLIENT, client_port), ([35, 158, 183, 167], 3478));
        f.send(w, Dir::ToServer, 0, &stun(0x0003, &[(0x0019, &[17, 0, 0, 0])]), t);
        f.send(w, Dir::ToClient, 0, &stun(0x0113, &[(0x0009, &[0, 0, 4, 1]), (0x0014, b"signal.org")]), t + 1);
        assert_eq!(f.facts().app_hint, Some("SignalVoip"));
        f
    }

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 111];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef]);
        p.resize(60, 0x55);
        p
    }

    #[test]
    fn an_announced_connection_is_named_at_its_first_packet() {
        let w = World::new();
        let (client, server) = ([192, 168, 1, 212], [90, 130, 70, 73]);
        // The control connection: greeting (identified at once), then the PASV reply.
        let mut ctl = Flow::new(L4Proto::Tcp, (client, 50694), (server, 21));
        ctl.send(&w, Dir::ToServer, tcp::SYN, &[], 0);
        ctl.send(&w, Dir::ToClient, tcp::SYN | tcp::ACK, &[], 1);
        ctl.send(&w, Dir::ToClient, 0, b"220 (vsFTPd 3.0.3)\r\n", 2);
        assert_eq!(ctl.c.identified_after(), Some(3), "a policy can decide the control connection now");
        assert!(ctl.c.wants_more(), "still reading the control lines");
        ctl.send(&w, Dir::ToServer, 0, b"PASV\r\n", 3);
        ctl.send(&w, Dir::ToClient, 0, b"227 Entering Passive Mode (90,130,70,73,100,85).\r\n", 4);
        assert!(ctl.facts().announced.is_empty(), "taken by the classifier");
        assert_eq!(w.related.len(), 1);
        // The data connection: named at its SYN, before any dissector, and complete.
        let mut data = Flow::new(L4Proto::Tcp, (client, 50695), (server, 25685));
        data.send(&w, Dir::ToServer, tcp::SYN, &[], 5 * SEC);
        assert!(!data.c.wants_more());
        let f = data.facts();
        assert_eq!(
            (f.protocol, f.app.as_deref(), f.category.as_deref()),
            (Some("FTP_DATA"), Some("FTP_DATA"), Some("FileSharing"))
        );
        assert_eq!(f.app_source, Some(AppSource::Announced));
        assert_eq!(data.c.identified_after(), Some(1));
        // One-shot: a second connection to the port is not the data connection.
        let mut again = Flow::new(L4Proto::Tcp, (client, 50696), (server, 25685));
        again.send(&w, Dir::ToServer, tcp::SYN, &[], 6 * SEC);
        again.send(&w, Dir::ToServer, 0, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 6 * SEC);
        assert_eq!((again.facts().protocol, again.facts().app_source), (Some("HTTP"), None));
        // Expired announcements name nothing.
        w.related.expect(&Announced { protocol: "FTP_DATA", from: ip(client), to: (ip(server), 2000) }, 0);
        let mut late = Flow::new(L4Proto::Tcp, (client, 50697), (server, 2000));
        late.send(&w, Dir::ToServer, tcp::SYN, &[], (crate::related::ANNOUNCED_TTL_SECS + 1) * SEC);
        assert_eq!(late.facts().protocol, None);
    }

    #[test]
    fn flows_of_a_call_socket_take_its_application() {
        let w = World::new();
        let google = ([172, 253, 121, 127], 19302);
        // An ICE check to a public STUN server starts before the allocation that names the call.
        let mut early = Flow::new(L4Proto::Udp, (CLIENT, 43068), google);
        early.send(&w, Dir::ToServer, 0, &binding(), 0);
        assert_eq!(early.facts().protocol, Some("STUN"));
        let turn = signal_allocation(&w, 43068, SEC);
        assert_eq!(turn.facts().app_source, None, "its own evidence");
        early.send(&w, Dir::ToClient, 0, &stun(0x0101, &[]), 2 * SEC);
        early.finish(&w, 3 * SEC);
        let f = early.facts();
        assert_eq!(
            (f.app.as_deref(), f.app_source, f.hostname.as_deref()),
            (Some("SignalVoip"), Some(AppSource::Socket), None)
        );
        assert_eq!(f.category.as_deref(), Some("VoIP"));
        // A flow that starts later has it at once (here: a peer's check towards the socket, whose
        // client is the peer).
        let mut peer = Flow::new(L4Proto::Udp, ([18, 195, 131, 143], 61156), (CLIENT, 43068));
        peer.send(&w, Dir::ToServer, 0, &binding(), 4 * SEC);
        peer.finish(&w, 5 * SEC);
        assert_eq!(peer.facts().app.as_deref(), Some("SignalVoip"));
        // Another socket of the same host, another host's socket to the same TURN server (a
        // server's socket is never taught), a non-media flow of the socket: nothing.
        let mut other_port = Flow::new(L4Proto::Udp, (CLIENT, 43069), google);
        other_port.send(&w, Dir::ToServer, 0, &binding(), 4 * SEC);
        other_port.finish(&w, 5 * SEC);
        assert_eq!(other_port.facts().app, None);
        let mut other_client = Flow::new(L4Proto::Udp, ([192, 168, 12, 170], 43068), ([35, 158, 183, 167], 3478));
        other_client.send(&w, Dir::ToServer, 0, &binding(), 4 * SEC);
        other_client.finish(&w, 5 * SEC);
        assert_eq!(other_client.facts().app, None);
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";
        let mut query = Flow::new(L4Proto::Udp, (CLIENT, 43068), ([8, 8, 8, 8], 53));
        query.send(&w, Dir::ToServer, 0, dns, 4 * SEC);
        query.finish(&w, 5 * SEC);
        assert_eq!((query.facts().protocol, query.facts().app_source), (Some("DNS"), None));
        // TCP from the same address and port is another socket.
        let mut tcp_flow = Flow::new(L4Proto::Tcp, (CLIENT, 43068), google);
        tcp_flow.send(&w, Dir::ToServer, 0, &binding(), 4 * SEC);
        tcp_flow.finish(&w, 5 * SEC);
        assert_eq!(tcp_flow.facts().app, None);
        // Inherited knowledge is not taught further: the peer's socket learned nothing.
        assert_eq!(w.related.socket_app((ip([18, 195, 131, 143]), 61156), 6 * SEC), None);
        // A call socket idle for longer than SOCKET_IDLE_SECS is forgotten.
        let t = 6 * SEC + crate::related::SOCKET_IDLE_SECS * SEC;
        let mut stale = Flow::new(L4Proto::Udp, (CLIENT, 43068), google);
        stale.send(&w, Dir::ToServer, 0, &binding(), t);
        stale.finish(&w, t);
        assert_eq!(stale.facts().app, None);
    }

    #[test]
    fn a_forged_response_teaches_no_socket() {
        // One datagram from an attacker towards a public STUN server, shaped as a TURN 401 answer
        // with REALM signal.org: it must not make the server's socket a Signal call socket for
        // everyone else's checks to it.
        let w = World::new();
        let google = ([74, 125, 250, 129], 19302);
        let mut evil = Flow::new(L4Proto::Udp, ([10, 0, 0, 66], 5555), google);
        evil.send(&w, Dir::ToServer, 0, &stun(0x0113, &[(0x0014, b"signal.org")]), 0);
        evil.finish(&w, SEC);
        assert_eq!(w.related.len(), 0);
        let mut victim = Flow::new(L4Proto::Udp, ([10, 0, 0, 7], 40000), google);
        victim.send(&w, Dir::ToServer, 0, &binding(), 2 * SEC);
        victim.send(&w, Dir::ToClient, 0, &stun(0x0101, &[]), 2 * SEC + 1);
        victim.finish(&w, 3 * SEC);
        assert_eq!(victim.facts().app.as_deref(), None);
    }

    #[test]
    fn media_waits_for_its_socket_within_the_budget() {
        let mut w = World::new();
        w.config.max_packets = 10;
        let peer = ([93, 33, 118, 87], 41107);
        // RTP is recognised at its third packet, then waits for the socket's application.
        let mut media = Flow::new(L4Proto::Udp, (CLIENT, 49526), peer);
        for i in 0..4 {
            media.send(&w, Dir::ToServer, 0, &rtp(i), u64::from(i) * 20_000);
        }
        assert_eq!(media.facts().protocol, Some("RTP"));
        assert!(media.c.wants_more());
        assert_eq!(media.c.identified_after(), Some(3), "identified: a policy decides at once");
        signal_allocation(&w, 49526, SEC);
        media.send(&w, Dir::ToServer, 0, &rtp(4), SEC + 20_000);
        assert!(!media.c.wants_more(), "complete once the application came");
        assert_eq!(media.c.identified_after(), Some(3));
        assert_eq!(
            (media.facts().app.as_deref(), media.facts().app_source),
            (Some("SignalVoip"), Some(AppSource::Socket))
        );
        // Without knowledge, the packet budget ends the wait.
        let mut alone = Flow::new(L4Proto::Udp, (CLIENT, 50000), peer);
        for i in 0..9 {
            alone.send(&w, Dir::ToServer, 0, &rtp(i), u64::from(i) * 20_000);
            assert!(alone.c.wants_more(), "packet {i}");
        }
        alone.send(&w, Dir::ToServer, 0, &rtp(9), 200_000);
        assert!(!alone.c.wants_more());
        assert_eq!((alone.facts().protocol, alone.facts().app.as_deref()), (Some("RTP"), None));
        assert_eq!(alone.c.identified_after(), Some(3));
    }
}
