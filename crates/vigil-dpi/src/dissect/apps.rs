//! Application protocols without a public spec: Telegram, Discord, Zoom, TeamViewer, Spotify,
//! Dropbox LAN sync, Tailscale, WhatsApp. Each sets `protocol` and `app_hint` to nDPI's name.
//!
//! Every rule needs either a long fixed pattern or agreement between packets; a port alone never
//! decides. The evidence for each rule (nDPI corpus files and what their `F.out` says):
//! - Tailscale: disco messages start with the magic `TS💬` (`TS\xf0\x9f\x92\xac`), then a 32-byte
//!   sender key and a 24-byte nonce (`tailscale.pcap`, UDP 41641, "Tailscale"; the magic is
//!   Tailscale's documented disco framing). Later packets are plain WireGuard.
//! - Spotify: LAN discovery broadcasts start with `SpotUdp0` (UDP 57621, `telegram__first20pkts.pcap`,
//!   `whatsapp_login_chat.pcap`, "Spotify"). The access-point protocol over TCP (`spotify_tcp.pcap`,
//!   port 4070, "Spotify"): the client's first message is `00 04` then its own total length as a
//!   32-bit word, the server answers with a message whose first 32-bit word is its length.
//! - Dropbox: LAN sync discovery is a JSON broadcast to UDP 17500 with a `"host_int"` key
//!   (`dropbox.pcap`, `telegram__first20pkts.pcap`, `whatsapp_login_chat.pcap`, "Dropbox").
//!   `dropbox.pcap`'s unicast 17500 flows ("Bus17Cmd" framing) are not matched: one capture only.
//! - Discord voice: the 74-byte IP discovery (type 1 request / type 2 answer, length 70, SSRC, a
//!   NUL-padded address, port; `discord.pcap`, "Discord", nDPI shows the discovered "Client IP")
//!   and the 8-byte `13 37 ca fe` + counter pings echoed by voice servers (same file, port 50004).
//! - Telegram calls: relay packets carry a 16-byte peer tag then twelve 0xff bytes
//!   (`telegram__first20pkts.pcap`, UDP to 91.108.x.x:52x/53x, "Telegram", both directions).
//!   MTProto over TCP: abridged (`0xef`), intermediate (`0xeeeeeeee`) or padded intermediate
//!   (`0xdddddddd`) transport tags followed by an unencrypted message (auth_key_id 0, length that
//!   matches), i.e. the key exchange (MTProto documentation; no capture in the corpus).
//! - Zoom: on its media ports UDP 8801-8810 the client opens with type 0x01 and a 19-byte session
//!   header that the server's type 0x02 answer repeats (`zoom2.pcap`, three flows, "Zoom").
//! - TeamViewer: TCP messages start with `17 24` (client) or `11 30`, two of them are required;
//!   UDP packets have ten zero bytes then `xx 17 24` (`teamviewer.pcap`, TCP 5938 and UDP,
//!   "TeamViewer").
//! - WhatsApp: the chat connection starts with `WA`, a major and a minor version byte
//!   (`whatsapp_login_chat.pcap`, TCP 5222: `WA 01 05`, "WhatsApp"), possibly behind the `ED 00 01`
//!   routing header newer clients send (a 3-byte length, routing data, then `WA`).
//!
//! Not here: AnyDesk (TLS with ALPN `anydesk/...` and `*.net.anydesk.com` names, which the TLS
//! dissector and the signature database see) and Teams/Skype media (STUN vendor attributes).

use super::{Dissector, Step};
use crate::facts::Facts;
use crate::view::{Dir, PacketView};

/// Packets without a decision before giving up.
const BUDGET: u32 = 6;
const ZOOM_PORTS: std::ops::RangeInclusive<u16> = 8801..=8810;

