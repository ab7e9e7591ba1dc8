//! Named lists of domains or addresses, loaded from files (plain, hosts-file and CIDR formats).
//!
//! Lists are what public blocklists and admins' own allow/deny lists are made of. A file holds either
//! domains or addresses, never both: the format is detected line by line and a file that mixes the two
//! is refused, because a rule naming the list would silently match only half of what the admin meant.
//!
//! Tolerance, decided per case:
//! * a line that is not a valid domain (bad characters, over-long labels, other Adblock syntax such as
//!   cosmetic or exception rules) is **skipped and counted**: public domain lists carry junk, and refusing
//!   a 200k-line list for one odd line would leave the gateway with no list at all. [`ListStats`] reports
//!   the count and the first line numbers so the loader can warn;
//! * a line that looks like an address but does not parse (`10.0.0.300/8`) in an address list is an
//!   **error**: address lists are short and usually hand-written, and a typo there changes what the
//!   firewall lets through;
//! * a valid entry of the other kind (a domain in an address list or the reverse) is an **error** naming
//!   the line;
//! * a list with no valid entry at all is an **error**: it is almost always the wrong file.

use ipnet::IpNet;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// How many skipped line numbers [`ListStats`] keeps for the warning.
const MAX_SKIPPED_LINES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("cannot read list {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("`{entry}` is not a valid domain: {reason}")]
    InvalidDomain { entry: String, reason: &'static str },
    #[error("`{entry}` is not a valid IP address or CIDR network (e.g. 192.168.1.0/24, fd00::/8)")]
    InvalidAddr { entry: String },
    #[error("{origin}:{line}: `{entry}` is not a valid IP address or CIDR network (e.g. 192.168.1.0/24, fd00::/8)")]
    BadAddrLine { origin: String, line: usize, entry: String },
    #[error(
        "{origin}:{line}: `{entry}` is {found}, but this list holds {holds} (first at line {first_line}); \
         a list holds either domains or addresses"
    )]
    Mixed { origin: String, line: usize, entry: String, found: &'static str, holds: &'static str, first_line: usize },
    #[error("{origin}: no domain or address in the list ({skipped} lines skipped as invalid)")]
    Empty { origin: String, skipped: usize },
}

/// Flag bits stored per domain entry.
const SELF: u8 = 1;
const BELOW: u8 = 2;

/// foldhash with a per-process seed: lookups are keyed by names taken from traffic (SNI, Host, DNS),
/// so the seed keeps precomputed collision floods out while staying much faster than SipHash.
type DomainMap = HashMap<Box<str>, u8, foldhash::fast::RandomState>;

/// A set of domains as blocklists mean them.
///
/// An entry `example.com` matches `example.com` and every name below it (`ads.example.com`,
/// `a.b.example.com`), at label boundaries only (`notexample.com` does not match): blocking a domain
/// in a blocklist means blocking its whole subtree, which is how Pi-hole, Adblock `||example.com^` and
/// DNS RPZ lists are written and used. An entry `*.example.com` matches only names below
/// `example.com`, not `example.com` itself.
///
/// Matching is ASCII case-insensitive and ignores one trailing dot. Internationalized names must be
/// in punycode (`xn--...`), as they are on the wire.
///
/// Memory: one boxed string plus one flag byte per entry in a single hash map, no per-entry vectors.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct DomainSet {
    map: DomainMap,
}

impl fmt::Debug for DomainSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A 1M-entry list in a debug print helps no one.
        f.debug_struct("DomainSet").field("len", &self.len()).finish()
    }
}

impl DomainSet {
    pub fn new() -> DomainSet {
        DomainSet::default()
    }

    /// Adds `example.com` (the name and everything below) or `*.example.com` (only below).
    pub fn insert(&mut self, entry: &str) -> Result<(), ListError> {
        let (name, flags) = parse_domain_entry(entry)
            .map_err(|reason| ListError::InvalidDomain { entry: entry.trim().to_string(), reason })?;
        self.insert_parsed(name, flags);
        Ok(())
    }

