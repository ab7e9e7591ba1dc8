//! The admin's policy: an ordered list of rules, first match wins, then the default.
//!
//! Rules are deserialized straight into checked types (CIDRs, port ranges, L4 names), so a typo is
//! reported by the TOML parser with its line and column, and a compiled [`Policy`] cannot hold an
//! invalid rule.

use ipnet::IpNet;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use std::net::IpAddr;
use std::sync::Arc;
use vigil_wire::L4Proto;

pub mod lists;
pub mod schedule;

/// What a rule does to the flows it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    #[default]
    Allow,
    /// Silent drop.
    Block,
    /// Drop, and tell both ends: TCP resets (an HTTP block page for plain HTTP requests), ICMP
    /// port unreachable for UDP (browsers fall back from QUIC to TCP at once).
    Reject,
    /// Allow, setting the rule's `mark` on the flow's packets (for shaping or policy routing).
    Mark,
}

impl RuleAction {
    pub fn verdict_name(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Block => "block",
            RuleAction::Reject => "reject",
            RuleAction::Mark => "mark",
        }
    }
    /// Does the flow's traffic pass?
    pub fn passes(self) -> bool {
        matches!(self, RuleAction::Allow | RuleAction::Mark)
    }
}

/// `[policy]` as written in the config file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// What happens to flows no rule matches.
    #[serde(default)]
    pub default: RuleAction,
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Time zone for schedules ("Europe/Rome"); default: the gateway's own.
    #[serde(default)]
    pub timezone: Option<String>,
    /// The networks on the inside, for `direction` (default: RFC 1918, CGNAT, link-local, ULA).
    #[serde(default)]
    pub lan: Vec<Cidr>,
}

/// Which way a flow goes relative to the `[policy] lan` networks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FlowDirection {
    /// From the inside to the outside.
    Outbound,
    /// From the outside to the inside.
    Inbound,
    /// Both ends inside.
    Internal,
}

/// A MAC address, "aa:bb:cc:dd:ee:ff" (or with dashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.trim().split([':', '-']).collect();
        let bad = || format!("`{s}` is not a MAC address (aa:bb:cc:dd:ee:ff)");
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut m = [0u8; 6];
        for (b, p) in m.iter_mut().zip(parts) {
            if p.len() != 2 {
                return Err(bad());
            }
            *b = u8::from_str_radix(p, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(m))
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(de::Error::custom)
    }
}

/// A hostname pattern: "www.example.com" (exactly) or "*.example.com" (any name below).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    Exact(String),
    Below(String),
}

impl HostPattern {
    fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => host.eq_ignore_ascii_case(h),
            HostPattern::Below(suffix) => {
                host.len() > suffix.len() + 1
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
            }
        }
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let t = s.trim().trim_end_matches('.').to_ascii_lowercase();
        let (below, name) = match t.strip_prefix("*.") {
            Some(rest) => (true, rest.to_string()),
            None => (false, t.clone()),
        };
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| !l.is_empty() && l.len() <= 63)
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
        if !valid {
            return Err(de::Error::custom(format!(
                "`{s}` is not a hostname pattern (write `www.example.com` or `*.example.com`)"
            )));
        }
        Ok(if below { HostPattern::Below(name) } else { HostPattern::Exact(name) })
    }
}

