//! Mail: SMTP, IMAP and POP3 in clear text, and their STARTTLS upgrades.
//!
//! The server speaks first: "220 host ESMTP" (SMTP), "* OK" (IMAP), "+OK" (POP3). A greeting
//! that names its protocol, or a well-known port, decides at once; otherwise the client's first
//! command does (EHLO, a tagged IMAP command, CAPA/USER/STLS). SMTP greetings start with the
//! server's host name, which nDPI reports as the flow's hostname; vigil does too.
//!
//! STARTTLS: once the server accepts it, the rest of the flow is TLS, and nDPI names such flows
//! as the implicit-TLS protocol ("SMTPS", "IMAPS", "POP3S"); so does vigil, to line reports up.
//! The TLS handshake that follows goes to an inner TLS dissector (with its own facts, so it
//! cannot rename the flow) for the SNI, certificate names, JA4 and version; a TLS name replaces
//! the greeting's host name, as in nDPI. Implicit TLS on 465/993/995 is the TLS dissector's flow
//! (the signature DB names it by port).

use super::ftp::{command, contains_ci, line_of, reply_code};
use super::tls::Tls;
use super::{Dissector, Step};
use crate::facts::{Facts, NameSource};
use crate::view::{Dir, PacketView};

/// Packets to wait for a STARTTLS after identification.
const MAX_WAIT: u8 = 10;
/// Packets given to the TLS handshake after STARTTLS.
const MAX_TLS: u8 = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Smtp,
    Imap,
    Pop3,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Smtp => "SMTP",
            Kind::Imap => "IMAP",
            Kind::Pop3 => "POP3",
        }
    }
    fn tls_name(self) -> &'static str {
        match self {
            Kind::Smtp => "SMTPS",
            Kind::Imap => "IMAPS",
            Kind::Pop3 => "POP3S",
        }
    }
}

#[derive(Debug, Default)]
pub struct Mail {
    /// Greeting seen, protocol guessed but not yet confirmed.
    greeted: Option<Kind>,
    identified: Option<Kind>,
    /// The client asked for STARTTLS/STLS; the server's next positive reply upgrades the flow.
    starttls_asked: bool,
    waited: u8,
    /// After an accepted STARTTLS: the TLS handshake's dissector and what it learned.
    tls: Option<(Box<Tls>, Box<Facts>)>,
}

/// The host name at the start of an SMTP greeting text ("mx.google.com ESMTP ..."), if plausible.
fn greeting_host(text: &[u8]) -> Option<&str> {
    let text = text.get(1..)?; // after ' ' or '-'
    let word = text.split(|&b| b == b' ').next()?;
    let ok = word.contains(&b'.')
        && word.len() <= 253
        && word.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
        && word.iter().any(u8::is_ascii_alphabetic);
    ok.then(|| std::str::from_utf8(word).ok()).flatten()
}

/// An IMAP tagged command: "tag SP COMMAND".
fn imap_command(p: &[u8]) -> Option<&[u8]> {
    let line = line_of(p);
    let mut words = line.split(|&b| b == b' ');
    let tag = words.next()?;
    let cmd = words.next()?;
    let tag_ok = !tag.is_empty() && tag.len() <= 16 && tag.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'.');
    const CMDS: &[&[u8]] =
        &[b"CAPABILITY", b"LOGIN", b"AUTHENTICATE", b"STARTTLS", b"ID", b"NOOP", b"SELECT", b"LOGOUT", b"LIST"];
    (tag_ok && line.len() < p.len() && CMDS.iter().any(|c| cmd.eq_ignore_ascii_case(c))).then_some(cmd)
}

impl Mail {
    fn identify(&mut self, kind: Kind, facts: &mut Facts) -> Step {
        self.identified = Some(kind);
        facts.protocol = Some(kind.name());
        Step::Identified
    }

    fn greeting(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        let port = pkt.server_port();
        if let Some((code, text)) = reply_code(p) {
            if code != 220 && code != 554 {
                return Step::NotMine;
            }
            if contains_ci(text, b"FTP") {
                return Step::NotMine;
            }
            if let Some(h) = greeting_host(text) {
                facts.set_hostname(h, NameSource::Protocol);
            }
            if contains_ci(text, b"SMTP") || matches!(port, 25 | 587 | 2525) {
                return self.identify(Kind::Smtp, facts);
            }
            self.greeted = Some(Kind::Smtp);
            return Step::NeedMore;
        }
        let line = line_of(p);
        if line.len() == p.len() && p.len() < 64 {
            // A greeting with no line end yet is too little to go on; real ones fit one segment.
            return Step::NotMine;
        }
        if line.starts_with(b"* OK") || line.starts_with(b"* PREAUTH") {
            if contains_ci(line, b"IMAP") || port == 143 {
                return self.identify(Kind::Imap, facts);
            }
            self.greeted = Some(Kind::Imap);
            return Step::NeedMore;
        }
        if line.starts_with(b"+OK") {
            if contains_ci(line, b"POP") || port == 110 {
                return self.identify(Kind::Pop3, facts);
            }
            self.greeted = Some(Kind::Pop3);
            return Step::NeedMore;
        }
        Step::NotMine
    }

