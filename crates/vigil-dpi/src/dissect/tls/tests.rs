//! Tests for the TLS dissector, from real bytes: fixtures cut from nDPI's test captures
//! (`tests/fixtures/tls/`, each named after its source pcap) and, when present, the whole corpus
//! (`/work/shared/corpus/ndpi` or `$VIGIL_NDPI_CORPUS`) for JA4 agreement with nDPI.

use super::*;
use crate::dissect::testutil::hex;
use crate::dissect::{dtls, Dissector, Step};
use crate::facts::CertField;
use crate::view::PacketView;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use vigil_wire::L4Proto;

/// One packet of a capture, owned.
#[derive(Debug, Clone)]
pub(crate) struct Pkt {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub l4: L4Proto,
    pub seq: u32,
    pub flags: u8,
    pub payload: Vec<u8>,
}

pub(crate) fn read_pcap(path: &Path) -> Vec<Pkt> {
    let mut out = Vec::new();
    let Ok(mut rd) = vigil_capture::CaptureReader::open(path) else { return out };
    while let Some(p) = rd.next_packet() {
        let Ok(p) = p else { continue };
        let Ok(info) = vigil_wire::parse_l3(p.l3.bytes()) else { continue };
        if !matches!(info.l4, L4Proto::Tcp | L4Proto::Udp) || info.later_fragment {
            continue;
        }
        out.push(Pkt {
            src: SocketAddr::new(info.src, info.src_port),
            dst: SocketAddr::new(info.dst, info.dst_port),
            l4: info.l4,
            seq: info.tcp_seq,
            flags: info.tcp_flags.unwrap_or(0),
            payload: info.payload.to_vec(),
        });
    }
    out
}

/// Flows of a capture (keyed by the unordered address pair), each with its client and packets.
pub(crate) fn flows(pkts: &[Pkt]) -> Vec<(SocketAddr, SocketAddr, Vec<Pkt>)> {
    let mut index: HashMap<(L4Proto, SocketAddr, SocketAddr), usize> = HashMap::new();
    let mut out: Vec<(SocketAddr, SocketAddr, Vec<Pkt>)> = Vec::new();
    for p in pkts {
        let key = if p.src <= p.dst { (p.l4, p.src, p.dst) } else { (p.l4, p.dst, p.src) };
        let i = *index.entry(key).or_insert_with(|| {
            // The first packet's sender is the client, unless it is a SYN-ACK.
            let (c, s) = if p.flags & 0x12 == 0x12 { (p.dst, p.src) } else { (p.src, p.dst) };
            out.push((c, s, Vec::new()));
            out.len() - 1
        });
        out[i].2.push(p.clone());
    }
    out
}

/// Feeds a flow to one dissector the way the classifier does (payload packets and SYNs, until
/// `NotMine`/`Done` or 32 payload packets).
pub(crate) fn run(d: &mut dyn Dissector, client: SocketAddr, server: SocketAddr, pkts: &[Pkt]) -> (Facts, Step) {
    let mut facts = Facts::default();
    let mut last = Step::NeedMore;
    let mut offered = 0;
    for (i, p) in pkts.iter().enumerate() {
        if p.payload.is_empty() && p.flags & 0x02 == 0 {
            continue;
        }
        let dir = if p.src == client { Dir::ToServer } else { Dir::ToClient };
        let view = PacketView {
            dir,
            l4: p.l4,
            client: (client.ip(), client.port()),
            server: (server.ip(), server.port()),
            payload: &p.payload,
            tcp_seq: p.seq,
            tcp_flags: p.flags,
            index: i as u32,
            ts_micros: 0,
        };
        last = d.on_packet(&view, &mut facts);
        if matches!(last, Step::NotMine | Step::Done) {
            break;
        }
        offered += usize::from(!p.payload.is_empty());
        if offered >= 32 {
            break;
        }
    }
    (facts, last)
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
}

/// The single TCP flow of a fixture through the TLS dissector.
fn tls_fixture(name: &str) -> (Facts, Step) {
    let pkts = read_pcap(&fixture(name));
    assert!(!pkts.is_empty(), "fixture {name} missing or empty");
    let (c, s, f) = flows(&pkts).into_iter().next().unwrap();
    run(&mut Tls::default(), c, s, &f)
}

// ---- fixtures ---------------------------------------------------------------------------------

#[test]
fn tls12_certificate_names() {
    // ssl-cert-name-mismatch.pcap: Firefox to wrong.host.badssl.com, TLS 1.2, cert *.badssl.com.
    let (f, step) = tls_fixture("ssl-cert-name-mismatch.pcap");
    assert_eq!(step, Step::Done);
    assert_eq!(f.protocol, Some("TLS"));
    assert_eq!(f.hostname.as_deref(), Some("wrong.host.badssl.com"));
    assert_eq!(f.name_source, Some(NameSource::Sni));
    assert_eq!(f.tls_version, Some("TLSv1.2"));
    assert_eq!(f.alpn_offered, ["http/1.1"]);
    assert_eq!(f.alpn.as_deref(), Some("http/1.1"));
    assert_eq!(f.cert_names, ["*.badssl.com", "badssl.com"]);
    // nDPI's corpus output says "ht" for the ALPN (ntop/nDPI#2914); the spec says first+last.
    assert_eq!(f.ja4.as_deref(), Some("t12d3810h1_845d1e55a368_7448b1316cd7"));
}

#[test]
fn ech_outer_sni() {
    // tls_ech.pcapng: Chrome with encrypted_client_hello to Cloudflare, TLS 1.3.
    let (f, step) = tls_fixture("tls_ech.pcap");
    assert_eq!(step, Step::Done);
    assert!(f.ech);
    assert_eq!(f.hostname.as_deref(), Some("performance.radar.cloudflare.com"));
    assert_eq!(f.tls_version, Some("TLSv1.3"));
    assert_eq!(f.alpn_offered, ["h2", "http/1.1"]);
    assert_eq!(f.ja4.as_deref(), Some("t13d1516h2_8daaf6152771_02713d6af862"));
    assert!(f.cert_names.is_empty());
}

