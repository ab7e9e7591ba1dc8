//! The application signature database: applications and categories as data.
//!
//! The shipped database is `data/apps.toml` (format and matching rules: `docs/SIGNATURES.md`).
//! Admins add or override applications and categories with the same format ([`SignatureDb::merge`],
//! [`SignatureDb::merge_toml`]).
//!
//! Evidence is consulted in this order; the first that names an application decides:
//!
//! 1. the flow's own hostname (TLS/QUIC SNI, HTTP Host, DNS query, a protocol's name field), then
//!    the server certificate's names: exact and `*.suffix` patterns, longest match wins; then the
//!    leaf certificates' subject and issuer CN and O (`cert` hints: exact, case ignored);
//! 2. a dissector's own identification (`facts.app_hint`), then the protocol itself when it is an
//!    application ("Discord", "Telegram"): matched against application names, aliases and
//!    `protocols` lists; then the application of a call whose UDP socket the flow shares
//!    (`facts.related_app`, learned from another flow of the socket, see [`crate::related`]);
//! 3. the client's JA4 fingerprint and HTTP User-Agent, then ALPN (chosen, then offered);
//! 4. a hostname learned from the DNS cache (a name for the address, not for this flow);
//! 5. the server address (longest-prefix match), only for flows whose protocol is unknown or a
//!    tunnel (OpenVPN, WireGuard, IPsec, ...), and never when the flow carries its own hostname;
//! 6. the server port, for the few applications with an unambiguous port.
//!
//! Lookups are hash maps (hostnames: one exact probe plus one probe per label boundary, bounded by
//! the longest pattern) and binary tries (addresses); nothing scans the pattern list.

mod format;
mod trie;

use crate::facts::{AppSource, Facts, NameSource};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use trie::PrefixTrie;
use vigil_wire::L4Proto;

pub use format::SigDbError;

/// The shipped database text.
pub const BUILTIN_TOML: &str = include_str!("../../data/apps.toml");

/// A category of applications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Category {
    pub name: Arc<str>,
    pub description: String,
    /// Defined on purpose although no shipped application uses it (for policies, admins' apps).
    pub reserved: bool,
}

/// A transport for a port rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortProto {
    Tcp,
    Udp,
}

/// An address range (network address with host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub len: u8,
}

/// A hostname pattern: `Exact("youtu.be")` or `Suffix("youtube.com")` (written `*.youtube.com`,
/// matching strict subdomains on a label boundary).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HostPattern {
    Exact(String),
    Suffix(String),
}

/// One application, as loaded and validated.
#[derive(Debug, Clone)]
pub struct App {
    pub name: Arc<str>,
    pub category: Arc<str>,
    pub description: String,
    pub hosts: Vec<HostPattern>,
    pub ips: Vec<Cidr>,
    /// The address ranges are the application's own: they count for any protocol that is not
    /// network housekeeping (still only when the flow has no hostname of its own).
    pub dedicated_ips: bool,
    /// Port-only evidence: (transport, first, last).
    pub ports: Vec<(PortProto, u16, u16)>,
    pub alpn: Vec<String>,
    pub ja4: Vec<String>,
    /// HTTP User-Agent values (a trailing `*` makes a prefix).
    pub user_agents: Vec<String>,
    /// Certificate subject or issuer commonName / organizationName values (exact, case ignored).
    pub cert: Vec<String>,
    /// Dissector protocol / app-hint names that mean this application.
    pub protocols: Vec<String>,
    /// Other names of this application (older nDPI names, ...), accepted as hints.
    pub aliases: Vec<String>,
    /// When non-empty, this app's evidence only counts on flows whose protocol is one of these.
    pub when_protocol: Vec<String>,
}

impl App {
    fn admits(&self, protocol: Option<&str>) -> bool {
        self.when_protocol.is_empty()
            || protocol.is_some_and(|p| self.when_protocol.iter().any(|w| w.eq_ignore_ascii_case(p)))
    }
}

/// A default category for flows whose protocol names no application (SSH, BitTorrent, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolCategory {
    pub protocol: String,
    pub category: Arc<str>,
}

/// Protocols whose server address names the service operator (the tunnel's far end), so address
/// ranges may name the application (a NordVPN address behind OpenVPN is NordVPN).
const ADDRESS_NAMED_PROTOCOLS: &[&str] =
    &["OpenVPN", "WireGuard", "IPSec", "IPsec", "IKE", "GRE", "PPTP", "L2TP", "Tailscale"];