    fn insert_parsed(&mut self, name: String, flags: u8) {
        match self.map.get_mut(name.as_str()) {
            Some(f) => *f |= flags,
            None => {
                self.map.insert(name.into_boxed_str(), flags);
            }
        }
    }

    /// Whether `host` is an entry or below one. O(labels) hash lookups, no allocation.
    pub fn contains(&self, host: &str) -> bool {
        if self.map.is_empty() {
            return false;
        }
        let host = host.strip_suffix('.').unwrap_or(host);
        if host.is_empty() || host.len() > MAX_NAME {
            return false;
        }
        let mut buf = [0u8; MAX_NAME];
        let name = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            let out = &mut buf[..host.len()];
            out.copy_from_slice(host.as_bytes());
            out.make_ascii_lowercase();
            // Lowercasing ASCII bytes keeps UTF-8 valid; the fallback is never taken.
            match std::str::from_utf8(out) {
                Ok(s) => s,
                Err(_) => return false,
            }
        } else {
            host
        };
        if self.map.get(name).is_some_and(|f| f & SELF != 0) {
            return true;
        }
        let mut rest = name;
        while let Some(dot) = rest.find('.') {
            rest = &rest[dot + 1..];
            if self.map.get(rest).is_some_and(|f| f & BELOW != 0) {
                return true;
            }
        }
        false
    }

    /// Number of distinct entries (`example.com` and `*.example.com` count once).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Releases the hash map's growth slack once loading is done.
    pub fn shrink_to_fit(&mut self) {
        self.map.shrink_to_fit();
    }
}

/// Inline lists in the config: `["example.com", "*.ads.example.net"]`. Errors are hard errors there
/// (the admin typed them), and carry the TOML position.
impl<'de> Deserialize<'de> for DomainSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// One element, validated as it is read so the error points at it.
        struct Entry(String, u8);
        impl<'de> Deserialize<'de> for Entry {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                let (name, flags) = parse_domain_entry(&s).map_err(|reason| {
                    serde::de::Error::custom(ListError::InvalidDomain { entry: s.trim().to_string(), reason })
                })?;
                Ok(Entry(name, flags))
            }
        }
        let mut set = DomainSet::new();
        for Entry(name, flags) in Vec::<Entry>::deserialize(d)? {
            set.insert_parsed(name, flags);
        }
        Ok(set)
    }
}

const MAX_NAME: usize = 253;
const MAX_LABEL: usize = 63;

/// Validates and lowercases one entry; returns the stored key and its flags.
fn parse_domain_entry(entry: &str) -> Result<(String, u8), &'static str> {
    let e = entry.trim();
    let e = e.strip_suffix('.').unwrap_or(e);
    let (name, flags) = match e.strip_prefix("*.") {
        Some(rest) => (rest, BELOW),
        None => (e, SELF | BELOW),
    };
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_NAME {
        return Err("it is longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("it has an empty label");
        }
        if label.len() > MAX_LABEL {
            return Err("a label is longer than 63 characters");
        }
        // `_` appears in real names (SRV-style and tracking hosts); a leading or trailing `-` is invalid
        // for hostnames but occurs in blocklists and in DNS, so it is not refused either.
        if !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(if label.contains('*') {
                "`*` is only allowed as a whole first label (`*.example.com`)"
            } else {
                "only letters, digits, `-` and `_` are allowed (IDNs in punycode)"
            });
        }
    }
    Ok((name.to_ascii_lowercase(), flags))
}

/// A set of IPv4 and IPv6 networks, matched by binary search over sorted, merged ranges.
///
/// Build with [`AddrSet::insert`], then call [`AddrSet::finish`] once. `contains` on an unfinished set
/// is still correct but scans linearly; the loaders always finish.
///
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) are looked up as the IPv4 address they carry, so a
/// dual-stack socket's view of a peer matches the IPv4 entries.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AddrSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    inserted: usize,
    sorted: bool,
}

impl fmt::Debug for AddrSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AddrSet")
            .field("len", &self.inserted)
            .field("v4_ranges", &self.v4.len())
            .field("v6_ranges", &self.v6.len())
            .finish()
    }
}