#[test]
fn client_hello_over_two_reassemblies() {
    // tls_2_reasms.pcapng: Instagram (Fizz) ClientHello spanning segments; version 0x7f1c -> "00".
    let (f, _) = tls_fixture("tls_2_reasms.pcap");
    assert_eq!(f.hostname.as_deref(), Some("i.instagram.com"));
    assert_eq!(f.ja4.as_deref(), Some("t00d0309h2_55b375c5d22e_566d5108064c"));
}

#[test]
fn no_sni_takes_certificate_name() {
    // dns_dot.pcap: DNS over TLS to 8.8.8.8 without SNI; the certificate names dns.google.
    let (f, step) = tls_fixture("dns_dot_no_sni.pcap");
    assert_eq!(step, Step::Done);
    assert_eq!(f.hostname.as_deref(), Some("dns.google"));
    assert_eq!(f.name_source, Some(NameSource::Certificate));
    assert!(f.cert_names.iter().any(|n| n == "*.dns.google.com"));
    // nDPI's corpus output says `d` here (ntop/nDPI#2916); no server_name means `i`.
    assert_eq!(f.ja4.as_deref(), Some("t12i250900_7415a186c913_cdf51c020b42"));
}

#[test]
fn no_sni_non_hostname_cn_is_not_a_hostname() {
    // anydesk.pcapng: no SNI, certificate CN "AnyNet Relay" (not a hostname), ALPN anydesk/6.2.0/linux.
    let (f, _) = tls_fixture("anydesk_no_sni.pcap");
    assert_eq!(f.protocol, Some("TLS"));
    assert_eq!(f.hostname, None);
    assert_eq!(f.alpn_offered, ["anydesk/6.2.0/linux"]);
    assert_eq!(f.ja4.as_deref(), Some("t12i6406ax_9197985d2161_a1e935682795"));
    assert!(f.cert_names.is_empty());
    let ids: Vec<_> = f.cert_ids.iter().map(|i| (i.field, i.value.as_str())).collect();
    assert_eq!(
        ids[..4],
        [
            (CertField::SubjectOrg, "philandro Software GmbH"),
            (CertField::SubjectCn, "AnyNet Relay"),
            (CertField::IssuerCn, "AnyNet Root CA"),
            (CertField::IssuerOrg, "philandro Software GmbH"),
        ]
    );
}

#[test]
fn mutual_tls_client_certificate_identities() {
    // anydesk.pcapng 192.168.1.178:52039 -> 192.168.1.187:7070: no SNI, both peers present a
    // self-signed "AnyDesk Client" certificate; the server asks for the client's.
    let (f, step) = tls_fixture("anydesk_mutual_tls.pcap");
    assert_eq!(step, Step::Done);
    assert_eq!(f.hostname, None);
    assert!(f.cert_names.is_empty());
    let ids: Vec<_> = f.cert_ids.iter().map(|i| (i.field, i.value.as_str())).collect();
    assert_eq!(ids, [(CertField::SubjectCn, "AnyDesk Client"), (CertField::IssuerCn, "AnyDesk Client")]);
}

#[test]
fn server_identities_beside_host_names() {
    // ssl-cert-name-mismatch.pcap: a public CA's leaf; the identities come with the host names.
    let (f, step) = tls_fixture("ssl-cert-name-mismatch.pcap");
    assert_eq!(step, Step::Done);
    let ids: Vec<_> = f.cert_ids.iter().map(|i| (i.field, i.value.as_str())).collect();
    assert_eq!(
        ids,
        [
            (CertField::SubjectOrg, "Lucas Garron Torres"),
            (CertField::SubjectCn, "*.badssl.com"),
            (CertField::IssuerOrg, "DigiCert Inc"),
            (CertField::IssuerCn, "DigiCert SHA2 Secure Server CA"),
        ]
    );
}

#[test]
fn ip_literal_sni_is_i() {
    // teams__first11pkts.pcap: Teams relay ClientHello with SNI "52.114.250.153".
    let (f, _) = tls_fixture("teams_ip_sni.pcap");
    assert_eq!(f.ja4.as_deref(), Some("t12i220700_0d4ca5d4ec72_3304d8368043"));
}

#[test]
fn tor_hint() {
    // tor.pcap: a relay connection, SNI www.q4cyamnc6mtokjurvdclt.com, no ALPN.
    let (f, _) = tls_fixture("tor.pcap");
    assert_eq!(f.protocol, Some("TLS"));
    assert_eq!(f.app_hint, Some("Tor"));
    assert_eq!(f.ja4.as_deref(), Some("t10d360300_77f462745360_33a13ba74d1c"));
    // ... and browsers are not Tor.
    assert_eq!(tls_fixture("tls_ech.pcap").0.app_hint, None);
}

#[test]
fn dtls_client_hello_with_cookie_field() {
    // stun.pcap: Zoom's DTLS 1.2 ClientHello (first copy mangled, retransmission good).
    let pkts = read_pcap(&fixture("stun_dtls.pcap"));
    let (c, s, f) = flows(&pkts).into_iter().next().unwrap();
    let (facts, _) = run(&mut dtls::Dtls::default(), c, s, &f);
    assert_eq!(facts.protocol, Some("DTLS"));
    assert_eq!(facts.alpn_offered, ["webrtc", "c-webrtc"]);
    assert_eq!(facts.ja4.as_deref(), Some("dd2i0808wc_c6c2b6ec87e0_06b1ae923e2a"));
}

