//! SSH: the identification strings both sides send first ("SSH-2.0-OpenSSH_9.2p1"), RFC 4253 4.2.

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::{Dir, PacketView};

/// RFC 4253 caps the identification line at 255 bytes including CR LF.
const MAX_BANNER: usize = 255;
/// Packets to wait for the peer's banner once one side has sent its own.
const MAX_WAIT: u8 = 3;

/// Parses an identification line "SSH-protoversion-softwareversion [comments]" at the start of
/// `payload`; returns the line without CR LF.
pub fn parse_banner(payload: &[u8]) -> Option<&str> {
    let rest = payload.strip_prefix(b"SSH-")?;
    let end = payload.iter().position(|&b| b == b'\n').unwrap_or(payload.len()).min(MAX_BANNER);
    let line = payload.get(..end)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // protoversion: "2.0", "1.99", "1.5".
    let dash = rest.iter().position(|&b| b == b'-')?;
    let version = rest.get(..dash)?;
    let (major, minor) = version.split_at_checked(version.iter().position(|&b| b == b'.')?)?;
    let minor = minor.get(1..)?;
    let digits = |s: &[u8]| !s.is_empty() && s.len() <= 2 && s.iter().all(u8::is_ascii_digit);
    if !digits(major) || !digits(minor) || line.len() <= 4 + dash + 1 {
        return None;
    }
    if line.iter().any(|&b| !(b.is_ascii_graphic() || b == b' ')) {
        return None;
    }
    std::str::from_utf8(line).ok()
}

#[derive(Debug, Default)]
pub struct Ssh {
    identified: bool,
    client: bool,
    server: bool,
    waited: u8,
}

impl Dissector for Ssh {
    fn name(&self) -> &'static str {
        "ssh"
    }
    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        let p = pkt.payload;
        if p.is_empty() {
            return if self.identified { Step::Identified } else { Step::NeedMore };
        }
        let seen = match pkt.dir {
            Dir::ToServer => &mut self.client,
            Dir::ToClient => &mut self.server,
        };
        if !*seen {
            if let Some(banner) = parse_banner(p) {
                *seen = true;
                let slot = match pkt.dir {
                    Dir::ToServer => &mut facts.client_banner,
                    Dir::ToClient => &mut facts.server_banner,
                };
                *slot = Some(banner.to_owned());
                facts.protocol = Some("SSH");
                self.identified = true;
                return if self.client && self.server { Step::Done } else { Step::Identified };
            }
            if !self.identified {
                // A banner cut short by a tiny first segment: wait for more.
                let short = p.len() < 4 && b"SSH-".starts_with(p);
                return if short { Step::NeedMore } else { Step::NotMine };
            }
        }
        self.waited += 1;
        if self.waited >= MAX_WAIT {
            Step::Done
        } else {
            Step::Identified
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::http::testutil::*;
    use super::*;

    const SERVER: &[u8] = include_bytes!("../../tests/fixtures/ssh/server_banner.bin");
    const CLIENT: &[u8] = include_bytes!("../../tests/fixtures/ssh/client_banner.bin");
    const KEX: &[u8] = include_bytes!("../../tests/fixtures/ssh/client_kexinit.bin");

    #[test]
    fn real_banners() {
        let mut facts = Facts::default();
        let steps = run(&mut Ssh::default(), &[(Dir::ToClient, SERVER), (Dir::ToServer, CLIENT)], 22, &mut facts);
        assert_eq!(steps, [Step::Identified, Step::Done]);
        assert_eq!(facts.protocol, Some("SSH"));
        assert_eq!(facts.server_banner.as_deref(), Some("SSH-2.0-OpenSSH_5.3"));
        assert_eq!(facts.client_banner.as_deref(), Some("SSH-2.0-OpenSSH_5.6"));
    }

    #[test]
    fn one_banner_then_binary_packets() {
        let mut facts = Facts::default();
        let pkts = [(Dir::ToServer, CLIENT), (Dir::ToServer, KEX), (Dir::ToServer, KEX), (Dir::ToServer, KEX)];
        let steps = run(&mut Ssh::default(), &pkts, 2222, &mut facts);
        assert_eq!(steps, [Step::Identified, Step::Identified, Step::Identified, Step::Done]);
        assert_eq!(parse_banner(b"SSH-1.99-Cisco-1.25\r\n"), Some("SSH-1.99-Cisco-1.25"));
        assert_eq!(
            parse_banner(b"SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.11\r\n"),
            Some("SSH-2.0-OpenSSH_8.2p1 Ubuntu-4ubuntu0.11")
        );
        assert_eq!(parse_banner(b"SSH-x.0-a\r\n"), None);
        assert_eq!(parse_banner(b"SSH-2.0-\r\n"), None);
    }

    #[test]
    fn others_are_not_mine() {
        for p in [KEX, b"GET / HTTP/1.1\r\n\r\n", b"220 ftp\r\n"] {
            let mut facts = Facts::default();
            assert_eq!(run(&mut Ssh::default(), &[(Dir::ToServer, p)], 22, &mut facts), [Step::NotMine]);
        }
        assert_not_mine_on_random(|| Box::new(Ssh::default()), 4);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        hostile(|| Box::new(Ssh::default()), &[SERVER, CLIENT], 22);
    }
}