/// Network-housekeeping protocols: their port or address says nothing about an application.
const INFRASTRUCTURE_PROTOCOLS: &[&str] = &[
    "ICMP", "ICMPV6", "IGMP", "NTP", "DHCP", "DHCPV6", "MDNS", "SSDP", "LLMNR", "NetBIOS", "ARP", "DNS", "OSPF", "VRRP",
];

#[derive(Debug, Default, Clone)]
struct Index {
    exact: HashMap<Box<str>, Vec<u32>>,
    suffix: HashMap<Box<str>, Vec<u32>>,
    /// Labels in the longest suffix pattern: bounds the label walk.
    max_suffix_labels: usize,
    /// Normalized application names, aliases and `protocols` entries.
    names: HashMap<String, u32>,
    alpn_exact: HashMap<Box<str>, u32>,
    alpn_prefix: Vec<(Box<str>, u32)>,
    ja4_exact: HashMap<Box<str>, u32>,
    ja4_prefix: Vec<(Box<str>, u32)>,
    ua_exact: HashMap<Box<str>, u32>,
    ua_prefix: Vec<(Box<str>, u32)>,
    /// `cert` values, lower-cased.
    cert: HashMap<Box<str>, u32>,
    v4: Option<PrefixTrie>,
    v6: Option<PrefixTrie>,
    ports: HashMap<(PortProto, u16), u32>,
    protocol_categories: HashMap<String, Arc<str>>,
}

#[derive(Debug, Default, Clone)]
pub struct SignatureDb {
    categories: Vec<Category>,
    apps: Vec<App>,
    protocol_categories: Vec<ProtocolCategory>,
    index: Index,
}

/// Lower-case, without punctuation: "Skype_Teams", "skype-teams" and "SkypeTeams" are one name.
fn norm_name(s: &str) -> String {
    s.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect()
}

fn addr_bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

impl SignatureDb {
    /// The database shipped with vigil.
    pub fn builtin() -> Result<Self, SigDbError> {
        Self::parse_with(BUILTIN_TOML, "builtin apps.toml", &[])
    }