    fn first_command(&mut self, p: &[u8], facts: &mut Facts) -> Step {
        match self.greeted {
            Some(Kind::Smtp) | None => {
                if let Some((verb, _)) = command(p) {
                    if verb.eq_ignore_ascii_case(b"EHLO") || verb.eq_ignore_ascii_case(b"HELO") {
                        return self.identify(Kind::Smtp, facts);
                    }
                }
                if self.greeted.is_none() {
                    return Step::NotMine; // client first: only EHLO/HELO is decisive
                }
                Step::NotMine
            }
            Some(Kind::Imap) => {
                if imap_command(p).is_some() {
                    self.identify(Kind::Imap, facts)
                } else {
                    Step::NotMine
                }
            }
            Some(Kind::Pop3) => {
                let pop = command(p).is_some_and(|(v, _)| {
                    [&b"CAPA"[..], b"USER", b"APOP", b"STLS", b"AUTH", b"UIDL", b"STAT"]
                        .iter()
                        .any(|c| v.eq_ignore_ascii_case(c))
                });
                if pop {
                    let step = self.identify(Kind::Pop3, facts);
                    self.note_starttls(p);
                    step
                } else {
                    Step::NotMine
                }
            }
        }
    }

    fn note_starttls(&mut self, p: &[u8]) {
        let upgrade = match command(p) {
            Some((v, _)) => v.eq_ignore_ascii_case(b"STARTTLS") || v.eq_ignore_ascii_case(b"STLS"),
            None => false,
        };
        if upgrade || imap_command(p).is_some_and(|c| c.eq_ignore_ascii_case(b"STARTTLS")) {
            self.starttls_asked = true;
        }
    }

    fn after(&mut self, pkt: &PacketView<'_>, kind: Kind, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        match pkt.dir {
            Dir::ToServer => self.note_starttls(p),
            Dir::ToClient if self.starttls_asked => {
                let ok = match kind {
                    Kind::Smtp => reply_code(p).is_some_and(|(c, _)| c == 220),
                    Kind::Pop3 => p.starts_with(b"+OK"),
                    // "tag OK Begin TLS negotiation now"
                    Kind::Imap => line_of(p).split(|&b| b == b' ').nth(1).is_some_and(|w| w == b"OK"),
                };
                self.starttls_asked = false;
                if ok {
                    facts.protocol = Some(kind.tls_name());
                    self.waited = 0;
                    self.tls = Some((Box::default(), Box::default()));
                    return Step::Identified;
                }
            }
            Dir::ToClient => {}
        }
        self.waited += 1;
        if self.waited >= MAX_WAIT {
            Step::Done
        } else {
            Step::Identified
        }
    }
}

/// Copies what the inner TLS dissector learned; its name beats the greeting's.
fn merge_tls(tls: &Facts, facts: &mut Facts) {
    if let (Some(h), Some(src)) = (&tls.hostname, tls.name_source) {
        if facts.hostname.as_ref() != Some(h) {
            facts.hostname = Some(h.clone());
            facts.name_source = Some(src);
        }
    }
    facts.ja4.clone_from(&tls.ja4);
    facts.tls_version = tls.tls_version.or(facts.tls_version);
    facts.alpn_offered.clone_from(&tls.alpn_offered);
    facts.alpn.clone_from(&tls.alpn);
    facts.ech = tls.ech;
    facts.cert_names.clone_from(&tls.cert_names);
}