impl AddrSet {
    pub fn new() -> AddrSet {
        AddrSet { sorted: true, ..Default::default() }
    }

    /// Adds a network; host bits are ignored (`10.0.0.1/8` is `10.0.0.0/8`).
    pub fn insert(&mut self, net: IpNet) {
        match net.trunc() {
            IpNet::V4(n) => self.v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
            IpNet::V6(n) => self.v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
        }
        self.inserted += 1;
        self.sorted = false;
    }

    /// Sorts and merges overlapping or adjacent ranges so lookups are one binary search.
    pub fn finish(&mut self) {
        merge(&mut self.v4);
        merge(&mut self.v6);
        self.sorted = true;
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip.to_canonical() {
            IpAddr::V4(a) => find(&self.v4, u32::from(a), self.sorted),
            IpAddr::V6(a) => find(&self.v6, u128::from(a), self.sorted),
        }
    }

    /// Number of networks inserted (before merging).
    pub fn len(&self) -> usize {
        self.inserted
    }

    pub fn is_empty(&self) -> bool {
        self.inserted == 0
    }

    /// Number of disjoint ranges after [`AddrSet::finish`]: what a lookup searches.
    pub fn ranges(&self) -> usize {
        self.v4.len() + self.v6.len()
    }
}

/// Inline lists in the config: `["10.0.0.0/8", "2001:db8::1"]`.
impl<'de> Deserialize<'de> for AddrSet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entry(IpNet);
        impl<'de> Deserialize<'de> for Entry {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                parse_addr(s.trim())
                    .map(Entry)
                    .ok_or_else(|| serde::de::Error::custom(ListError::InvalidAddr { entry: s.trim().to_string() }))
            }
        }
        let mut set = AddrSet::new();
        for Entry(net) in Vec::<Entry>::deserialize(d)? {
            set.insert(net);
        }
        set.finish();
        Ok(set)
    }
}

fn merge<T: Copy + Ord + num::One>(ranges: &mut Vec<(T, T)>) {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for &(lo, hi) in ranges.iter() {
        match out.last_mut() {
            // Overlapping or adjacent (`prev.hi + 1 == lo`); `checked_next` avoids overflow at the top.
            Some(prev) if lo <= prev.1 || T::checked_next(prev.1) == Some(lo) => {
                if hi > prev.1 {
                    prev.1 = hi;
                }
            }
            _ => out.push((lo, hi)),
        }
    }
    out.shrink_to_fit();
    *ranges = out;
}

fn find<T: Copy + Ord>(ranges: &[(T, T)], x: T, sorted: bool) -> bool {
    if !sorted {
        return ranges.iter().any(|&(lo, hi)| lo <= x && x <= hi);
    }
    // Index of the first range starting after x; the candidate is the one before it.
    let i = ranges.partition_point(|&(lo, _)| lo <= x);
    i > 0 && x <= ranges[i - 1].1
}

/// The one arithmetic `merge` needs, for u32 and u128.
mod num {
    pub trait One {
        fn checked_next(self) -> Option<Self>
        where
            Self: Sized;
    }
    impl One for u32 {
        fn checked_next(self) -> Option<u32> {
            self.checked_add(1)
        }
    }
    impl One for u128 {
        fn checked_next(self) -> Option<u128> {
            self.checked_add(1)
        }
    }
}

/// A loaded list file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedList {
    Domains(DomainSet),
    Addrs(AddrSet),
}