#[test]
fn dtls_client_hello_after_ice_in_a_stun_flow() {
    // WebRTC: the STUN dissector owns the flow after an ICE check; the DTLS ClientHello that
    // follows must still yield its JA4 and ALPN.
    let pkts = read_pcap(&fixture("stun_dtls.pcap"));
    let (c, s, f) = flows(&pkts).into_iter().next().unwrap();
    let mut binding = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    binding.extend_from_slice(&[7; 12]);
    let ice = Pkt { src: c, dst: s, l4: L4Proto::Udp, seq: 0, flags: 0, payload: binding };
    let all: Vec<Pkt> = std::iter::once(ice).chain(f).collect();
    let (facts, _) = run(&mut crate::dissect::stun::Stun::default(), c, s, &all);
    assert_eq!(facts.protocol, Some("DTLS"));
    assert_eq!(facts.alpn_offered, ["webrtc", "c-webrtc"]);
    assert_eq!(facts.ja4.as_deref(), Some("dd2i0808wc_c6c2b6ec87e0_06b1ae923e2a"));
}

// ---- segmentation ------------------------------------------------------------------------------

/// The client's first payload of a fixture (a whole ClientHello record) and the flow's endpoints.
fn first_client_payload(name: &str) -> (SocketAddr, SocketAddr, Vec<u8>) {
    let pkts = read_pcap(&fixture(name));
    let (c, s, f) = flows(&pkts).into_iter().next().unwrap();
    let p = f.iter().find(|p| p.src == c && !p.payload.is_empty()).unwrap();
    (c, s, p.payload.clone())
}

fn seg(c: SocketAddr, s: SocketAddr, seq: u32, flags: u8, payload: &[u8]) -> Pkt {
    Pkt { src: c, dst: s, l4: L4Proto::Tcp, seq, flags, payload: payload.to_vec() }
}

#[test]
fn client_hello_split_reordered_and_retransmitted() {
    let (c, s, ch) = first_client_payload("tls_ech.pcap");
    let (whole, _) = run(&mut Tls::default(), c, s, &[seg(c, s, 100, 0x02, &[]), seg(c, s, 101, 0x18, &ch)]);
    let want = whole.ja4.clone().unwrap();
    let isn = u32::MAX - 200; // the stream crosses the 2^32 wrap
    let at = |off: usize| isn.wrapping_add(1).wrapping_add(off as u32);
    let (a, b) = (150, 400);
    let cases: Vec<(&str, Vec<Pkt>)> = vec![
        ("2 segments", vec![seg(c, s, at(0), 0x18, &ch[..a]), seg(c, s, at(a), 0x18, &ch[a..])]),
        (
            "3 segments",
            vec![seg(c, s, at(0), 0x18, &ch[..a]), seg(c, s, at(a), 0x18, &ch[a..b]), seg(c, s, at(b), 0x18, &ch[b..])],
        ),
        (
            "3 segments reversed",
            vec![seg(c, s, at(b), 0x18, &ch[b..]), seg(c, s, at(a), 0x18, &ch[a..b]), seg(c, s, at(0), 0x18, &ch[..a])],
        ),
        (
            "overlapping retransmission",
            vec![
                seg(c, s, at(0), 0x18, &ch[..a]),
                seg(c, s, at(b), 0x18, &ch[b..]),
                seg(c, s, at(0), 0x18, &ch[..a]),
                seg(c, s, at(a - 20), 0x18, &ch[a - 20..b + 30]),
            ],
        ),
    ];
    for (what, mut pkts) in cases {
        pkts.insert(0, seg(c, s, isn, 0x02, &[]));
        let (f, step) = run(&mut Tls::default(), c, s, &pkts);
        assert_eq!(step, Step::Identified, "{what}");
        assert_eq!(f.protocol, Some("TLS"), "{what}");
        assert_eq!(f.ja4.as_deref(), Some(want.as_str()), "{what}");
        assert_eq!(f.hostname.as_deref(), Some("performance.radar.cloudflare.com"), "{what}");
        assert!(f.ech, "{what}");
    }
    // The record split into two TLS records (a ClientHello spanning records), one segment each.
    let body = &ch[5..];
    let mut two_records = vec![0x16, 0x03, 0x01, 0x00, 100];
    two_records.extend_from_slice(&body[..100]);
    two_records.extend_from_slice(&[0x16, 0x03, 0x01, ((body.len() - 100) >> 8) as u8, (body.len() - 100) as u8]);
    two_records.extend_from_slice(&body[100..]);
    let (f, _) = run(
        &mut Tls::default(),
        c,
        s,
        &[seg(c, s, 0, 0x02, &[]), seg(c, s, 1, 0x18, &two_records[..300]), seg(c, s, 301, 0x18, &two_records[300..])],
    );
    assert_eq!(f.ja4.as_deref(), Some(want.as_str()));
}

#[test]
fn not_tls() {
    let (c, s, _) = first_client_payload("tls_ech.pcap");
    let get = seg(c, s, 1, 0x18, b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n");
    assert_eq!(run(&mut Tls::default(), c, s, &[get]).1, Step::NotMine);
    let banner = seg(s, c, 1, 0x18, b"220 mx.example.com ESMTP\r\n");
    assert_eq!(run(&mut Tls::default(), c, s, &[banner]).1, Step::NotMine);
    // After a SYN, an alert or application data record first is not a ClientHello. (Without the
    // SYN the flow may have been picked up mid-stream: see `midstream_*`.)
    let syn = seg(c, s, 0, 0x02, &[]);
    let alert = seg(c, s, 1, 0x18, &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28]);
    assert_eq!(run(&mut Tls::default(), c, s, &[syn, alert]).1, Step::NotMine);
}

