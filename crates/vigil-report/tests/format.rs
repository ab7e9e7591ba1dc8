//! Output formats: RFC 4180 CSV, JSON with the replay field names, the text table.

mod common;

use common::*;
use vigil_report::format::{csv_field, format_csv, format_jsonl, format_table, Tabular};
use vigil_report::{SessionRow, TopRow};

#[test]
fn csv_quotes_per_rfc_4180() {
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    assert_eq!(csv_field("cr\r"), "\"cr\r\"");
    assert_eq!(csv_field(""), "");
    let rows = vec![
        TopRow { key: Some("Acme, Inc. \"video\"".into()), sessions: 3, bytes: 1024 },
        TopRow { key: None, sessions: 1, bytes: 0 },
    ];
    assert_eq!(format_csv(&rows), "key,sessions,bytes\r\n\"Acme, Inc. \"\"video\"\"\",3,1024\r\n,1,0\r\n");
}

#[test]
fn session_csv_columns_are_the_json_fields() {
    let mut s = session(42, "10.0.0.1", Some("YouTube"), Some("www.youtube.com"), 1_700_000_000 * S, 4000);
    s.rule = Some("allow,\"web\"".into());
    let csv = format_csv(std::slice::from_ref(&s));
    let mut lines = csv.split("\r\n");
    let header = lines.next().unwrap();
    assert_eq!(header.split(',').collect::<Vec<_>>(), SessionRow::FIELDS);
    let row = lines.next().unwrap();
    assert!(row.starts_with("42,1:cid42,tcp,10.0.0.1,"), "{row}");
    assert!(row.contains(",h2;http/1.1,h2,"), "lists joined with ';': {row}");
    assert!(row.contains(",1700000000.0,1700000005.0,allow,\"allow,\"\"web\"\"\","), "{row}");
}

#[test]
fn json_uses_the_replay_field_names() {
    let s = session(42, "10.0.0.1", Some("YouTube"), Some("www.youtube.com"), 1_700_000_000 * S, 4000);
    let line = format_jsonl(std::slice::from_ref(&s));
    assert_eq!(line.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(line.trim_end()).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort();
    let mut want = SessionRow::FIELDS.to_vec();
    want.sort();
    assert_eq!(keys, want);
    assert_eq!(v["dport"], 443);
    assert_eq!(v["sport"], 40042);
    assert_eq!(v["bytes_s2c"], 3000);
    assert_eq!(v["bytes_c2s"], 1000);
    assert_eq!(v["first_seen"], 1_700_000_000.0);
    assert_eq!(v["src"], "10.0.0.1");
    assert_eq!(v["verdict"], "allow");
    assert_eq!(v["end_reason"], "fin");
    assert_eq!(v["alpn"], serde_json::json!(["h2", "http/1.1"]));
    // And it reads back.
    let back: SessionRow = serde_json::from_value(v).unwrap();
    assert_eq!(back, s);
}

#[test]
fn a_replay_flow_record_converts_and_keeps_its_json() {
    // A line as `vigil replay --format jsonl` prints it.
    let line = r#"{"proto":"tcp","src":"10.0.0.2","sport":51234,"dst":"93.184.216.34","dport":443,
        "protocol":"TLS","protocol_guessed":false,"app":"Example","category":"Web","hostname":"example.com",
        "name_source":"sni","ja4":null,"alpn":["h2"],"alpn_selected":"h2","dpi_packets":1,"packets_c2s":5,
        "packets_s2c":6,"bytes_c2s":700,"bytes_s2c":4000,"first_seen":1700000000.25,"last_seen":1700000001.5,
        "verdict":"allow","rule":"web","tcp_state":"closed","end_reason":"fin","offloaded":false,"midstream":false}"#;
    let rec: vigil_engine::FlowRecord = serde_json::from_str(line).unwrap();
    let row = SessionRow::from(&rec);
    assert_eq!(row.first_seen.micros(), 1_700_000_000_250_000);
    assert_eq!(row.tcp_state.as_deref(), Some("closed"));
    assert_eq!(row.end_reason.as_deref(), Some("fin"));
    assert_eq!(row.id, None, "an old line without an id");
    assert_eq!(row.community_id, None);
    let a = serde_json::to_value(&rec).unwrap();
    let b = serde_json::to_value(&row).unwrap();
    for (k, v) in a.as_object().unwrap() {
        match k.as_str() {
            // 0 and "" (the engine's "none") are null in a row.
            "id" | "community_id" | "bytes_source" => assert!(b[k].is_null()),
            _ => assert_eq!(&b[k], v, "field {k}"),
        }
    }
    // A current record: ids and the new fields carry over; an interim has no end reason.
    let mut rec = rec;
    rec.id = 77;
    rec.community_id = "1:LQU9qZlK+B5F3KDmev6m5PMibrg=".into();
    rec.in_if = Some("lan0".into());
    rec.client_mac = Some("02:00:00:00:00:01".into());
    rec.interim = true;
    rec.bytes_source = "conntrack".into();
    let row = SessionRow::from(&rec);
    assert_eq!(row.bytes_source.as_deref(), Some("conntrack"));
    assert_eq!(row.id, Some(77));
    assert_eq!(row.community_id.as_deref(), Some(rec.community_id.as_str()));
    assert_eq!(
        (row.in_if.as_deref(), row.client_mac.as_deref(), row.interim),
        (Some("lan0"), Some("02:00:00:00:00:01"), true)
    );
    assert_eq!(row.end_reason, None);
}

