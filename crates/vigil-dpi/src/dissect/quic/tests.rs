//! Dissector-level tests: RFC vectors end to end, real captures (fixtures and the shared corpus),
//! hostile inputs.

use super::*;
use crate::dissect::testutil::packet;
use crate::view::PacketView;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use vigil_wire::L4Proto;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quic");
const CORPUS: &str = "/work/shared/corpus/ndpi";

fn view(dir: Dir, payload: &[u8], index: u32) -> PacketView<'_> {
    PacketView { index, ..packet(L4Proto::Udp, dir, ([10, 0, 0, 1], 50000), ([10, 0, 0, 2], 443), payload) }
}

/// Runs one flow's datagrams through a fresh dissector the way the classifier does: until
/// `NotMine` or `Done`. Returns the last step and the facts.
fn run(flow: &[(Dir, Vec<u8>)]) -> (Step, Facts) {
    let mut q = Quic::default();
    let mut facts = Facts::default();
    let mut step = Step::NeedMore;
    for (i, (dir, payload)) in flow.iter().enumerate() {
        step = q.on_packet(&view(*dir, payload, i as u32), &mut facts);
        if matches!(step, Step::NotMine | Step::Done) {
            break;
        }
    }
    (step, facts)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(FIXTURES).join(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// `.dgrams` fixtures: per datagram, a direction byte (0 to server, 1 to client), a big-endian u16
/// length and the UDP payload.
fn read_dgrams(name: &str) -> Vec<(Dir, Vec<u8>)> {
    let bytes = fixture(name);
    let mut out = Vec::new();
    let mut rest = &bytes[..];
    while let [d, hi, lo, tail @ ..] = rest {
        let len = usize::from(*hi) << 8 | usize::from(*lo);
        let dir = if *d == 0 { Dir::ToServer } else { Dir::ToClient };
        out.push((dir, tail[..len].to_vec()));
        rest = &tail[len..];
    }
    out
}

fn write_dgrams(path: &Path, flow: &[(Dir, Vec<u8>)]) {
    let mut out = Vec::new();
    for (dir, p) in flow {
        out.push(u8::from(*dir == Dir::ToClient));
        out.extend_from_slice(&(p.len() as u16).to_be_bytes());
        out.extend_from_slice(p);
    }
    std::fs::write(path, out).unwrap();
}

/// UDP flows of a capture, in first-packet order; the side that sent first is the client.
fn udp_flows(path: &Path) -> Vec<Vec<(Dir, Vec<u8>)>> {
    let mut reader = vigil_capture::CaptureReader::open(path).unwrap();
    type Endpoint = (IpAddr, u16);
    let mut index: HashMap<(Endpoint, Endpoint), usize> = HashMap::new();
    let mut flows: Vec<Vec<(Dir, Vec<u8>)>> = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let Ok(pkt) = pkt else { continue };
        let Ok(info) = vigil_wire::parse_l3(pkt.l3.bytes()) else { continue };
        if info.l4 != L4Proto::Udp || info.payload.is_empty() {
            continue;
        }
        let (a, b) = ((info.src, info.src_port), (info.dst, info.dst_port));
        let (dir, i) = if let Some(&i) = index.get(&(a, b)) {
            (Dir::ToServer, i)
        } else if let Some(&i) = index.get(&(b, a)) {
            (Dir::ToClient, i)
        } else {
            index.insert((a, b), flows.len());
            flows.push(Vec::new());
            (Dir::ToServer, flows.len() - 1)
        };
        flows[i].push((dir, info.payload.to_vec()));
    }
    flows
}

fn corpus(name: &str) -> Option<PathBuf> {
    let p = Path::new(CORPUS).join(name);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("skipping: shared corpus file {} is absent", p.display());
        None
    }
}

// ---------------------------------------------------------------- RFC vectors, end to end

