#![no_main]
//! Any bytes as an HTTP/2 header block and as the frames after the client preface of a TCP flow
//! to the HTTP/2 dissector: the first byte picks how the rest is cut into segments and
//! directions. HPACK decoding and the frame walk must never panic.
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use vigil_dpi::dissect::http2::{self, hpack};
use vigil_dpi::dissect::{Dissector, Step};
use vigil_dpi::{Dir, Facts, PacketView};
use vigil_wire::L4Proto;

fuzz_target!(|data: &[u8]| {
    let _ = hpack::Decoder::default().decode(data, |_, _| true);
    let _ = http2::Request::from_block(data).hostname();
    let Some((&shape, rest)) = data.split_first() else { return };
    let stream = [&http2::PREFACE[..], rest].concat();
    let mut d = http2::Http2::default();
    let mut facts = Facts::default();
    let cut = 1 + usize::from(shape & 0x3f);
    let mut seq = 1000u32;
    for (i, seg) in stream.chunks(cut).enumerate() {
        let dir = if (shape >> 6) & 1 == 1 && i % 2 == 1 { Dir::ToClient } else { Dir::ToServer };
        let pkt = PacketView {
            dir,
            l4: L4Proto::Tcp,
            client: (IpAddr::V4(Ipv4Addr::LOCALHOST), 40000),
            server: (IpAddr::V4(Ipv4Addr::LOCALHOST), 80),
            payload: seg,
            tcp_seq: seq,
            tcp_flags: 0x18,
            index: i as u32,
            ts_micros: 0,
        };
        if dir == Dir::ToServer {
            seq = seq.wrapping_add(seg.len() as u32);
        }
        if matches!(d.on_packet(&pkt, &mut facts), Step::NotMine | Step::Done) {
            break;
        }
    }
});