/// The application-layer details of a replay line keep their names in the row's JSON, and the
/// CSV has them in the last columns (lists joined with ';').
#[test]
fn details_keep_their_names_in_json_and_csv() {
    let line = r#"{"id":9,"proto":"tcp","src":"10.0.0.2","sport":51234,"dst":"93.184.216.34","dport":443,
        "protocol":"TLS","app":null,"category":null,"hostname":"legacy.example","ja4":null,
        "tls_version":"TLSv1.2","ech":true,"cert_names":["*.example","legacy.example"],
        "http_method":"GET","http_path":"/a,b","user_agent":"curl/7.88.1",
        "client_banner":"SSH-2.0-OpenSSH_9.2p1 Debian-2","server_banner":"SSH-2.0-OpenSSH_9.2p1",
        "dhcp_hostname":"Lucas-iMac","dhcp_vendor_class":"MSFT 5.0",
        "packets_c2s":5,"packets_s2c":6,"bytes_c2s":700,"bytes_s2c":4000,"first_seen":1700000000.25,
        "last_seen":1700000001.5,"verdict":"allow","rule":null,"tcp_state":"closed","end_reason":"fin",
        "offloaded":false,"midstream":false}"#;
    let rec: vigil_engine::FlowRecord = serde_json::from_str(line).unwrap();
    let row = SessionRow::from(&rec);
    let a = serde_json::to_value(&rec).unwrap();
    let b = serde_json::to_value(&row).unwrap();
    for k in [
        "tls_version",
        "ech",
        "cert_names",
        "http_method",
        "http_path",
        "user_agent",
        "client_banner",
        "server_banner",
        "dhcp_hostname",
        "dhcp_vendor_class",
    ] {
        assert!(!a[k].is_null(), "{k} in the record");
        assert_eq!(a[k], b[k], "{k}");
    }
    let csv = format_csv(std::slice::from_ref(&row));
    let row_line = csv.split("\r\n").nth(1).unwrap();
    assert!(
        row_line.ends_with(
            ",TLSv1.2,true,*.example;legacy.example,GET,\"/a,b\",curl/7.88.1,SSH-2.0-OpenSSH_9.2p1 Debian-2,\
             SSH-2.0-OpenSSH_9.2p1,Lucas-iMac,MSFT 5.0"
        ),
        "{row_line}"
    );
    // A record without them: absent from the record's JSON, null / false / [] in the row's.
    let plain: vigil_engine::FlowRecord = serde_json::from_str(
        &line.replace(r#""tls_version":"TLSv1.2","ech":true,"cert_names":["*.example","legacy.example"],"#, ""),
    )
    .unwrap();
    assert!(serde_json::to_value(&plain).unwrap().get("ech").is_none());
    assert!(serde_json::to_value(&plain).unwrap().get("cert_names").is_none());
    let b = serde_json::to_value(SessionRow::from(&plain)).unwrap();
    assert_eq!(
        (b["tls_version"].is_null(), &b["ech"], &b["cert_names"]),
        (true, &serde_json::json!(false), &serde_json::json!([]))
    );
}

#[test]
fn table_is_aligned() {
    let rows = vec![
        TopRow { key: Some("YouTube".into()), sessions: 120, bytes: 5 << 30 },
        TopRow { key: None, sessions: 7, bytes: 100 },
    ];
    let t = format_table(&rows);
    assert_eq!(t, "key      sessions  bytes\nYouTube       120   5.0G\n(none)          7    100\n");
    let s = session(1, "2001:db8::1", None, None, 1_700_000_000 * S, 10);
    let t = format_table(&[s]);
    assert!(
        t.lines().nth(1).unwrap().starts_with("2023-11-14T22:13:20Z  [2001:db8::1]:40001  198.51.100.7:443"),
        "{t}"
    );
}

#[test]
fn engine_dns_and_block_records_convert() {
    let t = vigil_engine::Timestamp::from_micros(1_700_000_000_000_000);
    let d = vigil_engine::DnsRecord {
        ts: t,
        proto: "udp".into(),
        client: ip("10.0.0.1"),
        sport: 5353,
        server: ip("10.0.0.53"),
        dport: 53,
        query: "example.com".into(),
        qtype: 28,
        rcode: 3,
        answers: vec![],
        latency_us: None,
        flow_id: 12,
    };
    let row = vigil_report::DnsRow::from(&d);
    assert_eq!((row.sport, row.dport, row.qtype, row.rcode, row.flow_id), (5353, 53, 28, 3, 12));
    assert_eq!(serde_json::to_value(&row).unwrap(), serde_json::to_value(&d).unwrap(), "same JSON as the DNS log");
    let b = vigil_engine::BlockRecord {
        ts: t,
        flow_id: 3,
        proto: "tcp".into(),
        client: ip("10.0.0.1"),
        sport: 1000,
        server: ip("192.0.2.1"),
        dport: 443,
        rule: Some("no-social".into()),
        action: vigil_engine::FlowVerdict::Reject,
        reason: "policy".into(),
        protocol: Some("TLS".into()),
        hostname: Some("www.tiktok.com".into()),
        app: Some("TikTok".into()),
        category: None,
    };
    let row = vigil_report::BlockRow::from(&b);
    assert_eq!(row.action, "reject");
    assert_eq!(serde_json::to_value(&row).unwrap(), serde_json::to_value(&b).unwrap(), "same JSON as the block log");
}
