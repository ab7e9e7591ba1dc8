//! The TOML format of the signature database, and its validation (errors name the application
//! and the line).

use super::{App, Category, Cidr, HostPattern, PortProto, ProtocolCategory};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use toml::Spanned;

#[derive(Debug, thiserror::Error)]
pub enum SigDbError {
    #[error("{origin}: {message}")]
    Invalid { origin: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDb {
    #[serde(default, alias = "categories")]
    category: Vec<Spanned<RawCategory>>,
    #[serde(default, alias = "apps")]
    app: Vec<Spanned<RawApp>>,
    #[serde(default, alias = "protocols")]
    protocol: Vec<Spanned<RawProtocol>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCategory {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    /// Defined for policies and admins' additions although no shipped application uses it.
    #[serde(default)]
    reserved: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    name: Spanned<String>,
    category: Spanned<String>,
    #[serde(default)]
    description: String,
    /// Shorthand: each entry is the domain itself and every name below it.
    #[serde(default)]
    domains: Vec<Spanned<String>>,
    #[serde(default)]
    hosts: Vec<Spanned<String>>,
    #[serde(default)]
    ips: Vec<Spanned<String>>,
    /// The ranges are the application's own (resolvers, messaging data centres): they name it
    /// for any non-infrastructure protocol, not only for unknown protocols and tunnels.
    #[serde(default)]
    dedicated_ips: bool,
    #[serde(default)]
    ports: Vec<Spanned<String>>,
    #[serde(default)]
    alpn: Vec<Spanned<String>>,
    #[serde(default)]
    ja4: Vec<Spanned<String>>,
    #[serde(default)]
    user_agents: Vec<Spanned<String>>,
    /// Certificate subject or issuer CN or O values, matched exactly (case ignored).
    #[serde(default)]
    cert: Vec<Spanned<String>>,
    #[serde(default)]
    protocols: Vec<Spanned<String>>,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    #[serde(default)]
    when_protocol: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProtocol {
    name: Spanned<String>,
    category: Spanned<String>,
}

/// The names of the shipped categories (parsed once, on first use).
pub(super) fn shipped_category_names() -> &'static [String] {
    #[derive(Deserialize)]
    struct Names {
        #[serde(default)]
        category: Vec<Name>,
    }
    #[derive(Deserialize)]
    struct Name {
        name: String,
    }
    static NAMES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    NAMES.get_or_init(|| {
        toml::from_str::<Names>(super::BUILTIN_TOML)
            .map(|n| n.category.into_iter().map(|c| c.name).collect())
            .unwrap_or_default()
    })
}

pub(super) struct Parsed {
    pub categories: Vec<Category>,
    pub apps: Vec<App>,
    pub protocol_categories: Vec<ProtocolCategory>,
}

/// Maps byte offsets to 1-based line numbers.
struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Self {
        Lines(text.match_indices('\n').map(|(i, _)| i).collect())
    }
    fn line(&self, offset: usize) -> usize {
        self.0.partition_point(|&nl| nl < offset) + 1
    }
}

/// Parses and validates `text`. Applications may use categories defined in `text` or `known`.
pub(super) fn parse(text: &str, origin: &str, known: &[&str]) -> Result<Parsed, SigDbError> {
    let err = |message: String| SigDbError::Invalid { origin: origin.to_string(), message };
    let raw: RawDb = toml::from_str(text).map_err(|e| err(e.to_string().trim_end().to_string()))?;
    let lines = Lines::new(text);
    let at = |span: std::ops::Range<usize>| lines.line(span.start);

    let mut categories: Vec<Category> = Vec::new();
    for c in &raw.category {
        let name = c.get_ref().name.get_ref().trim();
        let line = at(c.get_ref().name.span());
        if !valid_name(name) {
            return Err(err(format!("line {line}: category name {name:?} is not a valid name")));
        }
        if categories.iter().any(|x| x.name.eq_ignore_ascii_case(name)) {
            return Err(err(format!("line {line}: category \"{name}\" is defined twice")));
        }
        categories.push(Category {
            name: name.into(),
            description: c.get_ref().description.clone(),
            reserved: c.get_ref().reserved,
        });
    }
    let category_of = |name: &str| -> Option<Arc<str>> {
        categories
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
            .map(|c| c.name.clone())
            .or_else(|| known.iter().find(|k| k.eq_ignore_ascii_case(name)).map(|k| Arc::from(*k)))
    };

    let mut apps: Vec<App> = Vec::with_capacity(raw.app.len());
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    // Evidence claimed twice in one file is ambiguous: (pattern, when_protocol) -> app name.
    let mut seen_hosts: HashMap<(HostPattern, Vec<String>), Arc<str>> = HashMap::new();
    let mut seen_ips: HashMap<(IpAddr, u8), Arc<str>> = HashMap::new();
    let mut seen_ports: HashMap<(PortProto, u16), Arc<str>> = HashMap::new();
    let mut seen_certs: HashMap<String, Arc<str>> = HashMap::new();
    for a in &raw.app {
        let r = a.get_ref();
        let name = r.name.get_ref().trim();
        let line = at(r.name.span());
        let app_err = |line: usize, what: String| err(format!("line {line}: app \"{name}\": {what}"));
        if !valid_name(name) {
            return Err(err(format!("line {line}: app name {name:?} is not a valid name")));
        }
        if let Some(first) = seen_names.insert(super::norm_name(name), line) {
            return Err(app_err(line, format!("defined twice (first at line {first})")));
        }
        let cat = r.category.get_ref().trim();
        let category =
            category_of(cat).ok_or_else(|| app_err(at(r.category.span()), format!("unknown category \"{cat}\"")))?;
        let app_name: Arc<str> = name.into();
        let when_protocol: Vec<String> = r.when_protocol.iter().map(|s| s.trim().to_string()).collect();

        let mut hosts = Vec::with_capacity(r.hosts.len() + 2 * r.domains.len());
        let mut patterns = Vec::new();
        for d in &r.domains {
            let v = d.get_ref().trim();
            if v.starts_with("*.") {
                return Err(app_err(
                    at(d.span()),
                    format!("domain {v:?} must not start with \"*.\" (domains cover subdomains)"),
                ));
            }
            patterns.push((v.to_string(), d.span()));
            patterns.push((format!("*.{v}"), d.span()));
        }
        patterns.extend(r.hosts.iter().map(|h| (h.get_ref().clone(), h.span())));
        for (h, span) in patterns {
            let p = parse_host(&h).map_err(|m| app_err(at(span.clone()), m))?;
            if let Some(other) = seen_hosts.insert((p.clone(), when_protocol.clone()), app_name.clone()) {
                return Err(app_err(at(span), format!("host pattern {h:?} is also in app \"{other}\"")));
            }
            hosts.push(p);
        }
        let mut ips = Vec::with_capacity(r.ips.len());
        for s in &r.ips {
            let c = parse_cidr(s.get_ref()).map_err(|m| app_err(at(s.span()), m))?;
            if let Some(other) = seen_ips.insert((c.addr, c.len), app_name.clone()) {
                return Err(app_err(
                    at(s.span()),
                    format!("address range {:?} is also in app \"{other}\"", s.get_ref()),
                ));
            }
            ips.push(c);
        }
        let mut ports = Vec::new();
        for s in &r.ports {
            let specs = parse_ports(s.get_ref()).map_err(|m| app_err(at(s.span()), m))?;
            for (proto, lo, hi) in specs {
                for p in lo..=hi {
                    if let Some(other) = seen_ports.insert((proto, p), app_name.clone()) {
                        return Err(app_err(
                            at(s.span()),
                            format!("port {:?} is also in app \"{other}\"", s.get_ref()),
                        ));
                    }
                }
                ports.push((proto, lo, hi));
            }
        }
        let hint_list = |list: &[Spanned<String>], what: &str| -> Result<Vec<String>, SigDbError> {
            list.iter()
                .map(|s| {
                    let v = s.get_ref().trim();
                    let star = v.find('*');
                    if v.is_empty() || v.len() > 255 || !v.is_ascii() || star.is_some_and(|i| i + 1 != v.len()) {
                        Err(app_err(at(s.span()), format!("{what} {v:?} is malformed ('*' only at the end)")))
                    } else {
                        Ok(v.to_string())
                    }
                })
                .collect()
        };
        let alpn = hint_list(&r.alpn, "alpn")?;
        let ja4 = hint_list(&r.ja4, "ja4")?;
        let user_agents = hint_list(&r.user_agents, "user agent")?;
        let mut cert = Vec::with_capacity(r.cert.len());
        for s in &r.cert {
            let v = parse_cert_name(s.get_ref()).map_err(|m| app_err(at(s.span()), m))?;
            if let Some(other) = seen_certs.insert(v.to_lowercase(), app_name.clone()) {
                return Err(app_err(at(s.span()), format!("cert {v:?} is also in app \"{other}\"")));
            }
            cert.push(v);
        }
        let names = |list: &[Spanned<String>], what: &str| -> Result<Vec<String>, SigDbError> {
            list.iter()
                .map(|s| {
                    let v = s.get_ref().trim();
                    if valid_name(v) {
                        Ok(v.to_string())
                    } else {
                        Err(app_err(at(s.span()), format!("{what} {v:?} is not a valid name")))
                    }
                })
                .collect()
        };
        let protocols = names(&r.protocols, "protocol")?;
        let aliases = names(&r.aliases, "alias")?;
        for n in protocols.iter().chain(&aliases) {
            if let Some(first) = seen_names.insert(super::norm_name(n), line) {
                return Err(app_err(line, format!("name {n:?} is already used (line {first})")));
            }
        }
        apps.push(App {
            name: app_name,
            category,
            description: r.description.clone(),
            hosts,
            ips,
            dedicated_ips: r.dedicated_ips,
            ports,
            alpn,
            ja4,
            user_agents,
            cert,
            protocols,
            aliases,
            when_protocol,
        });
    }

    let mut protocol_categories = Vec::new();
    for p in &raw.protocol {
        let r = p.get_ref();
        let name = r.name.get_ref().trim();
        let cat = r.category.get_ref().trim();
        let category = category_of(cat).ok_or_else(|| {
            err(format!("line {}: protocol \"{name}\": unknown category \"{cat}\"", at(r.category.span())))
        })?;
        if !valid_name(name) {
            return Err(err(format!("line {}: protocol name {name:?} is not a valid name", at(r.name.span()))));
        }
        protocol_categories.push(ProtocolCategory { protocol: name.to_string(), category });
    }
    Ok(Parsed { categories, apps, protocol_categories })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.+ ".contains(&b))
}

/// `example.com` (exactly that name) or `*.example.com` (any name under it, on a label boundary).
pub(super) fn parse_host(s: &str) -> Result<HostPattern, String> {
    let lower = s.trim().to_ascii_lowercase();
    let (suffix, body) = match lower.strip_prefix("*.") {
        Some(b) => (true, b),
        None => (false, lower.as_str()),
    };
    let body = body.strip_suffix('.').unwrap_or(body);
    let ok = !body.is_empty()
        && body.len() <= 253
        && body.split('.').all(|l| {
            !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !ok {
        return Err(format!("host pattern {s:?} is malformed (expected \"name.tld\" or \"*.name.tld\")"));
    }
    Ok(if suffix { HostPattern::Suffix(body.to_string()) } else { HostPattern::Exact(body.to_string()) })
}

/// A certificate subject/issuer CN or O value: matched exactly (case ignored), so no patterns.
/// Surrounding whitespace is dropped (the certificate walk drops it too).
pub(super) fn parse_cert_name(s: &str) -> Result<String, String> {
    let v = s.trim();
    if v.is_empty() || v.len() > crate::dissect::tls::cert::MAX_ID_LEN || v.chars().any(char::is_control) {
        return Err(format!("cert {v:?} is malformed (expected a certificate's CN or O value, 1-256 bytes)"));
    }
    if v.contains('*') {
        return Err(format!("cert {v:?} is malformed (an exact CN or O value: '*' is not a pattern)"));
    }
    Ok(v.to_string())
}

/// `192.0.2.0/24`, `2001:db8::/32`, or a bare address (a single host). Host bits must be zero.
pub(super) fn parse_cidr(s: &str) -> Result<Cidr, String> {
    let bad = || format!("address range {s:?} is malformed (expected \"192.0.2.0/24\" or \"2001:db8::/32\")");
    let s2 = s.trim();
    let (addr, len) = match s2.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s2, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let width: u8 = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        Some(l) => l.parse::<u8>().map_err(|_| bad())?,
        None => width,
    };
    if len > width {
        return Err(bad());
    }
    let bits = super::addr_bits(addr);
    let host_mask: u128 = if len == width { 0 } else { (1u128 << (width - len)) - 1 };
    if bits & host_mask != 0 {
        return Err(format!("address range {s:?} has host bits set"));
    }
    Ok(Cidr { addr, len })
}

/// `tcp/853`, `udp/3478`, `udp/27015-27030`, or `853` (both transports).
pub(super) fn parse_ports(s: &str) -> Result<Vec<(PortProto, u16, u16)>, String> {
    let bad = || format!("port {s:?} is malformed (expected \"tcp/853\", \"udp/1000-1010\" or \"853\")");
    let t = s.trim().to_ascii_lowercase();
    let (protos, rest): (&[PortProto], &str) = if let Some(r) = t.strip_prefix("tcp/") {
        (&[PortProto::Tcp], r)
    } else if let Some(r) = t.strip_prefix("udp/") {
        (&[PortProto::Udp], r)
    } else {
        (&[PortProto::Tcp, PortProto::Udp], t.as_str())
    };
    let (lo, hi) = match rest.split_once('-') {
        Some((a, b)) => (a.parse::<u16>().map_err(|_| bad())?, b.parse::<u16>().map_err(|_| bad())?),
        None => {
            let p = rest.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if lo == 0 || hi < lo || hi - lo > 1023 {
        return Err(bad());
    }
    Ok(protos.iter().map(|&p| (p, lo, hi)).collect())
}
