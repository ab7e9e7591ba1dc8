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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    #[default]
    Allow,
    /// Silent drop.
    Block,
}

impl RuleAction {
    pub fn verdict_name(self) -> &'static str {
        match self {
            RuleAction::Allow => "allow",
            RuleAction::Block => "block",
        }
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

/// An L4 protocol by name ("tcp", "udp", "icmp", "icmpv6", "sctp", "gre", "esp") or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct L4Name(pub L4Proto);

impl<'de> Deserialize<'de> for L4Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        L4Proto::from_name(&s).map(L4Name).ok_or_else(|| {
            de::Error::custom(format!(
                "unknown L4 protocol `{s}` (use tcp, udp, icmp, icmpv6, sctp, gre, esp or a number)"
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
}

/// A compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: Arc<str>,
    pub action: RuleAction,
    src: Vec<IpNet>,
    dst: Vec<IpNet>,
    src_ports: Vec<PortRange>,
    dst_ports: Vec<PortRange>,
    l4: Vec<L4Proto>,
}

/// What a rule is matched against: the flow's client and server side, as the flow sees them.
#[derive(Debug, Clone, Copy)]
pub struct FlowFacts {
    pub l4: L4Proto,
    pub src: IpAddr,
    pub sport: u16,
    pub dst: IpAddr,
    pub dport: u16,
}

impl Rule {
    fn matches(&self, f: &FlowFacts) -> bool {
        let any_net = |nets: &[IpNet], ip: IpAddr| nets.is_empty() || nets.iter().any(|n| n.contains(&ip));
        let any_port = |ranges: &[PortRange], p: u16| ranges.is_empty() || ranges.iter().any(|r| r.contains(p));
        let has_ports = matches!(f.l4, L4Proto::Tcp | L4Proto::Udp | L4Proto::Other(132));
        if (!self.src_ports.is_empty() || !self.dst_ports.is_empty()) && !has_ports {
            return false;
        }
        (self.l4.is_empty() || self.l4.contains(&f.l4))
            && any_net(&self.src, f.src)
            && any_net(&self.dst, f.dst)
            && any_port(&self.src_ports, f.sport)
            && any_port(&self.dst_ports, f.dport)
    }
}

/// The compiled, immutable policy. Swapped whole (behind an `Arc`) on reload.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    pub default: RuleAction,
    pub rules: Vec<Rule>,
}

/// The outcome of evaluating a flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatch {
    pub action: RuleAction,
    pub rule: Option<Arc<str>>,
}

impl Policy {
    pub fn compile(cfg: &PolicyConfig) -> Result<Policy, PolicyError> {
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
            rules.push(Rule {
                name: Arc::from(name),
                action: r.action,
                src: r.src.iter().map(|c| c.0).collect(),
                dst: r.dst.iter().map(|c| c.0).collect(),
                src_ports: r.src_ports.clone(),
                dst_ports: r.dst_ports.clone(),
                l4,
            });
        }
        Ok(Policy { default: cfg.default, rules })
    }

    /// First matching rule wins; otherwise the default.
    pub fn evaluate(&self, facts: &FlowFacts) -> PolicyMatch {
        for r in &self.rules {
            if r.matches(facts) {
                return PolicyMatch { action: r.action, rule: Some(r.name.clone()) };
            }
        }
        PolicyMatch { action: self.default, rule: None }
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

    fn facts(l4: L4Proto, src: &str, sport: u16, dst: &str, dport: u16) -> FlowFacts {
        FlowFacts { l4, src: src.parse().unwrap(), sport, dst: dst.parse().unwrap(), dport }
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
        let m = p.evaluate(&facts(L4Proto::Udp, "192.168.1.7", 5000, "9.9.9.9", 53));
        assert_eq!((m.action, m.rule.as_deref()), (RuleAction::Allow, Some("lan-dns")));
        let m = p.evaluate(&facts(L4Proto::Udp, "10.1.1.1", 5000, "9.9.9.9", 53));
        assert_eq!((m.action, m.rule.as_deref()), (RuleAction::Block, None));
        let m = p.evaluate(&facts(L4Proto::Tcp, "10.1.1.1", 5000, "9.9.9.9", 8080));
        assert_eq!(m.rule.as_deref(), Some("no-high-ports"));
        let m = p.evaluate(&facts(L4Proto::Tcp, "fd00::5", 5000, "2001:db8::1", 443));
        assert_eq!((m.action, m.rule.as_deref()), (RuleAction::Allow, Some("web")));
        let m = p.evaluate(&facts(L4Proto::Udp, "fd00::5", 5000, "2001:db8::1", 443));
        assert_eq!(m.rule, None);
        // A port rule never matches a portless protocol.
        let m = p.evaluate(&facts(L4Proto::Icmp, "10.1.1.1", 2000, "9.9.9.9", 2000));
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
        assert_eq!(p.evaluate(&facts(L4Proto::Tcp, "1.1.1.1", 1, "10.0.0.5", 2)).rule.as_deref(), Some("h"));
        assert_eq!(p.evaluate(&facts(L4Proto::Tcp, "1.1.1.1", 1, "10.0.0.6", 2)).rule, None);
        assert_eq!(p.evaluate(&facts(L4Proto::Tcp, "1.1.1.1", 1, "2001:db8::1", 2)).rule.as_deref(), Some("h"));
    }
}
