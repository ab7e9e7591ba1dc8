//! A flow: both directions of one conversation, keyed by a direction-free 5-tuple.

use crate::policy::{PolicyMatch, RuleAction};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::sync::Arc;
use vigil_wire::{L4Proto, PacketInfo};

/// Direction-free key: the two endpoints are stored in a fixed order so that a packet and its
/// reply find the same entry. Which endpoint is the client is recorded in the [`Flow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub l4: L4Proto,
    pub lo: (IpAddr, u16),
    pub hi: (IpAddr, u16),
}

/// Which way a packet travels relative to the flow's client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToServer,
    ServerToClient,
}

impl FlowKey {
    /// The key of a packet, and whether the packet travels from `lo` to `hi`.
    pub fn of(info: &PacketInfo<'_>) -> (FlowKey, bool) {
        Self::between(info.l4, (info.src, info.src_port), (info.dst, info.dst_port))
    }

    /// The key of the conversation between `a` and `b`, and whether `a` is its `lo` end.
    pub fn between(l4: L4Proto, a: (IpAddr, u16), b: (IpAddr, u16)) -> (FlowKey, bool) {
        if a <= b {
            (FlowKey { l4, lo: a, hi: b }, true)
        } else {
            (FlowKey { l4, lo: b, hi: a }, false)
        }
    }
}

/// Enough TCP state to know whether a connection is opening, open or over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TcpState {
    /// SYN seen, no answer yet.
    SynSent,
    /// SYN+ACK seen.
    SynReceived,
    Established,
    /// A FIN seen from one side.
    Closing,
    /// FINs both ways, or a RST.
    Closed,
}

/// Why a flow record was emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Fin,
    Rst,
    Timeout,
    Eviction,
    Shutdown,
}

/// Per-direction counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub packets: u64,
    pub bytes: u64,
}

/// The decision taken for a flow, kept so its later packets get the same verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowDecision {
    pub action: RuleAction,
    /// Name of the rule that decided, None for the policy default.
    pub rule: Option<Arc<str>>,
    /// The packet mark of a `mark` rule.
    pub mark: Option<u32>,
    /// Report this flow (the rule's `log`).
    pub log: bool,
    /// Reject answers sent so far.
    pub answers: u8,
}

impl FlowDecision {
    /// The decision a policy match makes (no reject answer sent yet).
    pub fn from_match(m: PolicyMatch) -> FlowDecision {
        FlowDecision { action: m.action, rule: m.rule, mark: m.mark, log: m.log, answers: 0 }
    }
}

#[derive(Debug)]
pub struct Flow {
    /// Unique per session (interim updates of the session reuse it).
    pub id: u64,
    pub key: FlowKey,
    /// True when the client is `key.lo`.
    pub client_is_lo: bool,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub c2s: Counters,
    pub s2c: Counters,
    pub tcp: Option<TcpState>,
    /// FIN seen from client / server (TCP).
    pub fin_c2s: bool,
    pub fin_s2c: bool,
    /// First packet seen was not the start of the connection (picked up mid-stream).
    pub midstream: bool,
    pub decision: Option<FlowDecision>,
    /// Set when the connection ended (FIN both ways, RST): reported as the end reason.
    pub ended_by: Option<EndReason>,
    /// Set once the shell told the kernel to stop queueing this flow.
    pub offloaded: bool,
    /// Application-layer facts, filled when classification completes.
    pub l7: L7Facts,
    /// Classification in progress (None when done or disabled).
    pub classifier: Option<Box<vigil_dpi::Classifier>>,
    pub in_ifindex: Option<u32>,
    pub out_ifindex: Option<u32>,
    pub src_mac: Option<[u8; 6]>,
    /// Interface names, when the shell told the pipeline.
    pub in_if: Option<Arc<str>>,
    pub out_if: Option<Arc<str>>,
    /// When the flow was last reported (an interim update).
    pub last_reported: Timestamp,
    /// Counters came from the kernel's conntrack accounting (offloaded flows).
    pub kernel_counted: bool,
    /// Packets of this flow the shell is holding until the decision.
    pub held: u32,
}

