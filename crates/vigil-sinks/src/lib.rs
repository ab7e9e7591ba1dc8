//! vigil's record sinks besides the embedded store: EVE-style JSON lines ([`eve`]) for
//! Filebeat/Vector/Splunk/Wazuh, and ClickHouse ([`clickhouse`]) for fleets of gateways.
//!
//! Both take a [`Record`]; [`record`] is the one place that maps the engine's types onto it.

pub mod clickhouse;
pub mod eve;
mod http;
pub mod record;

pub use clickhouse::{ClickHouseConfig, ClickHouseError, ClickHouseHandle, ClickHouseSink, SinkStats};
pub use eve::{EveHandle, EveSink, EveWriter, Target};
pub use record::{BlockRecord, DnsRecord, FlowRecord, Record};

#[cfg(test)]
pub(crate) mod testutil {
    use std::sync::Arc;
    use vigil_engine::{BlockRecord, DnsRecord, EndReason, FlowRecord, FlowVerdict, TcpState, Timestamp};

    /// A finished TLS session, 2026-11-26T18:31:45.123456Z for 2.5 s.
    pub fn tls_flow() -> FlowRecord {
        FlowRecord {
            id: 42,
            community_id: "1:LQU9qZlK+B5F3KDmev6m5PMibrg=".into(),
            in_if: Some("lan0".into()),
            out_if: Some("wan0".into()),
            client_mac: Some("02:00:00:00:00:0a".into()),
            interim: false,
            bytes_source: "vigil".into(),
            proto: "tcp".into(),
            src: "192.168.1.10".parse().unwrap(),
            sport: 51234,
            dst: "93.184.216.34".parse().unwrap(),
            dport: 443,
            protocol: Arc::from("TLS"),
            protocol_guessed: false,
            app: Some(Arc::from("Example")),
            category: Some(Arc::from("web")),
            hostname: Some(Arc::from("www.example.com")),
            name_source: Some("sni".into()),
            app_source: None,
            ja4: Some(Arc::from("t13d1516h2_8daaf6152771_02713d6af862")),
            alpn: vec!["h2".into(), "http/1.1".into()],
            alpn_selected: Some("h2".into()),
            dpi_packets: Some(1),
            details: Default::default(),
            packets_c2s: 12,
            packets_s2c: 10,
            bytes_c2s: 1500,
            bytes_s2c: 9000,
            first_seen: Timestamp(1_795_717_905_123_456),
            last_seen: Timestamp(1_795_717_907_623_456),
            verdict: FlowVerdict::Allow,
            rule: Some(Arc::from("web")),
            tcp_state: Some(TcpState::Closed),
            end_reason: EndReason::Fin,
            offloaded: false,
            midstream: false,
        }
    }

    /// A finished plain-HTTP session, no community ID or MAC.
    pub fn http_flow() -> FlowRecord {
        let mut f = tls_flow();
        f.id = 43;
        f.dport = 80;
        f.protocol = Arc::from("HTTP");
        f.name_source = Some("http".into());
        f.ja4 = None;
        f.alpn = vec![];
        f.alpn_selected = None;
        f.community_id = String::new();
        f.client_mac = None;
        f
    }

    pub fn dns() -> DnsRecord {
        DnsRecord {
            ts: Timestamp(1_795_717_905_001_501),
            proto: "udp".into(),
            client: "192.168.1.10".parse().unwrap(),
            sport: 40053,
            server: "192.168.1.1".parse().unwrap(),
            dport: 53,
            query: "www.example.com".into(),
            qtype: 1,
            rcode: 0,
            answers: vec!["example.com".into(), "93.184.216.34".into()],
            latency_us: Some(1500),
            flow_id: 7,
        }
    }

    pub fn block() -> BlockRecord {
        BlockRecord {
            ts: Timestamp(1_795_717_905_500_000),
            flow_id: 9,
            proto: "tcp".into(),
            client: "192.168.1.10".parse().unwrap(),
            sport: 40000,
            server: "203.0.113.5".parse().unwrap(),
            dport: 443,
            rule: Some(Arc::from("no-social")),
            action: FlowVerdict::Block,
            reason: "policy".into(),
            protocol: Some(Arc::from("TLS")),
            hostname: Some(Arc::from("social.example")),
            app: Some(Arc::from("Social")),
            category: Some(Arc::from("social")),
        }
    }
}
