//! FTP control connections (nDPI: "FTP_CONTROL"): the server's "220" greeting and the client's
//! commands; and the data connections they announce (nDPI: "FTP_DATA").
//!
//! SMTP also greets with "220", so an FTP verdict needs an FTP-specific signal: "FTP" in the
//! greeting, an FTP-only command (USER, PASS, SYST, PASV, ...), or port 21.
//!
//! Once identified, the dissector keeps reading the control lines (`Step::Identified`; the flow is
//! identified at once, see [`Dissector::named_when_identified`]) for the data connections they
//! announce, which it hands to the classifier (`facts.announced`, for the shared
//! [`crate::related::RelatedFlows`]):
//! - `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)` (PASV, RFC 959; the numbers are found by
//!   scanning for the first digit, RFC 1123 4.1.2.6) and `229 Entering Extended Passive Mode
//!   (|||port|)` (EPSV, RFC 2428): the client will connect to that port of the server.
//! - `PORT h1,h2,h3,h4,p1,p2` and `EPRT |af|addr|port|` from the client: the server will connect
//!   back to that port of the client (from port 20 usually, not necessarily).
//!
//! A control connection vouches only for connections between its own two hosts: a passive data
//! connection is expected at the control connection's server address whatever address the 227
//! reply names (a server behind NAT often names its private address, and clients such as curl
//! connect to the control address anyway), and an active one only when the announced address is
//! the client's own (anything else is a bounce attempt, RFC 2577). Numbers out of range, port 0
//! and malformed lines are ignored; one connection announces at most [`MAX_ANNOUNCED`].
//!
//! Lines are reassembled per direction across segments (TCP sequence numbers: retransmitted bytes
//! are skipped, a hole drops the line it cuts), up to [`MAX_LINE`] bytes. After `234` (AUTH TLS
//! accepted) the lines are encrypted: the dissector is done.
//!
//! The classifier's packet budget bounds what is seen: 32 payload packets by default, the control
//! connection stays in userspace that long; inline, once it is decided and classified it is
//! offloaded to the kernel and later control lines are never seen (nor past the first
//! `queue_packets` packets of the connection, 32 by default, pure ACKs included, which the kernel
//! queues at all). Data connections announced after that are not recognised (they stay Unknown).

use super::{Dissector, Step};
use crate::facts::{Announced, Facts};
use crate::view::{Dir, PacketView};
use std::net::{IpAddr, Ipv4Addr};
use vigil_wire::tcp;

/// A reply line "NNN" + (' ' | '-' | CR LF): the code and the text after it.
pub(crate) fn reply_code(p: &[u8]) -> Option<(u16, &[u8])> {
    let digits = p.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) || !(b'1'..=b'5').contains(&digits[0]) {
        return None;
    }
    let rest = p.get(3..)?;
    if !matches!(rest.first(), Some(b' ' | b'-' | b'\r' | b'\n')) {
        return None;
    }
    let code = digits.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    Some((code, line_of(rest)))
}