#[test]
fn sslv2_compatible_hello_is_identified() {
    // Layout of RFC 5246 Appendix E.2: 3 cipher specs, no session id, 16-byte challenge.
    let mut v2 = vec![0x80, 0x22, 0x01, 0x03, 0x01, 0x00, 0x09, 0x00, 0x00, 0x00, 0x10];
    v2.extend_from_slice(&[0x00, 0x00, 0x2f, 0x00, 0x00, 0x35, 0x00, 0x00, 0x0a]);
    v2.extend_from_slice(&[0x42; 16]);
    let (c, s, _) = first_client_payload("tls_ech.pcap");
    let (f, step) = run(&mut Tls::default(), c, s, &[seg(c, s, 1, 0x18, &v2)]);
    assert_eq!(step, Step::Identified);
    assert_eq!(f.protocol, Some("TLS"));
}

// ---- mid-stream: no SYN, no hello -------------------------------------------------------------

// anydesk.pcapng, 192.168.149.129:36351 <-> 51.83.239.144:80, picked up mid-stream: TLS 1.2
// application data on port 80 (nDPI: TLS).
/// Client, frame 1, seq 2072747562: one application-data record (46 bytes).
const ANYDESK_C1: &str =
    "170303002ee6cfd9afed5e68a7cb83ceb565c98cc63ce6b6da2e12211bff72dcd550c5b2a89ce1c0875274afd077b0c9adc29c";
/// Client, frame 3, seq 2072747613: the next record (43 bytes).
const ANYDESK_C2: &str =
    "170303002be6cfd9afed5e68a876eb66085d41b773c011450f3b13278dc17ddc08f1a713f077d384855f317b580fd2e7";
/// Server, frame 5, seq 828117586: one record (44 bytes).
const ANYDESK_S1: &str =
    "170303002c24ad442e9e2d5b130f843955d050b671962621eca48ac95f1ba28ebe6f1fcf6cd811035123fc4b5f516866d8";
/// Server, frame 7, seq 828117635: the next record (154 bytes).
const ANYDESK_S2: &str = concat!(
    "170303009a24ad442e9e2d5b1479c2ac2adc8bc9aed7b492b21a270bef2918388aea5fcf873c61f8daa3a6803978f440",
    "6d36ac2ee024e0291e47fded323cdd8b9e128665228c483bbf0ee37f66226e0968c367656c392237c470785921f16020",
    "f6a7e2ba5bbfb815ea5cd9724063459ead05b8b75d26921fa7fad14194df66f9cf6e931eaf3ba3f87b666945cbe291ba",
    "86e6d827485db29ea953515e5239b8",
);

// whatsapp_login_chat.pcap, 17.110.229.14:5223 -> 192.168.2.4:49193, one direction only (nDPI:
// TLS).
/// Frame 85 (retransmitted as 86-88 and 90), seq 3565886496: one TLS 1.0 application-data record
/// (304 bytes).
const WHATSAPP_1: &str = concat!(
    "170301013004b48baa548b1ad8f1cd2897973fcc538e1a2a59d84a6703a62be8be843e720f533c64cda7a77e1a00a5ad",
    "cfc05bd5a3a76cb24b4147b4f607e85eb62b8cdcb0e0acf7b4484ab88271b8e47f34b4a457848690884cc22b9d2c231a",
    "f9d1e3390e04d6bab77a6359a8314ab8ee65b99765b5e74d8c2d4d8b914e6dafaae8517cc49cc8b12b88f5187b76fb4c",
    "bc542e3748c1122dac35d507fb755446578290c684451410b3616e6fe41448b82444085e7c0185cd9c55082e760787af",
    "ceaec2cfb956f1fb83854484c2a991b95b9a2bb2a6653023fc971345a5d45428456d05e2e93f431bc18e62b437720391",
    "88280486da6e45f78a36633521cf875f4df259eda8c6d495572e0ddb633d4afb394837234ff5361aebeae8cf9182b1f9",
    "b21e04c348b42d29b4744ba4ee4c7581b850789407",
);
/// Frame 93, seq 3565886805 (FIN): an application-data record (112 bytes), then an alert (32).
const WHATSAPP_2: &str = concat!(
    "1703010070d84b2751d355383174a1aa38cffdeea8cd2a870d5b99f14b3bb797cb4b183f2534aa4d4d6b6e1e413f9da7",
    "29b984973a5461d1a45df1279f63da1ca075b782f357fa64439259c62faa447316c6a7a5c70947e1d6900b6c1505a3ba",
    "5605a490b06f5f23405b7817b53b8aca6a6fdca6361503010020085dc9bebb179ce27b01da9d3ca5593966282029eceb",
    "47c19ce706e2a9d4a59d",
);

fn anydesk_ends() -> (SocketAddr, SocketAddr) {
    ("192.168.149.129:36351".parse().unwrap(), "51.83.239.144:80".parse().unwrap())
}

/// The anydesk flow's first four payloads (client, client, server, server).
fn anydesk_segments() -> [Pkt; 4] {
    let (c, s) = anydesk_ends();
    [
        seg(c, s, 2072747562, 0x18, &hex(ANYDESK_C1)),
        seg(c, s, 2072747613, 0x18, &hex(ANYDESK_C2)),
        seg(s, c, 828117586, 0x18, &hex(ANYDESK_S1)),
        seg(s, c, 828117635, 0x18, &hex(ANYDESK_S2)),
    ]
}

fn assert_midstream_tls(f: &Facts, step: Step, version: Option<&str>, what: &str) {
    assert_eq!(step, Step::Done, "{what}");
    assert_eq!(f.protocol, Some("TLS"), "{what}");
    assert_eq!(f.tls_version, version, "{what}");
    assert_eq!(f.hostname, None, "{what}");
    assert_eq!(f.ja4, None, "{what}");
}