#[test]
fn rfc9001_and_rfc9369_client_initials_identify_example_com() {
    for name in ["rfc9001_a2_client_initial.bin", "rfc9369_a2_client_initial.bin"] {
        let (step, facts) = run(&[(Dir::ToServer, fixture(name))]);
        assert_eq!(step, Step::Done, "{name}");
        assert_eq!(facts.protocol, Some("QUIC"));
        assert_eq!(facts.hostname.as_deref(), Some("example.com"), "{name}");
        assert_eq!(facts.name_source, Some(NameSource::Sni));
        assert_eq!(facts.alpn_offered, ["alpn"]);
        assert!(facts.ja4.as_deref().is_some_and(|j| j.starts_with('q')), "{:?}", facts.ja4);
    }
}

#[test]
fn rfc9001_decrypted_stream_holds_the_client_hello() {
    let pkt = fixture("rfc9001_a2_client_initial.bin");
    let v1 = Version::lookup(version::V1).unwrap();
    let (h, _) = parse_long(&pkt, &v1).unwrap();
    let opened = InitialKeys::client(&v1, h.dcid).unwrap().open(h.packet, h.pn_offset).unwrap();
    let (frags, res) = crypto_fragments(&opened.frames, Framing::Ietf);
    assert_eq!(res, Ok(()));
    assert_eq!(frags.len(), 1);
    assert_eq!(frags[0].data.len(), 0xf1);
    assert_eq!(frags[0].data[..4], [0x01, 0x00, 0x00, 0xed]);
    assert!(frags[0].data.windows(11).any(|w| w == b"example.com"));
}

/// The ClientHello split over two Initials in two datagrams, second half first, each packet's
/// CRYPTO frames shuffled Chrome-style around PING and PADDING.
#[test]
fn reassembles_across_datagrams_out_of_order() {
    let v1 = Version::lookup(version::V1).unwrap();
    let keys = InitialKeys::client(&v1, &[0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08]).unwrap();
    let hello = {
        let pkt = fixture("rfc9001_a2_client_initial.bin");
        let (h, _) = parse_long(&pkt, &v1).unwrap();
        let opened = keys.open(h.packet, h.pn_offset).unwrap();
        crypto_fragments(&opened.frames, Framing::Ietf).0[0].data.to_vec()
    };
    let frame = |off: usize, data: &[u8]| {
        let mut f = vec![0x06, 0x40 | (off >> 8) as u8, off as u8, 0x40 | (data.len() >> 8) as u8, data.len() as u8];
        f.extend_from_slice(data);
        f
    };
    let packet = |pn: u8, frames: Vec<u8>| {
        let header = [0xc1, 0, 0, 0, 1, 8, 0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08, 0, 0, 0x44, 0x9e, 0, pn];
        let mut payload = frames;
        payload.resize(1182 - 2 - 16, 0);
        keys.seal(&header, 18, &payload)
    };
    let (a, b) = hello.split_at(100);
    let mut second = frame(100 + 60, &b[60..]);
    second.push(0x01);
    second.extend(frame(100, &b[..60]));
    let mut first = vec![0x01, 0x00];
    first.extend(frame(40, &a[40..]));
    first.extend(frame(0, &a[..40]));
    let flow = [(Dir::ToServer, packet(0, second)), (Dir::ToClient, vec![0x40; 50]), (Dir::ToServer, packet(1, first))];
    let mut q = Quic::default();
    let mut facts = Facts::default();
    assert_eq!(q.on_packet(&view(flow[0].0, &flow[0].1, 0), &mut facts), Step::Identified);
    assert_eq!(facts.protocol, Some("QUIC"));
    assert_eq!(facts.hostname, None);
    assert_eq!(q.on_packet(&view(flow[1].0, &flow[1].1, 1), &mut facts), Step::Identified);
    assert_eq!(q.on_packet(&view(flow[2].0, &flow[2].1, 2), &mut facts), Step::Done);
    assert_eq!(facts.hostname.as_deref(), Some("example.com"));

    // Both packets coalesced into one datagram work the same.
    let mut both = flow[0].1.clone();
    both.extend_from_slice(&flow[2].1);
    let (step, facts) = run(&[(Dir::ToServer, both)]);
    assert_eq!(step, Step::Done);
    assert_eq!(facts.hostname.as_deref(), Some("example.com"));
}