/// The first line of `p` without CR LF.
pub(crate) fn line_of(p: &[u8]) -> &[u8] {
    let end = p.iter().position(|&b| b == b'\n').unwrap_or(p.len());
    let line = p.get(..end).unwrap_or(p);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A command line "VERB[ args]CRLF" with a 3-8 letter verb: the verb (as sent) and the arguments.
pub(crate) fn command(p: &[u8]) -> Option<(&[u8], &[u8])> {
    let line = line_of(p);
    if line.len() == p.len() {
        return None; // commands end with a line break
    }
    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
    let verb = line.get(..end)?;
    if !(3..=8).contains(&verb.len()) || !verb.iter().all(u8::is_ascii_alphabetic) {
        return None;
    }
    Some((verb, line.get(end + 1..).unwrap_or_default()))
}

/// Case-insensitive substring search.
pub(crate) fn contains_ci(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// Commands only FTP uses (USER/PASS are shared with POP3, whose greeting is "+OK", not "220").
const FTP_ONLY: &[&[u8]] = &[
    b"USER", b"PASS", b"ACCT", b"SYST", b"FEAT", b"PWD", b"XPWD", b"CWD", b"CDUP", b"TYPE", b"PASV", b"EPSV", b"PORT",
    b"EPRT", b"LIST", b"NLST", b"MLSD", b"MLST", b"RETR", b"STOR", b"STOU", b"APPE", b"SIZE", b"MDTM", b"OPTS",
    b"REST", b"STRU", b"MODE", b"MKD", b"RMD", b"DELE", b"RNFR", b"RNTO", b"SITE", b"ABOR",
];

fn is_ftp_command(verb: &[u8], args: &[u8]) -> bool {
    FTP_ONLY.iter().any(|c| verb.eq_ignore_ascii_case(c))
        || verb.eq_ignore_ascii_case(b"AUTH") && (contains_ci(args, b"TLS") || contains_ci(args, b"SSL"))
}

/// Connections one control connection may announce (a hostile one must not grow the shared cache).
pub const MAX_ANNOUNCED: u8 = 16;
/// Longest control line kept across segments (PASV/PORT lines are under 100 bytes).
pub const MAX_LINE: usize = 512;

/// A decimal number of 1 to `max_digits` digits at the start of `s` (no more digits follow), and
/// the rest.
fn number(s: &[u8], max_digits: usize) -> Option<(u32, &[u8])> {
    let n = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if n == 0 || n > max_digits {
        return None;
    }
    let v = s.get(..n)?.iter().try_fold(0u32, |v, d| v.checked_mul(10)?.checked_add(u32::from(d - b'0')))?;
    Some((v, s.get(n..)?))
}

/// A port number: 1 to 5 digits, 1-65535.
fn port(s: &[u8]) -> Option<(u16, &[u8])> {
    let (v, rest) = number(s, 5)?;
    let p = u16::try_from(v).ok().filter(|&p| p != 0)?;
    Some((p, rest))
}

/// RFC 959 host-port "h1,h2,h3,h4,p1,p2" at the start of `s`: six numbers 0-255 (port not 0), and
/// the rest.
pub(crate) fn host_port(s: &[u8]) -> Option<(Ipv4Addr, u16, &[u8])> {
    let mut n = [0u8; 6];
    let mut rest = s;
    for (i, slot) in n.iter_mut().enumerate() {
        if i > 0 {
            rest = rest.strip_prefix(b",")?;
        }
        let (v, r) = number(rest, 3)?;
        *slot = u8::try_from(v).ok()?;
        rest = r;
    }
    let port = u16::from_be_bytes([n[4], n[5]]);
    (port != 0).then(|| (Ipv4Addr::new(n[0], n[1], n[2], n[3]), port, rest))
}

/// The text of a 227 reply: the address and port, found from the first digit on.
pub(crate) fn pasv_reply(text: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let at = text.iter().position(u8::is_ascii_digit)?;
    let (addr, port, _) = host_port(text.get(at..)?)?;
    Some((addr, port))
}

/// A delimiter of RFC 2428's EPRT/EPSV fields: printable ASCII, not a digit.
fn delimiter(d: u8) -> bool {
    (33..=126).contains(&d) && !d.is_ascii_digit()
}

/// The text of a 229 reply: the port in "(<d><d><d><port><d>)".
pub(crate) fn epsv_reply(text: &[u8]) -> Option<u16> {
    let open = text.iter().position(|&b| b == b'(')?;
    let s = text.get(open + 1..)?;
    let d = *s.first()?;
    if !delimiter(d) || s.get(..3)? != [d, d, d] {
        return None;
    }
    let (p, rest) = port(s.get(3..)?)?;
    (rest.get(..2)? == [d, b')']).then_some(p)
}

/// PORT arguments: "h1,h2,h3,h4,p1,p2" and nothing else.
pub(crate) fn port_command(args: &[u8]) -> Option<(Ipv4Addr, u16)> {
    let (addr, port, rest) = host_port(args.trim_ascii())?;
    rest.is_empty().then_some((addr, port))
}

/// EPRT arguments: "<d><af><d><address><d><port><d>", af 1 (IPv4) or 2 (IPv6).
pub(crate) fn eprt_command(args: &[u8]) -> Option<(IpAddr, u16)> {
    let args = args.trim_ascii();
    let (&d, rest) = args.split_first()?;
    if !delimiter(d) {
        return None;
    }
    let mut fields = rest.split(|&b| b == d);
    let (af, addr, p, end) = (fields.next()?, fields.next()?, fields.next()?, fields.next()?);
    if !end.is_empty() || fields.next().is_some() {
        return None;
    }
    let addr = std::str::from_utf8(addr).ok()?;
    let addr = match af {
        b"1" => IpAddr::V4(addr.parse().ok()?),
        b"2" => IpAddr::V6(addr.parse().ok()?),
        _ => return None,
    };
    let (p, rest) = port(p)?;
    rest.is_empty().then_some((addr, p))
}

/// The lines of one direction of the control connection, reassembled across segments.
#[derive(Debug, Default)]
struct Lines {
    /// Sequence number of the next byte expected, once known.
    next_seq: Option<u32>,
    /// The line in progress (no line break yet).
    partial: Vec<u8>,
    /// The line in progress is cut (too long, or a hole): skip to the next line break.
    skipping: bool,
}

impl Lines {
    fn on_syn(&mut self, seq: u32) {
        self.next_seq.get_or_insert(seq.wrapping_add(1));
    }

    /// Feeds one segment; `on_line` gets each complete line, without its line break.
    fn push(&mut self, seq: u32, segment: &[u8], mut on_line: impl FnMut(&[u8])) {
        let mut data = segment;
        if let Some(next) = self.next_seq {
            let ahead = seq.wrapping_sub(next) as i32;
            if ahead < 0 {
                // Retransmitted bytes: only what follows them is new.
                match data.get(ahead.unsigned_abs() as usize..) {
                    Some(rest) if !rest.is_empty() => data = rest,
                    _ => return,
                }
            } else if ahead > 0 {
                // A hole (lost or overtaken segment): the line in progress lacks its middle.
                self.partial.clear();
                self.skipping = true;
            }
        }
        self.next_seq = Some(seq.wrapping_add(segment.len() as u32));
        while let Some(nl) = data.iter().position(|&b| b == b'\n') {
            let (head, tail) = data.split_at(nl);
            data = tail.get(1..).unwrap_or_default();
            if std::mem::take(&mut self.skipping) || self.partial.len() + head.len() > MAX_LINE {
                self.partial.clear();
                continue;
            }
            let line = if self.partial.is_empty() {
                head
            } else {
                self.partial.extend_from_slice(head);
                &self.partial
            };
            on_line(line.strip_suffix(b"\r").unwrap_or(line));
            self.partial.clear();
        }
        if !self.skipping {
            if self.partial.len() + data.len() <= MAX_LINE {
                self.partial.extend_from_slice(data);
            } else {
                self.partial.clear();
                self.skipping = true;
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct Ftp {
    /// The server greeted with "220" (not yet known to be FTP).
    greeted: bool,
    identified: bool,
    /// Per direction (`Dir::index`).
    lines: [Lines; 2],
    /// Connections announced so far.
    announced: u8,
    /// AUTH TLS was accepted: the rest is encrypted.
    tls: bool,
}

impl Ftp {
    /// Reads the control lines of one segment for announced data connections.
    fn extract(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let identified = self.identified;
        let (mut announced, mut tls) = (self.announced, self.tls);
        let mut announce = |from: IpAddr, to: (IpAddr, u16)| {
            if announced < MAX_ANNOUNCED {
                announced += 1;
                facts.announced.push(Announced { protocol: "FTP_DATA", from, to });
            }
        };
        let (client, server) = (pkt.client.0, pkt.server.0);
        let dir = pkt.dir;
        self.lines[dir.index()].push(pkt.tcp_seq, pkt.payload, |line| {
            if !identified || tls {
                return;
            }
            match dir {
                Dir::ToClient => match reply_code(line) {
                    // The data connection goes to the control connection's server (see above).
                    Some((227, text)) if text.first() == Some(&b' ') => {
                        if let Some((_, p)) = pasv_reply(text) {
                            announce(client, (server, p));
                        }
                    }
                    Some((229, text)) if text.first() == Some(&b' ') => {
                        if let Some(p) = epsv_reply(text) {
                            announce(client, (server, p));
                        }
                    }
                    Some((234, _)) => tls = true,
                    _ => {}
                },
                Dir::ToServer => {
                    let end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
                    let (verb, args) = line.split_at(end);
                    let to = if verb.eq_ignore_ascii_case(b"PORT") {
                        port_command(args).map(|(a, p)| (IpAddr::V4(a), p))
                    } else if verb.eq_ignore_ascii_case(b"EPRT") {
                        eprt_command(args)
                    } else {
                        None
                    };
                    // Only to the client itself: a third address is a bounce attempt.
                    if let Some((a, p)) = to.filter(|&(a, _)| a == client) {
                        announce(server, (a, p));
                    }
                }
            }
        });
        (self.announced, self.tls) = (announced, tls);
        if !self.identified {
            Step::NeedMore
        } else if self.tls || self.announced >= MAX_ANNOUNCED {
            Step::Done
        } else {
            Step::Identified
        }
    }

    fn identify(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        facts.protocol = Some("FTP_CONTROL");
        self.identified = true;
        self.extract(pkt, facts)
    }
}

impl Dissector for Ftp {
    fn name(&self) -> &'static str {
        "ftp"
    }
    fn named_when_identified(&self) -> bool {
        true
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if p.is_empty() {
            if pkt.tcp_flags & tcp::SYN != 0 {
                self.lines[pkt.dir.index()].on_syn(pkt.tcp_seq);
            }
            return if self.identified { Step::Identified } else { Step::NeedMore };
        }
        if self.identified {
            return self.extract(pkt, facts);
        }
        let port21 = pkt.server_port() == 21;
        match pkt.dir {
            Dir::ToClient => {
                let Some((code, text)) = reply_code(p) else { return Step::NotMine };
                if self.greeted {
                    return self.extract(pkt, facts); // e.g. a multi-line greeting continues
                }
                if code != 220 && code != 120 {
                    return Step::NotMine;
                }
                if contains_ci(text, b"SMTP") || contains_ci(text, b" mail") {
                    return Step::NotMine;
                }
                if contains_ci(text, b"FTP") || port21 {
                    return self.identify(pkt, facts);
                }
                self.greeted = true;
                self.extract(pkt, facts)
            }
            Dir::ToServer => {
                let Some((verb, args)) = command(p) else { return Step::NotMine };
                if is_ftp_command(verb, args) && (self.greeted || port21) {
                    self.identify(pkt, facts)
                } else if self.greeted && !verb.eq_ignore_ascii_case(b"EHLO") && !verb.eq_ignore_ascii_case(b"HELO") {
                    self.extract(pkt, facts)
                } else {
                    Step::NotMine
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::super::testutil::{hex, packet};
    use super::*;
    use vigil_wire::L4Proto;

    const GREETING: &[u8] = include_bytes!("../../tests/fixtures/ftp/greeting.bin");
    const USER: &[u8] = include_bytes!("../../tests/fixtures/ftp/user.bin");
    /// Every payload segment of the control connection of `ftp.pcap` (192.168.1.212:50694 ->
    /// 90.130.70.73:21, vsFTPd 3.0.3, NcFTP): direction (c client, s server), relative sequence
    /// number, bytes. Two PASV replies announce the two data connections of the capture.
    const SESSION: &str = include_str!("../../tests/fixtures/ftp/control_session.txt");

    const CLIENT: ([u8; 4], u16) = ([192, 168, 1, 212], 50694);
    const SERVER: ([u8; 4], u16) = ([90, 130, 70, 73], 21);

    fn ip(a: [u8; 4]) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(a))
    }

    fn data(from: [u8; 4], to: [u8; 4], port: u16) -> Announced {
        Announced { protocol: "FTP_DATA", from: ip(from), to: (ip(to), port) }
    }

    /// Feeds segments (direction, sequence number, bytes) of the ftp.pcap control connection after
    /// both SYNs (initial sequence numbers 0); returns the last step.
    fn feed(d: &mut Ftp, facts: &mut Facts, segments: &[(Dir, u32, &[u8])]) -> Step {
        let mut step = Step::NeedMore;
        for dir in [Dir::ToServer, Dir::ToClient] {
            let mut syn = packet(L4Proto::Tcp, dir, CLIENT, SERVER, &[]);
            syn.tcp_flags = tcp::SYN;
            d.on_packet(&syn, facts);
        }
        for &(dir, seq, bytes) in segments {
            let mut pkt = packet(L4Proto::Tcp, dir, CLIENT, SERVER, bytes);
            pkt.tcp_seq = seq;
            step = d.on_packet(&pkt, facts);
        }
        step
    }

    fn session() -> Vec<(Dir, u32, Vec<u8>)> {
        SESSION
            .lines()
            .map(|l| {
                let mut w = l.split(' ');
                let dir = if w.next() == Some("c") { Dir::ToServer } else { Dir::ToClient };
                let seq = w.next().and_then(|s| s.parse().ok()).expect("sequence number");
                (dir, seq, hex(w.next().expect("bytes")))
            })
            .collect()
    }

    fn borrowed(v: &[(Dir, u32, Vec<u8>)]) -> Vec<(Dir, u32, &[u8])> {
        v.iter().map(|(d, s, b)| (*d, *s, b.as_slice())).collect()
    }

    /// The PASV reply of the session that announced 90.130.70.73:25685.
    const PASV_REPLY: &[u8] = b"227 Entering Passive Mode (90,130,70,73,100,85).\r\n";

    #[test]
    fn real_greeting_and_user() {
        let mut facts = Facts::default();
        assert_eq!(run(&mut Ftp::default(), &[(Dir::ToClient, GREETING)], 2121, &mut facts), [Step::Identified]);
        assert_eq!(facts.protocol, Some("FTP_CONTROL"));
        assert!(Ftp::default().named_when_identified(), "no name to wait for: a policy may decide now");
        // A greeting without "FTP" on another port waits for the client's command.
        let mut facts = Facts::default();
        let steps =
            run(&mut Ftp::default(), &[(Dir::ToClient, b"220 Welcome\r\n"), (Dir::ToServer, USER)], 2121, &mut facts);
        assert_eq!(steps, [Step::NeedMore, Step::Identified]);
        // Joined mid-flow on port 21.
        let mut facts = Facts::default();
        assert_eq!(run(&mut Ftp::default(), &[(Dir::ToServer, USER)], 21, &mut facts), [Step::Identified]);
        assert!(facts.announced.is_empty());
    }

    #[test]
    fn real_session_announces_both_passive_connections() {
        let segments = session();
        assert_eq!(segments.len(), 37);
        assert_eq!(segments[18].2, PASV_REPLY, "tshark frame 35");
        let mut facts = Facts::default();
        let step = feed(&mut Ftp::default(), &mut facts, &borrowed(&segments));
        assert_eq!(step, Step::Identified);
        assert_eq!(facts.protocol, Some("FTP_CONTROL"));
        // "(90,130,70,73,100,85)" and "(90,130,70,73,95,203)": the two data connections of ftp.pcap.
        let want = [data(CLIENT.0, SERVER.0, 25685), data(CLIENT.0, SERVER.0, 24523)];
        assert_eq!(facts.announced, want);
        // The same session cut into one-byte segments once identified (identification reads the
        // start of a segment) announces the same.
        let mut bytes = vec![(segments[0].0, segments[0].1, segments[0].2.as_slice())];
        for (dir, seq, b) in &segments[1..] {
            for (i, x) in b.iter().enumerate() {
                bytes.push((*dir, seq + i as u32, std::slice::from_ref(x)));
            }
        }
        let mut facts = Facts::default();
        feed(&mut Ftp::default(), &mut facts, &bytes);
        assert_eq!(facts.announced, want);
    }

    #[test]
    fn lines_split_retransmitted_or_cut() {
        let greeting = (Dir::ToClient, 1, GREETING);
        let at = 1 + GREETING.len() as u32;
        // Split at every position.
        for cut in 0..=PASV_REPLY.len() {
            let (a, b) = PASV_REPLY.split_at(cut);
            let mut facts = Facts::default();
            let segs = [greeting, (Dir::ToClient, at, a), (Dir::ToClient, at + cut as u32, b)];
            feed(&mut Ftp::default(), &mut facts, &segs);
            assert_eq!(facts.announced, [data(CLIENT.0, SERVER.0, 25685)], "cut at {cut}");
        }
        // Retransmissions (whole, or overlapping the next bytes) announce once.
        let (a, b) = PASV_REPLY.split_at(20);
        let mut facts = Facts::default();
        let segs = [
            greeting,
            greeting,
            (Dir::ToClient, at, a),
            (Dir::ToClient, at, a),
            (Dir::ToClient, at + 10, &PASV_REPLY[10..]),
            (Dir::ToClient, at + 20, b),
        ];
        feed(&mut Ftp::default(), &mut facts, &segs);
        assert_eq!(facts.announced, [data(CLIENT.0, SERVER.0, 25685)]);
        // A hole drops the line it cuts, up to the next line break seen (the missing bytes may or
        // may not have ended it): never a line glued from pieces. The lines after are read.
        let second = b"227 Entering Passive Mode (90,130,70,73,95,203).\r\n";
        let third = b"229 Entering Extended Passive Mode (|||6446|)\r\n";
        let next = at + PASV_REPLY.len() as u32;
        let mut facts = Facts::default();
        let segs = [
            greeting,
            (Dir::ToClient, at, &PASV_REPLY[..30]),
            (Dir::ToClient, next, &second[..]),
            (Dir::ToClient, next + second.len() as u32, &third[..]),
        ];
        feed(&mut Ftp::default(), &mut facts, &segs);
        assert_eq!(facts.announced, [data(CLIENT.0, SERVER.0, 6446)]);
        // A line longer than MAX_LINE is skipped; the next one is read.
        let mut long = b"227 Entering Passive Mode (90,130,70,73,1,1)".to_vec();
        long.resize(MAX_LINE + 10, b' ');
        long.extend_from_slice(b"\r\n");
        long.extend_from_slice(PASV_REPLY);
        let mut facts = Facts::default();
        feed(
            &mut Ftp::default(),
            &mut facts,
            &[greeting, (Dir::ToClient, at, &long[..300]), (Dir::ToClient, at + 300, &long[300..])],
        );
        assert_eq!(facts.announced, [data(CLIENT.0, SERVER.0, 25685)]);
    }

    #[test]
    fn extended_passive_and_active_modes() {
        let greeting = (Dir::ToClient, 1, GREETING);
        let at = 1 + GREETING.len() as u32;
        let announced = |segs: &[(Dir, u32, &[u8])]| {
            let mut facts = Facts::default();
            feed(&mut Ftp::default(), &mut facts, segs);
            facts.announced
        };
        // EPSV: the control connection's server address.
        let epsv = b"229 Entering Extended Passive Mode (|||6446|)\r\n";
        assert_eq!(announced(&[greeting, (Dir::ToClient, at, epsv)]), [data(CLIENT.0, SERVER.0, 6446)]);
        // PORT / EPRT to the client's own address: the server connects back.
        let port = b"PORT 192,168,1,212,195,81\r\n";
        assert_eq!(announced(&[greeting, (Dir::ToServer, 1, port)]), [data(SERVER.0, CLIENT.0, 50001)]);
        let eprt = b"eprt |1|192.168.1.212|50002|\r\n";
        assert_eq!(announced(&[greeting, (Dir::ToServer, 1, eprt)]), [data(SERVER.0, CLIENT.0, 50002)]);
        // To a third address (a bounce attempt, RFC 2577), nothing.
        assert_eq!(announced(&[greeting, (Dir::ToServer, 1, b"PORT 10,0,0,9,195,81\r\n")]), []);
        assert_eq!(announced(&[greeting, (Dir::ToServer, 1, b"EPRT |2|2001:db8::1|50002|\r\n")]), []);
        // A PASV reply naming another address (a server behind NAT naming its private one): the
        // connection is expected at the control connection's server.
        let natted = b"227 Entering Passive Mode (10,0,0,5,100,85)\r\n";
        assert_eq!(announced(&[greeting, (Dir::ToClient, at, natted)]), [data(CLIENT.0, SERVER.0, 25685)]);
        // Replies from the client and commands from the server are not announcements.
        assert_eq!(announced(&[greeting, (Dir::ToServer, 1, PASV_REPLY)]), []);
        assert_eq!(announced(&[greeting, (Dir::ToClient, at, port)]), []);
        // A multi-line reply's first line is not the reply.
        assert_eq!(announced(&[greeting, (Dir::ToClient, at, b"227-Entering Passive Mode (1,2,3,4,5,6)\r\n")]), []);
    }

    #[test]
    fn parsers_refuse_malformed_numbers() {
        assert_eq!(
            pasv_reply(b" Entering Passive Mode (90,130,70,73,100,85)."),
            Some((Ipv4Addr::new(90, 130, 70, 73), 25685))
        );
        assert_eq!(pasv_reply(b" =1,2,3,4,0,1"), Some((Ipv4Addr::new(1, 2, 3, 4), 1)));
        for bad in [
            &b" (256,1,1,1,1,1)"[..], // octet over 255
            b" (1,1,1,1,256,1)",
            b" (1,1,1,1,0,0)", // port 0
            b" (1,1,1,1,1)",   // five numbers
            b" (1,1,1,1,1,)",
            b" (1,1,1,1,1,1000)",                    // four digits
            b" (1,1,1,1,1,99999999999999999999999)", // would overflow
            b" (1,1,1,1,-1,1)",
            b" (1, 1,1,1,1,1)",
            b" (1,,1,1,1,1,1)",
            b" Entering Passive Mode",
            b"",
            b" (\xff\xfe,1,1,1,1,1)",
        ] {
            assert_eq!(pasv_reply(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(epsv_reply(b" Entering Extended Passive Mode (|||6446|)"), Some(6446));
        assert_eq!(epsv_reply(b" ok (!!!65535!)"), Some(65535));
        for bad in [
            &b" (|||0|)"[..],
            b" (|||65536|)",
            b" (|||123456|)",
            b" (|||6446!)", // delimiters differ
            b" (||6446|)",
            b" (|||6446|", // unclosed
            b" (|||6446)",
            b" (111644611)", // a digit is no delimiter
            b" ( ||6446| )",
            b" (|||",
            b" ",
        ] {
            assert_eq!(epsv_reply(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(port_command(b" 192,168,1,212,195,81 "), Some((Ipv4Addr::new(192, 168, 1, 212), 50001)));
        assert_eq!(port_command(b" 192,168,1,212,195,81,1"), None);
        assert_eq!(port_command(b" 192,168,1,212,195,81x"), None);
        assert_eq!(port_command(b" 192,168,1,300,195,81"), None);
        assert_eq!(port_command(b""), None);
        assert_eq!(eprt_command(b" |2|2001:db8::7|5282|"), Some(("2001:db8::7".parse().unwrap(), 5282)));
        assert_eq!(eprt_command(b"!1!132.235.1.2!6275!"), Some(("132.235.1.2".parse().unwrap(), 6275)));
        for bad in [
            &b"|1|2001:db8::7|5282|"[..], // family and address disagree
            b"|2|132.235.1.2|6275|",
            b"|3|132.235.1.2|6275|",
            b"|1|132.235.1.2|0|",
            b"|1|132.235.1.2|70000|",
            b"|1|132.235.1.256|6275|",
            b"|1|132.235.1.2|6275",
            b"|1|132.235.1.2|6275||",
            b"|1|132.235.1.2|6275|x",
            b"1|132.235.1.2|6275|",
            b"|1|\xff|6275|",
            b"|",
            b"",
        ] {
            assert_eq!(eprt_command(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn announcements_are_capped_and_tls_ends_reading() {
        let greeting = (Dir::ToClient, 1, GREETING);
        let at = 1 + GREETING.len() as u32;
        // A hostile server repeating PASV replies (distinct ports) in one segment.
        let flood: Vec<u8> = (1..=100u8)
            .flat_map(|p| format!("227 Entering Passive Mode (90,130,70,73,1,{p})\r\n").into_bytes())
            .collect();
        let mut facts = Facts::default();
        let step = feed(&mut Ftp::default(), &mut facts, &[greeting, (Dir::ToClient, at, &flood)]);
        assert_eq!((step, facts.announced.len()), (Step::Done, usize::from(MAX_ANNOUNCED)));
        // After AUTH TLS is accepted the rest is encrypted: done.
        let mut facts = Facts::default();
        let segs = [
            greeting,
            (Dir::ToServer, 1, &b"AUTH TLS\r\n"[..]),
            (Dir::ToClient, at, b"234 Proceed with negotiation.\r\n"),
        ];
        assert_eq!(feed(&mut Ftp::default(), &mut facts, &segs), Step::Done);
        assert_eq!(facts.protocol, Some("FTP_CONTROL"));
    }

    #[test]
    fn others_are_not_mine() {
        let smtp = include_bytes!("../../tests/fixtures/mail/smtp_greeting.bin");
        let ehlo = include_bytes!("../../tests/fixtures/mail/smtp_ehlo.bin");
        let mut facts = Facts::default();
        assert_eq!(run(&mut Ftp::default(), &[(Dir::ToClient, smtp)], 25, &mut facts), [Step::NotMine]);
        let steps =
            run(&mut Ftp::default(), &[(Dir::ToClient, b"220 Welcome\r\n"), (Dir::ToServer, ehlo)], 25, &mut facts);
        assert_eq!(steps, [Step::NeedMore, Step::NotMine]);
        for p in [&b"+OK POP3 ready\r\n"[..], b"* OK IMAP4rev1\r\n", b"SSH-2.0-x\r\n"] {
            assert_eq!(run(&mut Ftp::default(), &[(Dir::ToClient, p)], 21, &mut facts), [Step::NotMine]);
        }
        assert_not_mine_on_random(|| Box::new(Ftp::default()), 4);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Ftp::default()), &[GREETING, USER, PASV_REPLY, b"EPRT |2|::1|21|\r\n"], 21);
        // Mutations of the real session, with arbitrary sequence numbers.
        let segments = session();
        let mut rng = XorShift(0x5eed_f00d_dead_beef);
        for _ in 0..300 {
            let mut d = Ftp::default();
            let mut facts = Facts::default();
            for (dir, seq, b) in &segments {
                let mut b = b.clone();
                let at = rng.next() as usize % (b.len() + 1);
                if let Some(x) = b.get_mut(at) {
                    *x ^= rng.next() as u8;
                }
                b.truncate(rng.next() as usize % (b.len() + 2));
                let seq = if rng.next().is_multiple_of(4) { rng.next() as u32 } else { *seq };
                let mut pkt = packet(L4Proto::Tcp, *dir, CLIENT, SERVER, &b);
                pkt.tcp_seq = seq;
                let _ = d.on_packet(&pkt, &mut facts);
            }
            assert!(facts.announced.len() <= usize::from(MAX_ANNOUNCED));
            assert!(d.lines.iter().all(|l| l.partial.len() <= MAX_LINE));
        }
    }
}
