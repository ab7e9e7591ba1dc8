//! Arbitrary bytes into the TLS ClientHello/ServerHello parsers, JA4, and the TLS and DTLS
//! dissectors (the first byte picks how the rest is split into packets and directions, and
//! whether a SYN comes first: without one the TLS dissector reads mid-stream record framing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use vigil_dpi::dissect::tls::{self, parse_client_hello, parse_client_hello_with, parse_server_hello, Transport};
use vigil_dpi::dissect::{dtls, Dissector};
use vigil_dpi::{Dir, Facts, PacketView};
use vigil_wire::L4Proto;

fuzz_target!(|data: &[u8]| {
    for dtls_flag in [false, true] {
        if let Ok(ch) = parse_client_hello_with(data, dtls_flag) {
            let mut facts = Facts::default();
            tls::apply_client_hello(&ch, Transport::Dtls, &mut facts);
        }
    }
    if let Ok(ch) = parse_client_hello(data) {
        let _ = vigil_dpi::ja4::ja4(&ch, Transport::Tcp);
    }
    let _ = parse_server_hello(data);
    let _ = tls::cert::cert_names(data);
    let mut ids = Vec::new();
    let _ = tls::cert::cert_names_and_ids(data, &mut ids);
    assert!(ids.len() <= vigil_dpi::facts::MAX_CERT_IDS);

    let Some((&ctl, rest)) = data.split_first() else { return };
    let cut = usize::from(ctl) % (rest.len() + 1);
    let (a, b) = rest.split_at(cut);
    let client = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);
    let server = (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 443);
    let view = |dir, l4, payload, seq, flags, index| PacketView {
        dir,
        l4,
        client,
        server,
        payload,
        tcp_seq: seq,
        tcp_flags: flags,
        index,
        ts_micros: 0,
    };
    let second_dir = if ctl & 1 == 0 { Dir::ToServer } else { Dir::ToClient };
    let mut t = tls::Tls::default();
    let mut facts = Facts::default();
    if ctl & 4 == 0 {
        t.on_packet(&view(Dir::ToServer, L4Proto::Tcp, &[], 999, 0x02, 0), &mut facts);
    }
    // Out of order when ctl's second bit says so.
    let (s1, s2) = (1000u32, 1000u32.wrapping_add(cut as u32));
    if ctl & 2 == 0 {
        t.on_packet(&view(Dir::ToServer, L4Proto::Tcp, a, s1, 0x18, 1), &mut facts);
        t.on_packet(&view(second_dir, L4Proto::Tcp, b, s2, 0x18, 2), &mut facts);
    } else {
        t.on_packet(&view(Dir::ToServer, L4Proto::Tcp, b, s2, 0x18, 1), &mut facts);
        t.on_packet(&view(Dir::ToServer, L4Proto::Tcp, a, s1, 0x18, 2), &mut facts);
    }
    let mut d = dtls::Dtls::default();
    let mut facts = Facts::default();
    d.on_packet(&view(Dir::ToServer, L4Proto::Udp, a, 0, 0, 0), &mut facts);
    d.on_packet(&view(second_dir, L4Proto::Udp, b, 0, 0, 1), &mut facts);
});
