//! Benchmark of the report store: fills a database with N realistic sessions through the real
//! writer path (`SqliteSink::try_send`, batched transactions, rollups maintained incrementally),
//! then times each report query over the last 24 hours and the last 30 days.
//!
//! ```text
//! cargo run --release -p vigil-report --example gen_sessions -- --db /tmp/r.db --sessions 1000000
//! cargo run --release -p vigil-report --example gen_sessions -- --db /tmp/r.db --query-only
//! ```
//!
//! Data: sessions spread evenly over `--days` (30) ending now; clients from 10.20.0.0/16 with a
//! Zipf(0.7) skew over all 65 536 addresses; 300 apps with a Zipf(1.0) skew, 12 categories, each
//! app with 30 hostnames (Zipf) plus a long tail of 200 000 random names for 10% of sessions and
//! no name for 5%; bytes log-uniform from 100 B to 1 GB; 2% blocked (with a block event), one DNS
//! record per 4 sessions, 5% of sessions preceded by an interim update.

use std::time::{Duration, Instant};
use vigil_engine::Timestamp;
use vigil_report::query::TopBy;
use vigil_report::{
    BlockRow, Cidr, Dim, DnsFilter, DnsRow, Reader, Record, SessionFilter, SessionRow, SinkOptions, SqliteSink,
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn f64(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Samples ranks 0..n with P(k) ∝ 1/(k+1)^s.
struct Zipf(Vec<f64>);
impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (0..n)
            .map(|k| {
                acc += 1.0 / ((k + 1) as f64).powf(s);
                acc
            })
            .collect();
        for c in &mut cdf {
            *c /= acc;
        }
        Zipf(cdf)
    }
    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.f64();
        self.0.partition_point(|c| *c < u).min(self.0.len() - 1)
    }
}

const CATEGORIES: [&str; 12] = [
    "Streaming",
    "Social",
    "Web",
    "Cloud",
    "Messaging",
    "Gaming",
    "Ads",
    "Software updates",
    "Collaboration",
    "Shopping",
    "News",
    "Mail",
];

struct Args {
    db: String,
    sessions: u64,
    days: u64,
    query_only: bool,
    runs: usize,
}

fn args() -> Args {
    let mut a =
        Args { db: "/tmp/vigil-report-bench.db".into(), sessions: 1_000_000, days: 30, query_only: false, runs: 3 };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        match k.as_str() {
            "--db" => a.db = it.next().expect("--db PATH"),
            "--sessions" => a.sessions = it.next().and_then(|v| v.parse().ok()).expect("--sessions N"),
            "--days" => a.days = it.next().and_then(|v| v.parse().ok()).expect("--days N"),
            "--runs" => a.runs = it.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--query-only" => a.query_only = true,
            _ => panic!("unknown argument {k}: --db PATH --sessions N --days N --runs N --query-only"),
        }
    }
    a
}

