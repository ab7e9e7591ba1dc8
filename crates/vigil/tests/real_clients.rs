//! Real current clients through `vigil replay`, as a user runs it: Chromium and Firefox over TCP
//! and QUIC, curl (TLS, HTTP, HTTP/2 in clear), wget and gnutls-cli (GnuTLS), Python's urllib,
//! dig (UDP, TCP, DoT, DoH, an HTTPS record, an AAAA through a CNAME) and OpenSSH (IPv4, IPv6,
//! port 2222), captured on a veth pair between two network namespaces by
//! `scripts/capture_clients.sh` (see `tests/fixtures/clients/README.md` for the versions and
//! commands). No root needed: the captures are committed.
//!
//! Every expected JA4 below was computed independently of vigil by `scripts/ja4_check.py` (its own
//! pcap reader, TCP reassembly and QUIC Initial decryption, written from the public JA4 spec), and
//! the cipher/extension counts were checked again against tshark's dissection. Chrome's TCP JA4
//! also equals the value the FoxIO reference implementation expects for a Chrome ClientHello with
//! a GREASE signature algorithm (its `sigalg-grease` test). Packet positions (`dpi_packets`) were
//! counted in the captures with tcpdump. Re-capturing with newer clients changes these values:
//! update them from `python3 scripts/ja4_check.py crates/vigil/tests/fixtures/clients/*.pcap`.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const CHROME_TCP_JA4: &str = "t13d1517h2_8daaf6152771_cb7bf5808d99";
const CHROME_QUIC_JA4: &str = "q13d0312h3_55b375c5d22e_178839b6cec1";
const FIREFOX_JA4: &str = "t13d1617h2_86a278354501_3cbfd9057e0d";
/// curl 7.88.1 / OpenSSL 3.0 (dig's DoT and DoH use the same OpenSSL: same cipher hash).
const CURL_TLS13_JA4: &str = "t13d3112h2_e8f1e7e78f70_b26ce05bbdd6";
const CURL_TLS12_JA4: &str = "t12d2807h2_d943125447b4_a44c6288192a";
const DIG_DOT_JA4: &str = "t13i3110dt_e8f1e7e78f70_1f22a2ca17c4";
const DIG_DOH_JA4: &str = "t13i3111h2_e8f1e7e78f70_b14c9c0b5032";
/// curl to an address: no SNI (`i`), otherwise its TLS 1.3 hello (same cipher and extension hashes).
const CURL_NO_SNI_JA4: &str = "t13i3111h2_e8f1e7e78f70_b26ce05bbdd6";
/// Firefox 153 ESR over QUIC (neqo and NSS): 3 ciphers, 15 extensions (ECH GREASE included).
const FIREFOX_QUIC_JA4: &str = "q13d0315h3_55b375c5d22e_dc5437974b47";
/// GnuTLS 3.7.9 (Debian 12): wget 1.21.3 and gnutls-cli share the ciphers, not the extensions;
/// neither offers ALPN.
const WGET_JA4: &str = "t13d291300_723694b0fccc_899037bd0b8c";
const GNUTLS_CLI_JA4: &str = "t13d291300_723694b0fccc_2cc26d266019";
/// Python 3.11 urllib / OpenSSL 3.0 (Debian 12): curl's ciphers, its extensions plus session_ticket.
const PYTHON_URLLIB_JA4: &str = "t13d3113h1_e8f1e7e78f70_d339722ba4af";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clients").join(name)
}