/// One `[[policy.rules]]` entry. Every match is optional; those present are AND-ed and the values
/// inside one list are OR-ed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    pub action: RuleAction,
    #[serde(default)]
    pub src: Vec<Cidr>,
    #[serde(default)]
    pub dst: Vec<Cidr>,
    #[serde(default)]
    pub src_ports: Vec<PortRange>,
    #[serde(default)]
    pub dst_ports: Vec<PortRange>,
    #[serde(default)]
    pub l4: OneOrMany<L4Name>,
    /// Interfaces the flow's first packet arrived on / leaves by.
    #[serde(default)]
    pub interfaces_in: Vec<String>,
    #[serde(default)]
    pub interfaces_out: Vec<String>,
    /// Client MAC addresses (as seen by the gateway: clients on its own LAN segments).
    #[serde(default)]
    pub src_macs: Vec<MacAddr>,
    /// Named groups of clients (`[groups]`: addresses, networks and MAC addresses).
    #[serde(default)]
    pub groups: Vec<String>,
    /// L7 protocols ("TLS", "QUIC", "BitTorrent", ...), applications and categories as the
    /// signature database names them, hostnames (`www.example.com`, `*.example.com`).
    #[serde(default)]
    pub protocols: Vec<String>,
    #[serde(default)]
    pub apps: Vec<String>,
    #[serde(default)]
    pub categories: Vec<String>,
    #[serde(default)]
    pub hostnames: Vec<HostPattern>,
    /// Named lists (`[lists]`): a domain list matches the flow's hostname, an address list the
    /// server address.
    #[serde(default)]
    pub lists: Vec<String>,
    /// When the rule applies, in the gateway's time zone.
    #[serde(default)]
    pub schedule: Option<schedule::Schedule>,
    #[serde(default)]
    pub direction: Option<FlowDirection>,
    /// Matches only connections to an address no client resolved through the gateway's view of
    /// DNS (a client that bypasses the DNS filter with its own resolver, DoH, or hard-coded IPs).
    #[serde(default)]
    pub require_dns: bool,
    /// The mark set by `action = "mark"` (number or "0x..." string).
    #[serde(default)]
    pub mark: Option<Mark>,
    /// Write the flows this rule decides to the flow log (default true).
    #[serde(default = "yes")]
    pub log: bool,
}

fn yes() -> bool {
    true
}

/// A 32-bit mark: a number or a "0x..." string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark(pub u32);

impl<'de> Deserialize<'de> for Mark {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Text(String),
        }
        let v = match Raw::deserialize(d)? {
            Raw::Num(n) => {
                u32::try_from(n).map_err(|_| de::Error::custom(format!("mark {n} does not fit in 32 bits")))?
            }
            Raw::Text(s) => {
                let t = s.trim();
                match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => t.parse(),
                }
                .map_err(|_| de::Error::custom(format!("`{s}` is not a 32-bit mark (e.g. \"0x10\")")))?
            }
        };
        if v == 0 {
            return Err(de::Error::custom("a mark of 0 marks nothing"));
        }
        Ok(Mark(v))
    }
}

/// An address or network: "10.0.0.0/8", "2001:db8::/32", or a bare address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(pub IpNet);

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let s = s.trim();
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Cidr(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Cidr(IpNet::from(ip)));
        }
        Err(de::Error::custom(format!("`{s}` is not an IP address or CIDR network (e.g. 192.168.1.0/24, fd00::/8)")))
    }
}

/// A port or an inclusive range: `443` or `"8000-8999"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn contains(&self, p: u16) -> bool {
        (self.first..=self.last).contains(&p)
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(i64),
            Text(String),
        }
        let port = |n: i64| u16::try_from(n).map_err(|_| de::Error::custom(format!("port {n} is outside 0-65535")));
        match Raw::deserialize(d)? {
            Raw::Num(n) => {
                let p = port(n)?;
                Ok(PortRange { first: p, last: p })
            }
            Raw::Text(s) => {
                let parse = |t: &str| {
                    t.trim()
                        .parse::<i64>()
                        .map_err(|_| de::Error::custom(format!("`{s}` is not a port or a range like \"8000-8999\"")))
                };
                let (a, b) = match s.split_once('-') {
                    Some((a, b)) => (port(parse(a)?)?, port(parse(b)?)?),
                    None => {
                        let p = port(parse(&s)?)?;
                        (p, p)
                    }
                };
                if a > b {
                    return Err(de::Error::custom(format!("port range `{s}` is backwards")));
                }
                Ok(PortRange { first: a, last: b })
            }
        }
    }
}

/// An L4 protocol by name ("tcp", "udp", "icmp", "icmpv6", "gre", "esp", "igmp"... see
/// `L4Proto::from_name`) or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4Name(pub L4Proto);

impl<'de> Deserialize<'de> for L4Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        L4Proto::from_name(&s).map(L4Name).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown L4 protocol `{s}` (use a name such as tcp, udp, icmp, icmpv6, gre, esp, ah, sctp, igmp, ospf, vrrp, or a number 0-255)"
            ))
        })
    }
}

