use super::*;
use crate::testutil;
use std::sync::Arc;

fn lines(rec: &Record, app: bool) -> Vec<String> {
    events(rec, app).iter().map(|e| serde_json::to_string(e).unwrap()).collect()
}

const TLS_EVENT: &str = r#"{"timestamp":"2026-11-26T18:31:45.123456+0000","flow_id":42,"in_iface":"lan0","event_type":"tls","src_ip":"192.168.1.10","src_port":51234,"dest_ip":"93.184.216.34","dest_port":443,"proto":"TCP","app_proto":"tls","community_id":"1:LQU9qZlK+B5F3KDmev6m5PMibrg=","tls":{"sni":"www.example.com","ja4":"t13d1516h2_8daaf6152771_02713d6af862","client_alpns":["h2","http/1.1"],"server_alpns":["h2"]}}"#;
const TLS_FLOW: &str = r#"{"timestamp":"2026-11-26T18:31:45.123456+0000","flow_id":42,"in_iface":"lan0","event_type":"flow","src_ip":"192.168.1.10","src_port":51234,"dest_ip":"93.184.216.34","dest_port":443,"proto":"TCP","app_proto":"tls","community_id":"1:LQU9qZlK+B5F3KDmev6m5PMibrg=","flow":{"pkts_toserver":12,"pkts_toclient":10,"bytes_toserver":1500,"bytes_toclient":9000,"start":"2026-11-26T18:31:45.123456+0000","end":"2026-11-26T18:31:47.623456+0000","age":2,"state":"closed","reason":"timeout","alerted":false},"tcp":{"state":"closed"},"vigil":{"protocol":"TLS","app":"Example","category":"web","hostname":"www.example.com","name_source":"sni","verdict":"allow","rule":"web","ja4":"t13d1516h2_8daaf6152771_02713d6af862","end_reason":"fin","out_iface":"wan0","client_mac":"02:00:00:00:00:0a","dpi_packets":1}}"#;
const HTTP_EVENT: &str = r#"{"timestamp":"2026-11-26T18:31:45.123456+0000","flow_id":43,"in_iface":"lan0","event_type":"http","src_ip":"192.168.1.10","src_port":51234,"dest_ip":"93.184.216.34","dest_port":80,"proto":"TCP","app_proto":"http","http":{"hostname":"www.example.com"}}"#;
const HTTP_FLOW: &str = r#"{"timestamp":"2026-11-26T18:31:45.123456+0000","flow_id":43,"in_iface":"lan0","event_type":"flow","src_ip":"192.168.1.10","src_port":51234,"dest_ip":"93.184.216.34","dest_port":80,"proto":"TCP","app_proto":"http","flow":{"pkts_toserver":12,"pkts_toclient":10,"bytes_toserver":1500,"bytes_toclient":9000,"start":"2026-11-26T18:31:45.123456+0000","end":"2026-11-26T18:31:47.623456+0000","age":2,"state":"closed","reason":"timeout","alerted":false},"tcp":{"state":"closed"},"vigil":{"protocol":"HTTP","app":"Example","category":"web","hostname":"www.example.com","name_source":"http","verdict":"allow","rule":"web","end_reason":"fin","out_iface":"wan0","dpi_packets":1}}"#;
const DNS_QUERY: &str = r#"{"timestamp":"2026-11-26T18:31:45.000001+0000","flow_id":7,"event_type":"dns","src_ip":"192.168.1.10","src_port":40053,"dest_ip":"192.168.1.1","dest_port":53,"proto":"UDP","app_proto":"dns","community_id":"1:h7bfPS2lX3uK+hgOlFG+sHoh1Gw=","dns":{"type":"query","rrname":"www.example.com","rrtype":"A"}}"#;
const DNS_ANSWER: &str = r#"{"timestamp":"2026-11-26T18:31:45.001501+0000","flow_id":7,"event_type":"dns","src_ip":"192.168.1.1","src_port":53,"dest_ip":"192.168.1.10","dest_port":40053,"proto":"UDP","app_proto":"dns","community_id":"1:h7bfPS2lX3uK+hgOlFG+sHoh1Gw=","dns":{"type":"answer","rrname":"www.example.com","rrtype":"A","rcode":"NOERROR","answers":[{"rrname":"www.example.com","rrtype":"CNAME","rdata":"example.com"},{"rrname":"www.example.com","rrtype":"A","rdata":"93.184.216.34"}]},"vigil":{"latency_us":1500}}"#;
const DROP: &str = r#"{"timestamp":"2026-11-26T18:31:45.500000+0000","flow_id":9,"event_type":"drop","src_ip":"192.168.1.10","src_port":40000,"dest_ip":"203.0.113.5","dest_port":443,"proto":"TCP","app_proto":"tls","community_id":"1:50BIXutF+KQZvphokAMeYOFf444=","drop":{"reason":"rules"},"vigil":{"protocol":"TLS","app":"Social","category":"social","hostname":"social.example","action":"block","reason":"policy","rule":"no-social"}}"#;