/// What is known about the flow's application layer, once classification completed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct L7Facts {
    pub protocol: Option<Arc<str>>,
    pub protocol_guessed: bool,
    pub app: Option<Arc<str>>,
    pub category: Option<Arc<str>>,
    pub hostname: Option<Arc<str>>,
    pub name_source: Option<&'static str>,
    /// Another flow taught the protocol or application ("announced", "socket").
    pub app_source: Option<&'static str>,
    pub ja4: Option<Arc<str>>,
    /// ALPN offered by the client, and the one the server chose.
    pub alpn: Vec<String>,
    pub alpn_selected: Option<String>,
    /// Flow packets it took to identify the flow (protocol, and its name where it carries one).
    pub dpi_packets: Option<u32>,
    /// What only some flows carry (TLS version, certificate names, HTTP request, banners, DHCP),
    /// boxed so that a flow without any costs one pointer.
    pub details: Option<Box<L7Details>>,
}

/// The application-layer facts only some flows have: in a flow boxed (see [`L7Facts::details`]),
/// in a [`FlowRecord`] (and the report store's rows) flattened into fields of these names. Absent
/// ones (None, false, empty) are left out of a record's JSON, and default when a line lacks them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct L7Details {
    /// Negotiated TLS version ("TLSv1.3", "TLSv1.2", ...), when the ServerHello was seen (also for
    /// STARTTLS, DTLS: "DTLSv1.2").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<String>,
    /// The ClientHello offered Encrypted Client Hello: `hostname` is the outer (public) SNI.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ech: bool,
    /// Names in the server certificate (subject CN and SANs), when it travels in the clear (TLS 1.2
    /// and older).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cert_names: Vec<String>,
    /// HTTP/1.x request method and target of the first request ("GET", "/index.html"), the query
    /// string left out (it may carry credentials).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_path: Option<String>,
    /// HTTP (and SIP, gQUIC) User-Agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's and server's banners: SSH identification strings ("SSH-2.0-OpenSSH_9.2p1
    /// Debian-2"), the HTTP `Server` header (server side), a STUN SOFTWARE attribute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_banner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_banner: Option<String>,
    /// DHCP client hostname (option 12) and vendor class identifier (option 60).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_hostname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_vendor_class: Option<String>,
}

impl L7Details {
    /// The details in `f`, None when it has none.
    fn from_facts(f: &vigil_dpi::Facts) -> Option<Box<L7Details>> {
        let d = L7Details {
            tls_version: f.tls_version.map(String::from),
            ech: f.ech,
            cert_names: f.cert_names.clone(),
            http_method: f.http_method.clone(),
            // Without its query string: "?token=..." and the like must not reach the reports.
            http_path: f.http_path.as_deref().map(|p| p.split(['?', '#']).next().unwrap_or_default().to_owned()),
            user_agent: f.user_agent.clone(),
            client_banner: f.client_banner.clone(),
            server_banner: f.server_banner.clone(),
            dhcp_hostname: f.dhcp_hostname.clone(),
            dhcp_vendor_class: f.dhcp_vendor_class.clone(),
        };
        (d != L7Details::default()).then(|| Box::new(d))
    }

    /// Serializes every field, the absent ones too (null, false, []): for `serialize_with` where
    /// the fields are fixed columns (the report store's rows, their CSV).
    pub fn serialize_all<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut m = s.serialize_struct("L7Details", 10)?;
        m.serialize_field("tls_version", &self.tls_version)?;
        m.serialize_field("ech", &self.ech)?;
        m.serialize_field("cert_names", &self.cert_names)?;
        m.serialize_field("http_method", &self.http_method)?;
        m.serialize_field("http_path", &self.http_path)?;
        m.serialize_field("user_agent", &self.user_agent)?;
        m.serialize_field("client_banner", &self.client_banner)?;
        m.serialize_field("server_banner", &self.server_banner)?;
        m.serialize_field("dhcp_hostname", &self.dhcp_hostname)?;
        m.serialize_field("dhcp_vendor_class", &self.dhcp_vendor_class)?;
        m.end()
    }
}