/// Accepts `"tcp"` as well as `["tcp", "udp"]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<T> Default for OneOrMany<T> {
    fn default() -> Self {
        OneOrMany(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw<T> {
            Many(Vec<T>),
            One(T),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Many(v) => OneOrMany(v),
            Raw::One(t) => OneOrMany(vec![t]),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy rule #{index} has an empty name")]
    EmptyName { index: usize },
    #[error("two policy rules are named `{0}`: rule names appear in reports and must be unique")]
    DuplicateName(String),
    #[error("policy rule `{rule}` matches ports but its `l4` excludes TCP, UDP and SCTP, so it can never match")]
    PortsWithoutPortProtocol { rule: String },
    #[error("policy rule `{rule}`: unknown {kind} `{name}`{hint}")]
    Unknown { rule: String, kind: &'static str, name: String, hint: String },
    #[error("policy rule `{rule}`: group `{group}` entry `{entry}` is not an address, network or MAC address")]
    BadGroupEntry { rule: String, group: String, entry: String },
    #[error("policy rule `{rule}`: action \"mark\" needs `mark = N`")]
    MarkMissing { rule: String },
    #[error("policy rule `{rule}`: `mark` is only for action \"mark\"")]
    MarkWithoutMarkAction { rule: String },
    #[error("[policy] timezone: {0}")]
    TimeZone(String),
}

/// What rules refer to by name, resolved when the policy is compiled: a bad name fails the whole
/// policy (and a reload keeps the running one).
pub struct CompileContext<'a> {
    /// `[groups]`: name -> addresses, networks and MAC addresses.
    pub groups: &'a std::collections::BTreeMap<String, Vec<String>>,
    /// `[lists]`, loaded.
    pub lists: &'a std::collections::HashMap<String, Arc<lists::NamedList>>,
    /// Application and category names are checked against the signature database.
    pub sigdb: Option<&'a vigil_dpi::SignatureDb>,
}

/// Sources a rule's groups resolve to.
#[derive(Debug, Clone, Default)]
struct Sources {
    nets: Vec<IpNet>,
    macs: Vec<[u8; 6]>,
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    pub action: RuleAction,
    pub mark: Option<u32>,
    pub log: bool,
    src: Vec<IpNet>,
    dst: Vec<IpNet>,
    src_ports: Vec<PortRange>,
    dst_ports: Vec<PortRange>,
    l4: Vec<L4Proto>,
    interfaces_in: Vec<String>,
    interfaces_out: Vec<String>,
    src_macs: Vec<[u8; 6]>,
    groups: Option<Sources>,
    protocols: Vec<String>,
    apps: Vec<Arc<str>>,
    categories: Vec<Arc<str>>,
    hostnames: Vec<HostPattern>,
    lists: Vec<Arc<lists::NamedList>>,
    schedule: Option<schedule::Schedule>,
    direction: Option<FlowDirection>,
    require_dns: bool,
}

/// A flow's application-layer facts, as far as classification got.
#[derive(Debug, Clone, Copy, Default)]
pub struct L7View<'a> {
    pub protocol: Option<&'a str>,
    pub app: Option<&'a str>,
    pub category: Option<&'a str>,
    pub hostname: Option<&'a str>,
}

/// What a rule is matched against: the flow's client and server side, as the flow sees them.
#[derive(Debug, Clone, Copy)]
pub struct FlowFacts<'a> {
    pub l4: L4Proto,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
    pub in_if: Option<&'a str>,
    pub out_if: Option<&'a str>,
    pub src_mac: Option<[u8; 6]>,
    /// None while classification has not identified the flow yet: rules that need L7 facts
    /// cannot be decided then.
    pub l7: Option<L7View<'a>>,
    /// Whether a client resolved the server address through DNS the gateway saw (None: unknown).
    pub resolved: Option<bool>,
    /// The time, microseconds since the UNIX epoch (for schedules).
    pub now_micros: u64,
}

impl<'a> FlowFacts<'a> {
    /// Facts with addresses and ports only (everything else unknown or absent).
    pub fn l3(l4: L4Proto, src: IpAddr, sport: u16, dst: IpAddr, dport: u16) -> Self {
        FlowFacts {
            l4,
            src,
            sport,
            dst,
            dport,
            in_if: None,
            out_if: None,
            src_mac: None,
            l7: Some(L7View::default()),
            resolved: None,
            now_micros: 0,
        }
    }
}

/// Three-valued match: a condition on facts not known yet is `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tri {
    Yes,
    No,
    Unknown,
}

