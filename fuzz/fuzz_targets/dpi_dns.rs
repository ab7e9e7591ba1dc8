#![no_main]
//! Any bytes as a DNS message (UDP, both strictness levels, mDNS) and as a TCP DNS stream cut into
//! segments: no panic, bounded answers, and the cache accepts whatever the parser produced.
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use vigil_dpi::dissect::dns::{self, Strictness};
use vigil_dpi::dissect::{Dissector, Step};
use vigil_dpi::facts::DnsAnswer;
use vigil_dpi::{Dir, DnsCache, Facts, PacketView};
use vigil_wire::L4Proto;

fuzz_target!(|data: &[u8]| {
    let cache = DnsCache::new(64);
    for (strict, mdns) in
        [(Strictness::Anywhere, false), (Strictness::WellKnownPort, false), (Strictness::WellKnownPort, true)]
    {
        if let Ok(p) = dns::parse_message(data, strict, mdns) {
            assert!(p.facts.answers.len() <= 64);
            for a in &p.facts.answers {
                if let DnsAnswer::Addr { name, addr, ttl } = a {
                    cache.insert(*addr, name, *ttl, 0);
                }
            }
        }
    }
    for l4 in [L4Proto::Udp, L4Proto::Tcp] {
        let mut d = dns::Dns::default();
        let mut facts = Facts::default();
        let cut = 1 + data.first().map_or(0, |&b| usize::from(b)) * 2;
        for (i, seg) in data.chunks(cut).enumerate() {
            let pkt = PacketView {
                dir: if i % 2 == 0 { Dir::ToServer } else { Dir::ToClient },
                l4,
                client: (IpAddr::V4(Ipv4Addr::LOCALHOST), 40000),
                server: (IpAddr::V4(Ipv4Addr::LOCALHOST), 53),
                payload: seg,
                tcp_seq: 0,
                tcp_flags: 0x18,
                index: i as u32,
                ts_micros: 0,
            };
            if matches!(d.on_packet(&pkt, &mut facts), Step::NotMine | Step::Done) {
                break;
            }
        }
    }
});
