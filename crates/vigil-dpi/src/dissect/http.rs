//! HTTP/1.x: method, Host, path, User-Agent; CONNECT targets; the server's status line.
//!
//! Recognised on any port by the request line. The client's first bytes are buffered (up to
//! [`MAX_HEAD`]) so that a request head split over segments still yields its headers; the buffer
//! takes consecutive client payloads in arrival order, which is what clients send in practice.

use super::{Dissector, Step};
use crate::facts::{Facts, NameSource};
use crate::view::{Dir, PacketView};

/// Client bytes kept while looking for the end of the request head.
pub const MAX_HEAD: usize = 4096;
/// Packets to wait for the server's status line once the request head is known.
const MAX_WAIT: u8 = 8;

/// Request methods recognised (RFC 9110 plus WebDAV and a few common extensions).
const METHODS: &[&[u8]] = &[
    b"GET",
    b"POST",
    b"HEAD",
    b"PUT",
    b"DELETE",
    b"OPTIONS",
    b"PATCH",
    b"CONNECT",
    b"TRACE",
    b"PROPFIND",
    b"PROPPATCH",
    b"MKCOL",
    b"COPY",
    b"MOVE",
    b"LOCK",
    b"UNLOCK",
    b"REPORT",
    b"SEARCH",
    b"MKCALENDAR",
    b"SUBSCRIBE",
    b"UNSUBSCRIBE",
    b"NOTIFY",
    b"PURGE",
];

/// How far a request line got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    /// Not a request (or not yet decidable: a prefix of one).
    No,
    Prefix,
    Yes,
}

/// Whether `buf` starts with (a prefix of) "METHOD ".
fn method_prefix(buf: &[u8]) -> Head {
    for m in METHODS {
        if buf.len() > m.len() {
            if buf.starts_with(m) && buf.get(m.len()) == Some(&b' ') {
                return Head::Yes;
            }
        } else if m.starts_with(buf) {
            return Head::Prefix;
        }
    }
    Head::No
}

/// A parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    pub target: &'a str,
    /// "HTTP/1.1", "HTTP/1.0".
    pub version: &'a str,
}

/// Why a request or status line did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("line incomplete")]
    Incomplete,
    #[error("not an HTTP/1.x line")]
    Malformed,
}

/// The first line of `buf` (without CR LF), or `Incomplete` when no LF yet.
pub(crate) fn first_line(buf: &[u8]) -> Result<&[u8], HttpError> {
    let end = buf.iter().position(|&b| b == b'\n').ok_or(HttpError::Incomplete)?;
    let line = buf.get(..end).unwrap_or_default();
    Ok(line.strip_suffix(b"\r").unwrap_or(line))
}

fn is_version(v: &[u8]) -> bool {
    matches!(v, b"HTTP/1.0" | b"HTTP/1.1" | b"HTTP/0.9")
}

/// Parses "METHOD SP target SP HTTP/1.x".
pub fn parse_request_line(buf: &[u8]) -> Result<RequestLine<'_>, HttpError> {
    let line = first_line(buf)?;
    let text = std::str::from_utf8(line).map_err(|_| HttpError::Malformed)?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed);
    };
    if method_prefix(line) != Head::Yes || target.is_empty() || !is_version(version.as_bytes()) {
        return Err(HttpError::Malformed);
    }
    if target.bytes().any(|b| b.is_ascii_control()) {
        return Err(HttpError::Malformed);
    }
    Ok(RequestLine { method, target, version })
}