impl L7Facts {
    pub fn from_classifier(c: &vigil_dpi::Classifier) -> Self {
        let f = c.facts();
        L7Facts {
            protocol: f.protocol.map(Arc::from),
            protocol_guessed: f.protocol_guessed,
            app: f.app.clone(),
            category: f.category.clone(),
            hostname: f.hostname.as_deref().map(Arc::from),
            name_source: f.name_source.map(|s| s.as_str()),
            app_source: f.app_source.map(|s| s.as_str()),
            ja4: f.ja4.as_deref().map(Arc::from),
            alpn: f.alpn_offered.clone(),
            alpn_selected: f.alpn.clone(),
            dpi_packets: c.identified_after(),
            details: L7Details::from_facts(f),
        }
    }
}

impl Flow {
    /// Is the flow's protocol HTTP/1.x (as far as classification got)? Only such a client can
    /// read the HTTP/1.1 block page; an HTTP/2 (h2c, "HTTP2") flow is answered with a reset.
    pub fn l7_protocol_is_http(&self) -> bool {
        match &self.classifier {
            Some(c) => c.facts().protocol == Some("HTTP"),
            None => self.l7.protocol.as_deref() == Some("HTTP"),
        }
    }

    pub fn client(&self) -> (IpAddr, u16) {
        if self.client_is_lo {
            self.key.lo
        } else {
            self.key.hi
        }
    }
    pub fn server(&self) -> (IpAddr, u16) {
        if self.client_is_lo {
            self.key.hi
        } else {
            self.key.lo
        }
    }
    pub fn direction(&self, lo_to_hi: bool) -> Direction {
        if lo_to_hi == self.client_is_lo {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        }
    }

    /// The flow as reported: `src` is the client (the side that opened it).
    pub fn record(&self, end: EndReason) -> FlowRecord {
        let (src, sport) = self.client();
        let (dst, dport) = self.server();
        let (verdict, rule) = match &self.decision {
            Some(d) => (FlowVerdict::from(d.action), d.rule.clone()),
            None => (FlowVerdict::Undecided, None),
        };
        FlowRecord {
            id: self.id,
            community_id: community_id(self.key.l4, (src, sport), (dst, dport)),
            in_if: self.in_if.as_deref().map(String::from),
            out_if: self.out_if.as_deref().map(String::from),
            client_mac: self
                .src_mac
                .map(|m| format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])),
            interim: false,
            bytes_source: if self.kernel_counted { "conntrack" } else { "vigil" }.into(),
            proto: self.key.l4.name().into_owned(),
            src,
            sport,
            dst,
            dport,
            protocol: self.l7.protocol.clone().unwrap_or_else(|| Arc::from("Unknown")),
            protocol_guessed: self.l7.protocol_guessed,
            app: self.l7.app.clone(),
            category: self.l7.category.clone(),
            hostname: self.l7.hostname.clone(),
            name_source: self.l7.name_source.map(String::from),
            app_source: self.l7.app_source.map(String::from),
            ja4: self.l7.ja4.clone(),
            alpn: self.l7.alpn.clone(),
            alpn_selected: self.l7.alpn_selected.clone(),
            dpi_packets: self.l7.dpi_packets,
            details: self.l7.details.as_deref().cloned().unwrap_or_default(),
            packets_c2s: self.c2s.packets,
            packets_s2c: self.s2c.packets,
            bytes_c2s: self.c2s.bytes,
            bytes_s2c: self.s2c.bytes,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
            verdict,
            rule,
            tcp_state: self.tcp,
            end_reason: end,
            offloaded: self.offloaded,
            midstream: self.midstream,
        }
    }
}