#[test]
fn midstream_application_data_is_tls() {
    let (c, s) = anydesk_ends();
    let [c1, c2, s1, s2] = anydesk_segments();
    // One record is not enough evidence, from either side.
    for one in [&c1, &s1] {
        let (f, step) = run(&mut Tls::default(), c, s, std::slice::from_ref(one));
        assert_eq!((step, f.protocol), (Step::NeedMore, None));
    }
    // A second one, the same way or the other, is. Version 3.3 may be TLS 1.2 or 1.3: no version.
    for (what, pkts) in [("c c", [&c1, &c2]), ("c s", [&c1, &s1]), ("s c", [&s1, &c1]), ("s s", [&s1, &s2])] {
        let pkts: Vec<Pkt> = pkts.into_iter().cloned().collect();
        let (f, step) = run(&mut Tls::default(), c, s, &pkts);
        assert_midstream_tls(&f, step, None, what);
    }
    // The server side first, as when the engine takes the sender from a low port for the server.
    let (f, step) = run(&mut Tls::default(), s, c, &[c1.clone(), s1.clone()]);
    assert_midstream_tls(&f, step, None, "roles swapped");
}

#[test]
fn midstream_tls10_one_direction_with_retransmissions() {
    let (a, b): (SocketAddr, SocketAddr) =
        ("17.110.229.14:5223".parse().unwrap(), "192.168.2.4:49193".parse().unwrap());
    let w1 = seg(a, b, 3565886496, 0x18, &hex(WHATSAPP_1));
    let w2 = seg(a, b, 3565886805, 0x19, &hex(WHATSAPP_2));
    // Five copies of one record are one record.
    let copies = vec![w1.clone(); 5];
    let (f, step) = run(&mut Tls::default(), a, b, &copies);
    assert_eq!((step, f.protocol), (Step::NeedMore, None));
    // The next segment holds two more. Version 3.1 outside a handshake: TLS 1.0.
    let mut pkts = copies;
    pkts.push(w2.clone());
    for (client, server) in [(a, b), (b, a)] {
        let (f, step) = run(&mut Tls::default(), client, server, &pkts);
        assert_midstream_tls(&f, step, Some("TLSv1"), "whatsapp");
    }
    // Alone, that segment is two chained records: enough.
    let (f, step) = run(&mut Tls::default(), a, b, &[w2]);
    assert_midstream_tls(&f, step, Some("TLSv1"), "two records in one segment");
}

#[test]
fn midstream_records_spanning_segments() {
    let (c, s) = anydesk_ends();
    let (r1, r2) = (hex(ANYDESK_S1), hex(ANYDESK_S2)); // 49 and 159 bytes, one record each
    let isn = u32::MAX - 60; // sequence numbers wrap inside the second record
    let at = |off: usize| isn.wrapping_add(off as u32);
    let both: Vec<u8> = [r1.as_slice(), &r2].concat();
    let n = both.len();
    // Segment ends never on a record end except the last: 30 | 49+40 | 49+100 | end.
    let parts = [0, 30, 89, 149, n];
    let segs: Vec<Pkt> = parts.windows(2).map(|w| seg(s, c, at(w[0]), 0x18, &both[w[0]..w[1]])).collect();
    for k in 1..segs.len() {
        let (f, step) = run(&mut Tls::default(), c, s, &segs[..k]);
        assert_eq!((step, f.protocol), (Step::NeedMore, None), "{k} segments");
    }
    let (f, step) = run(&mut Tls::default(), c, s, &segs);
    assert_midstream_tls(&f, step, None, "spanning");
    // A record starting a segment, its middle and end later, one more record: 2 records; copies
    // of the middle, reordered, change nothing.
    let pkts = vec![
        seg(s, c, at(0), 0x18, &r2[..40]),
        seg(s, c, at(40), 0x18, &r2[40..100]),
        seg(s, c, at(40), 0x18, &r2[40..100]),
        seg(s, c, at(100), 0x18, &r2[100..]),
    ];
    let (f, step) = run(&mut Tls::default(), c, s, &pkts);
    assert_eq!((step, f.protocol), (Step::NeedMore, None));
    let mut more = pkts.clone();
    more.push(seg(s, c, at(r2.len()), 0x18, &r1));
    assert_midstream_tls(&run(&mut Tls::default(), c, s, &more).0, Step::Done, None, "record then record");
    // Garbage where the announced length ends: not TLS.
    let mut bad = r2[40..].to_vec();
    bad.extend_from_slice(b"garbage");
    let pkts = [seg(s, c, at(0), 0x18, &r2[..40]), seg(s, c, at(40), 0x18, &bad)];
    assert_eq!(run(&mut Tls::default(), c, s, &pkts).1, Step::NotMine);
    // A missed segment (the next one lies past the due header): that side gives no more evidence,
    // for or against; the other side still can.
    let pkts = [seg(s, c, at(0), 0x18, &r1), seg(s, c, at(49 + 159), 0x18, &r1), seg(s, c, at(49 + 208), 0x18, &r2)];
    let (f, step) = run(&mut Tls::default(), c, s, &pkts);
    assert_eq!((step, f.protocol), (Step::NeedMore, None));
    let [c1, ..] = anydesk_segments();
    let (f, step) = run(&mut Tls::default(), c, s, &[pkts[0].clone(), pkts[1].clone(), c1]);
    assert_midstream_tls(&f, step, None, "other side");
}

