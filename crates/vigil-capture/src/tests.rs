//! Unit tests over captures generated in the test (tiny hand-written pcap/pcapng writers, plus
//! pcap-file's writers as a cross-check).

use super::*;

// ------------------------------------------------------------------------------------------------
// Packet and frame builders

fn ipv4(id: u8, payload: usize) -> Vec<u8> {
    let total = 20 + payload;
    let mut p = vec![0x45, 0, (total >> 8) as u8, total as u8, 0, id, 0, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
    p.extend((0..payload).map(|i| (i as u8) ^ id));
    p
}

fn ipv6(id: u8, payload: usize) -> Vec<u8> {
    let mut p = vec![0x60, 0, 0, id, (payload >> 8) as u8, payload as u8, 17, 64];
    p.extend([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    p.extend([0x20, 1, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    p.extend((0..payload).map(|i| (i as u8) ^ id));
    p
}

fn eth(et: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
    f.extend(et.to_be_bytes());
    f.extend(payload);
    f
}

fn arp() -> Vec<u8> {
    eth(0x0806, &[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2])
}

/// Wraps an IP packet in the link layer of `link_type`.
fn frame(link_type: u32, ip: &[u8]) -> Vec<u8> {
    let v6 = ip[0] >> 4 == 6;
    let et: u16 = if v6 { 0x86DD } else { 0x0800 };
    let mut f = match link_type {
        1 => return eth(et, ip),
        12 | 14 | 101 | 228 | 229 => vec![],
        0 => (if v6 { 30u32 } else { 2 }).to_le_bytes().to_vec(), // Darwin, host (LE) order
        108 => (if v6 { 24u32 } else { 2 }).to_be_bytes().to_vec(), // OpenBSD LOOP, network order
        113 => {
            let mut h = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
            h.extend(et.to_be_bytes());
            h
        }
        276 => {
            let mut h = et.to_be_bytes().to_vec();
            h.extend([0, 0, 0, 0, 0, 2, 0, 1, 4, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
            h
        }
        _ => panic!("no framing for {link_type}"),
    };
    f.extend(ip);
    f
}

// ------------------------------------------------------------------------------------------------
// Tiny writers

struct PcapW {
    big: bool,
    out: Vec<u8>,
}

impl PcapW {
    fn new(big: bool, nanos: bool, link_type: u32, snaplen: u32) -> Self {
        let mut w = PcapW { big, out: vec![] };
        w.u32(if nanos { 0xA1B2_3C4D } else { 0xA1B2_C3D4 });
        w.u16(2);
        w.u16(4);
        w.u32(0);
        w.u32(0);
        w.u32(snaplen);
        w.u32(link_type);
        w
    }
    fn u16(&mut self, v: u16) {
        self.out.extend(if self.big { v.to_be_bytes() } else { v.to_le_bytes() });
    }
    fn u32(&mut self, v: u32) {
        self.out.extend(if self.big { v.to_be_bytes() } else { v.to_le_bytes() });
    }
    /// `frac` is micro- or nanoseconds depending on the file.
    fn rec(&mut self, sec: u32, frac: u32, data: &[u8], orig_len: u32) -> &mut Self {
        self.u32(sec);
        self.u32(frac);
        self.u32(data.len() as u32);
        self.u32(orig_len);
        self.out.extend(data);
        self
    }
    fn pkt(&mut self, sec: u32, frac: u32, data: &[u8]) -> &mut Self {
        self.rec(sec, frac, data, data.len() as u32)
    }
}

struct NgW {
    big: bool,
    out: Vec<u8>,
}

fn opt(code: u16, val: &[u8]) -> (u16, Vec<u8>) {
    (code, val.to_vec())
}

impl NgW {
    fn new(big: bool) -> Self {
        let mut w = NgW { big, out: vec![] };
        w.shb(big, &[]);
        w
    }
    fn b16(&self, v: u16) -> [u8; 2] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn b32(&self, v: u32) -> [u8; 4] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn b64(&self, v: u64) -> [u8; 8] {
        if self.big {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }
    fn options(&self, opts: &[(u16, Vec<u8>)], end_marker: bool) -> Vec<u8> {
        let mut o = vec![];
        for (code, val) in opts {
            o.extend(self.b16(*code));
            o.extend(self.b16(val.len() as u16));
            o.extend(val);
            o.resize(o.len().next_multiple_of(4), 0);
        }
        if end_marker && !opts.is_empty() {
            o.extend([0; 4]);
        }
        o
    }
    fn block(&mut self, btype: u32, mut body: Vec<u8>) -> &mut Self {
        body.resize(body.len().next_multiple_of(4), 0);
        let len = body.len() as u32 + 12;
        let (t, l) = (self.b32(btype), self.b32(len));
        self.out.extend(t);
        self.out.extend(l);
        self.out.extend(body);
        self.out.extend(l);
        self
    }
    fn shb(&mut self, big: bool, opts: &[(u16, Vec<u8>)]) -> &mut Self {
        self.big = big;
        let mut body = self.b32(0x1A2B_3C4D).to_vec();
        body.extend(self.b16(1));
        body.extend(self.b16(0));
        body.extend([0xFF; 8]);
        body.extend(self.options(opts, true));
        self.block(SHB, body)
    }
    fn idb_opts(&mut self, link_type: u16, snaplen: u32, opts: &[(u16, Vec<u8>)], end_marker: bool) -> &mut Self {
        let mut body = self.b16(link_type).to_vec();
        body.extend([0, 0]);
        body.extend(self.b32(snaplen));
        body.extend(self.options(opts, end_marker));
        self.block(IDB, body)
    }
    fn idb(&mut self, link_type: u16, tsresol: Option<u8>) -> &mut Self {
        let opts: Vec<_> = tsresol.map(|r| opt(9, &[r])).into_iter().collect();
        self.idb_opts(link_type, 0, &opts, true)
    }
    fn epb_full(&mut self, if_id: u32, ticks: u64, data: &[u8], orig_len: u32, caplen: u32) -> &mut Self {
        let mut body = self.b32(if_id).to_vec();
        body.extend(self.b32((ticks >> 32) as u32));
        body.extend(self.b32(ticks as u32));
        body.extend(self.b32(caplen));
        body.extend(self.b32(orig_len));
        body.extend(data);
        body.resize(body.len().next_multiple_of(4), 0);
        body.extend(self.options(&[opt(2, &self.b32(1))], true)); // epb_flags: inbound
        self.block(EPB, body)
    }
    fn epb(&mut self, if_id: u32, ticks: u64, data: &[u8]) -> &mut Self {
        self.epb_full(if_id, ticks, data, data.len() as u32, data.len() as u32)
    }
    fn spb(&mut self, orig_len: u32, data: &[u8]) -> &mut Self {
        let mut body = self.b32(orig_len).to_vec();
        body.extend(data);
        self.block(SPB, body)
    }
    fn pb(&mut self, if_id: u16, ticks: u64, data: &[u8]) -> &mut Self {
        let mut body = self.b16(if_id).to_vec();
        body.extend(self.b16(0));
        body.extend(self.b32((ticks >> 32) as u32));
        body.extend(self.b32(ticks as u32));
        body.extend(self.b32(data.len() as u32));
        body.extend(self.b32(data.len() as u32));
        body.extend(data);
        self.block(PB, body)
    }
}

// ------------------------------------------------------------------------------------------------
// Helpers

#[derive(Debug, Clone, PartialEq, Eq)]
struct Owned {
    ts: u64,
    v6: bool,
    l3: Vec<u8>,
    orig_len: u32,
    interface: u32,
}

/// Drains a reader; returns the packets, the final error (if any) and the stats.
fn drain<R: Read>(rd: &mut CaptureReader<R>) -> (Vec<Owned>, Option<CaptureError>) {
    let mut out = vec![];
    let mut err = None;
    while let Some(r) = rd.next_packet() {
        match r {
            Ok(p) => out.push(Owned {
                ts: p.ts_micros,
                v6: p.l3.is_ipv6(),
                l3: p.l3.bytes().to_vec(),
                orig_len: p.orig_len,
                interface: p.interface,
            }),
            Err(e) => {
                assert!(err.is_none(), "second error after {err:?}: {e}");
                err = Some(e);
            }
        }
    }
    assert!(rd.next_packet().is_none(), "reader must stay finished");
    (out, err)
}

fn read_all(bytes: &[u8]) -> (Vec<Owned>, Option<CaptureError>, CaptureStats) {
    let mut rd = CaptureReader::from_reader(bytes).expect("open");
    let (pkts, err) = drain(&mut rd);
    (pkts, err, rd.stats())
}

fn read_ok(bytes: &[u8]) -> (Vec<Owned>, CaptureStats) {
    let (pkts, err, stats) = read_all(bytes);
    assert!(err.is_none(), "unexpected error {err:?}");
    (pkts, stats)
}

fn check_invariant(s: &CaptureStats) {
    assert_eq!(
        s.packets,
        s.ip_packets + s.skipped_non_ip + s.skipped_truncated + s.skipped_unsupported_link + s.skipped_malformed,
        "{s:?}"
    );
    assert!(s.errors <= 1);
}

fn open_err(bytes: &[u8]) -> CaptureError {
    match CaptureReader::from_reader(bytes) {
        Ok(_) => panic!("expected open to fail"),
        Err(e) => e,
    }
}

// ------------------------------------------------------------------------------------------------
// pcap

#[test]
fn pcap_ethernet_vlan_arp_both_byte_orders() {
    for big in [false, true] {
        let mut w = PcapW::new(big, false, 1, 65535);
        let ip = ipv4(1, 10);
        let ip6 = ipv6(2, 7);
        let mut vlan = vec![0x00, 0x64]; // 802.1Q VID 100
        vlan.extend(0x0800u16.to_be_bytes());
        vlan.extend(&ip);
        let mut qinq = vec![0x00, 0x0A];
        qinq.extend(0x8100u16.to_be_bytes());
        qinq.extend([0x00, 0x14]);
        qinq.extend(0x86DDu16.to_be_bytes());
        qinq.extend(&ip6);
        w.pkt(1_600_000_000, 123_456, &eth(0x0800, &ip))
            .pkt(1_600_000_001, 0, &arp())
            .pkt(1_600_000_002, 999_999, &eth(0x8100, &vlan))
            .pkt(1_600_000_003, 5, &eth(0x88A8, &qinq));
        let (pkts, stats) = read_ok(&w.out);
        assert_eq!(pkts.len(), 3);
        assert_eq!(pkts[0], Owned { ts: 1_600_000_000_123_456, v6: false, l3: ip.clone(), orig_len: 44, interface: 0 });
        assert_eq!((pkts[1].ts, pkts[1].v6, &pkts[1].l3), (1_600_000_002_999_999, false, &ip));
        assert_eq!((pkts[2].ts, pkts[2].v6, &pkts[2].l3), (1_600_000_003_000_005, true, &ip6));
        assert_eq!(stats, CaptureStats { packets: 4, ip_packets: 3, skipped_non_ip: 1, ..CaptureStats::default() });
    }
}

#[test]
fn pcap_nanosecond_resolution() {
    for big in [false, true] {
        let mut w = PcapW::new(big, true, 101, 65535);
        w.pkt(1_700_000_000, 123_456_789, &ipv4(1, 0)).pkt(0, 999_999_999, &ipv6(1, 0));
        let (pkts, _) = read_ok(&w.out);
        assert_eq!(pkts[0].ts, 1_700_000_000_123_456);
        assert_eq!(pkts[1].ts, 999_999);
        assert!(pkts[1].v6);
    }
}

#[test]
fn pcap_every_supported_link_type() {
    for lt in [1u32, 101, 12, 14, 0, 108, 113, 276, 228, 229] {
        let v4 = ipv4(7, 33);
        let v6 = ipv6(8, 21);
        let mut w = PcapW::new(false, false, lt, 65535);
        if lt != 229 {
            w.pkt(10, 1, &frame(lt, &v4));
        }
        if lt != 228 {
            w.pkt(10, 2, &frame(lt, &v6));
        }
        let (pkts, stats) = read_ok(&w.out);
        let want: Vec<(bool, &Vec<u8>)> = match lt {
            228 => vec![(false, &v4)],
            229 => vec![(true, &v6)],
            _ => vec![(false, &v4), (true, &v6)],
        };
        let got: Vec<(bool, &Vec<u8>)> = pkts.iter().map(|p| (p.v6, &p.l3)).collect();
        assert_eq!(got, want, "link type {lt}");
        assert_eq!(stats.ip_packets, want.len() as u64);
    }
}

#[test]
fn pcap_fcs_bits_in_link_type_field() {
    // LINKTYPE_ETHERNET with "FCS present, 2 x 16 bits" in the upper bits.
    let mut w = PcapW::new(false, false, 1 | 0x0400_0000 | (2 << 28), 65535);
    let ip = ipv4(3, 5);
    let mut f = eth(0x0800, &ip);
    f.resize(60, 0);
    f.extend([0xDE, 0xAD, 0xBE, 0xEF]); // FCS
    w.pkt(1, 1, &f);
    let (pkts, _) = read_ok(&w.out);
    assert_eq!(pkts[0].l3, ip, "padding and FCS trimmed");
}

#[test]
fn pcap_unsupported_link_type_fails_open() {
    let mut w = PcapW::new(false, false, 127, 65535); // radiotap
    w.pkt(1, 1, &[0; 40]);
    match open_err(&w.out) {
        CaptureError::UnsupportedLinkType(127) => {}
        e => panic!("{e:?}"),
    }
    assert!(open_err(&w.out).to_string().contains("unsupported link-layer type 127"));
}

#[test]
fn pcap_snaplen_truncated_packets_are_yielded() {
    // snaplen 64: pcap-file's PcapPacket would reject these records (orig_len > snaplen).
    let mut w = PcapW::new(false, false, 1, 64);
    let ip = ipv4(1, 1400);
    let f = eth(0x0800, &ip);
    w.rec(5, 0, &f[..64], f.len() as u32);
    // A frame cut inside the Ethernet header, and one cut inside a VLAN tag.
    w.rec(6, 0, &f[..10], f.len() as u32);
    w.rec(7, 0, &eth(0x8100, &[0, 1, 8]), 100);
    // Cut right at the IP header: no L3 byte at all.
    w.rec(8, 0, &f[..14], f.len() as u32);
    let (pkts, stats) = read_ok(&w.out);
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].orig_len, 1434);
    assert_eq!(pkts[0].l3, &ip[..50]);
    assert_eq!(stats.skipped_truncated, 3);
    check_invariant(&stats);
}

#[test]
fn pcap_odd_but_readable_records() {
    // usec >= 1_000_000 and orig_len < caplen: tolerated (pcap-file's validation rejects both).
    let mut w = PcapW::new(false, false, 101, 0);
    let ip = ipv4(1, 4);
    w.rec(1, 1_500_000, &ip, 3);
    let (pkts, _) = read_ok(&w.out);
    assert_eq!(pkts[0].ts, 2_500_000);
    assert_eq!(pkts[0].orig_len, 3);
}

#[test]
fn pcap_truncated_file_yields_then_errors() {
    let mut w = PcapW::new(false, false, 1, 65535);
    for i in 0..5 {
        w.pkt(100 + i, 0, &eth(0x0800, &ipv4(i as u8, 50)));
    }
    let rec_len = 16 + 14 + 70;
    let full = w.out.clone();
    // Cut inside the 4th record's data, then inside the 4th record's header.
    for cut in [24 + 3 * rec_len + 40, 24 + 3 * rec_len + 7] {
        let (pkts, err, stats) = read_all(&full[..cut]);
        assert_eq!(pkts.len(), 3);
        match err {
            Some(CaptureError::Corrupt { offset, ref reason }) => {
                assert_eq!(offset, (24 + 3 * rec_len) as u64);
                assert!(reason.contains("file ends inside"), "{reason}");
            }
            e => panic!("{e:?}"),
        }
        assert_eq!(stats.errors, 1);
        check_invariant(&stats);
    }
    // Cut exactly at a record boundary: a clean end.
    let (pkts, _) = read_ok(&full[..24 + 2 * rec_len]);
    assert_eq!(pkts.len(), 2);
    // Header only: no packets, no error.
    let (pkts, _) = read_ok(&full[..24]);
    assert!(pkts.is_empty());
    // Header cut short: open fails.
    assert!(matches!(open_err(&full[..20]), CaptureError::Corrupt { offset: 0, .. }));
}

#[test]
fn pcap_absurd_caplen_is_corrupt_not_oom() {
    let mut w = PcapW::new(false, false, 1, 65535);
    w.pkt(1, 0, &eth(0x0800, &ipv4(1, 1)));
    let bad_at = w.out.len();
    w.u32(2);
    w.u32(0);
    w.u32(0xFFFF_FFF0); // caplen
    w.u32(0xFFFF_FFF0);
    w.out.extend([0; 100]);
    let (pkts, err, _) = read_all(&w.out);
    assert_eq!(pkts.len(), 1);
    match err {
        Some(CaptureError::Corrupt { offset, reason }) => {
            assert_eq!(offset, bad_at as u64);
            assert!(reason.contains("limit"), "{reason}");
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn garbage_and_short_inputs() {
    assert!(matches!(open_err(b""), CaptureError::Corrupt { offset: 0, .. }));
    assert!(matches!(open_err(b"\xd4\xc3"), CaptureError::Corrupt { offset: 0, .. }));
    match open_err(b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n") {
        CaptureError::UnknownFormat { magic, .. } => assert_eq!(&magic, b"GET "),
        e => panic!("{e:?}"),
    }
    match open_err(&[0x1F, 0x8B, 8, 0, 0, 0, 0, 0]) {
        CaptureError::UnknownFormat { detail, .. } => assert!(detail.contains("gzip")),
        e => panic!("{e:?}"),
    }
    let e = open_err(&[0x34, 0xCD, 0xB2, 0xA1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0]);
    assert!(e.to_string().contains("Kuznetzov"), "{e}");
    // pcapng magic followed by junk.
    let e = open_err(&[0x0A, 0x0D, 0x0D, 0x0A, 0, 0, 0, 28, 0xAB, 0xCD, 0xEF, 0x01, 0, 0, 0, 0]);
    assert!(matches!(e, CaptureError::Corrupt { offset: 0, .. }), "{e}");
    // Not a file.
    match CaptureReader::open("/nonexistent/vigil/capture.pcap") {
        Err(CaptureError::Open { path, .. }) => assert!(path.ends_with("capture.pcap")),
        r => panic!("{r:?}"),
    }
}

#[test]
fn large_records_grow_the_buffer() {
    // 200 KiB frames (bigger than the initial 64 KiB buffer) on a reader that trickles.
    let mut w = PcapW::new(false, false, 101, 262_144);
    let mut big = ipv4(1, 0);
    big[2] = 0;
    big[3] = 0; // total length 0 (TSO): keep everything
    big.resize(200 * 1024, 0xAB);
    for i in 0..3 {
        w.pkt(i, 0, &big);
    }
    w.pkt(9, 0, &ipv4(2, 10));
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(out.len()).min(4093);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let mut rd = CaptureReader::from_reader(Trickle(&w.out)).unwrap();
    let (pkts, err) = drain(&mut rd);
    assert!(err.is_none());
    assert_eq!(pkts.len(), 4);
    assert!(pkts[..3].iter().all(|p| p.l3 == big));
    assert_eq!(pkts[3].l3, ipv4(2, 10));
}

#[test]
fn cross_check_with_pcap_file_writer() {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::DataLink;
    use std::time::Duration;
    let ip = ipv4(9, 30);
    for (endianness, res) in
        [(Endianness::Big, TsResolution::NanoSecond), (Endianness::Little, TsResolution::MicroSecond)]
    {
        let header =
            PcapHeader { datalink: DataLink::LINUX_SLL, endianness, ts_resolution: res, ..PcapHeader::default() };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        let f = frame(113, &ip);
        w.write_packet(&PcapPacket::new(Duration::new(1_650_000_000, 987_654_000), f.len() as u32, &f)).unwrap();
        let (pkts, _) = read_ok(&w.into_writer());
        assert_eq!(
            pkts,
            vec![Owned { ts: 1_650_000_000_987_654, v6: false, l3: ip.clone(), orig_len: 66, interface: 0 }]
        );
    }
}

// ------------------------------------------------------------------------------------------------
// pcapng

#[test]
fn pcapng_two_interfaces_different_link_types_and_resolutions() {
    for big in [false, true] {
        let mut w = NgW::new(big);
        let (a, b, c) = (ipv4(1, 12), ipv6(2, 3), ipv4(3, 0));
        let plus_100s = w.b64(100);
        w.idb(1, None) // Ethernet, default microseconds
            .idb_opts(101, 0, &[opt(9, &[9]), opt(14, &plus_100s)], true) // RAW, ns, +100 s
            .epb(0, 1_600_000_000_000_001, &eth(0x0800, &a))
            .epb(1, 1_600_000_000_123_456_789, &b)
            .epb(0, 1_600_000_001_000_000, &arp())
            .epb(1, 5_000, &c);
        let (pkts, stats) = read_ok(&w.out);
        assert_eq!(
            pkts,
            vec![
                Owned { ts: 1_600_000_000_000_001, v6: false, l3: a.clone(), orig_len: 46, interface: 0 },
                Owned { ts: 1_600_000_100_123_456, v6: true, l3: b.clone(), orig_len: 43, interface: 1 },
                Owned { ts: 100_000_005, v6: false, l3: c.clone(), orig_len: 20, interface: 1 },
            ]
        );
        assert_eq!(stats.skipped_non_ip, 1);
        check_invariant(&stats);
    }
}

#[test]
fn pcapng_unsupported_interface_is_skipped_and_counted() {
    let mut w = NgW::new(false);
    let ip = ipv4(1, 1);
    w.idb(127, None).idb(113, None).epb(0, 1, &[0; 30]).epb(1, 2, &frame(113, &ip)).epb(0, 3, &[0; 30]);
    let mut rd = CaptureReader::from_reader(&w.out[..]).unwrap();
    assert_eq!(rd.format(), CaptureFormat::PcapNg);
    let (pkts, err) = drain(&mut rd);
    assert!(err.is_none());
    assert_eq!(pkts.len(), 1);
    assert_eq!(pkts[0].interface, 1);
    assert_eq!(rd.stats().skipped_unsupported_link, 2);
    assert_eq!(rd.unsupported_link_types(), &[127]);
    check_invariant(&rd.stats());
}

#[test]
fn pcapng_every_supported_link_type() {
    let lts = [1u16, 101, 12, 14, 0, 108, 113, 276, 228, 229];
    let mut w = NgW::new(false);
    for &lt in &lts {
        w.idb(lt, None);
    }
    let mut want = vec![];
    for (i, &lt) in lts.iter().enumerate() {
        let ip = if lt == 229 { ipv6(i as u8, 9) } else { ipv4(i as u8, 9) };
        w.epb(i as u32, i as u64, &frame(u32::from(lt), &ip));
        want.push((i as u32, ip));
    }
    let (pkts, stats) = read_ok(&w.out);
    let got: Vec<_> = pkts.into_iter().map(|p| (p.interface, p.l3)).collect();
    assert_eq!(got, want);
    assert_eq!(stats.ip_packets, lts.len() as u64);
}

#[test]
fn pcapng_multiple_sections_mixed_byte_order() {
    let mut w = NgW::new(true);
    w.idb(1, None).epb(0, 10, &eth(0x0800, &ipv4(1, 0)));
    w.shb(false, &[]).idb(228, Some(3)).idb(1, None).epb(0, 7, &ipv4(2, 0)).epb(1, 20, &eth(0x0800, &ipv4(3, 0)));
    let (pkts, _) = read_ok(&w.out);
    let got: Vec<_> = pkts.iter().map(|p| (p.interface, p.ts, p.l3[5])).collect();
    // Section 2's interfaces are file-wide 1 and 2; if_tsresol 3 = milliseconds.
    assert_eq!(got, vec![(0, 10, 1), (1, 7000, 2), (2, 20, 3)]);
}

#[test]
fn pcapng_binary_resolution_and_negative_offset() {
    let mut w = NgW::new(false);
    let minus_50s = w.b64((-50i64) as u64);
    w.idb_opts(101, 0, &[opt(9, &[0x80 | 20]), opt(14, &minus_50s)], true);
    w.epb(0, (100 << 20) + (1 << 19), &ipv4(1, 0)); // 100.5 s - 50 s
    w.epb(0, 1 << 20, &ipv4(2, 0)); // 1 s - 50 s: clamps to 0
    let (pkts, _) = read_ok(&w.out);
    assert_eq!(pkts[0].ts, 50_500_000);
    assert_eq!(pkts[1].ts, 0);
}

#[test]
fn pcapng_simple_and_obsolete_packet_blocks() {
    let mut w = NgW::new(false);
    let ip = ipv4(1, 40); // 60 bytes, frame 74
    w.idb_opts(1, 50, &[], true); // snaplen 50
    w.epb(0, 777, &eth(0x0800, &ipv4(9, 0)));
    w.spb(74, &eth(0x0800, &ip)[..50]); // SPB data clipped to snaplen, padded to 52
    w.pb(0, 999, &eth(0x86DD, &ipv6(3, 1)));
    let (pkts, stats) = read_ok(&w.out);
    assert_eq!(pkts.len(), 3);
    assert_eq!((pkts[1].ts, pkts[1].orig_len, &pkts[1].l3[..]), (777, 74, &ip[..36]));
    assert_eq!((pkts[2].ts, pkts[2].v6, pkts[2].l3.len()), (999, true, 41));
    check_invariant(&stats);
}

#[test]
fn pcapng_options_pcap_file_rejects_are_tolerated() {
    // if_tzone (4 bytes, rejected by pcap-file 2.0), non-UTF-8 if_name, no opt_endofopt; an SHB
    // with a non-UTF-8 shb_os. if_tsresol must still be honoured.
    let mut w = NgW::new(false);
    w.out.clear();
    w.shb(false, &[opt(3, b"\xff\xfe os")]);
    w.idb_opts(1, 0, &[opt(2, b"eth\xff"), opt(10, &[0, 0, 0, 0]), opt(9, &[3])], false);
    w.epb(0, 1234, &eth(0x0800, &ipv4(1, 0)));
    let (pkts, _) = read_ok(&w.out);
    assert_eq!(pkts[0].ts, 1_234_000);
    // Same in a second, big-endian section (parser restart in the other byte order).
    w.shb(true, &[opt(4, b"\xc0")]).idb_opts(1, 0, &[opt(10, &[0, 0, 0, 0]), opt(9, &[9])], true);
    w.epb(0, 5_000_000_000, &eth(0x0800, &ipv4(2, 0)));
    let (pkts, _) = read_ok(&w.out);
    assert_eq!(pkts[1].ts, 5_000_000);
    assert_eq!(pkts[1].interface, 1);
}

#[test]
fn pcapng_malformed_packet_blocks_are_skipped() {
    let mut w = NgW::new(false);
    let f = eth(0x0800, &ipv4(1, 0));
    w.epb(0, 1, &f); // no interface yet
    w.spb(10, &[0; 10]); // likewise
    w.idb(1, None);
    w.epb(5, 1, &f); // unknown interface
    w.epb_full(0, 1, &f, 34, 4000); // caplen beyond the block
    w.block(EPB, vec![0; 8]); // too short
    w.block(0x0BAD_0001, vec![1, 2, 3, 4]); // unknown block type: ignored
    w.block(5, vec![0; 16]); // interface statistics: ignored
    w.epb(0, 1, &f);
    let (pkts, stats) = read_ok(&w.out);
    assert_eq!(pkts.len(), 1);
    assert_eq!(stats.skipped_malformed, 5);
    assert_eq!(stats.packets, 6);
    check_invariant(&stats);
}

#[test]
fn pcapng_truncated_and_corrupt_files() {
    let mut w = NgW::new(false);
    w.idb(1, None);
    let mut starts = vec![];
    for i in 0..4 {
        starts.push(w.out.len());
        w.epb(0, i, &eth(0x0800, &ipv4(i as u8, 20)));
    }
    let full = w.out.clone();
    // Cut in the middle of the 3rd EPB, and inside its 12-byte header.
    for cut in [starts[2] + 30, starts[2] + 5] {
        let (pkts, err, stats) = read_all(&full[..cut]);
        assert_eq!(pkts.len(), 2);
        match err {
            Some(CaptureError::Corrupt { offset, .. }) => assert_eq!(offset, starts[2] as u64),
            e => panic!("{e:?}"),
        }
        check_invariant(&stats);
    }
    // Trailer length mismatch in the 2nd EPB.
    let mut bad = full.clone();
    let trailer = starts[2] - 4;
    bad[trailer] ^= 0x40;
    let (pkts, err, _) = read_all(&bad);
    assert_eq!(pkts.len(), 1);
    assert!(matches!(err, Some(CaptureError::Corrupt { offset, .. }) if offset == starts[1] as u64), "{err:?}");
    // Block length not a multiple of 4.
    let mut bad = full.clone();
    bad[starts[3] + 4] = 0x45;
    let (pkts, err, _) = read_all(&bad);
    assert_eq!(pkts.len(), 3);
    assert!(matches!(err, Some(CaptureError::Corrupt { offset, .. }) if offset == starts[3] as u64), "{err:?}");
    // Unsupported major version.
    let mut bad = full.clone();
    bad[12] = 2;
    assert!(open_err(&bad).to_string().contains("version 2"));
    // SHB truncated.
    assert!(matches!(open_err(&full[..20]), CaptureError::Corrupt { offset: 0, .. }));
}

#[test]
fn cross_check_with_pcap_file_ng_writer() {
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::DataLink;
    use std::borrow::Cow;
    use std::time::Duration;
    for endianness in [Endianness::Big, Endianness::Little] {
        let mut w = PcapNgWriter::with_endianness(Vec::new(), endianness).unwrap();
        // pcap-file writes EPB timestamps in nanoseconds, so declare if_tsresol = 9.
        for dl in [DataLink::ETHERNET, DataLink::LINUX_SLL2] {
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype: dl,
                snaplen: 0,
                options: vec![InterfaceDescriptionOption::IfTsResol(9)],
            })
            .unwrap();
        }
        let ip6 = ipv6(4, 100);
        for (if_id, lt) in [(0u32, 1u32), (1, 276)] {
            let f = frame(lt, &ip6);
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: if_id,
                timestamp: Duration::new(1_690_000_000, 111_222_333),
                original_len: f.len() as u32,
                data: Cow::Owned(f),
                options: vec![],
            })
            .unwrap();
        }
        let (pkts, _) = read_ok(&w.into_inner());
        assert_eq!(pkts.len(), 2);
        for (i, p) in pkts.iter().enumerate() {
            assert_eq!((p.ts, p.v6, &p.l3, p.interface), (1_690_000_000_111_222, true, &ip6, i as u32));
        }
    }
}

/// Documents, by running pcap-file 2.0 itself, the limitations this crate works around. If one of
/// these assertions starts failing after a pcap-file upgrade, the corresponding workaround in
/// lib.rs may be simplified.
#[test]
fn pcap_file_limitations_still_present() {
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::{Block, PcapNgReader};

    // 1. PcapPacket rejects every record with orig_len > snaplen (all packets of a `-s 64` capture).
    let mut w = PcapW::new(false, false, 1, 64);
    let f = eth(0x0800, &ipv4(1, 100));
    w.rec(1, 0, &f[..64], f.len() as u32);
    let mut r = PcapReader::new(&w.out[..]).unwrap();
    assert!(r.next_packet().unwrap().is_err());
    assert_eq!(read_ok(&w.out).0.len(), 1);

    // 2. EPB timestamps ignore if_tsresol: default microsecond ticks are read as nanoseconds.
    let mut w = NgW::new(false);
    w.idb(1, None).epb(0, 1_600_000_000_000_000, &f);
    let mut r = PcapNgReader::new(&w.out[..]).unwrap();
    let ts = loop {
        if let Block::EnhancedPacket(epb) = r.next_block().unwrap().unwrap() {
            break epb.timestamp;
        }
    };
    assert_eq!(ts.as_secs(), 1_600_000); // should be 1_600_000_000
    assert_eq!(read_ok(&w.out).0[0].ts, 1_600_000_000_000_000);

    // 3. An IDB carrying if_tzone (4 bytes per spec) is rejected, and so is the whole file from there.
    let mut w = NgW::new(false);
    w.idb_opts(1, 0, &[opt(10, &[0, 0, 0, 0])], true).epb(0, 1, &f);
    let mut r = PcapNgReader::new(&w.out[..]).unwrap();
    assert!(r.next_block().unwrap().is_err());
    assert_eq!(read_ok(&w.out).0.len(), 1);

    // 4. Simple Packet Block data includes the padding (and ignores the snap length).
    let mut w = NgW::new(false);
    let odd = ipv4(2, 1); // 21 bytes, padded to 24
    w.idb(101, None).spb(21, &odd);
    let mut r = PcapNgReader::new(&w.out[..]).unwrap();
    let len = loop {
        if let Block::SimplePacket(spb) = r.next_block().unwrap().unwrap() {
            break spb.data.len();
        }
    };
    assert_eq!(len, 24);
    assert_eq!(read_ok(&w.out).0[0].l3, odd);

    // 5. An option list without opt_endofopt (allowed by the spec) is rejected.
    let mut w = NgW::new(false);
    w.idb_opts(1, 0, &[opt(9, &[6])], false).epb(0, 1, &f);
    let mut r = PcapNgReader::new(&w.out[..]).unwrap();
    assert!(r.next_block().unwrap().is_err());
    assert_eq!(read_ok(&w.out).0.len(), 1);
}

#[test]
fn ticks_conversion() {
    assert_eq!(ticks_to_micros(1_234_567, 6, 0), 1_234_567);
    assert_eq!(ticks_to_micros(1_234_567_891, 9, 0), 1_234_567);
    assert_eq!(ticks_to_micros(12, 0, 0), 12_000_000);
    assert_eq!(ticks_to_micros(u64::MAX, 0, 0), u64::MAX); // saturates
    assert_eq!(ticks_to_micros(u64::MAX, 127, 0), 0);
    assert_eq!(ticks_to_micros(u64::MAX, 44, 0), 0);
    assert_eq!(ticks_to_micros(u64::MAX, 0xFF, 0), 0);
    assert_eq!(ticks_to_micros(1 << 10, 0x80 | 10, 0), 1_000_000);
    assert_eq!(ticks_to_micros(0, 6, i64::MAX), u64::MAX);
    assert_eq!(ticks_to_micros(5, 6, i64::MIN), 0);
}

// ------------------------------------------------------------------------------------------------
// Robustness: pseudo-random mutations of valid captures never panic or hang.

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn seeds() -> Vec<Vec<u8>> {
    let mut pcap = PcapW::new(false, true, 1, 65535);
    let mut vlan = vec![0, 5];
    vlan.extend(0x86DDu16.to_be_bytes());
    vlan.extend(ipv6(1, 8));
    pcap.pkt(1, 2, &eth(0x0800, &ipv4(1, 30))).pkt(3, 4, &arp()).pkt(5, 6, &eth(0x8100, &vlan));
    let mut pppoe = vec![0x11, 0, 0, 1, 0, 30, 0, 0x21];
    pppoe.extend(ipv4(2, 8));
    pcap.pkt(7, 8, &eth(0x8864, &pppoe));

    let mut pcap_be = PcapW::new(true, false, 0, 65535);
    pcap_be.pkt(1, 1, &frame(0, &ipv4(3, 3))).pkt(1, 2, &frame(0, &ipv6(3, 3)));

    let mut ng = NgW::new(false);
    ng.idb_opts(1, 0, &[opt(2, b"eth0"), opt(9, &[9])], true).idb(276, None).idb(113, Some(3));
    ng.epb(0, 1_000_000_000, &eth(0x0800, &ipv4(4, 16)))
        .epb(1, 5, &frame(276, &ipv6(5, 4)))
        .spb(40, &eth(0x0800, &ipv4(6, 6)))
        .pb(2, 9, &frame(113, &ipv4(7, 2)))
        .block(0x0000_000A, vec![0; 16]);
    ng.shb(true, &[]).idb(101, None).epb(0, 1, &ipv4(8, 1));
    vec![pcap.out, pcap_be.out, ng.out]
}

fn run_no_panic(data: &[u8]) {
    let Ok(mut rd) = CaptureReader::from_reader(data) else { return };
    let mut calls = 0usize;
    while let Some(r) = rd.next_packet() {
        calls += 1;
        if let Ok(p) = r {
            let _ = p.l3.bytes().len();
        }
        // Every packet consumes at least one 12-byte block / 16-byte record.
        assert!(calls <= data.len() / 12 + 2, "reader does not terminate");
    }
    check_invariant(&rd.stats());
}

#[test]
fn random_mutations_never_panic() {
    let seeds = seeds();
    for s in &seeds {
        let (_, stats) = read_ok(s);
        assert!(stats.ip_packets >= 2, "seed must be valid: {stats:?}");
    }
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    // VIGIL_CAPTURE_MUTATIONS=1000000 for a longer run.
    let rounds = std::env::var("VIGIL_CAPTURE_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(6000);
    for i in 0..rounds {
        let mut d = seeds[i % seeds.len()].clone();
        match rng.below(4) {
            0 => {
                // A few random byte flips.
                for _ in 0..=rng.below(8) {
                    let at = rng.below(d.len());
                    d[at] ^= 1 << rng.below(8);
                }
            }
            1 => {
                // Random bytes, biased towards interesting values, in a random place.
                for _ in 0..=rng.below(4) {
                    let at = rng.below(d.len());
                    d[at] = [0, 0xFF, 0x7F, 0x80, 4, 12, rng.next() as u8][rng.below(7)];
                }
            }
            2 => {
                // Truncate (and sometimes flip a byte too).
                d.truncate(rng.below(d.len() + 1));
                if !d.is_empty() && rng.below(2) == 0 {
                    let at = rng.below(d.len());
                    d[at] = rng.next() as u8;
                }
            }
            _ => {
                // Overwrite a 32-bit length/type-ish field with an extreme value.
                if d.len() >= 4 {
                    let at = rng.below(d.len() - 3) & !3;
                    let v = [0u32, 1, 11, 12, 0xFFFF_FFFF, 0x8000_0000, 0x0400_0000, rng.next() as u32][rng.below(8)];
                    d[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        run_no_panic(&d);
    }
    // Pure noise behind valid magics.
    for magic in [[0xD4u8, 0xC3, 0xB2, 0xA1], [0xA1, 0xB2, 0x3C, 0x4D], [0x0A, 0x0D, 0x0D, 0x0A]] {
        for _ in 0..300 {
            let mut d = magic.to_vec();
            let n = rng.below(300);
            d.extend((0..n).map(|_| rng.next() as u8));
            run_no_panic(&d);
        }
    }
}

#[test]
fn reader_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<CaptureReader<File>>();
    assert_send::<CaptureReader<&[u8]>>();
    assert_send::<CaptureError>();
}