fn generate(a: &Args, now: i64) {
    let _ = std::fs::remove_file(&a.db);
    let _ = std::fs::remove_file(format!("{}-wal", a.db));
    let _ = std::fs::remove_file(format!("{}-shm", a.db));
    let (sink, writer) = SqliteSink::open(&a.db, SinkOptions::default()).expect("open");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let apps = Zipf::new(300, 1.0);
    let clients = Zipf::new(65536, 0.7);
    let hosts = Zipf::new(30, 1.0);
    // Client rank -> address: a fixed shuffle so the busy ones are spread over the /16.
    let mut perm: Vec<u16> = (0..=u16::MAX).collect();
    for i in (1..perm.len()).rev() {
        perm.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let span = a.days as i64 * 86_400_000_000;
    let start = now - span;
    let t_start = Instant::now();
    let mut last_report = Instant::now();
    let send = |rec: Record| {
        let mut rec = Some(rec);
        while let Some(r) = rec.take() {
            if !sink.try_send(r.clone()) {
                rec = Some(r);
                std::thread::sleep(Duration::from_micros(100));
            }
        }
    };
    for i in 0..a.sessions {
        let first = start + (i as i128 * span as i128 / a.sessions as i128) as i64;
        let app = apps.sample(&mut rng);
        let client = perm[clients.sample(&mut rng)];
        let src = std::net::IpAddr::from([10, 20, (client >> 8) as u8, client as u8]);
        let dst = std::net::IpAddr::from([203, 0, (app / 256) as u8 + 113, (app % 256) as u8]);
        let r = rng.f64();
        let hostname = if r < 0.05 {
            None
        } else if r < 0.15 {
            Some(format!("n{}.tail.example", rng.below(200_000)))
        } else {
            Some(format!("h{}.app{app}.example.com", hosts.sample(&mut rng)))
        };
        let bytes = 10f64.powf(2.0 + 7.0 * rng.f64()) as u64;
        let dur = (-(1.0 - rng.f64()).ln() * 30e6) as i64;
        let v = rng.f64();
        let verdict = if v < 0.02 { "block" } else { "allow" };
        let s = SessionRow {
            id: Some(i + 1),
            community_id: Some(format!("1:{:016x}", rng.next())),
            proto: if app.is_multiple_of(7) { "udp".into() } else { "tcp".into() },
            src,
            sport: 1024 + rng.below(64000) as u16,
            dst,
            dport: 443,
            protocol: if app.is_multiple_of(7) { "QUIC".into() } else { "TLS".into() },
            protocol_guessed: false,
            app: Some(format!("App{app}")),
            category: Some(CATEGORIES[app % CATEGORIES.len()].into()),
            hostname: hostname.clone(),
            name_source: hostname.as_ref().map(|_| "sni".into()),
            ja4: Some("t13d1516h2_8daaf6152771_02713d6af862".into()),
            alpn: vec!["h2".into(), "http/1.1".into()],
            alpn_selected: Some("h2".into()),
            dpi_packets: Some(1),
            packets_c2s: bytes / 1200 + 1,
            packets_s2c: bytes / 1000 + 1,
            bytes_c2s: bytes / 10,
            bytes_s2c: bytes - bytes / 10,
            first_seen: Timestamp::from_micros(first as u64),
            last_seen: Timestamp::from_micros((first + dur) as u64),
            verdict: verdict.into(),
            rule: (verdict == "block").then(|| format!("rule-{}", app % 10)),
            tcp_state: Some("closed".into()),
            end_reason: Some("fin".into()),
            offloaded: false,
            midstream: false,
            in_if: Some("lan0".into()),
            out_if: Some("wan0".into()),
            client_mac: Some(format!("02:00:00:00:{:02x}:{:02x}", client >> 8, client & 0xff)),
            interim: false,
            bytes_source: Some("vigil".into()),
            details: Default::default(),
        };
        if i.is_multiple_of(20) {
            let mut interim = s.clone();
            interim.interim = true;
            interim.end_reason = None;
            interim.bytes_s2c /= 2;
            send(interim.into());
        }
        if verdict == "block" {
            send(Record::Block(BlockRow {
                ts: s.first_seen,
                flow_id: i + 1,
                client: src,
                sport: s.sport,
                server: dst,
                dport: 443,
                proto: s.proto.clone(),
                rule: s.rule.clone(),
                action: "block".into(),
                reason: "policy".into(),
                protocol: Some(s.protocol.clone()),
                hostname: hostname.clone(),
                app: s.app.clone(),
                category: s.category.clone(),
            }));
        }
        if i.is_multiple_of(4) {
            send(Record::Dns(DnsRow {
                ts: s.first_seen,
                proto: "udp".into(),
                client: src,
                sport: 53000,
                server: std::net::IpAddr::from([10, 20, 0, 1]),
                dport: 53,
                query: hostname.clone().unwrap_or_else(|| "unnamed.example".into()),
                qtype: 1,
                rcode: 0,
                answers: vec![dst.to_string()],
                latency_us: Some(500 + rng.below(20_000)),
                flow_id: i + 1,
            }));
        }
        send(s.into());
        if last_report.elapsed() > Duration::from_secs(10) {
            last_report = Instant::now();
            let st = sink.stats();
            eprintln!(
                "  {} sessions sent, {} records committed, {:.0} records/s",
                i + 1,
                st.committed,
                st.committed as f64 / t_start.elapsed().as_secs_f64()
            );
        }
    }
    let probe = sink.clone();
    sink.flush_and_close();
    writer.join().unwrap();
    let st = probe.stats();
    let secs = t_start.elapsed().as_secs_f64();
    eprintln!(
        "generated {} sessions ({} records committed, {} failed) in {secs:.1} s: {:.0} sessions/s, {:.0} records/s",
        a.sessions,
        st.committed,
        st.failed,
        a.sessions as f64 / secs,
        st.committed as f64 / secs
    );
}

fn time<T>(runs: usize, label: &str, mut f: impl FnMut() -> Vec<T>) {
    let mut times = Vec::new();
    let mut n = 0;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        n = f().len();
        times.push(t.elapsed());
    }
    let first = times[0];
    times.sort();
    println!(
        "| {label:<44} | {:>9.1} | {:>9.1} | {n:>5} |",
        first.as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3
    );
}