#[derive(Debug, Default)]
pub struct Apps {
    seen: u32,
    /// Zoom: the client's session header (bytes 1..20 of its type-1 packet).
    zoom: Option<[u8; 19]>,
    /// TeamViewer packets seen.
    teamviewer: u32,
    /// Spotify: the client's access-point hello was seen.
    spotify_hello: bool,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn tailscale_disco(p: &[u8]) -> bool {
    p.starts_with(b"TS\xf0\x9f\x92\xac") && p.len() >= 6 + 32 + 24
}

fn spotify_discovery(p: &[u8]) -> bool {
    p.starts_with(b"SpotUdp0") && p.len() >= 24
}

fn dropbox_discovery(pkt: &PacketView<'_>) -> bool {
    let p = pkt.payload;
    pkt.dst_port() == 17500 && p.first() == Some(&b'{') && p.len() <= 4096 && contains(p, b"\"host_int\"")
}

fn discord(p: &[u8]) -> bool {
    if p.len() == 8 && p.starts_with(&[0x13, 0x37, 0xca, 0xfe]) {
        return true;
    }
    if p.len() != 74 || be16(p, 2) != Some(70) {
        return false;
    }
    let Some(addr) = p.get(8..72) else { return false };
    let text_end = addr.iter().position(|&b| b == 0).unwrap_or(addr.len());
    let (text, pad) = addr.split_at(text_end);
    let padded = pad.iter().all(|&b| b == 0);
    match be16(p, 0) {
        Some(1) => padded && (text.is_empty() || text.iter().all(|b| b.is_ascii_graphic())),
        Some(2) => padded && text.len() >= 2 && text.iter().all(|&b| b.is_ascii_hexdigit() || b == b'.' || b == b':'),
        _ => false,
    }
}

fn telegram_relay(p: &[u8]) -> bool {
    let (Some(tag), Some(marker)) = (p.get(..16), p.get(16..28)) else { return false };
    marker.iter().all(|&b| b == 0xff) && tag.iter().any(|&b| b != tag[0])
}

/// An unencrypted MTProto message (auth_key_id 0) whose length field matches `body`.
fn mtproto_plain(body: &[u8]) -> bool {
    body.get(..8) == Some(&[0; 8])
        && le32(body, 8).is_some_and(|id| id != 0)
        && le32(body, 16).is_some_and(|n| n as usize + 20 == body.len() && n >= 20)
}

fn telegram_tcp(p: &[u8]) -> bool {
    match p.first() {
        Some(0xef) => {
            let n = *p.get(1).unwrap_or(&0) as usize;
            n < 0x7f && p.get(2..).is_some_and(|b| b.len() == 4 * n && mtproto_plain(b))
        }
        Some(&tag @ (0xee | 0xdd)) => {
            let (Some(head), Some(len), Some(body)) = (p.get(..4), le32(p, 4), p.get(8..)) else { return false };
            if head != [tag; 4] || body.len() != len as usize {
                return false;
            }
            // The padded variant appends 0-15 random bytes to the message inside the length.
            let pads = if tag == 0xdd { 0..16 } else { 0..1 };
            pads.into_iter()
                .any(|pad| body.len().checked_sub(pad).and_then(|n| body.get(..n)).is_some_and(mtproto_plain))
        }
        _ => false,
    }
}

fn whatsapp(p: &[u8]) -> bool {
    let wa = |h: &[u8]| h.len() >= 4 && h.starts_with(b"WA") && (1..=9).contains(&h[2]) && h[3] <= 9;
    if p.starts_with(b"ED\x00\x01") {
        let Some(len) = be32(p, 3).map(|v| (v & 0x00ff_ffff) as usize) else { return false };
        return p.get(7 + len..).is_some_and(wa);
    }
    wa(p)
}

fn teamviewer_udp(p: &[u8]) -> bool {
    p.len() >= 16 && p.get(..10) == Some(&[0; 10]) && p.get(11..13) == Some(&[0x17, 0x24])
}

fn teamviewer_tcp(p: &[u8]) -> bool {
    p.len() >= 4 && (p.starts_with(&[0x17, 0x24]) || p.starts_with(&[0x11, 0x30]))
}

impl Apps {
    fn udp(&mut self, pkt: &PacketView<'_>) -> Option<&'static str> {
        let p = pkt.payload;
        if tailscale_disco(p) {
            return Some("Tailscale");
        }
        if spotify_discovery(p) {
            return Some("Spotify");
        }
        if dropbox_discovery(pkt) {
            return Some("Dropbox");
        }
        if discord(p) {
            return Some("Discord");
        }
        if telegram_relay(p) {
            return Some("Telegram");
        }
        if teamviewer_udp(p) {
            self.teamviewer += 1;
            if self.teamviewer >= 2 {
                return Some("TeamViewer");
            }
        }
        if ZOOM_PORTS.contains(&pkt.server_port()) && p.len() >= 24 {
            let hdr: Option<[u8; 19]> = p.get(1..20).and_then(|h| h.try_into().ok());
            match (pkt.dir, p[0]) {
                (Dir::ToServer, 0x01) if self.zoom.is_none() => self.zoom = hdr,
                (Dir::ToClient, 0x02) if self.zoom.is_some() && self.zoom == hdr => return Some("Zoom"),
                _ => {}
            }
        }
        None
    }

    fn tcp(&mut self, pkt: &PacketView<'_>) -> Option<&'static str> {
        let p = pkt.payload;
        if self.seen == 1 && pkt.dir == Dir::ToServer {
            if telegram_tcp(p) {
                return Some("Telegram");
            }
            if whatsapp(p) {
                return Some("WhatsApp");
            }
            if p.starts_with(&[0, 4]) && be32(p, 2).is_some_and(|n| n as usize == p.len()) {
                self.spotify_hello = true;
            }
        }
        if self.spotify_hello && pkt.dir == Dir::ToClient {
            if be32(p, 0).is_some_and(|n| n as usize == p.len() && n >= 16) {
                return Some("Spotify");
            }
            self.spotify_hello = false;
        }
        if teamviewer_tcp(p) {
            self.teamviewer += 1;
            if self.teamviewer >= 2 {
                return Some("TeamViewer");
            }
        }
        None
    }
}

impl Dissector for Apps {
    fn name(&self) -> &'static str {
        "apps"
    }

    fn on_packet(&mut self, pkt: &PacketView<'_>, facts: &mut Facts) -> Step {
        if pkt.payload.is_empty() {
            return Step::NeedMore;
        }
        self.seen += 1;
        let found = if pkt.is_udp() {
            self.udp(pkt)
        } else if pkt.is_tcp() {
            self.tcp(pkt)
        } else {
            return Step::NotMine;
        };
        if let Some(name) = found {
            facts.protocol = Some(name);
            facts.app_hint = Some(name);
            return Step::Done;
        }
        if self.seen >= BUDGET {
            Step::NotMine
        } else {
            Step::NeedMore
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dissect::testutil::{hex, packet};
    use vigil_wire::L4Proto;

    fn pv(l4: L4Proto, dir: Dir, ports: (u16, u16), payload: &[u8]) -> PacketView<'_> {
        packet(l4, dir, ([192, 168, 1, 77], ports.0), ([91, 108, 8, 7], ports.1), payload)
    }

    fn run(l4: L4Proto, ports: (u16, u16), pkts: &[(Dir, Vec<u8>)]) -> Option<&'static str> {
        let mut d = Apps::default();
        let mut f = Facts::default();
        for (dir, p) in pkts {
            match d.on_packet(&pv(l4, *dir, ports, p), &mut f) {
                Step::Done => {
                    assert_eq!(f.protocol, f.app_hint);
                    return f.protocol;
                }
                Step::NotMine => return None,
                _ => {}
            }
        }
        None
    }

    const UDP: L4Proto = L4Proto::Udp;
    const TCP: L4Proto = L4Proto::Tcp;

    #[test]
    fn corpus_positives() {
        let up = Dir::ToServer;
        let down = Dir::ToClient;
        let mut ts = b"TS\xf0\x9f\x92\xac".to_vec();
        ts.resize(92, 0x42);
        assert_eq!(run(UDP, (41641, 41641), &[(up, ts)]), Some("Tailscale"));
        let spot = hex("53706f7455647030a55adb27bedd97cf00010000b2248afc0ff37667d58eeeda421ca82bbc985a06");
        assert_eq!(run(UDP, (57621, 57621), &[(up, spot)]), Some("Spotify"));
        let dbx = br#"{"version": [2, 0], "port": 17500, "host_int": 1234, "displayname": "", "namespaces": [1]}"#;
        assert_eq!(run(UDP, (17500, 17500), &[(up, dbx.to_vec())]), Some("Dropbox"));
        let mut disc_req = hex("000100460000ace3");
        disc_req.resize(74, 0);
        assert_eq!(run(UDP, (57955, 50004), &[(up, disc_req)]), Some("Discord"));
        let mut disc_resp = hex("000200460000ace3");
        disc_resp.extend_from_slice(b"84.59.132.100");
        disc_resp.resize(74, 0);
        assert_eq!(run(UDP, (57955, 50004), &[(down, disc_resp)]), Some("Discord"));
        assert_eq!(run(UDP, (56271, 50004), &[(up, hex("1337cafe0e000000"))]), Some("Discord"));
        let tg = hex("dc4c00291565b7acbc236da9eda0d597fffffffffffffffffffffffffeffffff28f946112601a2f0");
        assert_eq!(run(UDP, (23174, 521), &[(up, tg)]), Some("Telegram"));
        let z1 = hex("010003c84ac4528718cda2b8477a1b899f33830000000000000002006f613f006f613f00000040e6");
        let z2 = hex("020003c84ac4528718cda2b8477a1b899f3383004f8378006f613f00000000000000000040004000");
        assert_eq!(run(UDP, (60653, 8801), &[(up, z1.clone()), (up, z1.clone()), (down, z2)]), Some("Zoom"));
        let tv1 = hex("17240a200000000000000000004800800001000000148000006fb78c804805532216142004");
        let tv2 = hex("1724281800008000007fffffff8080000000000000000000000000000017243c20008c0000801480");
        assert_eq!(run(TCP, (35732, 5938), &[(up, tv1), (up, tv2)]), Some("TeamViewer"));
        let tvu = hex("0000000000000000000003172447500005000000000000000000000039332e34372e3232342e3234");
        assert_eq!(run(UDP, (34417, 36037), &[(up, tvu.clone()), (down, tvu)]), Some("TeamViewer"));
        let mut sp_c = hex("000400000149520f5002a00100f00106c002b9f6909d03a00100f00100c0020092036752655260a2");
        sp_c.resize(0x149, 7);
        let mut sp_s = hex("0000021e52970452ec0252e9025260f6d2e9f68690023e24bee43d2153b04b217b4bfca6107ec81e");
        sp_s.resize(0x21e, 9);
        assert_eq!(run(TCP, (48628, 4070), &[(up, sp_c), (down, sp_s)]), Some("Spotify"));
        let wa = hex("5741010500001af80501a59189fc126950686f6e652d322e31322e322d35323232000019f8029cf8");
        assert_eq!(run(TCP, (49206, 5222), &[(up, wa)]), Some("WhatsApp"));
        let mut ed = b"ED\x00\x01\x00\x00\x05abcdeWA\x06\x03".to_vec();
        ed.extend_from_slice(&[0; 20]);
        assert_eq!(run(TCP, (49206, 443), &[(up, ed)]), Some("WhatsApp"));
    }

    #[test]
    fn telegram_mtproto_tcp() {
        // req_pq_multi: auth_key_id 0, msg_id, length 20, then 20 bytes of body.
        let mut msg = vec![0u8; 8];
        msg.extend_from_slice(&0x5f00_0000_0000_0004u64.to_le_bytes());
        msg.extend_from_slice(&20u32.to_le_bytes());
        msg.extend_from_slice(&[0xbe; 20]);
        let mut abridged = vec![0xef, (msg.len() / 4) as u8];
        abridged.extend(&msg);
        assert_eq!(run(TCP, (50000, 443), &[(Dir::ToServer, abridged)]), Some("Telegram"));
        let mut inter = vec![0xee; 4];
        inter.extend_from_slice(&(msg.len() as u32).to_le_bytes());
        inter.extend(&msg);
        assert_eq!(run(TCP, (50000, 443), &[(Dir::ToServer, inter)]), Some("Telegram"));
        let mut bad = vec![0xef, 10];
        bad.extend_from_slice(&[1; 40]);
        assert_eq!(run(TCP, (50000, 443), &[(Dir::ToServer, bad)]), None);
    }

    #[test]
    fn negatives() {
        let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01";
        let tls = hex("16030100ab010000a70303f1f318c3e72492ca306f3789eaff28710f00dcc8987c96a6ad43679b79");
        let mut quic = vec![0xc3, 0, 0, 0, 1];
        quic.resize(1200, 0);
        let ffs = vec![0xff; 64];
        let zeros = vec![0; 74];
        for p in [dns.to_vec(), tls.clone(), quic, ffs, zeros] {
            let pk: Vec<(Dir, Vec<u8>)> =
                (0..8).map(|i| (if i % 2 == 0 { Dir::ToServer } else { Dir::ToClient }, p.clone())).collect();
            assert_eq!(run(UDP, (5000, 8801), &pk), None);
            assert_eq!(run(TCP, (5000, 443), &pk), None);
        }
        // Zoom's answer must echo the client's header.
        let z1 = hex("010003c84ac4528718cda2b8477a1b899f33830000000000000002006f613f006f613f00000040e6");
        let z2 = hex("020003c84ac4528718cda2b8477a1b899f3383014f8378006f613f00000000000000000040004000");
        assert_eq!(run(UDP, (60653, 8801), &[(Dir::ToServer, z1), (Dir::ToClient, z2)]), None);
    }

    #[test]
    fn hostile_inputs_do_not_panic() {
        let bases = [
            hex("000200460000ace338342e35392e3133322e313030"),
            hex("efff00000000000000000000"),
            hex("dddddddd1800000000000000000000000000"),
            b"ED\x00\x01\xff\xff\xffWA".to_vec(),
            hex("0000000000000000000003172447500005"),
        ];
        let mut seed = 0x6a09e667f3bcc908u64;
        for n in 0..5000usize {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut p = bases[n % bases.len()].clone();
            p.resize(p.len() + (seed as usize % 80), (seed >> 8) as u8);
            let i = (seed as usize >> 3) % p.len();
            p[i] ^= (seed >> 32) as u8;
            p.truncate((seed >> 40) as usize % (p.len() + 1));
            for l4 in [UDP, TCP] {
                let mut d = Apps::default();
                let mut f = Facts::default();
                let _ = d.on_packet(&pv(l4, Dir::ToServer, (1, 8801), &p), &mut f);
                let _ = d.on_packet(&pv(l4, Dir::ToClient, (1, 8801), &p), &mut f);
            }
        }
    }
}
