//! The ClickHouse sink against a real clickhouse-server: a private instance on free ports with a
//! temporary data directory, stopped and restarted mid-stream, and behind a proxy that loses
//! responses. Every row must land exactly once.
//!
//! Skipped (with a message) when no clickhouse-server is installed, except under CI (`CI` set),
//! where scripts/deps.sh installs it and a missing server is a failure.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_engine::{EndReason, FlowRecord, FlowVerdict, TcpState, Timestamp};
use vigil_sinks::clickhouse::Client;
use vigil_sinks::{ClickHouseConfig, ClickHouseSink, Record};

const USER: &str = "vigil";
const PASSWORD: &str = "t3st-pw";

/// The server command: a `clickhouse-server` binary, or the single `clickhouse` binary's `server`.
fn server_command() -> Option<(PathBuf, Vec<&'static str>)> {
    for p in ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server", "/usr/local/bin/clickhouse-server"] {
        if Path::new(p).exists() {
            return Some((p.into(), vec![]));
        }
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("clickhouse");
        if p.exists() {
            return Some((p, vec!["server"]));
        }
    }
    None
}

fn server_or_skip(test: &str) -> Option<(PathBuf, Vec<&'static str>)> {
    let found = server_command();
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: clickhouse-server is not installed (scripts/deps.sh installs it)");
        }
        eprintln!("{test}: SKIPPED: no clickhouse-server (apt-get install clickhouse-server)");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A private clickhouse-server.