impl Tri {
    fn from(b: bool) -> Tri {
        if b {
            Tri::Yes
        } else {
            Tri::No
        }
    }
    fn and(self, other: impl FnOnce() -> Tri) -> Tri {
        match self {
            Tri::No => Tri::No,
            Tri::Yes => other(),
            Tri::Unknown => match other() {
                Tri::No => Tri::No,
                _ => Tri::Unknown,
            },
        }
    }
}

impl Rule {
    fn matches(&self, f: &FlowFacts<'_>, policy: &Policy) -> Tri {
        let any_net = |nets: &[IpNet], ip: IpAddr| nets.is_empty() || nets.iter().any(|n| n.contains(&ip));
        let any_port = |ranges: &[PortRange], p: u16| ranges.is_empty() || ranges.iter().any(|r| r.contains(p));
        let has_ports = matches!(f.l4, L4Proto::Tcp | L4Proto::Udp | L4Proto::Other(132));
        if (!self.src_ports.is_empty() || !self.dst_ports.is_empty()) && !has_ports {
            return Tri::No;
        }
        let iface =
            |want: &[String], got: Option<&str>| want.is_empty() || got.is_some_and(|g| want.iter().any(|w| w == g));
        let l3 = (self.l4.is_empty() || self.l4.contains(&f.l4))
            && any_net(&self.src, f.src)
            && any_net(&self.dst, f.dst)
            && any_port(&self.src_ports, f.sport)
            && any_port(&self.dst_ports, f.dport)
            && iface(&self.interfaces_in, f.in_if)
            && iface(&self.interfaces_out, f.out_if)
            && (self.src_macs.is_empty() || f.src_mac.is_some_and(|m| self.src_macs.contains(&m)))
            && self.groups.as_ref().is_none_or(|g| {
                g.nets.iter().any(|n| n.contains(&f.src)) || f.src_mac.is_some_and(|m| g.macs.contains(&m))
            })
            && self.direction.is_none_or(|d| policy.direction(f.src, f.dst) == d)
            && self.schedule.as_ref().is_none_or(|s| s.is_active(policy.clock.local(f.now_micros)));
        let mut t = Tri::from(l3);
        // Address lists are known from the first packet; domain lists wait for the hostname.
        let needs_l7 = !self.protocols.is_empty()
            || !self.apps.is_empty()
            || !self.categories.is_empty()
            || !self.hostnames.is_empty()
            || self.lists.iter().any(|l| matches!(**l, lists::NamedList::Domains(_)));
        if needs_l7 {
            t = t.and(|| match f.l7 {
                None => Tri::Unknown,
                Some(l7) => Tri::from(self.l7_matches(f, &l7)),
            });
        } else if !self.lists.is_empty() {
            t = t.and(|| Tri::from(self.lists_match(f, None)));
        }
        if self.require_dns {
            t = t.and(|| match f.resolved {
                Some(resolved) => Tri::from(!resolved),
                None => Tri::No,
            });
        }
        t
    }

    fn l7_matches(&self, f: &FlowFacts<'_>, l7: &L7View<'_>) -> bool {
        let eq = |want: &[Arc<str>], got: Option<&str>| {
            want.is_empty() || got.is_some_and(|g| want.iter().any(|w| w.eq_ignore_ascii_case(g)))
        };
        (self.protocols.is_empty()
            || l7.protocol.is_some_and(|p| self.protocols.iter().any(|w| w.eq_ignore_ascii_case(p))))
            && eq(&self.apps, l7.app)
            && eq(&self.categories, l7.category)
            && (self.hostnames.is_empty() || l7.hostname.is_some_and(|h| self.hostnames.iter().any(|p| p.matches(h))))
            && (self.lists.is_empty() || self.lists_match(f, l7.hostname))
    }

    /// Any of the rule's lists contains the flow's hostname (domain lists) or server (address lists).
    fn lists_match(&self, f: &FlowFacts<'_>, host: Option<&str>) -> bool {
        self.lists.iter().any(|l| match &**l {
            lists::NamedList::Domains(d) => host.is_some_and(|h| d.contains(h)),
            lists::NamedList::Addrs(a) => a.contains(f.dst),
        })
    }

    /// Does the rule look at application-layer facts?
    pub fn needs_l7(&self) -> bool {
        !self.protocols.is_empty() || !self.apps.is_empty() || !self.categories.is_empty() || !self.hostnames.is_empty()
    }
}