#[test]
fn midstream_not_tls() {
    let (c, s) = anydesk_ends();
    let one = |p: &[u8]| run(&mut Tls::default(), c, s, &[seg(c, s, 1000, 0x18, p)]);
    let two = |p: &[u8]| {
        let q = [seg(c, s, 1000, 0x18, p), seg(c, s, 1000 + p.len() as u32, 0x18, p)];
        run(&mut Tls::default(), c, s, &q)
    };
    // Clear text, either way.
    assert_eq!(one(b"GET /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n").1, Step::NotMine);
    let reply = [seg(s, c, 5000, 0x18, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")];
    assert_eq!(run(&mut Tls::default(), c, s, &reply).1, Step::NotMine);
    // A record-looking 5-byte prefix cannot be confirmed: never TLS. Another 5 bytes land inside
    // the body it announced.
    let header = [0x17, 0x03, 0x03, 0x00, 0x2e];
    for (f, step) in [one(&header), two(&header)] {
        assert_eq!((step, f.protocol), (Step::NeedMore, None));
    }
    // Shapes that look like records but are not what a TLS connection sends: an empty record,
    // versions that change, SSL 3.0, heartbeat, a length beyond the maximum.
    for rec in [
        &[0x17, 0x03, 0x03, 0x00, 0x00][..],
        &[0x17, 0x03, 0x03, 0x00, 0x01, 0xaa, 0x17, 0x03, 0x01, 0x00, 0x01, 0xbb],
        &[0x17, 0x03, 0x00, 0x00, 0x02, 0xaa, 0xbb],
        &[0x18, 0x03, 0x03, 0x00, 0x02, 0xaa, 0xbb],
        &[0x16, 0xfe, 0xfd, 0x00, 0x02, 0xaa, 0xbb],
        &[0x17, 0x03, 0x03, 0x48, 0x01],
    ] {
        assert_eq!(two(rec).1, Step::NotMine, "{rec:02x?}");
    }
    // Copies of one record never add up; patience ends the wait.
    let [c1, ..] = anydesk_segments();
    let (f, step) = run(&mut Tls::default(), c, s, &vec![c1; 8]);
    assert_eq!((step, f.protocol), (Step::NotMine, None));
}

#[test]
fn midstream_needs_a_flow_without_syn() {
    // The SYN seen (or the SYN-ACK), application data first is not a TLS flow's start: as before.
    let (c, s) = anydesk_ends();
    let [c1, c2, s1, _] = anydesk_segments();
    let syn = seg(c, s, 2072747561, 0x02, &[]);
    let syn_ack = seg(s, c, 828117585, 0x12, &[]);
    for open in [syn, syn_ack] {
        let pkts = [open, c1.clone(), s1.clone(), c2.clone()];
        let (f, step) = run(&mut Tls::default(), c, s, &pkts);
        assert_eq!((step, f.protocol), (Step::NotMine, None));
    }
}

#[test]
fn midstream_random_bytes_are_not_tls() {
    let (c, s) = anydesk_ends();
    let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
    for i in 0..3000 {
        let mut seq = [rng.next() as u32, rng.next() as u32];
        let mut pkts = Vec::new();
        for _ in 0..1 + rng.below(8) {
            let d = rng.below(2);
            let mut p: Vec<u8> = (0..1 + rng.below(300)).map(|_| rng.next() as u8).collect();
            if i % 2 == 0 {
                // A valid-looking header in front of random bytes.
                p.splice(0..p.len().min(3), [0x17, 0x03, 0x03]);
            }
            let (src, dst) = if d == 0 { (c, s) } else { (s, c) };
            pkts.push(seg(src, dst, seq[d], 0x18, &p));
            seq[d] = seq[d].wrapping_add(p.len() as u32);
        }
        let (f, step) = run(&mut Tls::default(), c, s, &pkts);
        assert_ne!(step, Step::Done, "{pkts:02x?}");
        assert_eq!(f.protocol, None);
    }
}

#[test]
fn midstream_truncated_and_mutated_never_panic() {
    let (c, s) = anydesk_ends();
    let w2 = hex(WHATSAPP_2);
    // Every prefix of one segment: only the whole two-record segment is enough.
    for p in [hex(ANYDESK_C1), hex(ANYDESK_S2), hex(WHATSAPP_1), w2.clone()] {
        for n in 0..=p.len() {
            let (_, step) = run(&mut Tls::default(), c, s, &[seg(c, s, 7, 0x18, &p[..n])]);
            assert_eq!(step == Step::Done, p == w2 && n == p.len(), "prefix {n} of {:02x?}", &p[..5]);
        }
    }
    let stream: Vec<u8> = [hex(ANYDESK_C1), hex(ANYDESK_C2), hex(ANYDESK_S2), hex(WHATSAPP_1), w2].concat();
    let mut rng = XorShift(0x5851_f42d_4c95_7f2d);
    for _ in 0..3000 {
        let mut m = stream.clone();
        for _ in 0..1 + rng.below(6) {
            let at = rng.below(m.len());
            match rng.below(3) {
                0 => m[at] ^= 1 << rng.below(8),
                1 => m[at] = [0x00, 0xff, 0x17, 0x03][rng.below(4)],
                _ => m.truncate(at.max(1)),
            }
        }
        // Cut into segments at random points, sequence numbers sometimes jumping, both ways.
        let mut pkts = Vec::new();
        let mut seq = [u32::MAX - 100, 7];
        let mut rest = m.as_slice();
        while !rest.is_empty() {
            let (p, r) = rest.split_at(1 + rng.below(rest.len().min(200)));
            let d = rng.below(2);
            let (src, dst) = if d == 0 { (c, s) } else { (s, c) };
            pkts.push(seg(src, dst, seq[d], 0x18, p));
            seq[d] = seq[d].wrapping_add(p.len() as u32).wrapping_add([0, 0, 0, 1 << 31][rng.below(4)]);
            rest = r;
        }
        let _ = run(&mut Tls::default(), c, s, &pkts);
    }
}

// ---- robustness --------------------------------------------------------------------------------

#[test]
fn every_prefix_of_a_client_hello() {
    let (c, s, rec) = first_client_payload("tls_ech.pcap");
    let hs = &rec[5..];
    assert!(parse_client_hello(hs).is_ok());
    for n in 0..hs.len() {
        assert_eq!(parse_client_hello(&hs[..n]), Err(TlsError::Truncated), "prefix {n}");
    }
    for n in 0..rec.len() {
        let (_, step) = run(&mut Tls::default(), c, s, &[seg(c, s, 1, 0x18, &rec[..n])]);
        assert_ne!(step, Step::Done, "prefix {n}");
    }
}

/// xorshift64: deterministic, dependency-free randomness for mutation tests.
pub(crate) struct XorShift(pub u64);

impl XorShift {
    pub(crate) fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Random byte flips, truncations, insertions and length-field smashes on real hellos and
/// certificates, through every parser and both dissectors: nothing may panic.
#[test]
fn mutations_never_panic() {
    let (c, s, ch_record) = first_client_payload("tls_ech.pcap");
    let cert_flow = read_pcap(&fixture("ssl-cert-name-mismatch.pcap"));
    let server_bytes: Vec<u8> =
        cert_flow.iter().filter(|p| p.src.port() == 443).flat_map(|p| p.payload.clone()).collect();
    let dtls_flow = read_pcap(&fixture("stun_dtls.pcap"));
    let dtls_hello = dtls_flow.last().map(|p| p.payload.clone()).unwrap_or_default();
    let seeds: [&[u8]; 3] = [&ch_record, &server_bytes, &dtls_hello];
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    for i in 0..4000 {
        let mut m = seeds[i % seeds.len()].to_vec();
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(m.len());
            match rng.below(5) {
                0 => {
                    if let Some(b) = m.get_mut(at) {
                        *b ^= 1 << rng.below(8);
                    }
                }
                1 => m.truncate(at),
                2 => m.insert(at.min(m.len()), rng.next() as u8),
                3 => {
                    if let Some(b) = m.get_mut(at) {
                        *b = [0x00, 0xff, 0x7f, 0x80][rng.below(4)];
                    }
                }
                _ => {
                    let end = (at + 1 + rng.below(16)).min(m.len());
                    if at < end {
                        m.drain(at..end);
                    }
                }
            }
        }
        let _ = parse_client_hello(m.get(5..).unwrap_or(&[]));
        let _ = parse_client_hello_with(&m, true);
        let _ = parse_server_hello(m.get(5..).unwrap_or(&[]));
        let _ = cert::cert_names(&m);
        if let Ok(ch) = parse_client_hello(m.get(5..).unwrap_or(&[])) {
            let _ = crate::ja4::ja4(&ch, Transport::Tcp);
        }
        let split = rng.below(m.len());
        let pkts = [
            seg(c, s, 0, 0x02, &[]),
            seg(c, s, 1 + split as u32, 0x18, &m[split..]),
            seg(c, s, 1, 0x18, &m[..split]),
            seg(s, c, 7, 0x12, &[]),
            seg(s, c, 8, 0x18, &m),
        ];
        let _ = run(&mut Tls::default(), c, s, &[seg(c, s, 1, 0x18, &ch_record), pkts[4].clone()]);
        let _ = run(&mut Tls::default(), c, s, &pkts);
        let udp: Vec<Pkt> = pkts.iter().map(|p| Pkt { l4: L4Proto::Udp, ..p.clone() }).collect();
        let _ = run(&mut dtls::Dtls::default(), c, s, &udp);
    }
}

// ---- corpus agreement ------------------------------------------------------------------------

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("VIGIL_NDPI_CORPUS").map(PathBuf::from).unwrap_or("/work/shared/corpus/ndpi".into());
    dir.is_dir().then_some(dir)
}

/// `addr:port`, with IPv6 in brackets.
fn parse_endpoint(s: &str) -> Option<SocketAddr> {
    let (ip, port) = s.rsplit_once(':')?;
    let ip: IpAddr = ip.trim_start_matches('[').trim_end_matches(']').parse().ok()?;
    Some(SocketAddr::new(ip, port.parse().ok()?))
}

/// Field `[name: value]` of an nDPI flow line.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let start = line.find(&format!("[{name}: "))? + name.len() + 3;
    let end = line[start..].find(']')? + start;
    Some(&line[start..end])
}

