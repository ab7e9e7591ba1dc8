#![no_main]
//! Arbitrary datagrams through the QUIC dissector (never panics, stops within its budget), and
//! arbitrary plaintext through the parsers behind the AEAD, which random ciphertext never reaches:
//! frame walking, CRYPTO reassembly, CHLO and cleartext gQUIC parsing.
use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use vigil_dpi::dissect::quic::{crypto_fragments, parse_chlo, parse_legacy, CryptoStream, Framing, Quic};
use vigil_dpi::dissect::{Dissector, Step};
use vigil_dpi::{Dir, Facts, PacketView};
use vigil_wire::L4Proto;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode & 0x80 != 0 {
        let framing = if mode & 1 == 0 { Framing::Ietf } else { Framing::Google };
        let (frags, _) = crypto_fragments(rest, framing);
        let mut stream = CryptoStream::default();
        for f in frags {
            let _ = stream.insert(f.offset, f.data);
        }
        assert!(stream.contiguous().len() <= vigil_dpi::dissect::quic::CRYPTO_CAP);
        let _ = parse_chlo(rest);
        let _ = parse_legacy(rest);
        return;
    }
    // Datagrams: a direction byte, a big-endian u16 length, the payload.
    let mut q = Quic::default();
    let mut facts = Facts::default();
    let mut rest = rest;
    let mut index = 0u32;
    while let [dir, hi, lo, tail @ ..] = rest {
        let len = (usize::from(*hi) << 8 | usize::from(*lo)).min(tail.len());
        let (payload, after) = tail.split_at(len);
        rest = after;
        let pkt = PacketView {
            dir: if dir & 1 == 0 { Dir::ToServer } else { Dir::ToClient },
            l4: L4Proto::Udp,
            client: (IpAddr::V4(Ipv4Addr::LOCALHOST), 50000),
            server: (IpAddr::V4(Ipv4Addr::LOCALHOST), 443),
            payload,
            tcp_seq: 0,
            tcp_flags: 0,
            index,
            ts_micros: 0,
        };
        index += 1;
        match q.on_packet(&pkt, &mut facts) {
            Step::NotMine | Step::Done => break,
            Step::NeedMore | Step::Identified => {}
        }
        // The dissector gives up on its own well before the classifier's packet budget.
        assert!(index <= 40);
    }
});