/// One line of `vigil replay --format jsonl` and of the runtime's flow log. The field names are a
/// public interface: keep them stable.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FlowRecord {
    /// Unique per session; an interim update and the final record of one session share it.
    #[serde(default)]
    pub id: u64,
    /// Community ID v1 of the 5-tuple (corelight/community-id-spec), to join with other tools.
    #[serde(default)]
    pub community_id: String,
    #[serde(default)]
    pub in_if: Option<String>,
    #[serde(default)]
    pub out_if: Option<String>,
    /// The client's MAC address, when the gateway saw it (clients on its own segments).
    #[serde(default)]
    pub client_mac: Option<String>,
    /// An interim update of a session still running (long sessions are reported periodically;
    /// the final record replaces it).
    #[serde(default)]
    pub interim: bool,
    /// Where the packet and byte counts come from: "vigil" (every packet passed through vigil)
    /// or "conntrack" (an offloaded flow: the kernel's accounting of the whole connection).
    #[serde(default)]
    pub bytes_source: String,
    pub proto: String,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub protocol: Arc<str>,
    /// `protocol` is the usual one for the server port, not recognised in the payload.
    #[serde(default)]
    pub protocol_guessed: bool,
    pub app: Option<Arc<str>>,
    pub category: Option<Arc<str>>,
    pub hostname: Option<Arc<str>>,
    /// Where the hostname came from: "sni", "http", "dns", "dns-cache", "certificate", "protocol".
    #[serde(default)]
    pub name_source: Option<String>,
    /// When another flow taught this one its protocol or application: "announced" (an FTP control
    /// connection announced this data connection: protocol "FTP_DATA"), "socket" (an earlier flow
    /// of the same UDP socket was identified as a call application). Left out when the flow was
    /// named by its own evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_source: Option<String>,
    pub ja4: Option<Arc<str>>,
    /// ALPN protocols the client offered, in order.
    #[serde(default)]
    pub alpn: Vec<String>,
    /// ALPN the server selected, when seen.
    #[serde(default)]
    pub alpn_selected: Option<String>,
    /// Flow packets it took to identify the flow: its protocol, and its name where it carries one
    /// (a TLS flow counts up to its ClientHello's last packet).
    #[serde(default)]
    pub dpi_packets: Option<u32>,
    /// What only some flows carry (TLS version, certificate names, HTTP request, banners, DHCP):
    /// fields of their own in the JSON, left out when absent.
    #[serde(flatten)]
    pub details: L7Details,
    pub packets_c2s: u64,
    pub packets_s2c: u64,
    pub bytes_c2s: u64,
    pub bytes_s2c: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub verdict: FlowVerdict,
    pub rule: Option<Arc<str>>,
    pub tcp_state: Option<TcpState>,
    pub end_reason: EndReason,
    /// The kernel was told to stop queueing it: later packets are not in these counters.
    pub offloaded: bool,
    pub midstream: bool,
}

/// A flow's verdict as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowVerdict {
    Allow,
    Block,
    Reject,
    Mark,
    /// The flow ended before the policy could decide it.
    Undecided,
}

impl From<RuleAction> for FlowVerdict {
    fn from(a: RuleAction) -> Self {
        match a {
            RuleAction::Allow => FlowVerdict::Allow,
            RuleAction::Block => FlowVerdict::Block,
            RuleAction::Reject => FlowVerdict::Reject,
            RuleAction::Mark => FlowVerdict::Mark,
        }
    }
}

impl std::fmt::Display for FlowVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FlowVerdict::Allow => "allow",
            FlowVerdict::Block => "block",
            FlowVerdict::Reject => "reject",
            FlowVerdict::Mark => "mark",
            FlowVerdict::Undecided => "undecided",
        })
    }
}

