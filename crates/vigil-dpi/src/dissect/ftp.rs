//! FTP control connections (nDPI: "FTP_CONTROL"): the server's "220" greeting and the client's
//! commands. FTP data connections need the control connection's PORT/PASV state (cross-flow), so
//! they are not recognised here.
//!
//! SMTP also greets with "220", so an FTP verdict needs an FTP-specific signal: "FTP" in the
//! greeting, an FTP-only command (USER, PASS, SYST, PASV, ...), or port 21.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::{Dir, PacketView};

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

#[derive(Debug, Default)]
pub struct Ftp {
    /// The server greeted with "220" (not yet known to be FTP).
    greeted: bool,
}

impl Ftp {
    fn identify(facts: &mut Facts) -> Step {
        facts.protocol = Some("FTP_CONTROL");
        Step::Done
    }
}

impl Dissector for Ftp {
    fn name(&self) -> &'static str {
        "ftp"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if p.is_empty() {
            return Step::NeedMore;
        }
        let port21 = pkt.server_port() == 21;
        match pkt.dir {
            Dir::ToClient => {
                let Some((code, text)) = reply_code(p) else { return Step::NotMine };
                if self.greeted {
                    return Step::NeedMore; // e.g. a multi-line greeting continues
                }
                if code != 220 && code != 120 {
                    return Step::NotMine;
                }
                if contains_ci(text, b"SMTP") || contains_ci(text, b" mail") {
                    return Step::NotMine;
                }
                if contains_ci(text, b"FTP") || port21 {
                    return Self::identify(facts);
                }
                self.greeted = true;
                Step::NeedMore
            }
            Dir::ToServer => {
                let Some((verb, args)) = command(p) else { return Step::NotMine };
                if is_ftp_command(verb, args) && (self.greeted || port21) {
                    Self::identify(facts)
                } else if self.greeted && !verb.eq_ignore_ascii_case(b"EHLO") && !verb.eq_ignore_ascii_case(b"HELO") {
                    Step::NeedMore
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
    use super::*;

    const GREETING: &[u8] = include_bytes!("../../tests/fixtures/ftp/greeting.bin");
    const USER: &[u8] = include_bytes!("../../tests/fixtures/ftp/user.bin");

    #[test]
    fn real_greeting_and_user() {
        let mut facts = Facts::default();
        assert_eq!(run(&mut Ftp::default(), &[(Dir::ToClient, GREETING)], 2121, &mut facts), [Step::Done]);
        assert_eq!(facts.protocol, Some("FTP_CONTROL"));
        // A greeting without "FTP" on another port waits for the client's command.
        let mut facts = Facts::default();
        let steps =
            run(&mut Ftp::default(), &[(Dir::ToClient, b"220 Welcome\r\n"), (Dir::ToServer, USER)], 2121, &mut facts);
        assert_eq!(steps, [Step::NeedMore, Step::Done]);
        // Joined mid-flow on port 21.
        let mut facts = Facts::default();
        assert_eq!(run(&mut Ftp::default(), &[(Dir::ToServer, USER)], 21, &mut facts), [Step::Done]);
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
        hostile(|| Box::new(Ftp::default()), &[GREETING, USER], 21);
    }
}