impl Dissector for Mail {
    fn name(&self) -> &'static str {
        "mail"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if pkt.payload.is_empty() {
            return if self.identified.is_some() { Step::Identified } else { Step::NeedMore };
        }
        if let Some((tls, tls_facts)) = self.tls.as_mut() {
            let step = tls.on_packet(pkt, tls_facts);
            merge_tls(tls_facts, facts);
            self.waited += 1;
            return if matches!(step, Step::Done | Step::NotMine) || self.waited >= MAX_TLS {
                Step::Done
            } else {
                Step::Identified
            };
        }
        if let Some(kind) = self.identified {
            return self.after(pkt, kind, facts);
        }
        match (pkt.dir, self.greeted) {
            (Dir::ToClient, None) => self.greeting(pkt, facts),
            // More greeting lines (multi-line 220-) before the client speaks.
            (Dir::ToClient, Some(_)) => Step::NeedMore,
            (Dir::ToServer, _) => self.first_command(pkt.payload, facts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::*;

    const GREETING: &[u8] = include_bytes!("../../tests/fixtures/mail/smtp_greeting.bin");
    const EHLO: &[u8] = include_bytes!("../../tests/fixtures/mail/smtp_ehlo.bin");
    const STARTTLS: &[u8] = include_bytes!("../../tests/fixtures/mail/smtp_starttls.bin");
    const READY: &[u8] = include_bytes!("../../tests/fixtures/mail/smtp_ready_tls.bin");
    const HELLO: &[u8] = include_bytes!("../../tests/fixtures/mail/smtp_client_hello.bin");

    #[test]
    fn real_smtp_with_starttls() {
        let mut facts = Facts::default();
        let pkts = [
            (Dir::ToClient, GREETING),
            (Dir::ToServer, EHLO),
            (Dir::ToServer, STARTTLS),
            (Dir::ToClient, READY),
            (Dir::ToServer, HELLO),
        ];
        let steps = run(&mut Mail::default(), &pkts, 25, &mut facts);
        assert_eq!(steps[..4], [Step::Identified, Step::Identified, Step::Identified, Step::Identified]);
        assert_eq!(facts.protocol, Some("SMTPS"));
        assert_eq!(facts.hostname.as_deref(), Some("mx.google.com"));
        assert!(facts.tls_version.is_some() || facts.ja4.is_some(), "the ClientHello reached the TLS dissector");
        // Without STARTTLS it stays SMTP.
        let mut facts = Facts::default();
        let steps = run(&mut Mail::default(), &[(Dir::ToClient, GREETING), (Dir::ToServer, EHLO)], 2500, &mut facts);
        assert_eq!(steps, [Step::Identified, Step::Identified]);
        assert_eq!(facts.protocol, Some("SMTP"));
    }

    #[test]
    fn imap_and_pop3() {
        let mut facts = Facts::default();
        let pkts: [(Dir, &[u8]); 4] = [
            (Dir::ToClient, b"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot ready.\r\n"),
            (Dir::ToServer, b"a001 STARTTLS\r\n"),
            (Dir::ToClient, b"a001 OK Begin TLS negotiation now.\r\n"),
            (Dir::ToServer, b"\x16\x03\x01\x00\x05"),
        ];
        let steps = run(&mut Mail::default(), &pkts, 143, &mut facts);
        assert_eq!(steps[..3], [Step::Identified, Step::Identified, Step::Identified]);
        assert_eq!(facts.protocol, Some("IMAPS"));
        let mut facts = Facts::default();
        let steps = run(
            &mut Mail::default(),
            &[(Dir::ToClient, b"* OK ready\r\n"), (Dir::ToServer, b"A1 CAPABILITY\r\n")],
            1430,
            &mut facts,
        );
        assert_eq!(steps, [Step::NeedMore, Step::Identified]);
        assert_eq!(facts.protocol, Some("IMAP"));
        let mut facts = Facts::default();
        let steps = run(
            &mut Mail::default(),
            &[(Dir::ToClient, b"+OK ready\r\n"), (Dir::ToServer, b"CAPA\r\n")],
            1100,
            &mut facts,
        );
        assert_eq!(steps, [Step::NeedMore, Step::Identified]);
        assert_eq!(facts.protocol, Some("POP3"));
        let mut facts = Facts::default();
        assert_eq!(
            run(&mut Mail::default(), &[(Dir::ToClient, b"+OK POP3 server ready\r\n")], 110, &mut facts),
            [Step::Identified]
        );
        assert_eq!(facts.protocol, Some("POP3"));
    }

    #[test]
    fn others_are_not_mine() {
        let ftp = include_bytes!("../../tests/fixtures/ftp/greeting.bin");
        let mut facts = Facts::default();
        assert_eq!(run(&mut Mail::default(), &[(Dir::ToClient, ftp)], 21, &mut facts), [Step::NotMine]);
        for p in [&b"GET / HTTP/1.1\r\n\r\n"[..], b"SSH-2.0-x\r\n", b"USER x\r\n"] {
            assert_eq!(run(&mut Mail::default(), &[(Dir::ToServer, p)], 25, &mut facts), [Step::NotMine]);
        }
        assert_not_mine_on_random(|| Box::new(Mail::default()), 4);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Mail::default()), &[GREETING, EHLO, STARTTLS, READY], 25);
    }
}
