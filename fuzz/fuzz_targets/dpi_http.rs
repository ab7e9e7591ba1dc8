#![no_main]
//! Any bytes as a TCP flow's packets to the HTTP dissector: the first byte picks how the rest is
//! cut into segments and directions; parsing must never panic, and the stand-alone line parsers
//! must agree with themselves on any input.
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use vigil_dpi::dissect::{http, Dissector, Step};
use vigil_dpi::{Dir, Facts, PacketView};
use vigil_wire::L4Proto;

fuzz_target!(|data: &[u8]| {
    let _ = http::parse_request_line(data);
    let _ = http::parse_status_line(data);
    let Some((&shape, rest)) = data.split_first() else { return };
    let mut d = http::Http::default();
    let mut facts = Facts::default();
    let cut = 1 + usize::from(shape & 0x3f);
    for (i, seg) in rest.chunks(cut).enumerate() {
        let dir = if (shape >> 6) & 1 == 1 && i % 2 == 1 { Dir::ToClient } else { Dir::ToServer };
        let pkt = PacketView {
            dir,
            l4: L4Proto::Tcp,
            client: (IpAddr::V4(Ipv4Addr::LOCALHOST), 40000),
            server: (IpAddr::V4(Ipv4Addr::LOCALHOST), 80),
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
});
