//! Decode datagrams recorded from a real kernel (Linux 6.18) by
//! `examples/capture_fixture.rs`. No privileges needed.
//!
//! netlink headers are host endian; the fixtures were recorded on a
//! little-endian machine.
#![cfg(target_endian = "little")]

use vigil_nfq::wire::{self, Message};

const V4_OUT: &[u8] = include_bytes!("fixtures/ipv4_udp_local_out.bin");
const V6_OUT: &[u8] = include_bytes!("fixtures/ipv6_udp_local_out.bin");
const V4_IN: &[u8] = include_bytes!("fixtures/ipv4_udp_local_in.bin");
const ENOENT: &[u8] = include_bytes!("fixtures/verdict_enoent.bin");

const NF_INET_LOCAL_IN: u8 = 1;
const NF_INET_LOCAL_OUT: u8 = 3;

fn single_packet(dgram: &[u8]) -> vigil_nfq::Packet<'_> {
    let msgs: Vec<_> = wire::messages(dgram).collect::<Result<_, _>>().unwrap();
    assert_eq!(msgs.len(), 1, "one packet per datagram");
    match wire::parse_message(msgs[0]).unwrap() {
        Message::Packet(p) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn ipv4_local_out() {
    let p = single_packet(V4_OUT);
    assert_eq!(p.id, 1);
    assert_eq!(p.hw_protocol, 0x0800);
    assert_eq!(p.hook, NF_INET_LOCAL_OUT);
    assert_eq!(p.mark, 0);
    assert_eq!(p.indev, None);
    assert_eq!(p.outdev, Some(1), "lo is ifindex 1 in a fresh netns");
    assert_eq!(p.hw_addr, None);
    assert_eq!((p.uid, p.gid), (Some(0), Some(0)), "sent by root with UID_GID");
    assert_eq!(p.cap_len, None, "not truncated");
    assert_eq!(p.timestamp, None);
    assert_eq!((p.ct_id, p.ct_mark, p.ct_info), (None, None, None));
    // Locally generated UDP on lo: checksum offloaded, not yet filled in.
    assert!(p.csum_not_ready());
    assert!(!p.is_gso());
    assert_eq!(p.payload.len(), 44);
    assert_eq!(p.payload[0] >> 4, 4);
    assert_eq!(p.payload[9], 17, "UDP");
    assert_eq!(&p.payload[22..24], &9999u16.to_be_bytes(), "dport");
    assert!(p.payload.ends_with(b"vigil-fixture-v4"));
    assert_eq!(p.raw(), V4_OUT);
}

#[test]
fn ipv6_local_out() {
    let p = single_packet(V6_OUT);
    assert_eq!(p.id, 2);
    assert_eq!(p.hw_protocol, 0x86dd);
    assert_eq!(p.hook, NF_INET_LOCAL_OUT);
    assert_eq!(p.outdev, Some(1));
    assert_eq!(p.payload.len(), 40 + 8 + 16);
    assert_eq!(p.payload[0] >> 4, 6);
    assert_eq!(p.payload[6], 17, "next header UDP");
    assert_eq!(&p.payload[24..40], &std::net::Ipv6Addr::LOCALHOST.octets());
    assert!(contains(p.payload, b"vigil-fixture-v6"));
}

#[test]
fn ipv4_local_in_has_indev_and_hwaddr() {
    let p = single_packet(V4_IN);
    assert_eq!(p.id, 3);
    assert_eq!(p.hook, NF_INET_LOCAL_IN);
    assert_eq!(p.indev, Some(1));
    assert_eq!(p.outdev, None);
    // lo has a 6-byte all-zero hardware address.
    assert_eq!(p.hw_addr, Some([0; 6]));
    assert_eq!(p.uid, None, "no socket owner on input");
    assert!(p.payload.ends_with(b"vigil-fixture-in"));
    assert_eq!(&p.payload[22..24], &9998u16.to_be_bytes());
}

#[test]
fn verdict_enoent_error() {
    let msgs: Vec<_> = wire::messages(ENOENT).collect::<Result<_, _>>().unwrap();
    assert_eq!(msgs.len(), 1);
    let Message::Error(e) = wire::parse_message(msgs[0]).unwrap() else {
        panic!("expected NLMSG_ERROR");
    };
    assert_eq!(e.errno, libc::ENOENT);
    // The echoed request: our verdict, whose seq is the packet id.
    assert_eq!(e.request.ty, wire::nfq_msg_type(wire::NFQNL_MSG_VERDICT));
    assert_eq!(e.request.seq, 0xdead);
    assert_eq!(e.ext_msg, None);
    let hdr = wire::NlMsgHdr::parse(ENOENT).unwrap();
    assert_ne!(hdr.flags & wire::NLM_F_CAPPED, 0, "NETLINK_CAP_ACK in effect");
}

/// Feed every truncation and many mutations of the real datagrams to the
/// decoder: it may return errors but must never panic.
#[test]
fn mutated_fixtures_never_panic() {
    let mut seed = 0x9e3779b97f4a7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let decode = |d: &[u8]| {
        for m in wire::messages(d) {
            let Ok(m) = m else { break };
            if let Ok(Message::Packet(p)) = wire::parse_message(m) {
                let _ = (p.orig_len(), p.is_truncated(), p.payload.len());
            }
        }
        let _ = wire::parse_packet(d);
        let _ = wire::parse_error(d);
    };
    for fx in [V4_OUT, V6_OUT, V4_IN, ENOENT] {
        for n in 0..=fx.len() {
            decode(&fx[..n]);
        }
        for i in 0..fx.len() {
            for v in [0u8, 1, 3, 4, 0x7f, 0x80, 0xff] {
                let mut d = fx.to_vec();
                d[i] = v;
                decode(&d);
            }
        }
        for _ in 0..20_000 {
            let mut d = fx.to_vec();
            for _ in 0..1 + rnd() % 4 {
                let i = (rnd() as usize) % d.len();
                d[i] = rnd() as u8;
            }
            let cut = (rnd() as usize) % (d.len() + 1);
            decode(&d[..cut.max(d.len() / 2)]);
        }
    }
    // Pure garbage.
    for _ in 0..20_000 {
        let len = (rnd() % 256) as usize;
        let d: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        decode(&d);
    }
}

#[test]
fn corrupted_fixture_errors() {
    // nested NFQA_* length overrunning the message
    let mut d = V4_OUT.to_vec();
    // NFQA_PAYLOAD header is at 0x40: make its length exceed the message.
    assert_eq!(&d[0x42..0x44], &wire::NFQA_PAYLOAD.to_ne_bytes());
    d[0x40..0x42].copy_from_slice(&0x0100u16.to_ne_bytes());
    assert!(matches!(wire::parse_packet(&d), Err(vigil_nfq::WireError::BadAttrLength { .. })));
    // packet header attribute cut to 4 bytes of data
    let mut d = V4_OUT.to_vec();
    assert_eq!(&d[0x16..0x18], &wire::NFQA_PACKET_HDR.to_ne_bytes());
    d[0x14..0x16].copy_from_slice(&8u16.to_ne_bytes());
    assert!(wire::parse_packet(&d).is_err());
    // truncated datagram: nlmsg_len says more than we have
    assert!(matches!(wire::messages(&V4_OUT[..60]).next(), Some(Err(vigil_nfq::WireError::BadMessageLength { .. }))));
}
