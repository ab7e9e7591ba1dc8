//! Test helper for the crash test: writes sessions with ids 1, 2, 3... through the real writer as
//! fast as it can, printing `committed N` each time the committed count changes, until killed.
//! (Retries a full queue, so the accepted ids are exactly 1..=accepted, in order.)

use std::io::Write;
use vigil_report::{SessionRow, SinkOptions, SqliteSink};

fn session(id: u64) -> SessionRow {
    let t = vigil_engine::Timestamp::from_micros(1_700_000_000_000_000 + id * 1000);
    SessionRow {
        id: Some(id),
        community_id: None,
        proto: "tcp".into(),
        src: std::net::IpAddr::from([10, 0, (id >> 8) as u8, id as u8]),
        sport: 40000,
        dst: std::net::IpAddr::from([192, 0, 2, 1]),
        dport: 443,
        protocol: "TLS".into(),
        protocol_guessed: false,
        app: Some("Example".into()),
        category: Some("Web".into()),
        hostname: Some(format!("h{}.example.com", id % 100)),
        name_source: Some("sni".into()),
        ja4: None,
        alpn: vec!["h2".into()],
        alpn_selected: Some("h2".into()),
        dpi_packets: Some(1),
        packets_c2s: 10,
        packets_s2c: 10,
        bytes_c2s: 1000,
        bytes_s2c: 5000,
        first_seen: t,
        last_seen: t,
        verdict: "allow".into(),
        rule: None,
        tcp_state: Some("closed".into()),
        end_reason: Some("fin".into()),
        offloaded: false,
        midstream: false,
        in_if: None,
        out_if: None,
        client_mac: None,
        interim: false,
        bytes_source: Some("vigil".into()),
        details: Default::default(),
    }
}

fn main() {
    let path = std::env::args().nth(1).expect("usage: report_crash_helper DB");
    let opts =
        SinkOptions { batch_max: 500, flush_interval: std::time::Duration::from_millis(20), ..Default::default() };
    let (sink, _writer) = SqliteSink::open(&path, opts).expect("open");
    let mut out = std::io::stdout().lock();
    let mut last = 0;
    let mut id = 1;
    loop {
        if sink.try_send(session(id)) {
            id += 1;
        } else {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        let c = sink.committed();
        if c != last {
            last = c;
            writeln!(out, "committed {c}").unwrap();
            out.flush().unwrap();
        }
    }
}