/// nDPI flow lines of an .out file: (l4, a, b, line).
fn ndpi_flows(out: &str) -> Vec<(L4Proto, SocketAddr, SocketAddr, String)> {
    let mut v = Vec::new();
    for line in out.lines() {
        let t = line.trim_start();
        let Some((_, rest)) = t.split_once(char::is_whitespace) else { continue };
        let l4 = if rest.starts_with("TCP ") {
            L4Proto::Tcp
        } else if rest.starts_with("UDP ") {
            L4Proto::Udp
        } else {
            continue;
        };
        let mut words = rest[4..].split_whitespace();
        let (Some(a), Some(_arrow), Some(b)) = (words.next(), words.next(), words.next()) else { continue };
        let (Some(a), Some(b)) = (parse_endpoint(a), parse_endpoint(b)) else { continue };
        v.push((l4, a, b, line.to_string()));
    }
    v
}

#[derive(Debug, Default)]
struct Agreement {
    checked: usize,
    ja4_equal: usize,
    /// Differing only by nDPI bugs fixed upstream since the corpus was made (see below).
    ja4_explained: usize,
    quic_checked: usize,
    quic_agree: usize,
    /// Flows skipped because the server spoke first (STARTTLS).
    starttls: usize,
    sni_checked: usize,
    sni_equal: usize,
    mismatches: Vec<String>,
}

