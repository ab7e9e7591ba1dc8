#![no_main]
//! Arbitrary packet sequences through a flow's classifier: every dissector of the transport sees
//! them (TCP or UDP by the first byte), in both directions. Never panics.
use libfuzzer_sys::fuzz_target;
use vigil_dpi::{Classifier, ClassifierConfig, Dir, DnsCache, DpiContext, PacketView, RelatedFlows, SignatureDb};
use vigil_wire::L4Proto;

fuzz_target!(|data: &[u8]| {
    static DB: std::sync::OnceLock<SignatureDb> = std::sync::OnceLock::new();
    let sigdb = DB.get_or_init(|| SignatureDb::builtin().expect("builtin signatures"));
    let cache = DnsCache::new(64);
    let related = RelatedFlows::new(64);
    let ctx = DpiContext { sigdb, dns_cache: &cache, related: &related, config: ClassifierConfig::default() };
    let Some((&first, mut rest)) = data.split_first() else { return };
    let l4 = if first & 1 == 0 { L4Proto::Tcp } else { L4Proto::Udp };
    let ports = [80u16, 443, 53, 22, 25, 88, 389, 445, 1194, 3478, 5060, 51820, 6881, 3389, 123, 67];
    let port = ports[usize::from(first >> 4)];
    let client = ("192.0.2.1".parse().unwrap(), 40000);
    let server = ("192.0.2.2".parse().unwrap(), port);
    let mut c = Classifier::new(l4, client, server);
    let mut seq = [1000u32, 5000u32];
    let mut index = 0;
    // Each chunk: direction+flags byte, length byte, payload.
    while rest.len() >= 2 {
        let (meta, len) = (rest[0], usize::from(rest[1]).min(rest.len() - 2));
        let payload = &rest[2..2 + len];
        rest = &rest[2 + len..];
        let dir = if meta & 1 == 0 { Dir::ToServer } else { Dir::ToClient };
        let d = dir.index();
        let view = PacketView {
            dir,
            l4,
            client,
            server,
            payload,
            tcp_seq: seq[d],
            tcp_flags: if l4 == L4Proto::Tcp { meta >> 1 } else { 0 },
            index,
            ts_micros: 1_000_000 + u64::from(index) * 1000,
        };
        seq[d] = seq[d].wrapping_add(len as u32);
        c.on_packet(&view, &ctx);
        let _ = c.take_dns_log();
        index += 1;
    }
    c.finish(&ctx, index, 10_000_000);
    // What the flow taught (FTP data connections it announced, call sockets) meets the flows it
    // names: the connection back from the server, and another flow of the client's socket.
    for (l4, from, to) in [(L4Proto::Tcp, client, server), (L4Proto::Tcp, server, client), (l4, client, server)] {
        let mut next = Classifier::new(l4, (from.0, 50_000), to);
        for (i, payload) in [&b""[..], &[0x80, 0x60, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4][..]].into_iter().enumerate() {
            let view = PacketView {
                dir: Dir::ToServer,
                l4,
                client: (from.0, 50_000),
                server: to,
                payload,
                tcp_seq: 0,
                tcp_flags: if l4 == L4Proto::Tcp && i == 0 { vigil_wire::tcp::SYN } else { 0 },
                index: i as u32,
                ts_micros: 11_000_000,
            };
            next.on_packet(&view, &ctx);
        }
        next.finish(&ctx, 2, 11_000_000);
    }
});
