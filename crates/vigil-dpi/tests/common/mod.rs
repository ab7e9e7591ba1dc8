//! Shared by the nDPI corpus tests (`corpus_cleartext.rs`, `corpus_tunnels_media.rs`): the corpus
//! and its per-capture nDPI results, and a replay of a capture through the full classifier.
//!
//! Cargo compiles this module into every test that declares `mod common;`: what one of them does
//! not use carries `#[allow(dead_code)]`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use vigil_dpi::{Classifier, Dir, DpiContext, PacketView, SignatureDb};
use vigil_wire::{tcp, L4Proto};

pub const CORPUS: &str = "/work/shared/corpus/ndpi";

/// A flow: its L4 protocol and its two endpoints, lower first.
pub type Key = (L4Proto, SocketAddr, SocketAddr);

pub fn key(l4: L4Proto, a: SocketAddr, b: SocketAddr) -> Key {
    if a <= b {
        (l4, a, b)
    } else {
        (l4, b, a)
    }
}

/// What nDPI says of a flow.
pub struct Expected {
    pub master: String,
    pub app: Option<String>,
    /// The Hostname/SNI nDPI shows, lower-cased.
    #[allow(dead_code)]
    pub hostname: Option<String>,
}

fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    s.parse().ok().or_else(|| {
        let (ip, port) = s.rsplit_once(':')?;
        Some(SocketAddr::new(ip.parse::<IpAddr>().ok()?, port.parse().ok()?))
    })
}

/// The flows of an nDPI result file (`ndpiReader` output).
pub fn expected(out: &str) -> HashMap<Key, Expected> {
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
        let hostname =
            line.split("[Hostname/SNI: ").nth(1).and_then(|r| r.split(']').next()).map(|h| h.to_ascii_lowercase());
        m.insert(key(l4, a, b), Expected { master, app, hostname });
    }
    m
}

/// A capture of the corpus with nDPI's result for it.
pub struct Capture {
    /// The file name.
    pub name: String,
    pub path: PathBuf,
    /// nDPI's flows.
    pub want: HashMap<Key, Expected>,
}

/// The corpus captures (`.pcap`, `.pcapng`) that have an nDPI result file (`NAME.out`), in name
/// order; `None`, with a skip line, when the corpus is absent or the builtin signature database
/// does not load.
pub fn corpus() -> Option<(impl Iterator<Item = Capture>, SignatureDb)> {
    let dir = Path::new(CORPUS);
    if !dir.is_dir() {
        eprintln!("skipping: corpus {CORPUS} not present");
        return None;
    }
    let Ok(sigdb) = SignatureDb::builtin() else {
        eprintln!("skipping: the builtin signature database does not load");
        return None;
    };
    let mut files: Vec<_> = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|e| e.path()).collect();
    files.sort();
    let captures = files.into_iter().filter_map(|path| {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            return None;
        }
        let out = std::fs::read_to_string(path.with_file_name(format!("{name}.out"))).ok()?;
        Some(Capture { name, path, want: expected(&out) })
    });
    Some((captures, sigdb))
}

pub struct Flow {
    pub classifier: Classifier,
    client: SocketAddr,
    packets: u32,
    last_ts: u64,
}

/// Classifies every TCP/UDP flow of a capture.
pub fn replay(path: &Path, ctx: &DpiContext<'_>) -> HashMap<Key, Flow> {
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