#[test]
fn golden_tls_session() {
    assert_eq!(lines(&Record::from(testutil::tls_flow()), true), [TLS_EVENT, TLS_FLOW]);
    // Without the app-layer event (already written with an interim record).
    assert_eq!(lines(&Record::from(testutil::tls_flow()), false), [TLS_FLOW]);
}

#[test]
fn golden_http_session() {
    assert_eq!(lines(&Record::from(testutil::http_flow()), true), [HTTP_EVENT, HTTP_FLOW]);
}

#[test]
fn golden_dns() {
    assert_eq!(lines(&Record::from(testutil::dns()), false), [DNS_QUERY, DNS_ANSWER]);
}

/// DNS over TCP is reported as TCP, with the TCP connection's Community ID.
#[test]
fn dns_over_tcp_keeps_its_transport() {
    let mut d = testutil::dns();
    d.proto = "tcp".into();
    let lines = lines(&Record::from(d), false);
    for l in &lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["proto"], "TCP", "{l}");
        assert_ne!(v["community_id"], "1:h7bfPS2lX3uK+hgOlFG+sHoh1Gw=", "the UDP flow's id must not be reused: {l}");
        assert!(v["community_id"].as_str().is_some_and(|c| c.starts_with("1:")), "{l}");
    }
}

#[test]
fn golden_drop() {
    assert_eq!(lines(&Record::from(testutil::block()), false), [DROP]);
}

/// The fields Suricata's consumers key on, with Suricata's names and types.
#[test]
fn suricata_field_names_and_types() {
    for line in [TLS_EVENT, TLS_FLOW, HTTP_EVENT, HTTP_FLOW, DNS_QUERY, DNS_ANSWER, DROP] {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let o = v.as_object().unwrap();
        let ts = o["timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2026-11-26T18:31:45.123456+0000".len(), "{ts}");
        assert!(ts.ends_with("+0000") && ts.as_bytes()[10] == b'T' && ts.as_bytes()[19] == b'.');
        assert!(o["flow_id"].is_u64());
        assert!(o["src_ip"].is_string() && o["dest_ip"].is_string());
        assert!(o["src_port"].is_u64() && o["dest_port"].is_u64());
        assert!(["TCP", "UDP"].contains(&o["proto"].as_str().unwrap()));
        let et = o["event_type"].as_str().unwrap();
        assert!(["flow", "tls", "http", "dns", "drop"].contains(&et));
        assert!(o.contains_key(et), "{et} event without its {et} object");
        let ap = o["app_proto"].as_str().unwrap();
        assert_eq!(ap, ap.to_ascii_lowercase());
    }
    let flow: serde_json::Value = serde_json::from_str(TLS_FLOW).unwrap();
    for k in
        ["pkts_toserver", "pkts_toclient", "bytes_toserver", "bytes_toclient", "start", "end", "age", "state", "reason"]
    {
        assert!(flow["flow"].get(k).is_some(), "flow.{k}");
    }
    assert_eq!(flow["flow"]["alerted"], false);
    let dns: serde_json::Value = serde_json::from_str(DNS_ANSWER).unwrap();
    for k in ["type", "rrname", "rrtype", "rcode", "answers"] {
        assert!(dns["dns"].get(k).is_some(), "dns.{k}");
    }
}

#[test]
fn timestamps() {
    assert_eq!(format_ts(Timestamp(0)), "1970-01-01T00:00:00.000000+0000");
    assert_eq!(format_ts(Timestamp(1_795_717_905_123_456)), "2026-11-26T18:31:45.123456+0000");
    // 2024-02-29T23:59:59.000007Z (leap day) and 2000-03-01T00:00:00Z (century leap year).
    assert_eq!(format_ts(Timestamp(1_709_251_199_000_007)), "2024-02-29T23:59:59.000007+0000");
    assert_eq!(format_ts(Timestamp(951_868_800_000_000)), "2000-03-01T00:00:00.000000+0000");
    assert_eq!(format_ts(Timestamp(4_102_444_800_000_000)), "2100-01-01T00:00:00.000000+0000");
}

