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