fn corpus_agreement(dir: &Path) -> Agreement {
    let mut agg = Agreement::default();
    let mut outs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.to_string_lossy();
            n.ends_with(".out") && !n.ends_with(".ndpi42.out")
        })
        .collect();
    outs.sort();
    for out_path in outs {
        let Ok(out) = std::fs::read_to_string(&out_path) else { continue };
        if !out.contains("[JA4: ") {
            continue;
        }
        let pcap = out_path.with_extension(""); // strip ".out"
        let pkts = read_pcap(&pcap);
        let by_pair: HashMap<(SocketAddr, SocketAddr), (SocketAddr, SocketAddr, Vec<Pkt>)> = flows(&pkts)
            .into_iter()
            .map(|(c, s, f)| {
                let key = if c <= s { (c, s) } else { (s, c) };
                (key, (c, s, f))
            })
            .collect();
        for (l4, a, b, line) in ndpi_flows(&out) {
            let Some(expected) = field(&line, "JA4") else { continue };
            let key = if a <= b { (a, b) } else { (b, a) };
            let Some((c, s, f)) = by_pair.get(&key) else { continue };
            // Server-speaks-first flows (SMTP/IMAP STARTTLS, ...) start TLS mid-stream: the
            // mail dissectors' business, not TLS-from-the-first-byte.
            if f.iter().find(|p| !p.payload.is_empty()).is_some_and(|p| p.src != *c) {
                agg.starttls += 1;
                continue;
            }
            let facts = match l4 {
                L4Proto::Tcp => run(&mut Tls::default(), *c, *s, f).0,
                L4Proto::Udp if expected.starts_with('d') => {
                    // WebRTC puts STUN, DTLS and RTP on one 5-tuple (RFC 7983): offer the DTLS
                    // datagrams only, as a STUN dissector handing them over would.
                    let dtls_only: Vec<Pkt> =
                        f.iter().filter(|p| matches!(p.payload.first(), Some(20..=63))).cloned().collect();
                    run(&mut dtls::Dtls::default(), *c, *s, &dtls_only).0
                }
                L4Proto::Udp if expected.starts_with('q') => {
                    // Reported, not asserted here: QUIC decryption is the QUIC dissector's.
                    let facts = run(&mut crate::dissect::quic::Quic::default(), *c, *s, f).0;
                    let got = facts.ja4.as_deref().unwrap_or("-");
                    agg.quic_checked += 1;
                    if got == expected || explained(expected, got, &facts) {
                        agg.quic_agree += 1;
                    } else {
                        agg.mismatches.push(format!("QUIC {a} {b}: ndpi {expected} vigil {got}"));
                    }
                    continue;
                }
                _ => continue,
            };
            agg.checked += 1;
            let got = facts.ja4.as_deref().unwrap_or("-");
            if std::env::var_os("VIGIL_JA4_VERBOSE").is_some() {
                eprintln!("{} {a} {b}: ndpi {expected} vigil {got}", out_path.display());
            }
            if got == expected {
                agg.ja4_equal += 1;
            } else if explained(expected, got, &facts) {
                agg.ja4_explained += 1;
            } else {
                let file = out_path.file_name().unwrap_or_default().to_string_lossy();
                agg.mismatches.push(format!("{file} {a} {b}: ndpi {expected} vigil {got}"));
            }
            if let Some(sni) = field(&line, "Hostname/SNI") {
                agg.sni_checked += 1;
                if facts.hostname.as_deref() == Some(&sni.to_ascii_lowercase()) {
                    agg.sni_equal += 1;
                } else {
                    let file = out_path.file_name().unwrap_or_default().to_string_lossy();
                    agg.mismatches.push(format!("{file} {a} {b}: ndpi SNI {sni} vigil {:?}", facts.hostname));
                }
            }
        }
    }
    agg
}

/// Does `ours` differ from nDPI's `theirs` only where the corpus' nDPI version had JA4 bugs that
/// nDPI has since fixed, and where vigil follows the spec?
/// * ntop/nDPI#2916 (fixed by #2917): `d` for a ClientHello without server_name (spec: `i`);
/// * ntop/nDPI#2914 (fixed by #2915): ALPN as the first *two* characters of the first protocol
///   ("http/1.1" gives `ht`, spec `h1`; "webrtc" `we`, spec `wc`), with a `0` second character
///   when the only protocol is two characters long ("h2" alone gives `h0`).
fn explained(theirs: &str, ours: &str, facts: &Facts) -> bool {
    let (t, o) = (theirs.as_bytes(), ours.as_bytes());
    if t.len() != 36 || o.len() != 36 || t[..3] != o[..3] || t[4..8] != o[4..8] || t[10..] != o[10..] {
        return false;
    }
    let sni_ok = t[3] == o[3] || (t[3] == b'd' && o[3] == b'i' && facts.name_source != Some(NameSource::Sni));
    let alpn_ok = t[8..10] == o[8..10]
        || facts.alpn_offered.first().is_some_and(|a| {
            let a = a.as_bytes();
            a.first() == Some(&t[8]) && (a.get(1) == Some(&t[9]) || t[9] == b'0')
        });
    sni_ok && alpn_ok
}

/// JA4 (and SNI) agreement with nDPI over every TLS/DTLS flow of the corpus that nDPI
/// fingerprinted. Skipped when the corpus is not on this machine.
#[test]
fn ja4_agrees_with_ndpi_corpus() {
    let Some(dir) = corpus_dir() else {
        eprintln!("nDPI corpus not found, skipping");
        return;
    };
    let agg = corpus_agreement(&dir);
    for m in &agg.mismatches {
        eprintln!("mismatch: {m}");
    }
    eprintln!(
        "JA4: {} of {} flows equal to nDPI's, {} more differ only by fixed nDPI bugs; SNI: {}/{}; \
         {} STARTTLS flows skipped; QUIC (not asserted): {}/{}",
        agg.ja4_equal,
        agg.checked,
        agg.ja4_explained,
        agg.sni_equal,
        agg.sni_checked,
        agg.starttls,
        agg.quic_agree,
        agg.quic_checked
    );
    assert!(agg.checked > 0);
    assert!((agg.ja4_equal + agg.ja4_explained) * 100 >= agg.checked * 98, "JA4 agreement below 98%");
}