fn main() {
    let a = args();
    let now = Timestamp::now().micros() as i64;
    if !a.query_only {
        generate(&a, now);
    }
    // What the writer does on its own, a slice a minute (and what migrates an older file): pack
    // every closed rollup bucket.
    let t = Instant::now();
    let (sink, writer) = SqliteSink::open(&a.db, SinkOptions::default()).expect("open");
    let opened = t.elapsed();
    let packed = sink.pack_now().expect("pack");
    sink.flush_and_close();
    writer.join().unwrap();
    eprintln!(
        "writer opened (migrations) in {:.1} s, packed {packed} more buckets in {:.1} s",
        opened.as_secs_f64(),
        (t.elapsed() - opened).as_secs_f64()
    );
    let size: u64 =
        ["", "-wal"].iter().filter_map(|s| std::fs::metadata(format!("{}{s}", a.db)).ok()).map(|m| m.len()).sum();
    let r = Reader::open(&a.db).expect("open read-only");
    let c = r.connection();
    let count = |sql: &str| -> i64 { c.query_row(sql, [], |x| x.get(0)).unwrap() };
    println!(
        "database {}: {:.1} MiB, {} sessions, {} dns, {} blocks, {} hourly + {} daily rollup rows, {} packed buckets, {} late rows",
        a.db,
        size as f64 / (1 << 20) as f64,
        count("SELECT COUNT(*) FROM sessions"),
        count("SELECT COUNT(*) FROM dns"),
        count("SELECT COUNT(*) FROM blocks"),
        count("SELECT COUNT(*) FROM rollup_hourly"),
        count("SELECT COUNT(*) FROM rollup_daily"),
        count("SELECT COUNT(*) FROM rollup_packed"),
        count("SELECT COUNT(*) FROM rollup_late"),
    );
    // A busy client and an ordinary one.
    let busy: String = c.query_row("SELECT src FROM sessions ORDER BY rowid DESC LIMIT 1", [], |x| x.get(0)).unwrap();
    let busy: std::net::IpAddr = busy.parse().unwrap();
    let now = Timestamp::now().micros() as i64;
    println!("| query (ms: first run, median of {}) | first | median | rows |", a.runs);
    println!("|---|---:|---:|---:|");
    for (label, since) in [("24h", now - 86_400_000_000), ("30d", now - 30 * 86_400_000_000)] {
        let s = |f: SessionFilter| SessionFilter { since: Some(since), until: Some(now), ..f };
        let runs = a.runs;
        let r = &r;
        let q = |f: SessionFilter| move || r.sessions(&f).unwrap();
        time(runs, &format!("sessions newest 100 [{label}]"), q(s(SessionFilter::default())));
        time(
            runs,
            &format!("sessions client={busy} [{label}]"),
            q(s(SessionFilter { client: Some(Cidr { addr: busy, prefix: 32 }), ..Default::default() })),
        );
        time(
            runs,
            &format!("sessions client=10.20.7.0/24 [{label}]"),
            q(s(SessionFilter { client: Some("10.20.7.0/24".parse().unwrap()), ..Default::default() })),
        );
        time(
            runs,
            &format!("sessions app=App150 [{label}]"),
            q(s(SessionFilter { app: Some("App150".into()), ..Default::default() })),
        );
        time(
            runs,
            &format!("sessions hostname=*.app7.example.com [{label}]"),
            q(s(SessionFilter { hostname: Some("*.app7.example.com".into()), ..Default::default() })),
        );
        time(
            runs,
            &format!("sessions verdict=block [{label}]"),
            q(s(SessionFilter { verdict: Some("block".into()), ..Default::default() })),
        );
        for dim in [Dim::Apps, Dim::Categories, Dim::Clients, Dim::Domains] {
            time(runs, &format!("top {dim:?} by bytes, 10 [{label}]"), || r.top(dim, since, now, 10).unwrap());
        }
        time(runs, &format!("top Domains by sessions, 10 [{label}]"), || {
            r.top_by(Dim::Domains, since, now, 10, TopBy::Sessions).unwrap()
        });
        time(runs, &format!("blocked 100 [{label}]"), || r.blocked(since, now, 100).unwrap());
        time(runs, &format!("blocked by rule [{label}]"), || r.blocked_by_rule(since, now, 100).unwrap());
        time(runs, &format!("dns 100 [{label}]"), || {
            r.dns(&DnsFilter { since: Some(since), until: Some(now), limit: 100, ..Default::default() }).unwrap()
        });
        time(runs, &format!("dns query=*.app42.example.com [{label}]"), || {
            r.dns(&DnsFilter {
                since: Some(since),
                until: Some(now),
                query_suffix: Some("app42.example.com".into()),
                limit: 100,
                ..Default::default()
            })
            .unwrap()
        });
    }
}