#[test]
fn gives_up_after_the_initial_budget() {
    let v1 = Version::lookup(version::V1).unwrap();
    let keys = InitialKeys::client(&v1, &[7; 8]).unwrap();
    // A ClientHello that claims 4000 bytes but never arrives past the first 10.
    let mut frames = vec![0x06, 0x00, 0x0a, 0x01, 0x00, 0x0f, 0xa0, 0, 0, 0, 0, 0, 0];
    frames.resize(1100, 0);
    let header = |pn: u8| [0xc0, 0, 0, 0, 1, 8, 7, 7, 7, 7, 7, 7, 7, 7, 0, 0, 0x44, 0x5d, pn];
    let flow: Vec<_> = (0..10).map(|pn| (Dir::ToServer, keys.seal(&header(pn), 18, &frames))).collect();
    let mut q = Quic::default();
    let mut facts = Facts::default();
    let steps: Vec<Step> = flow.iter().map(|(d, p)| q.on_packet(&view(*d, p, 0), &mut facts)).collect();
    assert_eq!(steps[..5], [Step::Identified; 5]);
    assert_eq!(steps[5], Step::Done);
    // A later non-Initial client packet ends collection too.
    let mut q = Quic::default();
    assert_eq!(q.on_packet(&view(Dir::ToServer, &flow[0].1, 0), &mut facts), Step::Identified);
    assert_eq!(q.on_packet(&view(Dir::ToServer, &[0x40; 40], 1), &mut facts), Step::Done);
}

// ---------------------------------------------------------------- captured flows

/// What a flow should yield; `None` fields are not checked.
struct Expect {
    file: &'static str,
    sni: Option<&'static str>,
    ja4: Option<&'static str>,
    alpn: Option<&'static str>,
    ua: Option<&'static str>,
}

const fn expect(file: &'static str, sni: Option<&'static str>, ja4: Option<&'static str>) -> Expect {
    Expect { file, sni, ja4, alpn: None, ua: None }
}

/// Expected values from nDPI's `.out` files for the same captures.
const CORPUS_EXPECT: &[Expect] = &[
    Expect { alpn: Some("h3"), ..expect("quic-v2.pcapng", Some("test"), Some("q13d0310h0_55b375c5d22e_0a3b52e28cea")) },
    Expect {
        alpn: Some("h3-29"),
        ..expect("quic-29.pcap", Some("localhost"), Some("q13d0512h3_d55e91d5c3b2_cd318bf3b157"))
    },
    Expect { alpn: Some("h3-33"), ..expect("quic-33.pcapng", None, Some("q00d0307h3_55b375c5d22e_af0a630e9e67")) },
    Expect {
        alpn: Some("h3-fb-05"),
        ..expect("quic-mvfst-27.pcapng", Some("graph.facebook.com"), Some("q00d0108h3_0f2cb44170f4_f4b4187450f5"))
    },
    expect("quic_frags_ch_in_multiple_packets.pcapng", None, Some("q00d0307h3_55b375c5d22e_af0a630e9e67")),
    expect("quic_0RTT.pcap", Some("ssl.gstatic.com"), Some("q13d0312h0_55b375c5d22e_73e2d9e6cde6")),
    expect("quic_0RTT.pcap", Some("abcd"), Some("q00d0310h3_55b375c5d22e_060ec1c6a056")),
    expect("google_meet.pcapng", Some("meet.google.com"), Some("q13d0311h0_55b375c5d22e_5a1f323ef56d")),
    Expect { alpn: Some("doq-i00"), ..expect("doq.pcapng", None, Some("q00d0307do_55b375c5d22e_23ed935430f2")) },
    Expect {
        ua: Some("Chrome/80.0.3987.132 Windows NT 6.3; Win64; x64"),
        ..expect("quic046.pcap", Some("i.ytimg.com"), None)
    },
    Expect {
        ua: Some("Chrome/83.0.4103.101 Android 8.0.0; LDN-L21"),
        ..expect("quic_q50.pcap", Some("www.googletagmanager.com"), None)
    },
    Expect {
        ua: Some("beta Chrome/57.0.2987.98 Intel Mac OS X 10_12_3"),
        ..expect("youtube_quic.pcap", Some("yt3.ggpht.com"), None)
    },
    expect("youtube_quic.pcap", Some("googleads.g.doubleclick.net"), None),
    expect("youtube_quic.pcap", Some("pagead2.googlesyndication.com"), None),
    Expect {
        ua: Some("Chrome/62.0.3202.94 Windows NT 10.0; Win64; x64"),
        ..expect("youtubeupload.pcap", Some("upload.youtube.com"), None)
    },
];