#[test]
fn names() {
    assert_eq!(eve_proto("tcp"), "TCP");
    assert_eq!(eve_proto("icmpv6"), "IPv6-ICMP");
    assert_eq!(app_proto("TLS").as_deref(), Some("tls"));
    assert_eq!(app_proto("IMAPS").as_deref(), Some("tls"));
    assert_eq!(app_proto("SMBv23").as_deref(), Some("smb"));
    assert_eq!(app_proto("QUIC").as_deref(), Some("quic"));
    assert_eq!(app_proto("HTTP2").as_deref(), Some("http2"));
    assert_eq!(app_proto("Unknown"), None);
    assert_eq!(crate::record::rrtype_name(28), "AAAA");
    assert_eq!(crate::record::rrtype_name(4242), "4242");
    assert_eq!(crate::record::rcode_name(3), "NXDOMAIN");
}

#[test]
fn flow_states() {
    let mut f = testutil::http_flow();
    f.proto = "udp".into();
    f.tcp_state = None;
    f.packets_s2c = 0;
    f.end_reason = EndReason::Timeout;
    let v = serde_json::to_value(&events(&Record::from(f.clone()), false)[0]).unwrap();
    assert_eq!((v["flow"]["state"].as_str(), v["flow"]["reason"].as_str()), (Some("new"), Some("timeout")));
    assert!(v.get("tcp").is_none());
    f.offloaded = true;
    f.end_reason = EndReason::Shutdown;
    f.interim = true;
    let v = serde_json::to_value(&events(&Record::from(f), false)[0]).unwrap();
    assert_eq!(v["flow"]["state"], "bypassed");
    assert_eq!(v["flow"]["bypass"], "capture");
    assert_eq!(v["flow"]["reason"], "shutdown");
    assert_eq!(v["vigil"]["interim"], true);
    assert!(v["vigil"].get("end_reason").is_none());
    // ICMP: no ports.
    let mut b = testutil::block();
    b.proto = "icmp".into();
    b.protocol = None;
    let v = serde_json::to_value(&events(&Record::from(b), false)[0]).unwrap();
    assert_eq!(v["proto"], "ICMP");
    assert!(v.get("src_port").is_none() && v.get("dest_port").is_none() && v.get("app_proto").is_none());
}

fn read_lines(p: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {e}: {l}")))
        .collect()
}