/// Community ID v1 (https://github.com/corelight/community-id-spec), seed 0: "1:" + base64 of
/// SHA-1 over seed, the ordered addresses, protocol, a zero pad byte and the ordered ports. For
/// ICMP the ports are the type and the type of its counterpart, as the spec says; vigil keys ICMP
/// flows by echo identifier, so echo flows use the identifier for both (documented deviation).
pub fn community_id(l4: vigil_wire::L4Proto, a: (IpAddr, u16), b: (IpAddr, u16)) -> String {
    use sha1::{Digest, Sha1};
    let bytes = |ip: IpAddr| -> Vec<u8> {
        match ip {
            IpAddr::V4(v) => v.octets().to_vec(),
            IpAddr::V6(v) => v.octets().to_vec(),
        }
    };
    let (ba, bb) = (bytes(a.0), bytes(b.0));
    let ((ia, pa), (ib, pb)) =
        if (ba.as_slice(), a.1) <= (bb.as_slice(), b.1) { ((ba, a.1), (bb, b.1)) } else { ((bb, b.1), (ba, a.1)) };
    let mut h = Sha1::new();
    h.update(0u16.to_be_bytes());
    h.update(&ia);
    h.update(&ib);
    h.update([l4.number(), 0]);
    if matches!(l4, vigil_wire::L4Proto::Tcp | vigil_wire::L4Proto::Udp | vigil_wire::L4Proto::Other(132)) {
        h.update(pa.to_be_bytes());
        h.update(pb.to_be_bytes());
    }
    format!("1:{}", base64(&h.finalize()))
}

/// Standard base64 with padding (20 bytes of SHA-1 only: not worth a crate).
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if c.len() > 1 { T[(n >> 6) as usize & 63] as char } else { '=' });
        out.push(if c.len() > 2 { T[n as usize & 63] as char } else { '=' });
    }
    out
}

/// One answered DNS query (the DNS log).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DnsRecord {
    pub ts: Timestamp,
    /// "udp" or "tcp" (DNS over TCP), as in flow records.
    #[serde(default = "udp_name")]
    pub proto: String,
    pub client: IpAddr,
    pub sport: u16,
    pub server: IpAddr,
    pub dport: u16,
    pub query: String,
    /// Query type number (1 A, 28 AAAA, 5 CNAME, 65 HTTPS...).
    pub qtype: u16,
    pub rcode: u8,
    /// Addresses and CNAME targets, as text.
    pub answers: Vec<String>,
    /// From the query to this answer, when the query was seen.
    pub latency_us: Option<u64>,
    /// The session (flow id) the message belongs to.
    pub flow_id: u64,
}

fn udp_name() -> String {
    "udp".into()
}

/// A flow blocked or rejected by the policy (one event per flow, at its decision).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlockRecord {
    pub ts: Timestamp,
    pub flow_id: u64,
    pub proto: String,
    pub client: IpAddr,
    pub sport: u16,
    pub server: IpAddr,
    pub dport: u16,
    /// The rule, or None for the policy default.
    pub rule: Option<Arc<str>>,
    /// "block" or "reject".
    pub action: FlowVerdict,
    /// Why: "policy" for a rule, "default" for the policy default, "revoked" when a reload or a
    /// schedule turned an allowed flow into a blocked one.
    pub reason: String,
    pub protocol: Option<Arc<str>>,
    pub hostname: Option<Arc<str>>,
    pub app: Option<Arc<str>>,
    pub category: Option<Arc<str>>,
}

#[cfg(test)]
mod community_id_tests {
    use super::*;
    use vigil_wire::L4Proto;

    #[test]
    fn matches_the_spec_examples() {
        // Baseline values from the community-id-spec repository (seed 0).
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            community_id(L4Proto::Tcp, (a("128.232.110.120"), 34855), (a("66.35.250.204"), 80)),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        // Direction does not matter.
        assert_eq!(
            community_id(L4Proto::Tcp, (a("66.35.250.204"), 80), (a("128.232.110.120"), 34855)),
            "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
        );
        assert_eq!(
            community_id(L4Proto::Udp, (a("192.168.1.52"), 54585), (a("8.8.8.8"), 53)),
            "1:d/FP5EW3wiY1vCndhwleRRKHowQ="
        );
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
    }
}

