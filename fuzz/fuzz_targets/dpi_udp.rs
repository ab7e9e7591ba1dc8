#![no_main]
//! Arbitrary payload sequences for the UDP (and shared TCP) dissectors: WireGuard, OpenVPN, IPsec,
//! STUN, RTP, SIP, BitTorrent and the application rules. The first byte picks transport and ports,
//! then each chunk is `dir/len` byte + payload. Nothing may panic, whatever the state reached.
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use vigil_dpi::dissect::{apps, bittorrent, ipsec, openvpn, rtp, sip, stun, wireguard, Dissector, Step};
use vigil_dpi::{Dir, Facts, PacketView};
use vigil_wire::L4Proto;

const PORTS: [u16; 8] = [500, 4500, 3478, 8801, 1194, 5060, 17500, 51820];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, mut rest)) = data.split_first() else { return };
    let l4 = if sel & 0x80 != 0 { L4Proto::Tcp } else { L4Proto::Udp };
    let port = PORTS[(sel & 7) as usize];
    let mut ds: Vec<Box<dyn Dissector>> = vec![
        Box::new(wireguard::WireGuard::default()),
        Box::new(openvpn::OpenVpn::default()),
        Box::new(ipsec::Ipsec::default()),
        Box::new(stun::Stun::default()),
        Box::new(rtp::Rtp::default()),
        Box::new(sip::Sip::default()),
        Box::new(bittorrent::BitTorrent::default()),
        Box::new(apps::Apps::default()),
    ];
    let mut live = vec![true; ds.len()];
    let mut facts = Facts::default();
    let mut index = 0u32;
    while let Some((&hdr, tail)) = rest.split_first() {
        let len = ((hdr & 0x7f) as usize * 12).min(tail.len());
        let (payload, next) = tail.split_at(len);
        rest = next;
        let pkt = PacketView {
            dir: if hdr & 0x80 != 0 { Dir::ToClient } else { Dir::ToServer },
            l4,
            client: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000),
            server: (IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), port),
            payload,
            tcp_seq: 0,
            tcp_flags: 0,
            index,
            ts_micros: u64::from(index) * 1000,
        };
        index += 1;
        for (d, alive) in ds.iter_mut().zip(live.iter_mut()) {
            if *alive && matches!(d.on_packet(&pkt, &mut facts), Step::NotMine | Step::Done) {
                *alive = false;
            }
        }
    }
});
