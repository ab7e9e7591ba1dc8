//! Replays the nDPI corpus (when present) through the full classifier and scores the tunnel, P2P,
//! real-time media and application dissectors (BitTorrent, WireGuard, OpenVPN, IPsec, STUN,
//! RTP/RTCP, SIP, Telegram, Discord, Zoom, TeamViewer, Spotify, Dropbox, Tailscale, WhatsApp)
//! against nDPI's per-flow results, and counts flows where one of these names appears although
//! nDPI says something else (precision matters more than recall). Skips when the corpus is absent.
//!
//! `cargo test -p vigil-dpi --test corpus_tunnels_media -- --nocapture` prints the table.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use vigil_dpi::{Classifier, ClassifierConfig, Dir, DnsCache, DpiContext, PacketView, SignatureDb};
use vigil_wire::{tcp, L4Proto};

const CORPUS: &str = "/work/shared/corpus/ndpi";

/// Names (nDPI master protocols or applications) these dissectors produce.
const SCORED: &[&str] = &[
    "BitTorrent",
    "WireGuard",
    "OpenVPN",
    "IPSec",
    "STUN",
    "DTLS",
    "RTP",
    "RTCP",
    "SRTP",
    "SIP",
    "Telegram",
    "Discord",
    "Zoom",
    "TeamViewer",
    "Spotify",
    "Dropbox",
    "Tailscale",
    "WhatsApp",
    "Skype_TeamsCall",
    "WhatsAppCall",
    "SignalVoip",
    "GoogleCall",
    "FacebookVoip",
];

/// Protocol names only these dissectors set: seeing one where nDPI disagrees is a false positive.
const OWN: &[&str] = &[
    "BitTorrent",
    "WireGuard",
    "OpenVPN",
    "STUN",
    "RTP",
    "RTCP",
    "SIP",
    "Telegram",
    "Discord",
    "Zoom",
    "TeamViewer",
    "Spotify",
    "Dropbox",
    "Tailscale",
    "WhatsApp",
];

type Key = (L4Proto, SocketAddr, SocketAddr);

fn key(l4: L4Proto, a: SocketAddr, b: SocketAddr) -> Key {
    if a <= b {
        (l4, a, b)
    } else {
        (l4, b, a)
    }
}

struct Expected {
    master: String,
    app: Option<String>,
}

fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    s.parse().ok().or_else(|| {
        let (ip, port) = s.rsplit_once(':')?;
        Some(SocketAddr::new(ip.parse::<IpAddr>().ok()?, port.parse().ok()?))
    })
}

fn expected(out: &str) -> HashMap<Key, Expected> {
    let mut m = HashMap::new();
    for line in out.lines() {
        let mut words = line.split_whitespace();
        let (Some(_), Some(l4), Some(a), Some(_), Some(b)) =
            (words.next(), words.next(), words.next(), words.next(), words.next())
        else {
            continue;
        };
        let l4 = match l4 {
            "TCP" => L4Proto::Tcp,
            "UDP" => L4Proto::Udp,
            _ => continue,
        };
        let (Some(a), Some(b)) = (parse_endpoint(a), parse_endpoint(b)) else { continue };
        let Some(proto) = line.split("[proto: ").nth(1).and_then(|r| r.split(']').next()) else { continue };
        let name = proto.split_once('/').map_or(proto, |(_, n)| n);
        let (master, app) = match name.split_once('.') {
            Some((m, a)) => (m.to_owned(), Some(a.to_owned())),
            None => (name.to_owned(), None),
        };
        m.insert(key(l4, a, b), Expected { master, app });
    }
    m
}

struct Flow {
    classifier: Classifier,
    client: SocketAddr,
    packets: u32,
    last_ts: u64,
}