/// Parses a status line "HTTP/1.x SP 3DIGIT [SP reason]" and returns the status code.
pub fn parse_status_line(buf: &[u8]) -> Result<u16, HttpError> {
    let line = match first_line(buf) {
        Ok(l) => l,
        // A status line is short: decide on what is there when the segment ends early.
        Err(_) if buf.len() >= 12 => buf,
        Err(e) => return Err(e),
    };
    let (version, rest) = line.split_at_checked(8).ok_or(HttpError::Malformed)?;
    if !is_version(version) {
        return Err(HttpError::Malformed);
    }
    let code = rest.get(1..4).ok_or(HttpError::Malformed)?;
    if rest.first() != Some(&b' ') || !code.iter().all(u8::is_ascii_digit) || !matches!(rest.get(4), None | Some(b' '))
    {
        return Err(HttpError::Malformed);
    }
    let code = code.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if (100..=599).contains(&code) {
        Ok(code)
    } else {
        Err(HttpError::Malformed)
    }
}

/// Header lines after the first line of `buf`, up to the blank line (or the end of the buffer).
/// Yields (name, value) with the value trimmed; a partial last line is not yielded.
pub(crate) fn headers(buf: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut lines = buf.split(|&b| b == b'\n');
    lines.next(); // request or status line
    let complete = buf.iter().filter(|&&b| b == b'\n').count().saturating_sub(1);
    lines.take(complete).map(|l| l.strip_suffix(b"\r").unwrap_or(l)).take_while(|l| !l.is_empty()).filter_map(|l| {
        let colon = l.iter().position(|&b| b == b':')?;
        let (name, value) = l.split_at_checked(colon)?;
        Some((name.trim_ascii(), value.get(1..).unwrap_or_default().trim_ascii()))
    })
}

/// True once the buffer holds the blank line that ends a header block.
pub(crate) fn head_complete(buf: &[u8]) -> bool {
    buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n")
}

/// "host:port", "[v6]:port", "host" -> host. Returns None for an empty or implausible host.
pub(crate) fn host_without_port(authority: &str) -> Option<&str> {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next()?
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => a,
        }
    };
    let ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':' | b'*'));
    ok.then_some(host)
}

/// At most `cap` bytes of `b` as text (invalid UTF-8 replaced).
pub(crate) fn lossy(b: &[u8], cap: usize) -> String {
    String::from_utf8_lossy(b.get(..cap).unwrap_or(b)).into_owned()
}

#[derive(Debug, Default)]
pub struct Http {
    /// The client's first bytes, while the request head is incomplete.
    head: Vec<u8>,
    /// The request line has been parsed (protocol set).
    request_seen: bool,
    /// The header block has been read (or the cap reached).
    head_done: bool,
    /// Status code of the server's first response.
    status: Option<u16>,
    /// Packets seen since the request head was read, while waiting for the response.
    waited: u8,
}