struct Server {
    cmd: (PathBuf, Vec<&'static str>),
    dir: PathBuf,
    http_port: u16,
    child: Option<Child>,
}

impl Server {
    fn new(cmd: (PathBuf, Vec<&'static str>), name: &str) -> Server {
        let dir = std::env::temp_dir().join(format!("vigil-ch-real-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let http_port = free_port();
        let tcp_port = free_port();
        let d = dir.display();
        // `<yandex>` is the root 18.16 needs; current releases still accept it.
        std::fs::write(
            dir.join("config.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
  <logger><level>information</level><log>{d}/server.log</log><errorlog>{d}/server.err.log</errorlog><size>10M</size><count>1</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709120</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
"#
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("users.xml"),
            format!(
                r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
    <{USER}><password>{PASSWORD}</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></{USER}>
  </users>
  <quotas><default></default></quotas>
</yandex>
"#
            ),
        )
        .unwrap();
        Server { cmd, dir, http_port, child: None }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    fn client(&self) -> Client {
        Client::new(&ClickHouseConfig {
            url: self.url(),
            user: USER.into(),
            password: PASSWORD.into(),
            ..ClickHouseConfig::default()
        })
        .unwrap()
    }

    /// Starts it and waits for `/ping`; returns how long that took.
    fn start(&mut self) -> Duration {
        let t0 = Instant::now();
        let out = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("stdout.log")).unwrap();
        let child = Command::new(&self.cmd.0)
            .args(&self.cmd.1)
            .arg(format!("--config-file={}", self.dir.join("config.xml").display()))
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start clickhouse-server");
        self.child = Some(child);
        let client = self.client();
        while !client.ping() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("clickhouse-server exited with {status}: see {}", self.dir.display());
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "clickhouse-server not up after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        t0.elapsed()
    }

    /// SIGTERM, and waits for the exit; returns how long that took.
    fn stop(&mut self) -> Duration {
        let t0 = Instant::now();
        let Some(mut child) = self.child.take() else { return Duration::ZERO };
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        loop {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        t0.elapsed()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn session(id: u64) -> Record {
    let t = 1_795_717_905_000_000 + id * 1000;
    Record::from(FlowRecord {
        id,
        community_id: "1:LQU9qZlK+B5F3KDmev6m5PMibrg=".into(),
        in_if: Some("lan0".into()),
        out_if: Some("wan0".into()),
        client_mac: None,
        interim: false,
        bytes_source: "vigil".into(),
        proto: "tcp".into(),
        src: "192.168.1.10".parse().unwrap(),
        sport: (id % 60000) as u16 + 1024,
        dst: "93.184.216.34".parse().unwrap(),
        dport: 443,
        protocol: Arc::from("TLS"),
        protocol_guessed: false,
        app: Some(Arc::from("Example")),
        category: None,
        hostname: Some(Arc::from("www.example.com")),
        name_source: Some("sni".into()),
        ja4: None,
        alpn: vec!["h2".into()],
        alpn_selected: Some("h2".into()),
        dpi_packets: Some(1),
        tls_version: None,
        ech: false,
        cert_names: Vec::new(),
        http_method: None,
        http_path: None,
        user_agent: None,
        client_banner: None,
        server_banner: None,
        dhcp_hostname: None,
        dhcp_vendor_class: None,
        packets_c2s: 10,
        packets_s2c: 8,
        bytes_c2s: 1000 + id,
        bytes_s2c: 5000,
        first_seen: Timestamp(t),
        last_seen: Timestamp(t + 2_000_000),
        verdict: FlowVerdict::Allow,
        rule: None,
        tcp_state: Some(TcpState::Closed),
        end_reason: EndReason::Fin,
        offloaded: false,
        midstream: false,
    })
}

fn config(url: String, spool: PathBuf) -> ClickHouseConfig {
    ClickHouseConfig {
        url,
        database: "vigil".into(),
        user: USER.into(),
        password: PASSWORD.into(),
        gateway_id: "gw-test".into(),
        batch_max: 500,
        flush_interval: Duration::from_millis(50),
        spool_dir: spool,
        spool_max_bytes: 1 << 30,
        timeout: Duration::from_secs(10),
        close_timeout: Duration::from_secs(30),
        ..ClickHouseConfig::default()
    }
}

/// `count(), uniqExact(id)` of the sessions table, once it reaches `n` rows (or the deadline).
fn wait_for_rows(client: &Client, n: u64, within: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let out = client.query("SELECT count(), uniqExact(id) FROM vigil.sessions").unwrap_or_default();
        let count: u64 = out.split('\t').next().and_then(|c| c.parse().ok()).unwrap_or(0);
        if count >= n || t0.elapsed() > within {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_row_exactly_once_across_a_server_restart() {
    let Some(cmd) = server_or_skip("every_row_exactly_once_across_a_server_restart") else { return };
    let t_test = Instant::now();
    let mut srv = Server::new(cmd, "restart");
    let up = srv.start();
    let version = srv.client().query("SELECT version()").unwrap();
    eprintln!("clickhouse-server {version}: up in {up:.2?}");

    let spool = srv.dir.join("spool");
    let h = ClickHouseSink::start(config(srv.url(), spool.clone())).unwrap();
    const N: u64 = 10_000;
    let mut down_at = None;
    for id in 0..N {
        // A 64k queue never fills here; retry anyway so the count below is exact by construction.
        while !h.try_send(session(id)) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if id % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if id == 3_000 {
            let stop_took = srv.stop();
            down_at = Some(Instant::now());
            eprintln!("stopped at row {id} (SIGTERM to exit: {stop_took:.2?}); {:?}", h.stats());
        }
        if id == 7_000 {
            let restart_took = srv.start();
            eprintln!(
                "restarted at row {id} after {:.2?} down (up in {restart_took:.2?}); {:?}",
                down_at.unwrap().elapsed(),
                h.stats()
            );
        }
    }
    let client = srv.client();
    let out = wait_for_rows(&client, N, Duration::from_secs(60));
    let st = h.close();
    eprintln!("final {st:?}");
    // Nothing more may arrive after close, and no row twice.
    let out_after = client.query("SELECT count(), uniqExact(id), min(id), max(id) FROM vigil.sessions").unwrap();
    assert_eq!(out, format!("{N}\t{N}"));
    assert_eq!(out_after, format!("{N}\t{N}\t0\t{}", N - 1));
    assert_eq!((st.received, st.dropped_full, st.rows_spooled, st.rows_sent), (N, 0, N, N));
    assert_eq!((st.spool_files, st.rows_lost, st.spool_evicted_rows, st.rejected_rows), (0, 0, 0, 0));
    assert!(st.send_failures > 0, "the server was down: some attempts must have failed");
    // Each batch's rows all landed under one batch_id.
    let per_batch = client
        .query("SELECT count() FROM (SELECT batch_id, count() AS c, uniqExact(batch_row) AS r FROM vigil.sessions GROUP BY batch_id HAVING c != r)")
        .unwrap();
    assert_eq!(per_batch, "0");
    assert_eq!(std::fs::read_dir(&spool).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count(), 0);
    eprintln!("test took {:.2?}", t_test.elapsed());
}

/// A proxy that forwards each request to ClickHouse but, for the first `lose` INSERTs, drops
/// the connection instead of passing the answer back: the request reached the server, the sink
/// never hears so.
fn lossy_proxy(upstream: u16, lose: u64) -> (u16, Arc<AtomicU64>, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    l.set_nonblocking(true).unwrap();
    let lost = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (lo, st) = (lost.clone(), stop.clone());
    std::thread::spawn(move || {
        while !st.load(Ordering::Relaxed) {
            let Ok((client, _)) = l.accept() else {
                std::thread::sleep(Duration::from_millis(2));
                continue;
            };
            client.set_nonblocking(false).unwrap();
            let mut rd = BufReader::new(client.try_clone().unwrap());
            let mut head = String::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if rd.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                head.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            rd.read_exact(&mut body).unwrap();
            let mut up = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            up.write_all(head.as_bytes()).unwrap();
            up.write_all(&body).unwrap();
            let mut resp = Vec::new();
            up.read_to_end(&mut resp).unwrap();
            let insert = head.starts_with("POST /?query=INSERT");
            if insert && lo.load(Ordering::Relaxed) < lose {
                lo.fetch_add(1, Ordering::Relaxed);
                drop(client); // the answer is lost
                continue;
            }
            let mut c = client;
            let _ = c.write_all(&resp);
        }
    });
    (port, lost, stop)
}

#[test]
fn a_lost_response_does_not_duplicate_a_batch() {
    let Some(cmd) = server_or_skip("a_lost_response_does_not_duplicate_a_batch") else { return };
    let mut srv = Server::new(cmd, "lossy");
    srv.start();
    let (proxy_port, lost, stop) = lossy_proxy(srv.http_port, 3);
    let spool = srv.dir.join("spool");
    let h = ClickHouseSink::start(config(format!("http://127.0.0.1:{proxy_port}"), spool)).unwrap();
    const N: u64 = 2_000;
    for id in 0..N {
        assert!(h.try_send(session(id)));
        if id % 100 == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let st = h.close();
    stop.store(true, Ordering::Relaxed);
    eprintln!("{st:?}");
    assert_eq!(lost.load(Ordering::Relaxed), 3);
    let out = srv.client().query("SELECT count(), uniqExact(id) FROM vigil.sessions").unwrap();
    assert_eq!(out, format!("{N}\t{N}"));
    assert_eq!(st.batches_found_present, 3, "each lost answer is found delivered, not re-sent");
    assert_eq!((st.rows_sent, st.spool_files), (N, 0));
}

/// The sessions table as an older vigil created it, before the application-layer details.
const OLD_SESSIONS_DDL: &str = "CREATE TABLE IF NOT EXISTS vigil.sessions (gateway_id String, batch_id String, \
    batch_row UInt32, id UInt64, interim UInt8, \
    first_seen DateTime, first_seen_us UInt64, last_seen DateTime, last_seen_us UInt64, \
    proto String, src String, sport UInt16, dst String, dport UInt16, \
    protocol String, protocol_guessed UInt8, app Nullable(String), category Nullable(String), \
    hostname Nullable(String), name_source Nullable(String), ja4 Nullable(String), \
    alpn Array(String), alpn_selected Nullable(String), dpi_packets Nullable(UInt32), \
    packets_c2s UInt64, packets_s2c UInt64, bytes_c2s UInt64, bytes_s2c UInt64, \
    verdict String, rule Nullable(String), tcp_state Nullable(String), end_reason String, \
    offloaded UInt8, midstream UInt8, community_id String, \
    in_if Nullable(String), out_if Nullable(String), client_mac Nullable(String)) \
    ENGINE = MergeTree() PARTITION BY toYYYYMMDD(first_seen) ORDER BY (gateway_id, first_seen, id)";

/// Session `id` with the application-layer details of an SSH, TLS, HTTP or DHCP flow (id % 4).
fn detailed_session(id: u64) -> Record {
    let Record::Flow(mut f) = session(id) else { unreachable!() };
    match id % 4 {
        0 => {
            f.protocol = Arc::from("SSH");
            f.client_banner = Some("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10".into());
            f.server_banner = Some("SSH-2.0-OpenSSH_8.4p1".into());
        }
        1 => {
            f.tls_version = Some("TLSv1.2".into());
            f.ech = true;
            f.cert_names = vec!["legacy.example-shop.test".into(), "*.example-shop.test".into()];
        }
        2 => {
            f.protocol = Arc::from("HTTP");
            f.http_method = Some("GET".into());
            f.http_path = Some("/index.html?q=1".into());
            f.user_agent = Some("curl/7.88.1".into());
            f.server_banner = Some("SimpleHTTP/0.6 Python/3.11.7".into());
        }
        _ => {
            f.protocol = Arc::from("DHCP");
            f.dhcp_hostname = Some("Lucas-iMac".into());
            f.dhcp_vendor_class = Some("MSFT 5.0".into());
        }
    }
    Record::Flow(f)
}

#[test]
fn a_table_made_by_an_older_vigil_gets_the_new_columns() {
    let Some(cmd) = server_or_skip("a_table_made_by_an_older_vigil_gets_the_new_columns") else { return };
    let mut srv = Server::new(cmd, "upgrade");
    srv.start();
    let client = srv.client();
    client.query("CREATE DATABASE IF NOT EXISTS vigil").unwrap();
    client.query(OLD_SESSIONS_DDL).unwrap();
    // A row the older vigil stored.
    client
        .insert(
            "vigil.sessions",
            "old-batch",
            br#"{"gateway_id":"gw-old","batch_id":"old","batch_row":0,"id":999999,"first_seen":1795717905,"first_seen_us":1795717905000000,"protocol":"SSH","verdict":"allow","end_reason":"fin"}
"#,
        )
        .unwrap();

    const N: u64 = 400;
    let spool = srv.dir.join("spool");
    let h = ClickHouseSink::start(config(srv.url(), spool.clone())).unwrap();
    for id in 0..N {
        assert!(h.try_send(detailed_session(id)));
    }
    let st = h.close();
    assert_eq!((st.rows_sent, st.send_failures, st.rejected_rows, st.spool_files), (N, 0, 0, 0), "{st:?}");

    let q = |sql: &str| client.query(sql).unwrap();
    assert_eq!(
        q("SELECT name, type FROM system.columns WHERE database = 'vigil' AND table = 'sessions' \
           AND name IN ('tls_version', 'ech', 'cert_names', 'http_method', 'http_path', 'user_agent', \
           'client_banner', 'server_banner', 'dhcp_hostname', 'dhcp_vendor_class')"),
        "tls_version\tNullable(String)\nech\tUInt8\ncert_names\tArray(String)\nhttp_method\tNullable(String)\n\
         http_path\tNullable(String)\nuser_agent\tNullable(String)\nclient_banner\tNullable(String)\n\
         server_banner\tNullable(String)\ndhcp_hostname\tNullable(String)\ndhcp_vendor_class\tNullable(String)"
    );
    assert_eq!(q("SELECT count(), uniqExact(id) FROM vigil.sessions"), format!("{}\t{}", N + 1, N + 1));
    assert_eq!(
        q("SELECT id, protocol, tls_version, ech, cert_names, http_method, http_path, user_agent, client_banner, \
           server_banner, dhcp_hostname, dhcp_vendor_class FROM vigil.sessions \
           WHERE id IN (4, 5, 6, 7, 999999) ORDER BY id"),
        "4\tSSH\t\\N\t0\t[]\t\\N\t\\N\t\\N\tSSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\tSSH-2.0-OpenSSH_8.4p1\t\\N\t\\N\n\
         5\tTLS\tTLSv1.2\t1\t['legacy.example-shop.test','*.example-shop.test']\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n\
         6\tHTTP\t\\N\t0\t[]\tGET\t/index.html?q=1\tcurl/7.88.1\t\\N\tSimpleHTTP/0.6 Python/3.11.7\t\\N\t\\N\n\
         7\tDHCP\t\\N\t0\t[]\t\\N\t\\N\t\\N\t\\N\t\\N\tLucas-iMac\tMSFT 5.0\n\
         999999\tSSH\t\\N\t0\t[]\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N"
    );
    // A second run finds the columns there and goes on.
    let h = ClickHouseSink::start(config(srv.url(), spool)).unwrap();
    assert!(h.try_send(detailed_session(N)));
    let st = h.close();
    assert_eq!((st.rows_sent, st.send_failures), (1, 0), "{st:?}");
    assert_eq!(q("SELECT count() FROM vigil.sessions"), format!("{}", N + 2));
}