/// Classifies every TCP/UDP flow of a capture.
fn replay(path: &Path, ctx: &DpiContext<'_>) -> HashMap<Key, Flow> {
    let mut flows: HashMap<Key, Flow> = HashMap::new();
    let Ok(mut reader) = vigil_capture::CaptureReader::open(path) else { return flows };
    while let Some(Ok(pkt)) = reader.next_packet() {
        let ts = pkt.ts_micros;
        let Ok(info) = vigil_wire::parse_l3(pkt.l3.bytes()) else { continue };
        if !matches!(info.l4, L4Proto::Tcp | L4Proto::Udp) || info.later_fragment {
            continue;
        }
        let src = SocketAddr::new(info.src, info.src_port);
        let dst = SocketAddr::new(info.dst, info.dst_port);
        let flags = info.tcp_flags.unwrap_or(0);
        let flow = flows.entry(key(info.l4, src, dst)).or_insert_with(|| {
            // A SYN-ACK first means the capture missed the SYN: its sender is the server.
            let client = if flags & (tcp::SYN | tcp::ACK) == tcp::SYN | tcp::ACK { dst } else { src };
            let server = if client == src { dst } else { src };
            Flow {
                classifier: Classifier::new(info.l4, (client.ip(), client.port()), (server.ip(), server.port())),
                client,
                packets: 0,
                last_ts: ts,
            }
        });
        let dir = if src == flow.client { Dir::ToServer } else { Dir::ToClient };
        let (client, server) = if dir == Dir::ToServer { (src, dst) } else { (dst, src) };
        let view = PacketView {
            dir,
            l4: info.l4,
            client: (client.ip(), client.port()),
            server: (server.ip(), server.port()),
            payload: info.payload,
            tcp_seq: info.tcp_seq,
            tcp_flags: flags,
            index: flow.packets,
            ts_micros: ts,
        };
        flow.classifier.on_packet(&view, ctx);
        flow.packets += 1;
        flow.last_ts = ts;
    }
    for flow in flows.values_mut() {
        flow.classifier.finish(ctx, flow.packets, flow.last_ts);
    }
    flows
}

#[derive(Default, Debug)]
struct Score {
    flows: u32,
    protocol: u32,
}

#[test]
fn tunnels_and_media_match_ndpi() {
    let dir = Path::new(CORPUS);
    if !dir.is_dir() {
        eprintln!("skipping: corpus {CORPUS} not present");
        return;
    }
    let Ok(sigdb) = SignatureDb::builtin() else {
        eprintln!("skipping: the builtin signature database does not load");
        return;
    };
    let cache = DnsCache::new(65_536);
    let ctx = DpiContext { sigdb: &sigdb, dns_cache: &cache, config: ClassifierConfig::default() };
    let mut scores: BTreeMap<String, Score> = BTreeMap::new();
    let mut misses = Vec::new();
    let mut false_positives = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    files.sort();
    for path in files {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        let Ok(out) = std::fs::read_to_string(path.with_file_name(format!("{name}.out"))) else { continue };
        let want = expected(&out);
        let flows = replay(&path, &ctx);
        for (k, e) in &want {
            let facts = flows.get(k).map(|f| f.classifier.facts().clone()).unwrap_or_default();
            let got = facts.protocol.unwrap_or("Unknown");
            let names = [Some(e.master.as_str()), e.app.as_deref()];
            let ok = names.contains(&Some(got)) || facts.app_hint.is_some() && names.contains(&facts.app_hint);
            let scored = names.iter().flatten().find(|n| SCORED.contains(n));
            if let Some(label) = scored {
                let s = scores.entry(label.to_string()).or_default();
                s.flows += 1;
                if ok {
                    s.protocol += 1;
                } else {
                    misses.push(format!("{name}: {:?} {} <-> {}: want {:?} got {got}", k.0, k.1, k.2, names));
                }
            } else if OWN.contains(&got) && !ok {
                false_positives.push(format!("{name}: {:?} {} <-> {}: nDPI {:?}, vigil {got}", k.0, k.1, k.2, names));
            }
        }
    }
    println!("{:<16} {:>6} {:>9}", "name", "flows", "right");
    let (mut total, mut right) = (0, 0);
    for (p, s) in &scores {
        println!("{p:<16} {:>6} {:>9}", s.flows, s.protocol);
        total += s.flows;
        right += s.protocol;
    }
    println!("total {right}/{total}, false positives {}", false_positives.len());
    for m in &misses {
        println!("  miss {m}");
    }
    for m in &false_positives {
        println!("  false positive {m}");
    }
    assert!(total == 0 || right * 10 >= total * 7, "only {right}/{total} flows right");
    assert!(false_positives.len() <= 2, "{} flows wrongly named: {false_positives:#?}", false_positives.len());
}