/// The compiled, immutable policy. Swapped whole (behind an `Arc`) on reload.
#[derive(Debug, Clone)]
pub struct Policy {
    pub default: RuleAction,
    pub rules: Vec<Rule>,
    lan: Vec<IpNet>,
    clock: schedule::Clock,
}

impl Default for Policy {
    /// Allow everything.
    fn default() -> Self {
        Policy { default: RuleAction::Allow, rules: Vec::new(), lan: default_lan(), clock: schedule::Clock::utc() }
    }
}

/// The outcome of evaluating a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatch {
    pub action: RuleAction,
    pub rule: Option<Arc<str>>,
    pub mark: Option<u32>,
    pub log: bool,
}

/// Evaluation result: decided, or waiting for facts a rule needs (the flow's packets pass
/// meanwhile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluation {
    Decided(PolicyMatch),
    Pending,
}

fn default_lan() -> Vec<IpNet> {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "fe80::/10"]
        .iter()
        .filter_map(|n| n.parse().ok())
        .collect()
}

fn unknown(rule: &str, kind: &'static str, name: &str, hint: String) -> PolicyError {
    PolicyError::Unknown { rule: rule.to_string(), kind, name: name.to_string(), hint }
}

impl Policy {
    /// Compiles a policy that refers to nothing outside itself (no groups, lists or app names).
    pub fn compile(cfg: &PolicyConfig) -> Result<Policy, PolicyError> {
        let groups = Default::default();
        let lists = Default::default();
        Self::compile_with(cfg, &CompileContext { groups: &groups, lists: &lists, sigdb: None })
    }

    pub fn compile_with(cfg: &PolicyConfig, ctx: &CompileContext<'_>) -> Result<Policy, PolicyError> {
        let mut seen = std::collections::HashSet::new();
        let mut rules = Vec::with_capacity(cfg.rules.len());
        for (i, r) in cfg.rules.iter().enumerate() {
            let name = r.name.trim();
            if name.is_empty() {
                return Err(PolicyError::EmptyName { index: i + 1 });
            }
            if !seen.insert(name.to_string()) {
                return Err(PolicyError::DuplicateName(name.to_string()));
            }
            let l4: Vec<L4Proto> = r.l4.0.iter().map(|n| n.0).collect();
            let ports = !r.src_ports.is_empty() || !r.dst_ports.is_empty();
            if ports
                && !l4.is_empty()
                && !l4.iter().any(|p| matches!(p, L4Proto::Tcp | L4Proto::Udp | L4Proto::Other(132)))
            {
                return Err(PolicyError::PortsWithoutPortProtocol { rule: name.to_string() });
            }
            match (r.action, r.mark) {
                (RuleAction::Mark, None) => return Err(PolicyError::MarkMissing { rule: name.to_string() }),
                (a, Some(_)) if a != RuleAction::Mark => {
                    return Err(PolicyError::MarkWithoutMarkAction { rule: name.to_string() })
                }
                _ => {}
            }
            let groups = if r.groups.is_empty() {
                None
            } else {
                let mut src = Sources::default();
                for g in &r.groups {
                    let members = ctx.groups.get(g).ok_or_else(|| {
                        let known: Vec<&str> = ctx.groups.keys().map(String::as_str).collect();
                        unknown(name, "group", g, format!(" (defined in [groups]: {})", known.join(", ")))
                    })?;
                    for m in members {
                        let m = m.trim();
                        if let Ok(mac) = m.parse::<MacAddr>() {
                            src.macs.push(mac.0);
                        } else if let Ok(net) = m.parse::<IpNet>() {
                            src.nets.push(net.trunc());
                        } else if let Ok(ip) = m.parse::<IpAddr>() {
                            src.nets.push(IpNet::from(ip));
                        } else {
                            return Err(PolicyError::BadGroupEntry {
                                rule: name.to_string(),
                                group: g.clone(),
                                entry: m.to_string(),
                            });
                        }
                    }
                }
                Some(src)
            };
            let mut apps = Vec::new();
            for a in &r.apps {
                apps.push(match ctx.sigdb {
                    Some(db) => Arc::from(
                        &*db.app(a)
                            .ok_or_else(|| {
                                unknown(
                                    name,
                                    "application",
                                    a,
                                    " (see docs/SIGNATURES.md, or add it under [[classify.app]])".into(),
                                )
                            })?
                            .name,
                    ),
                    None => Arc::from(a.as_str()),
                });
            }
            let mut categories = Vec::new();
            for c in &r.categories {
                categories.push(match ctx.sigdb {
                    Some(db) => Arc::from(
                        &*db.category(c)
                            .ok_or_else(|| {
                                let known: Vec<&str> = db.categories().iter().map(|c| &*c.name).collect();
                                unknown(name, "category", c, format!(" (known: {})", known.join(", ")))
                            })?
                            .name,
                    ),
                    None => Arc::from(c.as_str()),
                });
            }
            let mut lists = Vec::new();
            for l in &r.lists {
                lists.push(
                    ctx.lists
                        .get(l)
                        .cloned()
                        .ok_or_else(|| unknown(name, "list", l, " (define it under [lists])".into()))?,
                );
            }
            rules.push(Rule {
                name: Arc::from(name),
                action: r.action,
                mark: r.mark.map(|m| m.0),
                log: r.log,
                src: r.src.iter().map(|c| c.0).collect(),
                dst: r.dst.iter().map(|c| c.0).collect(),
                src_ports: r.src_ports.clone(),
                dst_ports: r.dst_ports.clone(),
                l4,
                interfaces_in: r.interfaces_in.clone(),
                interfaces_out: r.interfaces_out.clone(),
                src_macs: r.src_macs.iter().map(|m| m.0).collect(),
                groups,
                protocols: r.protocols.clone(),
                apps,
                categories,
                hostnames: r.hostnames.clone(),
                lists,
                schedule: r.schedule.clone(),
                direction: r.direction,
                require_dns: r.require_dns,
            });
        }
        let clock = match &cfg.timezone {
            Some(tz) => schedule::Clock::fixed(tz).map_err(|e| PolicyError::TimeZone(e.to_string()))?,
            None => {
                let (clock, problem) = schedule::Clock::system();
                if let Some(p) = problem.filter(|_| cfg.rules.iter().any(|r| r.schedule.is_some())) {
                    return Err(PolicyError::TimeZone(format!(
                        "{p}; set [policy] timezone = \"Area/City\" for schedules to follow local time"
                    )));
                }
                clock
            }
        };
        let lan = if cfg.lan.is_empty() { default_lan() } else { cfg.lan.iter().map(|c| c.0).collect() };
        Ok(Policy { default: cfg.default, rules, lan, clock })
    }