impl Http {
    /// Status code of the server's first response, once seen.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    fn on_client(&mut self, payload: &[u8], facts: &mut Facts) -> Step {
        if self.head_done {
            return self.after_head();
        }
        if self.head.is_empty() && method_prefix(payload) == Head::No {
            return if self.request_seen || self.status.is_some() { self.after_head() } else { Step::NotMine };
        }
        let room = MAX_HEAD.saturating_sub(self.head.len());
        self.head.extend_from_slice(payload.get(..room).unwrap_or(payload));
        if !self.request_seen {
            match parse_request_line(&self.head) {
                Ok(req) => {
                    let connect = req.method == "CONNECT";
                    facts.protocol = Some(if connect { "HTTP_Connect" } else { "HTTP" });
                    facts.http_method = Some(req.method.to_owned());
                    facts.http_path = Some(req.target.chars().take(1024).collect());
                    if connect {
                        if let Some(h) = host_without_port(req.target) {
                            facts.set_hostname(h, NameSource::Http);
                        }
                    } else if let Some(h) = absolute_uri_host(req.target) {
                        // A proxy request: the URI names the host even before the Host header.
                        facts.set_hostname(h, NameSource::Http);
                    }
                    self.request_seen = true;
                }
                Err(HttpError::Incomplete) if self.head.len() < MAX_HEAD && method_prefix(&self.head) != Head::No => {
                    return Step::NeedMore;
                }
                Err(_) => return Step::NotMine,
            }
        }
        let complete = head_complete(&self.head);
        if complete || self.head.len() >= MAX_HEAD {
            self.read_headers(facts);
            self.head_done = true;
            self.head = Vec::new();
        }
        if self.head_done && self.status.is_some() {
            Step::Done
        } else {
            Step::Identified
        }
    }

    fn read_headers(&self, facts: &mut Facts) {
        for (name, value) in headers(&self.head) {
            if name.eq_ignore_ascii_case(b"host") {
                let host = String::from_utf8_lossy(value);
                if let Some(h) = host_without_port(&host) {
                    // The Host header beats a hostname from an absolute URI or CONNECT target
                    // only when none was set; `set_hostname` keeps the first from this source.
                    facts.set_hostname(h, NameSource::Http);
                }
            } else if name.eq_ignore_ascii_case(b"user-agent") && facts.user_agent.is_none() {
                facts.user_agent = Some(lossy(value, 512));
            }
        }
    }

    fn on_server(&mut self, payload: &[u8], facts: &mut Facts) -> Step {
        if self.status.is_none() {
            match parse_status_line(payload) {
                Ok(code) => {
                    self.status = Some(code);
                    if facts.protocol.is_none() {
                        facts.protocol = Some("HTTP"); // joined mid-flow: the response tells
                    }
                    for (name, value) in headers(payload) {
                        if name.eq_ignore_ascii_case(b"server") && facts.server_banner.is_none() {
                            facts.server_banner = Some(lossy(value, 256));
                        }
                    }
                    if !self.request_seen {
                        return Step::Identified;
                    }
                }
                Err(_) if !self.request_seen => return Step::NotMine,
                Err(_) => {}
            }
        }
        if self.head_done && self.status.is_some() {
            // Headers still in progress count as done when the server already answered.
            return Step::Done;
        }
        if self.request_seen {
            self.after_head()
        } else {
            Step::Identified
        }
    }

    fn after_head(&mut self) -> Step {
        self.waited = self.waited.saturating_add(1);
        if self.waited >= MAX_WAIT || self.status.is_some() && self.head_done {
            Step::Done
        } else {
            Step::Identified
        }
    }
}