impl NamedList {
    pub fn len(&self) -> usize {
        match self {
            NamedList::Domains(d) => d.len(),
            NamedList::Addrs(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What loading a list found, for the log line and the skipped-lines warning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListStats {
    /// Entries taken (a hosts-file line with three names counts three); duplicates count each time.
    pub entries: usize,
    /// Lines skipped as invalid or unsupported syntax (comments and blank lines are not counted).
    pub skipped: usize,
    /// The first few skipped line numbers (1-based), to point the admin at them.
    pub first_skipped_lines: Vec<usize>,
}

impl ListStats {
    /// A warning line when lines were skipped, e.g.
    /// `ads.txt: 3 lines skipped as invalid or unsupported (lines 4, 9, 12)`.
    pub fn warning(&self, origin: &str) -> Option<String> {
        if self.skipped == 0 {
            return None;
        }
        let lines: Vec<String> = self.first_skipped_lines.iter().map(|l| l.to_string()).collect();
        let more = if self.skipped > self.first_skipped_lines.len() { ", ..." } else { "" };
        Some(format!(
            "{origin}: {} line{} skipped as invalid or unsupported (line{} {}{more})",
            self.skipped,
            if self.skipped == 1 { "" } else { "s" },
            if self.first_skipped_lines.len() == 1 { "" } else { "s" },
            lines.join(", ")
        ))
    }

    fn skip(&mut self, line: usize) {
        self.skipped += 1;
        if self.first_skipped_lines.len() < MAX_SKIPPED_LINES {
            self.first_skipped_lines.push(line);
        }
    }
}

/// Reads and parses a list file; see [`parse_list`]. Bytes that are not UTF-8 are replaced rather
/// than refused: they only ever occur in comments or junk lines, which are skipped anyway.
pub fn load_list(path: &Path) -> Result<(NamedList, ListStats), ListError> {
    let bytes = std::fs::read(path).map_err(|source| ListError::Io { path: path.display().to_string(), source })?;
    let text = String::from_utf8_lossy(&bytes);
    parse_list(&text, &path.display().to_string())
}

/// Hosts-file names that describe the machine itself, not a blocked domain.
fn is_hosts_special(name: &str) -> bool {
    let n = name.strip_suffix('.').unwrap_or(name);
    n.eq_ignore_ascii_case("localhost")
        || n.eq_ignore_ascii_case("localhost.localdomain")
        || n.eq_ignore_ascii_case("local")
        || n.eq_ignore_ascii_case("broadcasthost")
        || n.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("ip6-"))
        || n.parse::<IpAddr>().is_ok()
}

fn parse_addr(s: &str) -> Option<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// Only hex digits, dots, colons and slashes, and either a colon, a slash or only digits and dots:
/// an attempt at an address, not a domain (no TLD is numeric).
fn looks_like_addr(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit() || matches!(b, b'.' | b':' | b'/'))
        && (s.contains([':', '/']) || s.bytes().all(|b| b.is_ascii_digit() || b == b'.'))
}

/// Strips a `#` or `;` comment that starts the line or follows whitespace. A `#` glued to text
/// (`example.com##.ad`, Adblock cosmetic syntax) is not a comment, so such lines end up skipped.
fn strip_comment(line: &str) -> &str {
    let b = line.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if (c == b'#' || c == b';') && (i == 0 || b[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Domains,
    Addrs,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Domains => "domains",
            Kind::Addrs => "addresses",
        }
    }
    fn one(self) -> &'static str {
        match self {
            Kind::Domains => "a domain",
            Kind::Addrs => "an address",
        }
    }
}

/// What one line holds.
enum Line<'a> {
    Nothing,
    Skip,
    Addr(IpNet, &'a str),
    BadAddr(&'a str),
    /// Domain entries (a hosts line may carry several); some may still fail validation.
    Domains(Vec<&'a str>),
}

fn classify(raw: &str) -> Line<'_> {
    let line = raw.trim();
    // `!` comments and the `[Adblock Plus 2.0]` header of Adblock lists.
    if line.is_empty() || line.starts_with('!') || (line.starts_with('[') && line.ends_with(']')) {
        return Line::Nothing;
    }
    let line = strip_comment(line).trim();
    if line.is_empty() {
        return Line::Nothing;
    }
    // Adblock: only a plain `||domain^` blocks a whole domain; options (`$third-party`), paths and
    // exceptions (`@@`) mean something narrower that a domain list cannot express.
    if let Some(rest) = line.strip_prefix("||") {
        return match rest.strip_suffix('^') {
            Some(d) if !d.is_empty() && !d.contains(['^', '/', '$', '|']) => Line::Domains(vec![d]),
            _ => Line::Skip,
        };
    }
    let mut tokens = line.split_ascii_whitespace();
    let first = tokens.next().unwrap_or_default();
    let rest: Vec<&str> = tokens.collect();
    if rest.is_empty() {
        if let Some(net) = parse_addr(first) {
            return Line::Addr(net, first);
        }
        if looks_like_addr(first) {
            return Line::BadAddr(first);
        }
        return Line::Domains(vec![first]);
    }
    // Hosts file: `0.0.0.0 ads.example.com [more names]`; the address (maybe with a `%zone`) is ignored.
    if first.split('%').next().unwrap_or_default().parse::<IpAddr>().is_ok() {
        let names: Vec<&str> = rest.into_iter().filter(|n| !is_hosts_special(n)).collect();
        return if names.is_empty() { Line::Nothing } else { Line::Domains(names) };
    }
    Line::Skip
}

/// Parses a list from memory. `origin` names it in errors and warnings (a path, or the config key).
///
/// Accepted, detected per line: one domain per line; hosts files (`0.0.0.0 ads.example.com`,
/// `127.0.0.1 a b c`, with `localhost`, `broadcasthost`, `ip6-*` and similar skipped); Adblock
/// `||domain^`; one address or CIDR network per line; `#` and `;` comments at line start or after
/// whitespace; `!` comment lines; blank lines; CRLF line endings.
pub fn parse_list(text: &str, origin: &str) -> Result<(NamedList, ListStats), ListError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut stats = ListStats::default();
    let mut domains = DomainSet::new();
    let mut addrs = AddrSet::new();
    // The kind and the line that decided it.
    let mut kind: Option<(Kind, usize)> = None;
    // An address typo seen before the list's kind was known: an error if it turns out to hold addresses.
    let mut pending_bad_addr: Option<(usize, String)> = None;

    let mixed = |line: usize, entry: &str, found: Kind, (holds, first_line): (Kind, usize)| ListError::Mixed {
        origin: origin.to_string(),
        line,
        entry: entry.to_string(),
        found: found.one(),
        holds: holds.noun(),
        first_line,
    };
    let bad_addr = |line: usize, entry: String| ListError::BadAddrLine { origin: origin.to_string(), line, entry };

    for (i, raw) in text.lines().enumerate() {
        let n = i + 1;
        match classify(raw) {
            Line::Nothing => {}
            Line::Skip => stats.skip(n),
            Line::BadAddr(entry) => match kind {
                Some((Kind::Addrs, _)) => return Err(bad_addr(n, entry.to_string())),
                Some((Kind::Domains, _)) => stats.skip(n),
                None => {
                    stats.skip(n);
                    pending_bad_addr.get_or_insert((n, entry.to_string()));
                }
            },
            Line::Addr(net, entry) => {
                match kind {
                    Some(k @ (Kind::Domains, _)) => return Err(mixed(n, entry, Kind::Addrs, k)),
                    Some(_) => {}
                    None => {
                        if let Some((line, entry)) = pending_bad_addr.take() {
                            return Err(bad_addr(line, entry));
                        }
                        kind = Some((Kind::Addrs, n));
                    }
                }
                addrs.insert(net);
                stats.entries += 1;
            }
            Line::Domains(names) => {
                let mut any_bad = false;
                for name in names {
                    match parse_domain_entry(name) {
                        Ok((key, flags)) => {
                            match kind {
                                Some(k @ (Kind::Addrs, _)) => return Err(mixed(n, name, Kind::Domains, k)),
                                Some(_) => {}
                                None => kind = Some((Kind::Domains, n)),
                            }
                            domains.insert_parsed(key, flags);
                            stats.entries += 1;
                        }
                        Err(_) => any_bad = true,
                    }
                }
                if any_bad {
                    stats.skip(n);
                }
            }
        }
    }

    match kind {
        Some((Kind::Domains, _)) => {
            domains.shrink_to_fit();
            Ok((NamedList::Domains(domains), stats))
        }
        Some((Kind::Addrs, _)) => {
            addrs.finish();
            Ok((NamedList::Addrs(addrs), stats))
        }
        None => Err(ListError::Empty { origin: origin.to_string(), skipped: stats.skipped }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domains(entries: &[&str]) -> DomainSet {
        let mut s = DomainSet::new();
        for e in entries {
            s.insert(e).unwrap();
        }
        s
    }

    fn parse(text: &str) -> Result<(NamedList, ListStats), String> {
        parse_list(text, "test.txt").map_err(|e| e.to_string())
    }

    fn parse_domains(text: &str) -> (DomainSet, ListStats) {
        match parse(text).unwrap() {
            (NamedList::Domains(d), st) => (d, st),
            (other, _) => panic!("expected domains, got {other:?}"),
        }
    }

    #[test]
    fn entry_matches_itself_and_below_at_label_boundaries() {
        let s = domains(&["example.com"]);
        assert!(s.contains("example.com"));
        assert!(s.contains("ads.example.com"));
        assert!(s.contains("a.b.example.com"));
        assert!(!s.contains("notexample.com"));
        assert!(!s.contains("example.com.evil.net"));
        assert!(!s.contains("com"));
        assert!(!s.contains("xample.com"));
        assert!(!s.contains(""));
        assert!(!s.contains("."));
    }

    #[test]
    fn wildcard_matches_only_below() {
        let s = domains(&["*.example.com"]);
        assert!(!s.contains("example.com"));
        assert!(s.contains("ads.example.com"));
        assert!(s.contains("a.b.example.com"));
        // Adding the plain entry widens it; the reverse order gives the same set.
        let a = domains(&["*.example.com", "example.com"]);
        let b = domains(&["example.com", "*.example.com"]);
        assert!(a.contains("example.com") && b.contains("example.com"));
        assert_eq!(a, b);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn case_and_trailing_dot_are_ignored() {
        let s = domains(&["Ads.Example.COM."]);
        assert!(s.contains("ads.example.com"));
        assert!(s.contains("ADS.EXAMPLE.COM."));
        assert!(s.contains("x.Ads.example.com"));
        assert!(!s.contains("ads.example.com.."));
        // Non-ASCII input never matches and never panics.
        assert!(!s.contains("ädS.example.com"));
        assert!(!s.contains(&"a.".repeat(200)));
    }

    #[test]
    fn invalid_entries_are_refused_with_a_reason() {
        let mut s = DomainSet::new();
        let long_label = format!("{}.com", "a".repeat(64));
        let long_name = format!("{}com", "abcdefghi.".repeat(26));
        for (bad, why) in [
            ("", "empty"),
            ("*.", "`*`"),
            ("a..b", "empty label"),
            (".example.com", "empty label"),
            ("exa mple.com", "only letters"),
            ("ads.*.example.com", "`*`"),
            ("bad!name.com", "only letters"),
            ("ädS.example.com", "punycode"),
            (long_label.as_str(), "63"),
            (long_name.as_str(), "253"),
        ] {
            let e = s.insert(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        assert!(s.is_empty());
        // Limits are inclusive.
        s.insert(&format!("{}.com", "a".repeat(63))).unwrap();
        s.insert(&format!("{}.{}", "a".repeat(63), ["b".repeat(63), "c".repeat(63), "d".repeat(61)].join(".")))
            .unwrap();
        s.insert("xn--bcher-kva.example").unwrap();
        s.insert("_dmarc.example.com").unwrap();
        assert_eq!(s.len(), 4);
    }

    fn addrs(nets: &[&str]) -> AddrSet {
        let mut s = AddrSet::new();
        for n in nets {
            s.insert(parse_addr(n).unwrap());
        }
        s.finish();
        s
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addr_set_merges_and_finds() {
        let s = addrs(&["10.0.0.0/8", "10.1.0.0/16", "11.0.0.0/8", "192.168.1.7", "2001:db8::/32", "fd00::1"]);
        assert_eq!(s.len(), 6);
        // 10/8 swallows 10.1/16, and 11/8 is adjacent: one range.
        assert_eq!(s.ranges(), 4);
        for yes in ["10.0.0.0", "10.255.255.255", "11.255.255.255", "192.168.1.7", "2001:db8::", "fd00::1"] {
            assert!(s.contains(ip(yes)), "{yes}");
        }
        for no in ["9.255.255.255", "12.0.0.0", "192.168.1.6", "192.168.1.8", "2001:db9::", "fd00::2", "::"] {
            assert!(!s.contains(ip(no)), "{no}");
        }
        // IPv4-mapped IPv6 addresses are looked up as IPv4.
        assert!(s.contains(ip("::ffff:10.2.3.4")));
    }

    #[test]
    fn addr_set_edges() {
        let all = addrs(&["0.0.0.0/0", "::/0"]);
        assert!(all.contains(ip("0.0.0.0")) && all.contains(ip("255.255.255.255")));
        assert!(all.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
        let top = addrs(&["255.255.255.254/31", "255.255.255.255", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]);
        assert_eq!(top.ranges(), 2);
        assert!(top.contains(ip("255.255.255.255")) && !top.contains(ip("255.255.255.253")));
        // Host bits are dropped.
        assert!(addrs(&["10.9.9.9/8"]).contains(ip("10.0.0.1")));
        assert!(!AddrSet::new().contains(ip("1.2.3.4")));
        // Before finish(): still correct, just linear.
        let mut s = AddrSet::new();
        s.insert(parse_addr("10.0.0.0/8").unwrap());
        s.insert(parse_addr("1.0.0.0/8").unwrap());
        assert!(s.contains(ip("10.1.1.1")) && s.contains(ip("1.1.1.1")) && !s.contains(ip("2.1.1.1")));
    }

    #[test]
    fn hosts_lines_skip_special_names() {
        let (d, st) = parse_domains(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n255.255.255.255 broadcasthost\n\
             127.0.0.1 localhost.localdomain\nfe80::1%lo0 localhost\n0.0.0.0 0.0.0.0\n\
             0.0.0.0 ads.example.com\n127.0.0.1 a.x.org b.x.org\tc.x.org # three\n",
        );
        assert_eq!(d.len(), 4);
        assert_eq!(st, ListStats { entries: 4, skipped: 0, first_skipped_lines: vec![] });
        assert!(d.contains("ads.example.com") && d.contains("c.x.org") && !d.contains("localhost"));
    }

    #[test]
    fn comments_blank_lines_crlf_and_bom() {
        let (d, st) = parse_domains(
            "\u{feff}# header\r\n! adblock comment\r\n\r\n   \r\nexample.com # trailing\r\n\tspaced.example.net  \r\n\
             ; semicolon\r\nlast.example.org",
        );
        assert_eq!(st.entries, 3);
        assert_eq!(st.skipped, 0);
        assert!(d.contains("example.com") && d.contains("spaced.example.net") && d.contains("last.example.org"));
    }

    #[test]
    fn adblock_takes_plain_domain_rules_and_counts_the_rest() {
        let (d, st) = parse_domains(
            "[Adblock Plus 2.0]\n! Title: x\n||ads.example.com^\n||b.example.com^$third-party\n@@||ok.example.com^\n\
             example.com##.banner\n||p.example.com/ads^\n||*.w.example.com^\n",
        );
        assert_eq!(d.len(), 2);
        assert!(d.contains("x.ads.example.com") && d.contains("a.w.example.com") && !d.contains("w.example.com"));
        assert_eq!(st, ListStats { entries: 2, skipped: 4, first_skipped_lines: vec![4, 5, 6, 7] });
    }

    #[test]
    fn skipped_lines_are_counted_and_the_first_few_kept() {
        let mut text = String::from("good.example.com\n");
        for i in 0..8 {
            text.push_str(&format!("bad{i}!.example.com\n"));
        }
        let (_, st) = parse_domains(&text);
        assert_eq!((st.entries, st.skipped), (1, 8));
        assert_eq!(st.first_skipped_lines, vec![2, 3, 4, 5, 6]);
        let w = st.warning("ads.txt").unwrap();
        assert_eq!(w, "ads.txt: 8 lines skipped as invalid or unsupported (lines 2, 3, 4, 5, 6, ...)");
        let one = ListStats { entries: 1, skipped: 1, first_skipped_lines: vec![7] };
        assert_eq!(one.warning("x").unwrap(), "x: 1 line skipped as invalid or unsupported (line 7)");
        assert_eq!(ListStats::default().warning("x"), None);
    }

    #[test]
    fn address_lists() {
        let (list, st) = parse("; drop list\n1.10.16.0/20 ; SBL1\n10.0.0.1\n# v6\n2001:db8::/32\n").unwrap();
        let NamedList::Addrs(a) = list else { panic!("expected addresses") };
        assert_eq!((a.len(), st.entries, st.skipped), (3, 3, 0));
        assert!(a.contains(ip("1.10.31.255")) && !a.contains(ip("1.10.32.0")) && a.contains(ip("2001:db8::5")));
        // Junk that is not address-shaped is skipped in an address list too.
        let (_, st) = parse("10.0.0.0/8\nfoo bar\n").unwrap();
        assert_eq!(st.first_skipped_lines, vec![2]);
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("example.com\n# c\n10.0.0.0/8\n").unwrap_err();
        assert_eq!(
            e,
            "test.txt:3: `10.0.0.0/8` is an address, but this list holds domains (first at line 1); \
             a list holds either domains or addresses"
        );
        let e = parse("\n10.0.0.0/8\nexample.com\n").unwrap_err();
        assert!(e.starts_with("test.txt:3: `example.com` is a domain, but this list holds addresses (first at line 2)"));
        let e = parse("example.com\n10.0.0.0/8 ; SBL1\n").unwrap_err();
        assert!(e.starts_with("test.txt:2: `10.0.0.0/8` is an address"), "{e}");
        // Hosts lines are domain entries.
        let e = parse("10.0.0.0/8\n0.0.0.0 ads.example.com\n").unwrap_err();
        assert!(e.starts_with("test.txt:2: `ads.example.com` is a domain"), "{e}");
        // An address typo in an address list is an error, before or after the list's kind is known.
        let e = parse("10.0.0.0/8\n10.0.0.300/8\n").unwrap_err();
        assert_eq!(
            e,
            "test.txt:2: `10.0.0.300/8` is not a valid IP address or CIDR network (e.g. 192.168.1.0/24, fd00::/8)"
        );
        let e = parse("# x\n10.0.0.0/33\n10.0.0.0/8\n").unwrap_err();
        assert!(e.starts_with("test.txt:2: `10.0.0.0/33`"), "{e}");
        // ... but only skipped in a domain list.
        let (_, st) = parse_domains("999.1.1.1\nexample.com\n");
        assert_eq!(st.first_skipped_lines, vec![1]);
        let e = parse("# only comments\n! and junk\nfoo bar\n").unwrap_err();
        assert_eq!(e, "test.txt: no domain or address in the list (1 lines skipped as invalid)");
        assert!(parse("").unwrap_err().contains("no domain or address"));
    }

    #[test]
    fn inline_lists_deserialize_with_positions() {
        #[derive(Deserialize, Debug)]
        struct Doc {
            d: DomainSet,
            a: AddrSet,
        }
        let doc: Doc = toml::from_str("d = ['example.com', '*.x.org']\na = ['10.0.0.0/8', 'fd00::1']\n").unwrap();
        assert!(doc.d.contains("a.example.com") && doc.a.contains(ip("10.1.1.1")));
        // toml points at the array holding the bad element.
        let e = toml::from_str::<Doc>("d = ['example.com']\na = ['10.0.0.0/8', 'nope']\n").unwrap_err().to_string();
        assert!(e.contains("`nope`") && e.contains("line 2"), "{e}");
        let e = toml::from_str::<Doc>("d = ['a..b']\na = []\n").unwrap_err().to_string();
        assert!(e.contains("`a..b`") && e.contains("line 1"), "{e}");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "\0", "||^", "||", "|| ^", "*", "*.", "0.0.0.0", "::", "%", "0.0.0.0%", "fe80::%x", "\u{feff}", "#", "[",
            "a\u{301}",
        ] {
            let _ = parse(text);
            let _ = DomainSet::new().insert(text);
            let _ = domains(&["example.com"]).contains(text);
        }
    }
}
