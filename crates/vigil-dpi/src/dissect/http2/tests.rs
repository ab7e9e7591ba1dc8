//! Real bytes: curl 7.88.1 (nghttp2 1.52.0) with `--http2-prior-knowledge` to nghttpd, from
//! `crates/vigil/tests/fixtures/clients/curl_h2c.pcap` (`tshark -T fields -e tcp.payload`).

use super::*;
use crate::dissect::http::testutil::{assert_not_mine_on_random, hostile, run, view};
use crate::dissect::testutil::hex;
use vigil_wire::L4Proto;

/// Packet 4: the preface, SETTINGS (3 settings) and WINDOW_UPDATE.
const PREFACE_PKT: &str = "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a0000120400000000000003000000640004020000\
                           0000020000000000000408000000000001ff0001";
/// Packet 6: HEADERS on stream 1 (END_STREAM | END_HEADERS).
const HEADERS_PKT: &str = "000023010500000001828586418f9c445cbe474d7415644e7ad749509f7a8825b650c3abbcf2e153032a2f2a";
/// Its header block.
const BLOCK: &str = "828586418f9c445cbe474d7415644e7ad749509f7a8825b650c3abbcf2e153032a2f2a";
/// Packet 8: the server's SETTINGS.
const SERVER_SETTINGS: &str = "000006040000000000000300000064";
/// Packet 11: the server's SETTINGS ack, response HEADERS and DATA.
const SERVER_RESPONSE: &str = "00000004010000000000005b010400000001887690aa69d29ae452a9a74a6b13015db12e0f5889a47e561cc58\
                               197000f6196df3dbf4a09c5349fba82009c504cdc002e34ea98b46f0f0d01366c96df3dbf4a09c5349fba82009c\
                               504cdc002e34ea98b46f5f87497ca589d34d1f00000600010000000168656c6c6f0a";

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut f = len.to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[ty, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Client segments of one stream, with their sequence numbers (the stream starts at 1001).
fn client_stream(d: &mut Http2, segments: &[&[u8]], facts: &mut Facts) -> Vec<Step> {
    let mut seq = 1001u32;
    let mut steps = Vec::new();
    for (i, s) in segments.iter().enumerate() {
        let mut v = view(L4Proto::Tcp, Dir::ToServer, s, 80, i as u32);
        v.tcp_seq = seq;
        seq = seq.wrapping_add(s.len() as u32);
        steps.push(d.on_packet(&v, facts));
    }
    steps
}

fn assert_curl(facts: &Facts) {
    assert_eq!(facts.protocol, Some("HTTP2"));
    assert_eq!(facts.hostname.as_deref(), Some("h2c.example-shop.test"));
    assert_eq!(facts.name_source, Some(NameSource::Http));
    assert_eq!(facts.http_method.as_deref(), Some("GET"));
    assert_eq!(facts.http_path.as_deref(), Some("/index.html"));
    assert_eq!(facts.user_agent.as_deref(), Some("curl/7.88.1"));
}

#[test]
fn real_curl_prior_knowledge() {
    let (p, h, s) = (hex(PREFACE_PKT), hex(HEADERS_PKT), hex(SERVER_SETTINGS));
    let mut facts = Facts::default();
    let mut d = Http2::default();
    let steps = client_stream(&mut d, &[&p, &h], &mut facts);
    assert_eq!(steps, [Step::Identified, Step::Done]);
    assert_curl(&facts);
    // Identified at the preface alone, before any frame.
    let mut facts = Facts::default();
    let steps = client_stream(&mut Http2::default(), &[&p[..24]], &mut facts);
    assert_eq!((steps[0], facts.protocol, facts.hostname), (Step::Identified, Some("HTTP2"), None));
    // The server's SETTINGS in between changes nothing.
    let mut facts = Facts::default();
    let mut d = Http2::default();
    assert_eq!(client_stream(&mut d, &[&p], &mut facts), [Step::Identified]);
    assert_eq!(run(&mut d, &[(Dir::ToClient, &s[..])], 80, &mut facts), [Step::Identified]);
    let mut v = view(L4Proto::Tcp, Dir::ToServer, &h, 80, 2);
    v.tcp_seq = 1001 + p.len() as u32;
    assert_eq!(d.on_packet(&v, &mut facts), Step::Done);
    assert_curl(&facts);
}

#[test]
fn the_block_decodes_to_curls_request() {
    let r = Request::from_block(&hex(BLOCK));
    assert_eq!(r.authority.as_deref(), Some(&b"h2c.example-shop.test"[..]));
    assert_eq!(r.method.as_deref(), Some(&b"GET"[..]));
    assert_eq!(r.path.as_deref(), Some(&b"/index.html"[..]));
    assert_eq!(r.user_agent.as_deref(), Some(&b"curl/7.88.1"[..]));
    assert_eq!(r.hostname().as_deref(), Some("h2c.example-shop.test"));
    // `host` when there is no :authority; userinfo and port dropped.
    let mut block = vec![0x82, 0x84];
    block.extend_from_slice(&[0x40 | 38, 14]); // host: "api.test:50051", indexed name 38
    block.extend_from_slice(b"api.test:50051");
    assert_eq!(Request::from_block(&block).hostname().as_deref(), Some("api.test"));
    assert_eq!(Request::from_block(&[0x41, 0]).hostname(), None, "empty :authority");
    let mut block = vec![0x41, 19];
    block.extend_from_slice(b"u:p@grpc.example:80");
    assert_eq!(Request::from_block(&block).hostname().as_deref(), Some("grpc.example"));
}

#[test]
fn everything_in_one_segment() {
    let mut all = hex(PREFACE_PKT);
    all.extend(hex(HEADERS_PKT));
    let mut facts = Facts::default();
    assert_eq!(client_stream(&mut Http2::default(), &[&all], &mut facts), [Step::Done]);
    assert_curl(&facts);
}

#[test]
fn the_classifier_names_a_split_preface_on_any_port() {
    // The HTTP/1 candidate waits on "P" and "PR" (POST, PROPFIND...), then drops the flow at "PRI".
    use crate::{Classifier, DnsCache, DpiContext, RelatedFlows, SignatureDb};
    let sigdb = SignatureDb::builtin().unwrap();
    let cache = DnsCache::new(16);
    let related = RelatedFlows::new(16);
    let ctx = DpiContext { sigdb: &sigdb, dns_cache: &cache, related: &related, config: Default::default() };
    let mut all = hex(PREFACE_PKT);
    all.extend(hex(HEADERS_PKT));
    let mut c = Classifier::new(
        L4Proto::Tcp,
        (std::net::Ipv4Addr::new(192, 168, 1, 10).into(), 50_000),
        (std::net::Ipv4Addr::new(10, 0, 0, 1).into(), 50051),
    );
    let mut seq = 1001u32;
    for (i, seg) in [&all[..1], &all[1..2], &all[2..20], &all[20..]].into_iter().enumerate() {
        let mut v = view(L4Proto::Tcp, Dir::ToServer, seg, 50051, i as u32);
        v.tcp_seq = seq;
        seq += seg.len() as u32;
        c.on_packet(&v, &ctx);
    }
    assert!(!c.wants_more());
    assert_curl(c.facts());
    assert!(!c.facts().protocol_guessed);
    assert_eq!(c.facts().category.as_deref(), Some("Web"));
    assert_eq!(c.identified_after(), Some(4));
}

#[test]
fn split_anywhere() {
    let mut all = hex(PREFACE_PKT);
    all.extend(hex(HEADERS_PKT));
    for cut in 1..all.len() {
        let (a, b) = all.split_at(cut);
        let mut facts = Facts::default();
        let steps = client_stream(&mut Http2::default(), &[a, b], &mut facts);
        let first = if cut < PREFACE.len() { Step::NeedMore } else { Step::Identified };
        assert_eq!(steps, [first, Step::Done], "cut {cut}");
        assert_curl(&facts);
    }
    // In three pieces, the preface split twice.
    let mut facts = Facts::default();
    let steps = client_stream(&mut Http2::default(), &[&all[..3], &all[3..16], &all[16..]], &mut facts);
    assert_eq!(steps, [Step::NeedMore, Step::NeedMore, Step::Done]);
    assert_curl(&facts);
}

#[test]
fn reordered_segments_with_a_syn() {
    let mut all = hex(PREFACE_PKT);
    all.extend(hex(HEADERS_PKT));
    let (a, b) = all.split_at(10);
    let mut d = Http2::default();
    let mut facts = Facts::default();
    let mut syn = view(L4Proto::Tcp, Dir::ToServer, &[], 80, 0);
    (syn.tcp_seq, syn.tcp_flags) = (1000, tcp::SYN);
    assert_eq!(d.on_packet(&syn, &mut facts), Step::NeedMore);
    let mut second = view(L4Proto::Tcp, Dir::ToServer, b, 80, 1);
    second.tcp_seq = 1011;
    assert_eq!(d.on_packet(&second, &mut facts), Step::NeedMore);
    let mut first = view(L4Proto::Tcp, Dir::ToServer, a, 80, 2);
    first.tcp_seq = 1001;
    assert_eq!(d.on_packet(&first, &mut facts), Step::Done);
    assert_curl(&facts);
}

#[test]
fn continuation_padding_and_priority() {
    let block = hex(BLOCK);
    let p = hex(PREFACE_PKT);
    // HEADERS without END_HEADERS, then two CONTINUATION frames.
    let mut c = p.clone();
    c.extend(frame(1, 0x1, 1, &block[..10]));
    c.extend(frame(9, 0, 1, &block[10..20]));
    let c1 = c.len();
    c.extend(frame(9, 0x4, 1, &block[20..]));
    let mut facts = Facts::default();
    assert_eq!(client_stream(&mut Http2::default(), &[&c], &mut facts), [Step::Done]);
    assert_curl(&facts);
    // The last CONTINUATION in a later segment.
    let mut facts = Facts::default();
    assert_eq!(client_stream(&mut Http2::default(), &[&c[..c1], &c[c1..]], &mut facts), [Step::Identified, Step::Done]);
    assert_curl(&facts);
    // PADDED (3 bytes) and PRIORITY (5 bytes).
    let mut payload = vec![3, 0x80, 0, 0, 3, 15];
    payload.extend_from_slice(&block);
    payload.extend_from_slice(&[0, 0, 0]);
    let mut s = p.clone();
    s.extend(frame(1, 0x4 | 0x8 | 0x20, 1, &payload));
    let mut facts = Facts::default();
    assert_eq!(client_stream(&mut Http2::default(), &[&s], &mut facts), [Step::Done]);
    assert_curl(&facts);
    // Padding longer than the frame: identified, no name.
    let mut s = p.clone();
    s.extend(frame(1, 0x4 | 0x8, 1, &[200, 0x82]));
    let mut facts = Facts::default();
    assert_eq!(client_stream(&mut Http2::default(), &[&s], &mut facts), [Step::Done]);
    assert_eq!((facts.protocol, facts.hostname), (Some("HTTP2"), None));
}

#[test]
fn a_server_may_send_its_settings_first() {
    let (p, h, s) = (hex(PREFACE_PKT), hex(HEADERS_PKT), hex(SERVER_SETTINGS));
    let mut d = Http2::default();
    let mut facts = Facts::default();
    assert_eq!(run(&mut d, &[(Dir::ToClient, &s[..])], 80, &mut facts), [Step::NeedMore]);
    assert_eq!(client_stream(&mut d, &[&p, &h], &mut facts), [Step::Identified, Step::Done]);
    assert_curl(&facts);
    // Any other server data first: not h2c.
    let mut facts = Facts::default();
    let steps = run(&mut Http2::default(), &[(Dir::ToClient, &hex(SERVER_RESPONSE)[9..])], 80, &mut facts);
    assert_eq!(steps, [Step::NotMine]);
}

#[test]
fn a_truncated_block_names_the_flow_once_the_wait_is_over() {
    // HEADERS announcing 4 KiB of block, only curl's 35 bytes sent: the fields complete so far
    // count once nothing more is coming.
    let mut s = hex(PREFACE_PKT);
    let mut head = frame(1, 0x5, 1, &hex(BLOCK));
    head[..3].copy_from_slice(&[0, 0x10, 0]);
    s.extend(head);
    let mut d = Http2::default();
    let mut facts = Facts::default();
    assert_eq!(client_stream(&mut d, &[&s], &mut facts), [Step::Identified]);
    assert_eq!(facts.hostname, None);
    let ack = hex(SERVER_SETTINGS);
    let mut steps = Vec::new();
    for i in 0..PATIENCE {
        steps.push(d.on_packet(&view(L4Proto::Tcp, Dir::ToClient, &ack, 80, 1 + u32::from(i)), &mut facts));
    }
    assert_eq!(steps.last(), Some(&Step::Done));
    assert!(steps[..steps.len() - 1].iter().all(|s| *s == Step::Identified), "{steps:?}");
    assert_curl(&facts);
}

#[test]
fn bounded_waits_and_hostile_frames() {
    let p = hex(PREFACE_PKT);
    // A frame announcing 16 MiB before any HEADERS: the stream fills to its cap (or the wait
    // ends), then the dissector gives up; identified, no name.
    let mut s = p.clone();
    s.extend_from_slice(&[0xff, 0xff, 0xff, 0x00, 0, 0, 0, 0, 1]);
    let filler = vec![0u8; 1400];
    let mut d = Http2::default();
    let mut facts = Facts::default();
    let mut segs: Vec<&[u8]> = vec![&s];
    segs.extend(std::iter::repeat_n(&filler[..], 20));
    let steps = client_stream(&mut d, &segs, &mut facts);
    let done_at = steps.iter().position(|s| *s == Step::Done).expect("gives up");
    assert!(done_at <= usize::from(PATIENCE) + 1, "{steps:?}");
    assert_eq!((facts.protocol, facts.hostname.as_deref()), (Some("HTTP2"), None));
    // Many empty frames before HEADERS.
    let mut s = p.clone();
    for _ in 0..100 {
        s.extend(frame(8, 0, 0, &[0, 0, 0, 1]));
    }
    s.extend(hex(HEADERS_PKT));
    let mut facts = Facts::default();
    assert_eq!(client_stream(&mut Http2::default(), &[&s], &mut facts), [Step::Done]);
    assert_eq!(facts.hostname, None);
    // A CONTINUATION with no HEADERS before it; HPACK garbage; a size update beyond the cap then
    // :authority; a size update to 0 then curl's block: each ends the dissection without a panic.
    for (block_or_frame, name) in [
        (frame(9, 0x4, 1, &hex(BLOCK)), None),
        (frame(1, 0x4, 1, &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), None),
        (frame(1, 0x4, 1, &[0x3f, 0xe2, 0xff, 0x03, 0x41, 1, b'x']), None),
        (frame(1, 0x4, 1, &[&[0x20][..], &hex(BLOCK)].concat()), Some("h2c.example-shop.test")),
    ] {
        let mut s = p.clone();
        s.extend(block_or_frame);
        let mut facts = Facts::default();
        assert_eq!(client_stream(&mut Http2::default(), &[&s], &mut facts), [Step::Done]);
        assert_eq!((facts.protocol, facts.hostname.as_deref()), (Some("HTTP2"), name));
    }
}

#[test]
fn others_are_not_mine() {
    for p in [
        &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        b"PRI * HTTP/1.1\r\n\r\n",
        b"PRX",
        b"SSH-2.0-OpenSSH_9.2p1\r\n",
        b"\x16\x03\x01\x02\x00\x01",
        b"\x00\x00\x12\x04\x00\x00\x00\x00\x00", // a SETTINGS frame without the preface
    ] {
        let mut facts = Facts::default();
        let steps = client_stream(&mut Http2::default(), &[p], &mut facts);
        assert_eq!(steps, [Step::NotMine], "{p:?}");
    }
    // A server speaking first with a banner.
    let mut facts = Facts::default();
    assert_eq!(run(&mut Http2::default(), &[(Dir::ToClient, b"220 ftp ready\r\n")], 21, &mut facts), [Step::NotMine]);
    assert_not_mine_on_random(|| Box::new(Http2::default()), 6);
}

#[test]
fn hostile_inputs_do_not_panic() {
    let mut both = hex(PREFACE_PKT);
    both.extend(hex(HEADERS_PKT));
    let msgs = [hex(PREFACE_PKT), both, hex(SERVER_SETTINGS), hex(SERVER_RESPONSE)];
    hostile(|| Box::new(Http2::default()), &msgs.iter().map(Vec::as_slice).collect::<Vec<_>>(), 80);
    // Mutations of the frames after an intact preface reach the frame walk and HPACK.
    let mut rng = crate::dissect::http::testutil::XorShift(0x5eed);
    let tail = hex(HEADERS_PKT);
    for _ in 0..5000 {
        let mut t = tail.clone();
        for _ in 0..1 + rng.next() % 6 {
            let i = (rng.next() as usize) % t.len();
            t[i] = rng.next() as u8;
        }
        let cut = (rng.next() as usize) % (t.len() + 1);
        let mut facts = Facts::default();
        let p = hex(PREFACE_PKT);
        let steps = client_stream(&mut Http2::default(), &[&p, &t[..cut], &t[cut..]], &mut facts);
        assert_eq!(steps[0], Step::Identified);
        assert_eq!(facts.protocol, Some("HTTP2"));
    }
}