/// "http://host:port/path" -> host.
fn absolute_uri_host(target: &str) -> Option<&str> {
    let rest = target.strip_prefix("http://").or_else(|| target.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    host_without_port(authority)
}

impl Dissector for Http {
    fn name(&self) -> &'static str {
        "http"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if pkt.payload.is_empty() {
            return if self.request_seen || self.status.is_some() { Step::Identified } else { Step::NeedMore };
        }
        match pkt.dir {
            Dir::ToServer => self.on_client(pkt.payload, facts),
            Dir::ToClient => self.on_server(pkt.payload, facts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    const GET: &[u8] = include_bytes!("../../tests/fixtures/http/get_request.bin");
    const RESP: &[u8] = include_bytes!("../../tests/fixtures/http/response_head.bin");
    const CONNECT: &[u8] = include_bytes!("../../tests/fixtures/http/connect_request.bin");

    #[test]
    fn real_get_and_response() {
        let mut facts = Facts::default();
        let steps = run(&mut Http::default(), &[(Dir::ToServer, GET), (Dir::ToClient, RESP)], 80, &mut facts);
        assert_eq!(steps, [Step::Identified, Step::Done]);
        assert_eq!(facts.protocol, Some("HTTP"));
        assert_eq!(facts.hostname.as_deref(), Some("check.googlezip.net"));
        assert_eq!(facts.name_source, Some(NameSource::Http));
        assert_eq!(facts.http_method.as_deref(), Some("GET"));
        assert_eq!(facts.http_path.as_deref(), Some("/connect"));
        assert!(facts.user_agent.as_deref().unwrap_or_default().starts_with("Mozilla/5.0 (Linux; Android 9"));
        assert_eq!(facts.server_banner.as_deref(), Some("sffe"));
    }

    #[test]
    fn request_split_across_segments() {
        for cut in [1, 3, 4, 10, 30, GET.len() - 3] {
            let (a, b) = GET.split_at(cut);
            let mut facts = Facts::default();
            let mut h = Http::default();
            let s1 = run(&mut h, &[(Dir::ToServer, a)], 8080, &mut facts);
            assert_ne!(s1[0], Step::NotMine, "cut {cut}");
            let s2 = run(&mut h, &[(Dir::ToServer, b)], 8080, &mut facts);
            assert_eq!(s2[0], Step::Identified, "cut {cut}");
            assert_eq!(facts.hostname.as_deref(), Some("check.googlezip.net"), "cut {cut}");
        }
    }

    #[test]
    fn connect_names_the_target() {
        let mut facts = Facts::default();
        let steps = run(&mut Http::default(), &[(Dir::ToServer, CONNECT)], 8080, &mut facts);
        assert_eq!(steps, [Step::Identified]);
        assert_eq!(facts.protocol, Some("HTTP_Connect"));
        assert_eq!(facts.hostname.as_deref(), Some("apache.org"));
        assert_eq!(facts.http_method.as_deref(), Some("CONNECT"));
    }

    #[test]
    fn lines_and_hosts() {
        assert_eq!(parse_status_line(b"HTTP/1.1 404 Not Found\r\n"), Ok(404));
        assert_eq!(parse_status_line(b"HTTP/1.0 200\r\n"), Ok(200));
        assert!(parse_status_line(b"HTTP/2.0 200 OK\r\n").is_err());
        assert!(parse_status_line(b"HTTP/1.1 20x OK\r\n").is_err());
        assert_eq!(parse_request_line(b"GET /a HTTP/1.1\n").map(|r| r.target), Ok("/a"));
        assert_eq!(parse_request_line(b"GET /a HTTP/1.1"), Err(HttpError::Incomplete));
        assert!(parse_request_line(b"GETS /a HTTP/1.1\r\n").is_err());
        assert!(parse_request_line(b"GET /a b HTTP/1.1\r\n").is_err());
        assert_eq!(host_without_port("example.com:8080"), Some("example.com"));
        assert_eq!(host_without_port("[2001:db8::1]:443"), Some("2001:db8::1"));
        assert_eq!(host_without_port("2001:db8::1"), Some("2001:db8::1"));
        assert_eq!(host_without_port("bad host"), None);
        assert_eq!(absolute_uri_host("http://u@proxy.example:3128/x"), Some("proxy.example"));
    }

    #[test]
    fn others_are_not_mine() {
        for p in [&b"SSH-2.0-OpenSSH_8.2p1\r\n"[..], b"\x16\x03\x01\x02\x00\x01", b"220 mail ESMTP\r\n", b"GETX"] {
            let mut facts = Facts::default();
            let s = run(&mut Http::default(), &[(Dir::ToServer, p)], 80, &mut facts);
            assert_eq!(s, [Step::NotMine], "{p:?}");
        }
        // A server speaking first with something else.
        let mut facts = Facts::default();
        let s = run(&mut Http::default(), &[(Dir::ToClient, b"220 ftp ready\r\n")], 21, &mut facts);
        assert_eq!(s, [Step::NotMine]);
        assert_not_mine_on_random(|| Box::new(Http::default()), 6);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Http::default()), &[GET, RESP, CONNECT], 80);
    }
}

/// Shared helpers for the dissector unit tests (real bytes in, steps and facts out).
#[cfg(test)]
pub(crate) mod testutil {
    use crate::dissect::{Dissector, Step};
    use crate::facts::Facts;
    use crate::view::{Dir, PacketView};
    use std::net::{IpAddr, Ipv4Addr};
    use vigil_wire::L4Proto;

    pub fn view<'a>(l4: L4Proto, dir: Dir, payload: &'a [u8], server_port: u16, index: u32) -> PacketView<'a> {
        PacketView {
            dir,
            l4,
            client: (IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10)), 50_000),
            server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), server_port),
            payload,
            tcp_seq: 0,
            tcp_flags: 0x18,
            index,
            ts_micros: 1_700_000_000_000_000 + u64::from(index),
        }
    }

    /// Feeds TCP packets; returns each step.
    pub fn run(d: &mut dyn Dissector, pkts: &[(Dir, &[u8])], port: u16, facts: &mut Facts) -> Vec<Step> {
        run_l4(d, L4Proto::Tcp, pkts, port, facts)
    }

    pub fn run_l4(
        d: &mut dyn Dissector,
        l4: L4Proto,
        pkts: &[(Dir, &[u8])],
        port: u16,
        facts: &mut Facts,
    ) -> Vec<Step> {
        pkts.iter().enumerate().map(|(i, (dir, p))| d.on_packet(&view(l4, *dir, p, port, i as u32), facts)).collect()
    }

    pub struct XorShift(pub u64);
    impl XorShift {
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        pub fn bytes(&mut self, n: usize) -> Vec<u8> {
            (0..n).map(|_| self.next() as u8).collect()
        }
    }

    /// Random payloads (on a port of no protocol) must not be identified within `n` packets.
    pub fn assert_not_mine_on_random(make: impl Fn() -> Box<dyn Dissector>, n: usize) {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for l4 in [L4Proto::Tcp, L4Proto::Udp] {
            for round in 0..300 {
                let mut d = make();
                let mut facts = Facts::default();
                for i in 0..n {
                    let len = 1 + (rng.next() % 600) as usize;
                    let p = rng.bytes(len);
                    let dir = if i % 2 == 0 { Dir::ToServer } else { Dir::ToClient };
                    let s = d.on_packet(&view(l4, dir, &p, 40_000 + round, i as u32), &mut facts);
                    assert!(
                        !matches!(s, Step::Identified | Step::Done),
                        "{} identified random bytes ({l4:?}, round {round}, packet {i})",
                        d.name()
                    );
                    if s == Step::NotMine {
                        break;
                    }
                }
            }
        }
    }

    /// Prefixes and xorshift mutations of real messages, both directions, TCP and UDP: no panic.
    pub fn hostile(make: impl Fn() -> Box<dyn Dissector>, msgs: &[&[u8]], port: u16) {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        for l4 in [L4Proto::Tcp, L4Proto::Udp] {
            for (m, msg) in msgs.iter().enumerate() {
                for cut in 0..=msg.len() {
                    let p = msg.get(..cut).unwrap_or_default();
                    for dir in [Dir::ToServer, Dir::ToClient] {
                        let mut facts = Facts::default();
                        let mut d = make();
                        d.on_packet(&view(l4, dir, p, port, 0), &mut facts);
                        d.on_packet(&view(l4, dir, msg, port, 1), &mut facts);
                    }
                }
                for round in 0..2000u32 {
                    let mut p = msg.to_vec();
                    let flips = 1 + rng.next() % 8;
                    for _ in 0..flips {
                        if p.is_empty() {
                            break;
                        }
                        let i = (rng.next() as usize) % p.len();
                        match rng.next() % 4 {
                            0 => p[i] = rng.next() as u8,
                            1 => p[i] ^= 1 << (rng.next() % 8),
                            2 => p[i] = [0, 0xff, 0x7f, 0x80, 0xc0][(rng.next() % 5) as usize],
                            _ => p.truncate(i),
                        }
                    }
                    let dir = if round % 2 == 0 { Dir::ToServer } else { Dir::ToClient };
                    let mut facts = Facts::default();
                    let mut d = make();
                    for i in 0..3 {
                        d.on_packet(&view(l4, dir, &p, port, i), &mut facts);
                    }
                    let _ = m;
                }
            }
        }
    }
}