/// JA4 equality except where nDPI's JA4 departs from the JA4 spec: nDPI writes 'd' for a
/// ClientHello without SNI (the spec says 'i') and takes other ALPN characters (spec: first and
/// last of the first ALPN, "h3-29" -> "h9"). Those belong to the JA4 module; here the cipher and
/// extension counts and both hashes prove the same ClientHello was parsed.
fn ja4_eq(got: Option<&str>, want: Option<&str>) -> bool {
    let mask = |s: &str| -> String {
        s.char_indices().map(|(i, c)| if i == 3 || i == 8 || i == 9 { '*' } else { c }).collect()
    };
    match (got, want) {
        (Some(g), Some(w)) => mask(g) == mask(w),
        (g, w) => g == w,
    }
}

fn matches_expect(e: &Expect, step: Step, f: &Facts) -> bool {
    step != Step::NotMine
        && f.protocol == Some("QUIC")
        && f.hostname.as_deref() == e.sni
        && (e.ja4.is_none() || ja4_eq(f.ja4.as_deref(), e.ja4))
        && (e.alpn.is_none() || f.alpn_offered.first().map(String::as_str) == e.alpn)
        && (e.ua.is_none() || f.user_agent.as_deref() == e.ua)
}

#[test]
fn corpus_flows_match_ndpi() {
    let mut failures = Vec::new();
    for e in CORPUS_EXPECT {
        let Some(path) = corpus(e.file) else { continue };
        let results: Vec<_> = udp_flows(&path).iter().map(|f| run(f)).collect();
        if !results.iter().any(|(step, f)| matches_expect(e, *step, f)) {
            let got: Vec<_> = results
                .iter()
                .filter(|(s, _)| *s != Step::NotMine)
                .map(|(s, f)| {
                    format!("{s:?} {:?} {:?} {:?} {:?}", f.hostname, f.ja4, f.alpn_offered.first(), f.user_agent)
                })
                .collect();
            failures.push(format!("{} sni={:?}: got {got:?}", e.file, e.sni));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Small extracts of the corpus flows, so the version families are covered without it.
const FLOW_FIXTURES: &[(&str, &str)] = &[
    ("quic-v2.pcapng", "v2.dgrams"),
    ("quic-29.pcap", "draft29.dgrams"),
    ("quic-mvfst-27.pcapng", "mvfst27.dgrams"),
    ("quic_frags_ch_in_multiple_packets.pcapng", "v1_multi_packet_ch.dgrams"),
    ("google_meet.pcapng", "v1_chrome_meet.dgrams"),
    ("quic046.pcap", "q046.dgrams"),
    ("quic_q50.pcap", "q050.dgrams"),
    ("youtubeupload.pcap", "q039.dgrams"),
];

/// Regenerates `FLOW_FIXTURES` from the corpus: `cargo test -p vigil-dpi -- --ignored regenerate`.
#[test]
#[ignore]
fn regenerate_flow_fixtures() {
    for (file, out) in FLOW_FIXTURES {
        let Some(path) = corpus(file) else { continue };
        let flow = udp_flows(&path).into_iter().find(|f| run(f).0 != Step::NotMine).expect(file);
        // Keep the datagrams the dissector looks at, plus one.
        let mut q = Quic::default();
        let mut facts = Facts::default();
        let mut keep = 0;
        for (i, (dir, p)) in flow.iter().enumerate() {
            keep = i + 1;
            if matches!(q.on_packet(&view(*dir, p, i as u32), &mut facts), Step::Done | Step::NotMine) {
                break;
            }
        }
        write_dgrams(&Path::new(FIXTURES).join(out), &flow[..keep.min(flow.len())]);
    }
}

#[test]
fn flow_fixtures_identify_each_version_family() {
    let expect: &[(&str, Option<&str>, Option<&str>)] = &[
        ("v2.dgrams", Some("test"), Some("q13d0310h0_55b375c5d22e_0a3b52e28cea")),
        ("draft29.dgrams", Some("localhost"), Some("q13d0512h3_d55e91d5c3b2_cd318bf3b157")),
        ("mvfst27.dgrams", Some("graph.facebook.com"), Some("q00d0108h3_0f2cb44170f4_f4b4187450f5")),
        ("v1_multi_packet_ch.dgrams", None, Some("q00d0307h3_55b375c5d22e_af0a630e9e67")),
        ("v1_chrome_meet.dgrams", Some("meet.google.com"), Some("q13d0311h0_55b375c5d22e_5a1f323ef56d")),
        ("q046.dgrams", Some("i.ytimg.com"), None),
        ("q050.dgrams", Some("www.googletagmanager.com"), None),
        ("q039.dgrams", Some("upload.youtube.com"), None),
    ];
    for (name, sni, ja4) in expect {
        let flow = read_dgrams(name);
        let (step, facts) = run(&flow);
        assert_eq!(step, Step::Done, "{name}");
        assert_eq!(facts.protocol, Some("QUIC"), "{name}");
        assert_eq!(facts.hostname.as_deref(), *sni, "{name}");
        if ja4.is_some() {
            assert!(ja4_eq(facts.ja4.as_deref(), *ja4), "{name}: {:?}", facts.ja4);
        }
    }
}

/// The multi-packet ClientHello needs its second datagram: the first alone only identifies.
#[test]
fn multi_packet_client_hello_needs_both_datagrams() {
    let flow = read_dgrams("v1_multi_packet_ch.dgrams");
    let mut q = Quic::default();
    let mut facts = Facts::default();
    assert_eq!(q.on_packet(&view(flow[0].0, &flow[0].1, 0), &mut facts), Step::Identified);
    assert!(facts.ja4.is_none());
}

// ---------------------------------------------------------------- hostile inputs

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn first_datagrams() -> Vec<Vec<u8>> {
    let mut all = vec![fixture("rfc9001_a2_client_initial.bin"), fixture("rfc9369_a2_client_initial.bin")];
    for (_, name) in FLOW_FIXTURES {
        all.push(read_dgrams(name).swap_remove(0).1);
    }
    all
}

#[test]
fn every_prefix_of_a_real_initial_is_safe() {
    for d in first_datagrams() {
        // Protected Initials fail authentication when cut short of their Length; cleartext gQUIC
        // may still parse a prefix, and bytes after the first packet may be padding.
        let protected = packet::peek_version(&d).and_then(|(_, v)| Version::lookup(v));
        let first_end = protected.and_then(|v| coalesced(&d, &v).next()).map_or(0, |p| p.packet.len());
        for len in 0..d.len() {
            let (step, _) = run(&[(Dir::ToServer, d[..len].to_vec())]);
            if len < first_end {
                assert_eq!(step, Step::NotMine, "prefix {len}");
            }
        }
    }
}

#[test]
fn random_mutations_never_panic() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let flows: Vec<Vec<(Dir, Vec<u8>)>> = FLOW_FIXTURES.iter().map(|(_, n)| read_dgrams(n)).collect();
    for _ in 0..600 {
        let mut flow = flows[rng.below(flows.len())].clone();
        for _ in 0..1 + rng.below(8) {
            let i = rng.below(flow.len());
            let p = &mut flow[i].1;
            match rng.below(4) {
                0 if !p.is_empty() => {
                    let j = rng.below(p.len());
                    p[j] ^= 1 << rng.below(8);
                }
                1 => p.truncate(rng.below(p.len() + 1)),
                2 if !p.is_empty() => {
                    // Header bytes matter most: hit the first 64 harder.
                    let j = rng.below(p.len().min(64));
                    p[j] = rng.next() as u8;
                }
                _ => {
                    let j = rng.below(p.len() + 1);
                    p.insert(j, rng.next() as u8);
                }
            }
        }
        let _ = run(&flow);
    }
}

#[test]
fn random_udp_payloads_are_not_mine() {
    let mut rng = XorShift(42);
    for i in 0..20_000 {
        let len = rng.below(1400);
        let mut p: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Half of them look like long headers of a known version, to reach the deeper checks.
        if i % 2 == 0 && p.len() > 6 {
            let versions = [version::V1, version::V2, 0xff00_001d, version::Q050, gquic::Q046];
            p[0] |= 0xc0;
            p[1..5].copy_from_slice(&versions[rng.below(versions.len())].to_be_bytes());
            p[5] = rng.below(21) as u8;
        }
        let (step, _) = run(&[(Dir::ToServer, p)]);
        if i % 2 == 0 {
            // A well-formed 0-RTT/Handshake header may make it wait for an Initial, no more.
            assert!(matches!(step, Step::NotMine | Step::NeedMore), "{step:?}");
        } else {
            assert_eq!(step, Step::NotMine);
        }
    }
}

#[test]
fn server_first_is_not_mine() {
    let d = fixture("rfc9001_a2_client_initial.bin");
    let (step, _) = run(&[(Dir::ToClient, d)]);
    assert_eq!(step, Step::NotMine);
}

/// Across the whole corpus: flows QUIC claims in captures whose nDPI results name no QUIC, and
/// the cost of rejecting everything else.
#[test]
fn corpus_claims_only_quic_flows() {
    let Some(dir) = corpus("MANIFEST.tsv").and_then(|p| p.parent().map(Path::to_path_buf)) else { return };
    let mut wrong = Vec::new();
    let (mut flows, mut claimed) = (0, 0);
    let mut rejected = std::time::Duration::ZERO;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        if !(name.ends_with(".pcap") || name.ends_with(".pcapng")) {
            continue;
        }
        let expected = std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap_or_default();
        let quic_expected = expected.contains("QUIC") || expected.contains("/Google") || name.contains("quic");
        for flow in udp_flows(&path) {
            flows += 1;
            let t = std::time::Instant::now();
            let (step, facts) = run(&flow[..1]);
            if step == Step::NotMine {
                rejected += t.elapsed();
                continue;
            }
            claimed += 1;
            let (full, f) = run(&flow);
            eprintln!("  {name}: {full:?} {:?} {:?} {:?}", f.hostname, f.alpn_offered.first(), f.ja4);
            if !quic_expected {
                wrong.push(format!("{name}: {step:?} {:?}", facts.hostname));
            }
        }
    }
    eprintln!("{flows} UDP flows, {claimed} claimed by QUIC, rejecting the rest took {rejected:?}");
    assert!(wrong.is_empty(), "{wrong:#?}");
}
