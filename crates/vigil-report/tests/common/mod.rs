#![allow(dead_code)]

use std::net::IpAddr;
use std::path::PathBuf;
use vigil_engine::Timestamp;
use vigil_report::{BlockRow, DnsRow, SessionRow};

/// A fresh directory under the system temp dir, removed first if a previous run left it.
pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-report-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub const S: i64 = 1_000_000;

pub fn now_us() -> i64 {
    Timestamp::now().micros() as i64
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[allow(clippy::too_many_arguments)]
pub fn session(id: u64, src: &str, app: Option<&str>, host: Option<&str>, first_us: i64, bytes: u64) -> SessionRow {
    SessionRow {
        id: Some(id),
        community_id: Some(format!("1:cid{id}")),
        proto: "tcp".into(),
        src: ip(src),
        sport: 40000 + (id % 20000) as u16,
        dst: ip("198.51.100.7"),
        dport: 443,
        protocol: "TLS".into(),
        protocol_guessed: false,
        app: app.map(String::from),
        category: app.map(|a| if a.starts_with('Y') { "Streaming".into() } else { "Web".into() }),
        hostname: host.map(String::from),
        name_source: host.map(|_| "sni".into()),
        ja4: Some("t13d1516h2_8daaf6152771_02713d6af862".into()),
        alpn: vec!["h2".into(), "http/1.1".into()],
        alpn_selected: Some("h2".into()),
        dpi_packets: Some(4),
        packets_c2s: 10,
        packets_s2c: 20,
        bytes_c2s: bytes / 4,
        bytes_s2c: bytes - bytes / 4,
        first_seen: Timestamp::from_micros(first_us as u64),
        last_seen: Timestamp::from_micros(first_us as u64 + 5 * S as u64),
        verdict: "allow".into(),
        rule: None,
        tcp_state: Some("closed".into()),
        end_reason: Some("fin".into()),
        offloaded: false,
        midstream: false,
        in_if: Some("lan0".into()),
        out_if: Some("wan0".into()),
        client_mac: Some("02:00:00:00:00:01".into()),
        interim: false,
        bytes_source: Some("vigil".into()),
        details: Default::default(),
    }
}

pub fn dns(ts: i64, client: &str, query: &str) -> DnsRow {
    DnsRow {
        ts: Timestamp::from_micros(ts as u64),
        proto: "udp".into(),
        client: ip(client),
        sport: 53000,
        server: ip("192.0.2.53"),
        dport: 53,
        query: query.into(),
        qtype: 1,
        rcode: 0,
        answers: vec!["203.0.113.5".into(), "203.0.113.6".into()],
        latency_us: Some(1200),
        flow_id: 9,
    }
}

pub fn block(ts: i64, client: &str, rule: Option<&str>, host: Option<&str>) -> BlockRow {
    BlockRow {
        ts: Timestamp::from_micros(ts as u64),
        flow_id: 11,
        client: ip(client),
        sport: 51000,
        server: ip("203.0.113.9"),
        dport: 443,
        proto: "tcp".into(),
        rule: rule.map(String::from),
        action: "block".into(),
        reason: if rule.is_some() { "policy".into() } else { "default".into() },
        protocol: Some("TLS".into()),
        hostname: host.map(String::from),
        app: Some("TikTok".into()),
        category: Some("Social".into()),
    }
}