/// `vigil replay --format jsonl [--config CFG] PCAP`: the flows, and stderr.
fn replay_with(pcap: &std::path::Path, config: Option<&std::path::Path>) -> (Vec<Value>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.args(["replay", "--format", "jsonl"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd.arg(pcap).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "vigil replay {}: {stderr}", pcap.display());
    let flows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (flows, stderr)
}

fn replay(name: &str) -> Vec<Value> {
    replay_with(&fixture(name), None).0
}

fn only(flows: &[Value]) -> &Value {
    assert_eq!(flows.len(), 1, "{flows:#?}");
    &flows[0]
}

fn alpn(f: &Value) -> Vec<&str> {
    f["alpn"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect()
}

fn dpi(f: &Value) -> u64 {
    f["dpi_packets"].as_u64().unwrap_or_else(|| panic!("no dpi_packets: {f:#}"))
}

/// What every flow of these captures has: seen from its first packet, the client (10.99.N.1 or
/// fd00:99::1) as `src`, its protocol recognised in the payload and not guessed from the port.
fn common(f: &Value, l4: &str, dport: u64, protocol: &str) {
    assert_eq!(f["proto"], l4, "{f:#}");
    assert_eq!(f["dport"], dport, "{f:#}");
    let src = f["src"].as_str().unwrap();
    assert!(src.ends_with(".1") || src == "fd00:99::1", "the client is the source: {f:#}");
    assert_eq!(f["protocol"], protocol, "{f:#}");
    assert_eq!(f["protocol_guessed"], false, "{f:#}");
    assert_eq!(f["midstream"], false, "{f:#}");
    assert_eq!(f["verdict"], "allow", "{f:#}");
}

fn tls(f: &Value, host: Option<&str>, ja4: &str, offered: &[&str]) {
    assert_eq!(f["hostname"].as_str(), host, "{f:#}");
    assert_eq!(f["name_source"].as_str(), host.map(|_| "sni"), "{f:#}");
    assert_eq!(f["ja4"], ja4, "{f:#}");
    assert_eq!(alpn(f), offered, "{f:#}");
}

// ---------------------------------------------------------------------------------------------
// browsers

#[test]
fn chromium_over_tcp_named_by_the_segment_ending_its_two_segment_client_hello() {
    let flows = replay("chromium_tls.pcap");
    // Chromium 156 opened two background connections (its resolver rule sends every name to the
    // server namespace), then tried the page three times (the self-signed certificate fails).
    let hosts: Vec<&str> = flows.iter().map(|f| f["hostname"].as_str().unwrap_or("-")).collect();
    assert_eq!(
        hosts,
        [
            "update.googleapis.com",
            "accounts.google.com",
            "www.example-shop.test",
            "www.example-shop.test",
            "www.example-shop.test"
        ]
    );
    for f in &flows {
        common(f, "tcp", 443, "TLS");
        tls(f, f["hostname"].as_str(), CHROME_TCP_JA4, &["h2", "http/1.1"]);
        // ~1.9 KB ClientHello (X25519MLKEM768 key share, ECH GREASE): 1448 + ~500 bytes. Packets
        // of the flow: SYN, SYN-ACK, ACK, segment 1, the server's ACK, segment 2 -> the 6th.
        assert_eq!(dpi(f), 6, "{f:#}");
    }
    assert_eq!(flows[0]["app"], "GoogleUpdate");
    assert_eq!(flows[1]["app"], "Google");
}

#[test]
fn chromium_quic_initial_split_over_two_datagrams_with_shuffled_crypto_frames() {
    let f = &replay("chromium_quic.pcap")[..];
    let f = only(f);
    common(f, "udp", 443, "QUIC");
    tls(f, Some("video.example-stream.test"), CHROME_QUIC_JA4, &["h3"]);
    // The ClientHello (~1.95 KB) spans the first two Initial datagrams, its CRYPTO frames out of
    // order and interleaved with PING/PADDING (Chrome's chaos protection); four retransmissions
    // and a CONNECTION_CLOSE follow, since nobody answers.
    assert_eq!(dpi(f), 2, "{f:#}");
    assert_eq!((f["packets_c2s"].as_u64(), f["packets_s2c"].as_u64()), (Some(6), Some(0)));
}

#[test]
fn firefox_quic_as_one_udp_gso_train() {
    // The same two Initial datagrams, seen before the kernel splits the GSO send (as NFQUEUE with
    // the GSO flag, the default, shows a local sender's packets): one 2504-byte packet holding two
    // 1252-byte datagrams, each a 994-byte Initial padded with zeros. The second Initial, with
    // the SNI, is found after the zeros.
    let flows = replay("firefox_quic_gso.pcap");
    let f = only(&flows);
    common(f, "udp", 443, "QUIC");
    tls(f, Some("quic.example-ff.test"), FIREFOX_QUIC_JA4, &["h3"]);
    assert_eq!(dpi(f), 1, "{f:#}");
}

#[test]
fn firefox_over_tcp() {
    let flows = replay("firefox_tls.pcap");
    let f = only(&flows);
    common(f, "tcp", 443, "TLS");
    tls(f, Some("shop.example-ff.test"), FIREFOX_JA4, &["h2", "http/1.1"]);
    assert_eq!(dpi(f), 6, "two-segment ClientHello, like Chrome's: {f:#}");
}

#[test]
fn firefox_quic_initial_split_over_two_datagrams() {
    let flows = replay("firefox_quic.pcap");
    let f = only(&flows);
    common(f, "udp", 443, "QUIC");
    tls(f, Some("quic.example-ff.test"), FIREFOX_QUIC_JA4, &["h3"]);
    // The ~1.9 KB ClientHello (X25519MLKEM768 key share, ECH GREASE) in two Initial datagrams sent
    // together, its bytes in three CRYPTO frames: the first datagram carries the tail and the head,
    // the second the middle (with the SNI). Two retransmissions of the pair follow.
    assert_eq!(dpi(f), 2, "{f:#}");
    assert_eq!(f["ech"], true, "{f:#}");
    assert_eq!((f["packets_c2s"].as_u64(), f["packets_s2c"].as_u64()), (Some(6), Some(0)));
}

// ---------------------------------------------------------------------------------------------
// other TLS stacks: GnuTLS (wget, gnutls-cli), Python's OpenSSL 3

#[test]
fn gnutls_clients_wget_and_gnutls_cli() {
    for (pcap, host, ja4) in [
        ("wget_tls.pcap", "dl.example-shop.test", WGET_JA4),
        ("gnutls_cli.pcap", "gnutls.example-shop.test", GNUTLS_CLI_JA4),
    ] {
        let flows = replay(pcap);
        let f = only(&flows);
        common(f, "tcp", 443, "TLS");
        tls(f, Some(host), ja4, &[]);
        assert_eq!(f["tls_version"], "TLSv1.3", "{pcap}: {f:#}");
        assert_eq!(dpi(f), 4, "{pcap}: one-segment ClientHello after the handshake: {f:#}");
    }
}

#[test]
fn python_urllib_with_openssl_3() {
    let flows = replay("python_urllib.pcap");
    let f = only(&flows);
    common(f, "tcp", 443, "TLS");
    tls(f, Some("py.example-shop.test"), PYTHON_URLLIB_JA4, &["http/1.1"]);
    assert_eq!(f["tls_version"], "TLSv1.3", "{f:#}");
    assert_eq!(dpi(f), 4, "{f:#}");
}

// ---------------------------------------------------------------------------------------------
// curl

#[test]
fn curl_tls13_over_ipv4_and_ipv6() {
    for (pcap, src) in [("curl_tls13.pcap", None), ("curl_tls13_ipv6.pcap", Some("fd00:99::1"))] {
        let flows = replay(pcap);
        let f = only(&flows);
        common(f, "tcp", 443, "TLS");
        if let Some(src) = src {
            assert_eq!(f["src"], src);
        }
        tls(f, Some("api.example-shop.test"), CURL_TLS13_JA4, &["h2", "http/1.1"]);
        assert_eq!(dpi(f), 4, "one-segment ClientHello after the handshake: {f:#}");
    }
}

#[test]
fn curl_tls12_and_the_alpn_the_server_chose() {
    let flows = replay("curl_tls12.pcap");
    let f = only(&flows);
    common(f, "tcp", 443, "TLS");
    tls(f, Some("legacy.example-shop.test"), CURL_TLS12_JA4, &["h2", "http/1.1"]);
    // TLS 1.2 carries the server's choice in the clear ServerHello (openssl s_server -alpn http/1.1).
    assert_eq!(f["alpn_selected"], "http/1.1");
    assert_eq!(dpi(f), 4);
}

#[test]
fn curl_tls_negotiated_version_from_the_server_hello() {
    // Both TLS 1.3 captures hold the ServerHello: its supported_versions extension says 1.3.
    for pcap in ["curl_tls13.pcap", "curl_tls13_ipv6.pcap"] {
        let flows = replay(pcap);
        let f = only(&flows);
        assert_eq!(f["tls_version"], "TLSv1.3", "{pcap}: {f:#}");
        // The certificate is encrypted in TLS 1.3; curl offers no ECH.
        assert!(f.get("cert_names").is_none() && f.get("ech").is_none(), "{pcap}: {f:#}");
    }
    // TLS 1.2: the version, and the certificate in the clear (openssl s_server's self-signed one,
    // made for www.example-shop.test whatever name curl asked for).
    let flows = replay("curl_tls12.pcap");
    let f = only(&flows);
    assert_eq!(f["tls_version"], "TLSv1.2", "{f:#}");
    assert_eq!(f["cert_names"], serde_json::json!(["www.example-shop.test"]), "{f:#}");
}

#[test]
fn curl_http_request_line_and_user_agent() {
    let flows = replay("curl_http.pcap");
    let f = only(&flows);
    assert_eq!(f["http_method"], "GET", "{f:#}");
    assert_eq!(f["http_path"], "/index.html", "{f:#}");
    assert_eq!(f["user_agent"], "curl/7.88.1", "{f:#}");
    // The answer's Server header is the server's banner (python3 -m http.server).
    assert!(f["server_banner"].as_str().is_some_and(|b| b.starts_with("SimpleHTTP/")), "{f:#}");
    assert!(f.get("client_banner").is_none() && f.get("tls_version").is_none(), "{f:#}");
}

#[test]
fn curl_plain_http_named_by_host() {
    let flows = replay("curl_http.pcap");
    let f = only(&flows);
    common(f, "tcp", 80, "HTTP");
    assert_eq!(f["hostname"], "plain.example-shop.test");
    assert_eq!(f["name_source"], "http");
    assert!(f["ja4"].is_null());
    assert_eq!(dpi(f), 4, "the request is the 4th packet: {f:#}");
}

#[test]
fn curl_h2c_prior_knowledge_named_by_authority() {
    let flows = replay("curl_h2c.pcap");
    let f = only(&flows);
    common(f, "tcp", 80, "HTTP2");
    assert_eq!(f["hostname"], "h2c.example-shop.test", "{f:#}");
    assert_eq!(f["name_source"], "http", "{f:#}");
    assert_eq!(f["http_method"], "GET", "{f:#}");
    assert_eq!(f["http_path"], "/index.html", "{f:#}");
    assert_eq!(f["user_agent"], "curl/7.88.1", "{f:#}");
    assert_eq!(f["category"], "Web", "{f:#}");
    assert!(f["ja4"].is_null());
    // SYN, SYN-ACK, ACK, the preface with SETTINGS and WINDOW_UPDATE (identified: HTTP2), the
    // server's ACK, then the HEADERS frame whose :authority names the flow: the 6th packet.
    assert_eq!(dpi(f), 6, "the HEADERS frame is the 6th packet: {f:#}");
}

// ---------------------------------------------------------------------------------------------
// dig

#[test]
fn dig_over_udp_and_tcp_named_by_the_query() {
    for (pcap, l4, name, at) in
        [("dig_udp.pcap", "udp", "www.example.test", 1), ("dig_tcp.pcap", "tcp", "mail.example.test", 4)]
    {
        let flows = replay(pcap);
        let f = only(&flows);
        common(f, l4, 53, "DNS");
        assert_eq!(f["hostname"], name, "{pcap}");
        assert_eq!(f["name_source"], "dns", "{pcap}");
        assert_eq!(dpi(f), at, "{pcap}: {f:#}");
    }
}

#[test]
fn dig_dns_over_tls_and_over_https() {
    // dig sends no SNI to an address: no name, `i` in the JA4.
    let flows = replay("dig_dot.pcap");
    let f = only(&flows);
    common(f, "tcp", 853, "TLS");
    tls(f, None, DIG_DOT_JA4, &["dot"]);
    assert_eq!(f["app"], "DoH_DoT", "port 853 with ALPN dot is DNS over TLS");
    // Without a name to wait for, the flow is complete at the ServerHello (6th packet).
    assert!(dpi(f) <= 6, "{f:#}");

    let flows = replay("dig_doh.pcap");
    let f = only(&flows);
    common(f, "tcp", 443, "TLS");
    tls(f, None, DIG_DOH_JA4, &["h2"]);
    assert!(dpi(f) <= 6, "{f:#}");
}

#[test]
fn dig_https_record_names_a_later_nameless_flow() {
    // dig asks for svc.example-svcb.test HTTPS; the answer (alpn h3,h2, ipv4hint and ipv6hint =
    // the server) is what names curl's connection to the bare address right after (no SNI).
    let flows = replay("dig_https.pcap");
    assert_eq!(flows.len(), 2, "{flows:#?}");
    let (dns, web) = (&flows[0], &flows[1]);
    common(dns, "udp", 53, "DNS");
    assert_eq!(dns["hostname"], "svc.example-svcb.test", "{dns:#}");
    assert_eq!(dns["name_source"], "dns", "{dns:#}");
    assert_eq!(dpi(dns), 1, "{dns:#}");
    common(web, "tcp", 443, "TLS");
    assert_eq!(web["dst"], dns["dst"], "curl went to the hinted address: {web:#}");
    assert_eq!(web["hostname"], "svc.example-svcb.test", "from the ipv4hint: {web:#}");
    assert_eq!(web["name_source"], "dns-cache", "{web:#}");
    assert_eq!(web["ja4"], CURL_NO_SNI_JA4, "{web:#}");
    assert_eq!(alpn(web), ["h2", "http/1.1"], "{web:#}");
    assert_eq!(dpi(web), 6, "no SNI to wait for: complete at the ServerHello: {web:#}");
}

#[test]
fn dig_tcp_aaaa_through_a_cname_names_a_later_ipv6_flow() {
    // Over TCP: www.example-cdn.test AAAA, answered CNAME edge.example-cdn.test + AAAA
    // fd00:99::2; then curl to [fd00:99::2] without a name. The flow is named by what was asked.
    let flows = replay("dig_tcp_aaaa.pcap");
    assert_eq!(flows.len(), 2, "{flows:#?}");
    let (dns, web) = (&flows[0], &flows[1]);
    common(dns, "tcp", 53, "DNS");
    assert_eq!(dns["hostname"], "www.example-cdn.test", "{dns:#}");
    assert_eq!(dns["name_source"], "dns", "{dns:#}");
    assert_eq!(dpi(dns), 4, "{dns:#}");
    common(web, "tcp", 443, "TLS");
    assert_eq!((web["src"].as_str(), web["dst"].as_str()), (Some("fd00:99::1"), Some("fd00:99::2")), "{web:#}");
    assert_eq!(web["hostname"], "www.example-cdn.test", "{web:#}");
    assert_eq!(web["name_source"], "dns-cache", "{web:#}");
    assert_eq!(web["ja4"], CURL_NO_SNI_JA4, "{web:#}");
    assert_eq!(dpi(web), 6, "{web:#}");
}

// ---------------------------------------------------------------------------------------------
// ssh

#[test]
fn openssh_client_and_server() {
    let flows = replay("ssh.pcap");
    let f = only(&flows);
    common(f, "tcp", 22, "SSH");
    assert_eq!(f["app"], "SSH");
    assert!(f["ja4"].is_null());
    // The client's banner is the 4th packet, the server's the 6th (both are in the record: see
    // openssh_banners_are_in_the_record).
    assert!(dpi(f) <= 6, "{f:#}");
}

#[test]
fn openssh_banners_are_in_the_record() {
    let flows = replay("ssh.pcap");
    let f = only(&flows);
    // Both sides run Debian's OpenSSH 9.2p1 build (see the fixtures' README).
    let client = f["client_banner"].as_str().unwrap_or_else(|| panic!("no client_banner: {f:#}"));
    assert!(client.starts_with("SSH-2.0-OpenSSH_9.2p1"), "{f:#}");
    assert_eq!(client, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10", "{f:#}");
    let server = f["server_banner"].as_str().unwrap_or_else(|| panic!("no server_banner: {f:#}"));
    assert!(server.starts_with("SSH-2.0-OpenSSH_"), "{f:#}");
    // Nothing of the other protocols' details.
    for k in ["tls_version", "ech", "cert_names", "http_method", "http_path", "user_agent", "dhcp_hostname"] {
        assert!(f.get(k).is_none(), "{k}: {f:#}");
    }
}

#[test]
fn openssh_over_ipv6_and_on_port_2222_named_by_its_banners() {
    for (pcap, port, src) in [("ssh_ipv6.pcap", 22, Some("fd00:99::1")), ("ssh_port2222.pcap", 2222, None)] {
        let flows = replay(pcap);
        let f = only(&flows);
        common(f, "tcp", port, "SSH");
        if let Some(src) = src {
            assert_eq!(f["src"], src, "{pcap}");
        }
        assert_eq!(f["app"], "SSH", "{pcap}: {f:#}");
        assert!(f["ja4"].is_null() && f["hostname"].is_null(), "{pcap}: {f:#}");
        assert_eq!(f["client_banner"], "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10", "{pcap}: {f:#}");
        assert_eq!(f["server_banner"], "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10", "{pcap}: {f:#}");
        // Client banner 4th packet, server banner 6th, as on port 22 over IPv4.
        assert!(dpi(f) <= 6, "{pcap}: {f:#}");
    }
}

// ---------------------------------------------------------------------------------------------
// policy on the real flows

#[test]
fn a_policy_stops_each_real_client_at_the_packet_that_names_it() {
    let dir = std::env::temp_dir().join(format!("vigil-real-clients-{}-policy", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("policy.toml");
    std::fs::write(
        &cfg,
        r#"
[[policy.rules]]
name = "no-shops"
action = "block"
hostnames = ["*.example-shop.test", "video.example-stream.test", "*.example-ff.test"]

[[policy.rules]]
name = "no-dot"
action = "block"
apps = ["DoH_DoT"]

[[policy.rules]]
name = "no-ssh"
action = "reject"
protocols = ["SSH"]
"#,
    )
    .unwrap();
    // Each blocked flow loses every packet from the one that named it (its `dpi_packets`-th,
    // as the allow-all replay reports it) on; the Google flows of chromium_tls.pcap pass.
    for (pcap, rule) in [
        ("chromium_tls.pcap", "no-shops"),
        ("chromium_quic.pcap", "no-shops"),
        ("firefox_tls.pcap", "no-shops"),
        ("firefox_quic.pcap", "no-shops"),
        ("firefox_quic_gso.pcap", "no-shops"),
        ("curl_tls13.pcap", "no-shops"),
        ("curl_http.pcap", "no-shops"),
        ("curl_h2c.pcap", "no-shops"),
        ("wget_tls.pcap", "no-shops"),
        ("gnutls_cli.pcap", "no-shops"),
        ("python_urllib.pcap", "no-shops"),
        ("dig_dot.pcap", "no-dot"),
        ("ssh.pcap", "no-ssh"),
        ("ssh_ipv6.pcap", "no-ssh"),
        ("ssh_port2222.pcap", "no-ssh"),
    ] {
        let open = replay(pcap);
        let (flows, stderr) = replay_with(&fixture(pcap), Some(&cfg));
        assert_eq!(flows.len(), open.len(), "{pcap}");
        let mut dropped = 0;
        for (f, o) in flows.iter().zip(&open) {
            let host = f["hostname"].as_str().unwrap_or("");
            if host.ends_with(".google.com") || host.ends_with(".googleapis.com") {
                assert_eq!(f["verdict"], "allow", "{pcap}: {f:#}");
                continue;
            }
            assert_eq!(f["rule"], rule, "{pcap}: {f:#}");
            assert_ne!(f["verdict"], "allow", "{pcap}: {f:#}");
            let total = o["packets_c2s"].as_u64().unwrap() + o["packets_s2c"].as_u64().unwrap();
            dropped += total - (dpi(o) - 1);
        }
        assert!(dropped > 0, "{pcap}");
        assert!(stderr.contains(&format!(" {dropped} dropped by policy")), "{pcap}: expected {dropped}: {stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------------------------------------
// the same real packets, reordered as a network may deliver them

/// The records of a classic pcap: (global header, records with their 16-byte headers).
fn pcap_records(bytes: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let le = bytes[..4] == [0xd4, 0xc3, 0xb2, 0xa1] || bytes[..4] == [0x4d, 0x3c, 0xb2, 0xa1];
    let mut recs = Vec::new();
    let mut off = 24;
    while off + 16 <= bytes.len() {
        let n: [u8; 4] = bytes[off + 8..off + 12].try_into().unwrap();
        let incl = if le { u32::from_le_bytes(n) } else { u32::from_be_bytes(n) } as usize;
        recs.push(bytes[off..off + 16 + incl].to_vec());
        off += 16 + incl;
    }
    (bytes[..24].to_vec(), recs)
}

/// Writes the capture with its records in `order` (indices into the original records).
fn reordered(name: &str, order: &[usize]) -> PathBuf {
    let (header, recs) = pcap_records(&std::fs::read(fixture(name)).unwrap());
    let mut out = header;
    for &i in order {
        out.extend_from_slice(&recs[i]);
    }
    let path = std::env::temp_dir().join(format!("vigil-real-clients-{}-{name}", std::process::id()));
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn chromium_client_hello_reordered_in_the_network() {
    // QUIC: the second Initial datagram first.
    let path = reordered("chromium_quic.pcap", &[1, 0, 2, 3, 4, 5]);
    let (flows, _) = replay_with(&path, None);
    let _ = std::fs::remove_file(&path);
    let f = only(&flows);
    tls(f, Some("video.example-stream.test"), CHROME_QUIC_JA4, &["h3"]);
    assert_eq!(dpi(f), 2, "{f:#}");

    // TCP: the first flow's second ClientHello segment (record 5) before its first (record 3).
    let n = pcap_records(&std::fs::read(fixture("chromium_tls.pcap")).unwrap()).1.len();
    let order: Vec<usize> = [0, 1, 2, 5, 3, 4].into_iter().chain(6..n).collect();
    let path = reordered("chromium_tls.pcap", &order);
    let (flows, _) = replay_with(&path, None);
    let _ = std::fs::remove_file(&path);
    let f = &flows[0];
    tls(f, Some("update.googleapis.com"), CHROME_TCP_JA4, &["h2", "http/1.1"]);
    // SYN, SYN-ACK, ACK, segment 2, segment 1: named at the 5th, the one completing the hello.
    assert_eq!(dpi(f), 5, "named once both segments arrived: {f:#}");
}