    /// Parses a database (or an admin's additions) in the documented TOML format. An application's
    /// category must be defined in the same text or be one of the shipped categories, so an
    /// admin's file can be parsed on its own and then [`merge`](SignatureDb::merge)d into
    /// [`builtin`](SignatureDb::builtin). Unknown categories are errors naming the app and line.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, SigDbError> {
        let shipped = format::shipped_category_names();
        let known: Vec<&str> = shipped.iter().map(String::as_str).collect();
        Self::parse_with(text, origin, &known)
    }

    fn parse_with(text: &str, origin: &str, known: &[&str]) -> Result<Self, SigDbError> {
        let parsed = format::parse(text, origin, known)?;
        let mut db = SignatureDb {
            categories: parsed.categories,
            apps: parsed.apps,
            protocol_categories: parsed.protocol_categories,
            index: Index::default(),
        };
        db.rebuild();
        Ok(db)
    }

    /// Parses `text` (same format) and merges it into this database; its applications may use the
    /// categories this database already has (shipped or added by earlier merges). Same-name
    /// applications and categories replace.
    pub fn merge_toml(&mut self, text: &str, origin: &str) -> Result<(), SigDbError> {
        let known: Vec<&str> = self.categories.iter().map(|c| &*c.name).collect();
        let parsed = format::parse(text, origin, &known)?;
        let other = SignatureDb {
            categories: parsed.categories,
            apps: parsed.apps,
            protocol_categories: parsed.protocol_categories,
            index: Index::default(),
        };
        self.merge(other);
        Ok(())
    }

    /// Adds `other`'s applications; on a name clash `other` wins (admins override the shipped data).
    /// Categories and protocol categories merge the same way. A hostname pattern, address range,
    /// port, ALPN, JA4 or certificate value claimed by both goes to `other`'s application.
    pub fn merge(&mut self, other: SignatureDb) {
        for c in other.categories {
            match self.categories.iter_mut().find(|x| x.name.eq_ignore_ascii_case(&c.name)) {
                Some(slot) => *slot = c,
                None => self.categories.push(c),
            }
        }
        for a in other.apps {
            let key = norm_name(&a.name);
            let same = |x: &App| norm_name(&x.name) == key || x.aliases.iter().any(|n| norm_name(n) == key);
            match self.apps.iter().position(same) {
                // Replace in place would keep the old position's priority; move it to the end so
                // that the admin's patterns win clashes with other shipped applications.
                Some(i) => {
                    self.apps.remove(i);
                    self.apps.push(a);
                }
                None => self.apps.push(a),
            }
        }
        for p in other.protocol_categories {
            match self.protocol_categories.iter_mut().find(|x| x.protocol.eq_ignore_ascii_case(&p.protocol)) {
                Some(slot) => *slot = p,
                None => self.protocol_categories.push(p),
            }
        }
        // Categories an application uses must exist; merged categories can only add or replace.
        self.rebuild();
    }

    fn rebuild(&mut self) {
        let mut ix = Index::default();
        let mut v4 = PrefixTrie::new(32);
        let mut v6 = PrefixTrie::new(128);
        // Later applications win clashes (admins' additions come last).
        for (i, app) in self.apps.iter().enumerate() {
            let id = i as u32;
            for h in &app.hosts {
                let (map, name) = match h {
                    HostPattern::Exact(n) => (&mut ix.exact, n),
                    HostPattern::Suffix(n) => {
                        ix.max_suffix_labels = ix.max_suffix_labels.max(n.split('.').count());
                        (&mut ix.suffix, n)
                    }
                };
                let list = map.entry(name.as_str().into()).or_default();
                // A later entry with the same `when_protocol` replaces an earlier one; restricted
                // entries stay in front of unrestricted ones, so they are tried first.
                list.retain(|&o| self.apps[o as usize].when_protocol != app.when_protocol);
                if app.when_protocol.is_empty() {
                    list.push(id);
                } else {
                    list.insert(0, id);
                }
            }
            for c in &app.ips {
                match c.addr {
                    IpAddr::V4(_) => v4.insert(addr_bits(c.addr), c.len, id),
                    IpAddr::V6(_) => v6.insert(addr_bits(c.addr), c.len, id),
                }
            }
            for &(proto, lo, hi) in &app.ports {
                for p in lo..=hi {
                    ix.ports.insert((proto, p), id);
                }
            }
            for a in &app.alpn {
                match a.strip_suffix('*') {
                    Some(prefix) => ix.alpn_prefix.push((prefix.into(), id)),
                    None => {
                        ix.alpn_exact.insert(a.as_str().into(), id);
                    }
                }
            }
            for j in &app.ja4 {
                match j.strip_suffix('*') {
                    Some(prefix) => ix.ja4_prefix.push((prefix.into(), id)),
                    None => {
                        ix.ja4_exact.insert(j.as_str().into(), id);
                    }
                }
            }
            for u in &app.user_agents {
                match u.strip_suffix('*') {
                    Some(prefix) => ix.ua_prefix.push((prefix.into(), id)),
                    None => {
                        ix.ua_exact.insert(u.as_str().into(), id);
                    }
                }
            }
            for c in &app.cert {
                ix.cert.insert(c.to_lowercase().into(), id);
            }
            for n in std::iter::once(&*app.name)
                .chain(app.aliases.iter().map(String::as_str))
                .chain(app.protocols.iter().map(String::as_str))
            {
                ix.names.insert(norm_name(n), id);
            }
        }
        // Longest prefixes first, so the first hit is the most specific one.
        ix.alpn_prefix.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        ix.ja4_prefix.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        ix.ua_prefix.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        ix.v4 = (!v4.is_empty()).then_some(v4);
        ix.v6 = (!v6.is_empty()).then_some(v6);
        for p in &self.protocol_categories {
            ix.protocol_categories.insert(norm_name(&p.protocol), p.category.clone());
        }
        self.index = ix;
    }

    /// Fills `facts.app` and `facts.category` from what is known (hostname, ALPN, JA4, ports,
    /// server address, a dissector's app hint). Leaves them alone when nothing matches, except
    /// that a flow without an application gets its protocol's category when one is defined.
    pub fn classify(&self, facts: &mut Facts, _client: (IpAddr, u16), server: (IpAddr, u16), l4: L4Proto) {
        match self.decide(facts, server, l4) {
            Some((id, from_socket)) => {
                let app = &self.apps[id as usize];
                facts.app = Some(app.name.clone());
                facts.category = Some(app.category.clone());
                if from_socket {
                    facts.app_source = Some(AppSource::Socket);
                } else if facts.app_source == Some(AppSource::Socket) {
                    facts.app_source = None; // the flow's own evidence came since
                }
            }
            None => {
                if let Some(name) = facts.app.clone() {
                    // A dissector named the application: use the database's spelling and category.
                    if let Some(app) = self.app(&name) {
                        facts.app = Some(app.name.clone());
                        if facts.category.is_none() {
                            facts.category = Some(app.category.clone());
                        }
                    }
                } else if facts.category.is_none() {
                    if let Some(c) = facts.protocol.and_then(|p| self.index.protocol_categories.get(&norm_name(p))) {
                        facts.category = Some(c.clone());
                    }
                }
            }
        }
    }

    /// The application id the evidence points to (see the module docs for the order), and whether
    /// it came from the flow's call socket (`facts.related_app`) rather than the flow itself.
    fn decide(&self, facts: &Facts, server: (IpAddr, u16), l4: L4Proto) -> Option<(u32, bool)> {
        let own = |id| Some((id, false));
        let protocol = facts.protocol;
        let admitted = |id: u32| self.apps[id as usize].admits(protocol).then_some(id);
        let own_name = facts.hostname.as_deref().filter(|_| facts.name_source != Some(NameSource::DnsCache));
        // 1. The flow's own hostname, then the certificate's names.
        if let Some(id) = own_name.and_then(|h| self.match_host_for(h, protocol)) {
            return own(id);
        }
        for n in &facts.cert_names {
            if let Some(id) = self.match_host_for(n.strip_prefix("*.").unwrap_or(n), protocol) {
                return own(id);
            }
        }
        //    Then the certificates' subject and issuer CN and O (server's leaf, then client's).
        if let Some(id) = facts.cert_ids.iter().filter_map(|c| self.match_cert(&c.value)).find_map(admitted) {
            return own(id);
        }
        // 2. A dissector's identification, then the protocol itself when it is an application, then
        //    the application of the call socket the flow shares (another flow's identification).
        if let Some(id) = facts.app_hint.and_then(|h| self.index.names.get(&norm_name(h)).copied()) {
            return own(id);
        }
        if let Some(id) = protocol.and_then(|p| self.index.names.get(&norm_name(p)).copied()) {
            return own(id);
        }
        if let Some(id) = facts.related_app.and_then(|h| self.index.names.get(&norm_name(h)).copied()) {
            return Some((id, true));
        }
        // 3. Client fingerprints (JA4, HTTP User-Agent), then ALPN.
        if let Some(id) = facts.ja4.as_deref().and_then(|j| self.match_ja4(j)).and_then(admitted) {
            return own(id);
        }
        if let Some(id) = facts.user_agent.as_deref().and_then(|u| self.match_ua(u)).and_then(admitted) {
            return own(id);
        }
        let alpns = facts.alpn.iter().chain(facts.alpn_offered.iter());
        if let Some(id) = alpns.filter_map(|a| self.match_alpn(a)).find_map(admitted) {
            return own(id);
        }
        // 4. A name the DNS cache learned for the server address.
        if facts.name_source == Some(NameSource::DnsCache) {
            if let Some(id) = facts.hostname.as_deref().and_then(|h| self.match_host_for(h, protocol)) {
                return own(id);
            }
        }
        let infrastructure =
            protocol.is_some_and(|p| INFRASTRUCTURE_PROTOCOLS.iter().any(|x| x.eq_ignore_ascii_case(p)));
        // 5. The server address: only when nothing on the flow itself names it.
        let address_named = match protocol {
            None => true,
            Some(p) => ADDRESS_NAMED_PROTOCOLS.iter().any(|x| x.eq_ignore_ascii_case(p)),
        };
        if own_name.is_none() && !infrastructure {
            let by_addr = self.match_ip(server.0).and_then(admitted);
            if let Some(id) = by_addr.filter(|&id| address_named || self.apps[id as usize].dedicated_ips) {
                return own(id);
            }
        }
        // 6. The server port (only unambiguous ones are in the database).
        if !infrastructure {
            let proto = match l4 {
                L4Proto::Tcp => Some(PortProto::Tcp),
                L4Proto::Udp => Some(PortProto::Udp),
                _ => None,
            };
            if let Some(id) = proto.and_then(|p| self.index.ports.get(&(p, server.1)).copied()).and_then(admitted) {
                return own(id);
            }
        }
        None
    }

    /// The application a hostname belongs to (exact, then the longest `*.suffix`), ignoring
    /// `when_protocol` restrictions other than for `protocol`.
    fn match_host_for(&self, host: &str, protocol: Option<&str>) -> Option<u32> {
        let lowered;
        let mut host = host.trim_end_matches('.');
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            host = &lowered;
        }
        if host.is_empty() || host.parse::<IpAddr>().is_ok() {
            return None;
        }
        let pick = |list: &Vec<u32>| list.iter().copied().find(|&id| self.apps[id as usize].admits(protocol));
        if let Some(id) = self.index.exact.get(host).and_then(pick) {
            return Some(id);
        }
        if self.index.max_suffix_labels == 0 {
            return None;
        }
        // Candidate suffixes start after each dot; skip those with more labels than any pattern.
        let dots: Vec<usize> = host.match_indices('.').map(|(i, _)| i).collect();
        let first = dots.len().saturating_sub(self.index.max_suffix_labels);
        for &d in &dots[first..] {
            if let Some(id) = self.index.suffix.get(&host[d + 1..]).and_then(pick) {
                return Some(id);
            }
        }
        None
    }

    /// The application a hostname belongs to, by hostname patterns alone.
    pub fn match_host(&self, host: &str) -> Option<&App> {
        self.match_host_for(host, None).map(|id| &self.apps[id as usize])
    }

    fn match_ip(&self, addr: IpAddr) -> Option<u32> {
        let trie = match addr {
            IpAddr::V4(_) => self.index.v4.as_ref(),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => return self.match_ip(IpAddr::V4(v4)),
                None => self.index.v6.as_ref(),
            },
        }?;
        trie.lookup(addr_bits(addr)).map(|(id, _)| id)
    }

    /// The application whose address ranges contain `addr` (longest prefix).
    pub fn match_addr(&self, addr: IpAddr) -> Option<&App> {
        self.match_ip(addr).map(|id| &self.apps[id as usize])
    }

    fn match_alpn(&self, alpn: &str) -> Option<u32> {
        self.index
            .alpn_exact
            .get(alpn)
            .copied()
            .or_else(|| self.index.alpn_prefix.iter().find(|(p, _)| alpn.starts_with(&**p)).map(|&(_, id)| id))
    }

    fn match_ja4(&self, ja4: &str) -> Option<u32> {
        self.index
            .ja4_exact
            .get(ja4)
            .copied()
            .or_else(|| self.index.ja4_prefix.iter().find(|(p, _)| ja4.starts_with(&**p)).map(|&(_, id)| id))
    }

    /// The application whose `cert` hints hold this subject/issuer CN or O value (case ignored).
    fn match_cert(&self, value: &str) -> Option<u32> {
        if self.index.cert.is_empty() {
            return None;
        }
        if value.chars().any(char::is_uppercase) {
            self.index.cert.get(value.to_lowercase().as_str()).copied()
        } else {
            self.index.cert.get(value).copied()
        }
    }

    fn match_ua(&self, ua: &str) -> Option<u32> {
        self.index
            .ua_exact
            .get(ua)
            .copied()
            .or_else(|| self.index.ua_prefix.iter().find(|(p, _)| ua.starts_with(&**p)).map(|&(_, id)| id))
    }

    /// An application by name, alias or `protocols` entry (case and punctuation ignored).
    pub fn app(&self, name: &str) -> Option<&App> {
        self.index.names.get(&norm_name(name)).map(|&id| &self.apps[id as usize])
    }

    pub fn apps(&self) -> &[App] {
        &self.apps
    }

    pub fn categories(&self) -> &[Category] {
        &self.categories
    }

    pub fn category(&self, name: &str) -> Option<&Category> {
        self.categories.iter().find(|c| c.name.eq_ignore_ascii_case(name))
    }

    pub fn protocol_categories(&self) -> &[ProtocolCategory] {
        &self.protocol_categories
    }

    pub fn app_count(&self) -> usize {
        self.apps.len()
    }

    pub fn category_count(&self) -> usize {
        self.categories.len()
    }
}