#[cfg(test)]
mod record_json_tests {
    use super::*;

    /// A line from before the application-layer details still parses (they default to none), and
    /// a record without them prints none of their keys.
    #[test]
    fn details_are_optional_both_ways() {
        let line = r#"{"proto":"tcp","src":"10.0.0.2","sport":51234,"dst":"93.184.216.34","dport":22,
            "protocol":"SSH","app":null,"category":null,"hostname":null,"ja4":null,"packets_c2s":5,
            "packets_s2c":6,"bytes_c2s":700,"bytes_s2c":4000,"first_seen":1700000000.25,
            "last_seen":1700000001.5,"verdict":"allow","rule":null,"tcp_state":"closed","end_reason":"fin",
            "offloaded":false,"midstream":false}"#;
        let rec: FlowRecord = serde_json::from_str(line).unwrap();
        assert_eq!(rec.details, L7Details::default());
        let v = serde_json::to_value(&rec).unwrap();
        for k in [
            "tls_version",
            "ech",
            "cert_names",
            "http_method",
            "http_path",
            "user_agent",
            "client_banner",
            "server_banner",
            "dhcp_hostname",
            "dhcp_vendor_class",
        ] {
            assert!(v.get(k).is_none(), "{k}");
        }
        // With them: the names a SIEM expects, and back.
        let details = L7Details {
            tls_version: Some("TLSv1.3".into()),
            ech: true,
            cert_names: vec!["a.example".into()],
            client_banner: Some("SSH-2.0-OpenSSH_9.2p1".into()),
            dhcp_vendor_class: Some("MSFT 5.0".into()),
            ..L7Details::default()
        };
        let rec = FlowRecord { details, ..rec };
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["tls_version"], "TLSv1.3");
        assert_eq!(v["ech"], true);
        assert_eq!(v["cert_names"], serde_json::json!(["a.example"]));
        assert_eq!(v["client_banner"], "SSH-2.0-OpenSSH_9.2p1");
        assert_eq!(v["dhcp_vendor_class"], "MSFT 5.0");
        assert!(v.get("user_agent").is_none());
        assert_eq!(serde_json::from_value::<FlowRecord>(v).unwrap(), rec);
    }

    /// `serialize_all` writes the fields the derived `Serialize` writes, in the same order, and
    /// the absent ones as null, false and [].
    #[test]
    fn serialize_all_has_every_field() {
        let all = |d: &L7Details| {
            let mut out = Vec::new();
            d.serialize_all(&mut serde_json::Serializer::new(&mut out)).unwrap();
            String::from_utf8(out).unwrap()
        };
        let full = L7Details {
            tls_version: Some("TLSv1.3".into()),
            ech: true,
            cert_names: vec!["a.example".into()],
            http_method: Some("GET".into()),
            http_path: Some("/".into()),
            user_agent: Some("curl/8.5.0".into()),
            client_banner: Some("SSH-2.0-a".into()),
            server_banner: Some("SSH-2.0-b".into()),
            dhcp_hostname: Some("host".into()),
            dhcp_vendor_class: Some("MSFT 5.0".into()),
        };
        assert_eq!(all(&full), serde_json::to_string(&full).unwrap());
        assert_eq!(
            all(&L7Details::default()),
            r#"{"tls_version":null,"ech":false,"cert_names":[],"http_method":null,"http_path":null,"user_agent":null,"client_banner":null,"server_banner":null,"dhcp_hostname":null,"dhcp_vendor_class":null}"#
        );
        assert_eq!(serde_json::to_string(&L7Details::default()).unwrap(), "{}");
    }
}