fn tmpdir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-eve-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn writer_buffers_flushes_and_reopens() {
    let dir = tmpdir("writer");
    let path = dir.join("eve.json");
    let mut w = EveWriter::open(Target::File(path.clone())).unwrap().with_flush_interval(Duration::from_secs(3600));
    // An interim record carries the tls event; the final one of the same session does not repeat it.
    let mut interim = testutil::tls_flow();
    interim.interim = true;
    w.write(&Record::from(interim)).unwrap();
    w.write(&Record::from(testutil::tls_flow())).unwrap();
    w.write(&Record::from(testutil::dns())).unwrap();
    assert!(read_lines(&path).is_empty(), "buffered until the interval or a flush");
    w.flush().unwrap();
    let types: Vec<_> = read_lines(&path).iter().map(|v| v["event_type"].as_str().unwrap().to_string()).collect();
    assert_eq!(types, ["tls", "flow", "flow", "dns", "dns"]);

    // logrotate: rename, then reopen.
    std::fs::rename(&path, dir.join("eve.json.1")).unwrap();
    w.write(&Record::from(testutil::block())).unwrap();
    w.reopen().unwrap();
    w.write(&Record::from(testutil::http_flow())).unwrap();
    w.close().unwrap();
    let old = read_lines(&dir.join("eve.json.1"));
    assert_eq!(old.len(), 6);
    assert_eq!(old[5]["event_type"], "drop");
    let new = read_lines(&path);
    assert_eq!(new.iter().map(|v| v["event_type"].as_str().unwrap()).collect::<Vec<_>>(), ["http", "flow"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sink_thread_flushes_on_interval_when_idle() {
    let dir = tmpdir("sink");
    let path = dir.join("eve.json");
    let w = EveWriter::open(Target::File(path.clone())).unwrap().with_flush_interval(Duration::from_millis(50));
    let h = EveSink::spawn(w, 16).unwrap();
    assert!(h.try_send(Record::from(testutil::block())));
    let t0 = Instant::now();
    while read_lines(&path).is_empty() {
        assert!(t0.elapsed() < Duration::from_secs(5), "not flushed while idle");
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::rename(&path, dir.join("eve.json.1")).unwrap();
    h.reopen();
    std::thread::sleep(Duration::from_millis(100));
    let mut d = testutil::dns();
    d.query = "after.example".into();
    d.answers = vec![];
    assert!(h.try_send(Record::from(d)));
    h.close().unwrap();
    let new = read_lines(&path);
    assert_eq!(new.len(), 2);
    assert_eq!(new[1]["dns"]["rrname"], "after.example");
    assert!(new[1]["dns"].get("answers").is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn block_without_rule() {
    let mut b = testutil::block();
    b.rule = None;
    b.reason = "default".into();
    b.hostname = Some(Arc::from("x"));
    let v = serde_json::to_value(&events(&Record::from(b), false)[0]).unwrap();
    assert!(v["vigil"].get("rule").is_none());
    assert_eq!(v["vigil"]["reason"], "default");
}

const TLS_EVENT_DETAILS: &str = r#"{"timestamp":"2026-11-26T18:31:45.123456+0000","flow_id":42,"in_iface":"lan0","event_type":"tls","src_ip":"192.168.1.10","src_port":51234,"dest_ip":"93.184.216.34","dest_port":443,"proto":"TCP","app_proto":"tls","community_id":"1:LQU9qZlK+B5F3KDmev6m5PMibrg=","tls":{"sni":"www.example.com","version":"TLS 1.2","ja4":"t13d1516h2_8daaf6152771_02713d6af862","client_alpns":["h2","http/1.1"],"server_alpns":["h2"]}}"#;
const HTTP_EVENT_DETAILS: &str = r#"{"timestamp":"2026-11-26T18:31:45.123456+0000","flow_id":43,"in_iface":"lan0","event_type":"http","src_ip":"192.168.1.10","src_port":51234,"dest_ip":"93.184.216.34","dest_port":80,"proto":"TCP","app_proto":"http","http":{"hostname":"www.example.com","url":"/index.html?a=1","http_user_agent":"curl/7.88.1","http_method":"GET"}}"#;
const SSH_EVENT: &str = r#"{"timestamp":"2026-11-26T18:31:45.123456+0000","flow_id":44,"in_iface":"lan0","event_type":"ssh","src_ip":"192.168.1.10","src_port":51234,"dest_ip":"93.184.216.34","dest_port":22,"proto":"TCP","app_proto":"ssh","ssh":{"client":{"proto_version":"2.0","software_version":"OpenSSH_9.2p1"},"server":{"proto_version":"1.99","software_version":"Cisco-1.25"}}}"#;

fn ssh_flow() -> FlowRecord {
    let mut f = testutil::http_flow();
    f.id = 44;
    f.dport = 22;
    f.protocol = Arc::from("SSH");
    f.app = Some(Arc::from("SSH"));
    f.hostname = None;
    f.name_source = None;
    f.details.client_banner = Some("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10".into());
    f.details.server_banner = Some("SSH-1.99-Cisco-1.25".into());
    f
}

#[test]
fn golden_tls_session_with_version() {
    let mut f = testutil::tls_flow();
    f.details.tls_version = Some("TLSv1.2".into());
    f.details.ech = true;
    f.details.cert_names = vec!["*.example.com".into(), "example.com".into()];
    let lines = lines(&Record::from(f), true);
    assert_eq!(lines[0], TLS_EVENT_DETAILS);
    // ECH and the certificate names have no Suricata field: under vigil, with vigil's version name.
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(v["vigil"]["tls_version"], "TLSv1.2");
    assert_eq!(v["vigil"]["ech"], true);
    assert_eq!(v["vigil"]["cert_names"], serde_json::json!(["*.example.com", "example.com"]));
}

#[test]
fn golden_http_session_with_request() {
    let mut f = testutil::http_flow();
    f.details.http_method = Some("GET".into());
    f.details.http_path = Some("/index.html?a=1".into());
    f.details.user_agent = Some("curl/7.88.1".into());
    f.details.server_banner = Some("SimpleHTTP/0.6 Python/3.11.7".into());
    let lines = lines(&Record::from(f), true);
    assert_eq!(lines[0], HTTP_EVENT_DETAILS);
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(v["event_type"], "flow");
    assert_eq!(v["vigil"]["server_banner"], "SimpleHTTP/0.6 Python/3.11.7");
    assert_eq!(v["vigil"]["user_agent"], "curl/7.88.1");
}

#[test]
fn http2_in_clear_is_an_http_event_with_suricatas_app_proto() {
    let mut f = testutil::http_flow();
    f.protocol = "HTTP2".into();
    f.details.http_method = Some("GET".into());
    f.details.http_path = Some("/index.html?a=1".into());
    f.details.user_agent = Some("curl/7.88.1".into());
    let lines = lines(&Record::from(f), true);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], HTTP_EVENT_DETAILS.replace(r#""app_proto":"http""#, r#""app_proto":"http2""#));
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!((v["event_type"].as_str(), v["app_proto"].as_str()), (Some("flow"), Some("http2")));
    assert_eq!(v["vigil"]["protocol"], "HTTP2");
}

#[test]
fn golden_ssh_session() {
    let lines = lines(&Record::from(ssh_flow()), true);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], SSH_EVENT);
    // The whole banners, comments included, on the flow event.
    let v: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    assert_eq!(v["event_type"], "flow");
    assert_eq!(v["app_proto"], "ssh");
    assert_eq!(v["vigil"]["client_banner"], "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10");
    // Once per session, like tls and http.
    assert_eq!(self::lines(&Record::from(ssh_flow()), false).len(), 1);
}

#[test]
fn ssh_event_needs_a_banner() {
    // Only the client's: no server object.
    let mut f = ssh_flow();
    f.details.server_banner = None;
    let rec = Record::from(f.clone());
    let v = serde_json::to_value(&events(&rec, true)[0]).unwrap();
    assert_eq!(v["ssh"]["client"]["software_version"], "OpenSSH_9.2p1");
    assert!(v["ssh"].get("server").is_none());
    // None (or nothing that is an SSH banner): only the flow event.
    f.details.client_banner = Some("HTTP/1.1 400 Bad Request".into());
    let rec = Record::from(f);
    let evs = events(&rec, true);
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].event_type, "flow");
}

#[test]
fn ssh_banners_split_as_suricata_does() {
    let p = |s| EveSshHost::parse(s).map(|h| (h.proto_version, h.software_version));
    assert_eq!(p("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"), Some(("2.0", "OpenSSH_9.2p1")));
    assert_eq!(p("SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6"), Some(("2.0", "OpenSSH_8.9p1")));
    assert_eq!(p("SSH-1.99-Cisco-1.25"), Some(("1.99", "Cisco-1.25")));
    assert_eq!(p("SSH-2.0-dropbear_2022.83"), Some(("2.0", "dropbear_2022.83")));
    assert_eq!(p("SSH-2.0-Go\r\n"), Some(("2.0", "Go")));
    // Suricata's own parser test: no software after the dash.
    assert_eq!(p("SSH-Single-"), Some(("Single", "")));
    assert_eq!(p("SSH-2.0"), None);
    assert_eq!(p("SSH--x"), None);
    assert_eq!(p("220 mail.example.com ESMTP"), None);
    // An empty software version is left out, as Suricata does.
    let v = serde_json::to_value(EveSshHost::parse("SSH-Single-").unwrap()).unwrap();
    assert_eq!(v, serde_json::json!({"proto_version": "Single"}));
}

#[test]
fn tls_version_names_are_suricatas() {
    assert_eq!(tls_version_name("TLSv1.3"), "TLS 1.3");
    assert_eq!(tls_version_name("TLSv1.2"), "TLS 1.2");
    assert_eq!(tls_version_name("TLSv1.1"), "TLS 1.1");
    assert_eq!(tls_version_name("TLSv1"), "TLSv1");
    assert_eq!(tls_version_name("SSLv3"), "SSLv3");
}

/// The new events pass the same checks as the others.
#[test]
fn new_events_have_suricatas_shape() {
    for line in [TLS_EVENT_DETAILS, HTTP_EVENT_DETAILS, SSH_EVENT] {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let et = v["event_type"].as_str().unwrap();
        assert!(v.get(et).is_some_and(|o| o.is_object()), "{line}");
        assert_eq!(v["app_proto"], et);
    }
    let ssh: serde_json::Value = serde_json::from_str(SSH_EVENT).unwrap();
    for side in ["client", "server"] {
        for k in ["proto_version", "software_version"] {
            assert!(ssh["ssh"][side][k].is_string(), "ssh.{side}.{k}");
        }
    }
}