    fn direction(&self, src: IpAddr, dst: IpAddr) -> FlowDirection {
        let inside = |ip: IpAddr| self.lan.iter().any(|n| n.contains(&ip));
        match (inside(src), inside(dst)) {
            (true, true) => FlowDirection::Internal,
            (false, true) => FlowDirection::Inbound,
            _ => FlowDirection::Outbound,
        }
    }

    /// First matching rule wins; a rule that cannot be decided yet (it needs facts not known)
    /// makes the whole evaluation wait, since a later rule must not win in its place.
    pub fn evaluate(&self, facts: &FlowFacts<'_>) -> Evaluation {
        for r in &self.rules {
            match r.matches(facts, self) {
                Tri::Yes => {
                    return Evaluation::Decided(PolicyMatch {
                        action: r.action,
                        rule: Some(r.name.clone()),
                        mark: r.mark,
                        log: r.log,
                    })
                }
                Tri::Unknown => return Evaluation::Pending,
                Tri::No => {}
            }
        }
        Evaluation::Decided(PolicyMatch { action: self.default, rule: None, mark: None, log: true })
    }

    /// Does any rule depend on the time of day? (Decisions are then re-checked as time passes.)
    pub fn has_schedules(&self) -> bool {
        self.rules.iter().any(|r| r.schedule.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compile(toml_text: &str) -> Result<Policy, String> {
        #[derive(Deserialize)]
        struct Doc {
            policy: PolicyConfig,
        }
        let doc: Doc = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Policy::compile(&doc.policy).map_err(|e| e.to_string())
    }

    fn facts(l4: L4Proto, src: &str, sport: u16, dst: &str, dport: u16) -> FlowFacts<'static> {
        FlowFacts::l3(l4, src.parse().unwrap(), sport, dst.parse().unwrap(), dport)
    }

    fn decided(e: Evaluation) -> PolicyMatch {
        match e {
            Evaluation::Decided(m) => m,
            Evaluation::Pending => panic!("expected a decision"),
        }
    }

    #[test]
    fn first_match_wins_then_default() {
        let p = compile(
            r#"
            [policy]
            default = "block"
            [[policy.rules]]
            name = "lan-dns"
            action = "allow"
            src = ["192.168.1.0/24", "fd00::/8"]
            dst_ports = [53]
            l4 = ["udp", "tcp"]
            [[policy.rules]]
            name = "no-high-ports"
            action = "block"
            dst_ports = ["1024-65535"]
            [[policy.rules]]
            name = "web"
            action = "allow"
            dst_ports = [80, 443]
            l4 = "tcp"
            "#,
        )
        .unwrap();
        let m = decided(p.evaluate(&facts(L4Proto::Udp, "192.168.1.7", 5000, "9.9.9.9", 53)));
        assert_eq!((m.action, m.rule.as_deref()), (RuleAction::Allow, Some("lan-dns")));
        let m = decided(p.evaluate(&facts(L4Proto::Udp, "10.1.1.1", 5000, "9.9.9.9", 53)));
        assert_eq!((m.action, m.rule.as_deref()), (RuleAction::Block, None));
        let m = decided(p.evaluate(&facts(L4Proto::Tcp, "10.1.1.1", 5000, "9.9.9.9", 8080)));
        assert_eq!(m.rule.as_deref(), Some("no-high-ports"));
        let m = decided(p.evaluate(&facts(L4Proto::Tcp, "fd00::5", 5000, "2001:db8::1", 443)));
        assert_eq!((m.action, m.rule.as_deref()), (RuleAction::Allow, Some("web")));
        let m = decided(p.evaluate(&facts(L4Proto::Udp, "fd00::5", 5000, "2001:db8::1", 443)));
        assert_eq!(m.rule, None);
        // A port rule never matches a portless protocol.
        let m = decided(p.evaluate(&facts(L4Proto::Icmp, "10.1.1.1", 2000, "9.9.9.9", 2000)));
        assert_eq!(m.rule, None);
    }

    #[test]
    fn errors_name_the_problem() {
        let e = compile("[[policy.rules]]\nname='x'\naction='block'\ndst=['10.0.0.300/8']\n").unwrap_err();
        assert!(e.contains("10.0.0.300/8") && e.contains("line 4"), "{e}");
        let e = compile("[[policy.rules]]\nname='x'\naction='drop-it'\n").unwrap_err();
        assert!(e.contains("drop-it") && e.contains("line 3"), "{e}");
        let e = compile("[[policy.rules]]\nname='x'\naction='block'\ndst_ports=[70000]\n").unwrap_err();
        assert!(e.contains("70000"), "{e}");
        let e = compile("[[policy.rules]]\nname='x'\naction='block'\ndst_ports=['90-80']\n").unwrap_err();
        assert!(e.contains("backwards"), "{e}");
        let e = compile("[[policy.rules]]\nname='x'\naction='block'\nl4='tcpp'\n").unwrap_err();
        assert!(e.contains("tcpp"), "{e}");
        let e = compile("[[policy.rules]]\nname='x'\naction='block'\ndst_port=[23]\n").unwrap_err();
        assert!(e.contains("dst_port"), "{e}");
        let e = compile("[[policy.rules]]\nname='x'\naction='block'\n[[policy.rules]]\nname='x'\naction='allow'\n")
            .unwrap_err();
        assert!(e.contains("`x`"), "{e}");
        let e = compile("[[policy.rules]]\nname='x'\naction='block'\nl4='icmp'\ndst_ports=[1]\n").unwrap_err();
        assert!(e.contains("never match"), "{e}");
    }

    #[test]
    fn bare_addresses_are_host_networks() {
        let p = compile("[[policy.rules]]\nname='h'\naction='block'\ndst=['10.0.0.5', '2001:db8::1']\n").unwrap();
        assert_eq!(decided(p.evaluate(&facts(L4Proto::Tcp, "1.1.1.1", 1, "10.0.0.5", 2))).rule.as_deref(), Some("h"));
        assert_eq!(decided(p.evaluate(&facts(L4Proto::Tcp, "1.1.1.1", 1, "10.0.0.6", 2))).rule, None);
        assert_eq!(
            decided(p.evaluate(&facts(L4Proto::Tcp, "1.1.1.1", 1, "2001:db8::1", 2))).rule.as_deref(),
            Some("h")
        );
    }
}
