//! What tests/clickhouse_real.rs (Debian's clickhouse-server 18.16) and
//! tests/clickhouse_current.rs (ClickHouse 26.9 through scripts/chdb_http.py) share: the running
//! instance (a private directory and a free port; how each is started stays in its file), the
//! records and the sink's configuration, the count queries, and the tests that run the same on
//! both releases.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_engine::{EndReason, FlowRecord, FlowVerdict, TcpState, Timestamp};
use vigil_sinks::clickhouse::Client;
use vigil_sinks::{ClickHouseConfig, ClickHouseSink, Record};

pub const USER: &str = "vigil";
pub const PASSWORD: &str = "t3st-pw";
/// 2026-11-26T18:31:45Z.
pub const T0: u64 = 1_795_717_905_000_000;

/// `found`, or None after saying that `test` is skipped for want of it; under CI (`CI` set), where
/// scripts/deps.sh installs the servers, a failure.
pub fn or_skip<T>(test: &str, found: Option<T>, missing: &str, in_ci: &str, locally: &str) -> Option<T> {
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!("{test}: {missing} ({in_ci})");
        }
        eprintln!("{test}: SKIPPED: {missing} ({locally})");
    }
    found
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A ClickHouse server (or HTTP front end) on a free port, its files in a private directory.
/// Dropping it kills it and removes the directory, which a failed test leaves for a look.
pub struct Instance {
    /// In messages: "clickhouse-server", "chdb_http.py".
    what: &'static str,
    pub dir: PathBuf,
    /// Its HTTP port.
    pub port: u16,
    /// The command that runs it, given the instance.
    command: Box<dyn Fn(&Instance) -> Command>,
    child: Option<Child>,
}

impl Instance {
    /// An instance that `command` runs, in an empty `vigil-ch-{kind}-{name}-{pid}` directory in
    /// the temporary directory.
    pub fn new(
        what: &'static str,
        kind: &str,
        name: &str,
        command: impl Fn(&Instance) -> Command + 'static,
    ) -> Instance {
        let dir = std::env::temp_dir().join(format!("vigil-ch-{kind}-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Instance { what, dir, port: free_port(), command: Box::new(command), child: None }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn client(&self) -> Client {
        Client::new(&ClickHouseConfig {
            url: self.url(),
            user: USER.into(),
            password: PASSWORD.into(),
            ..ClickHouseConfig::default()
        })
        .unwrap()
    }

    /// Starts it (its output to output.log in its directory) and waits for `/ping`; returns how
    /// long that took.
    pub fn start(&mut self) -> Duration {
        let t0 = Instant::now();
        let log_path = self.dir.join("output.log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).unwrap();
        let what = self.what;
        let child = (self.command)(self)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {what}: {e}"));
        self.child = Some(child);
        let client = self.client();
        while !client.ping() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                panic!("{what} exited with {status} (see {}):\n{log}", self.dir.display());
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "{what} not up after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        t0.elapsed()
    }

    /// SIGTERM, and waits for the exit (SIGKILL after 30 s); returns how long that took.
    pub fn stop(&mut self) -> Duration {
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

impl Drop for Instance {
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

/// Session `id`: odd ids have no hostname and no ALPN, even ones both.
pub fn session(id: u64) -> Record {
    let t = T0 + id * 1000;
    let even = id.is_multiple_of(2);
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
        dst: "2001:db8::34".parse().unwrap(),
        dport: 443,
        protocol: Arc::from("TLS"),
        protocol_guessed: false,
        app: Some(Arc::from("Example")),
        category: None,
        hostname: even.then(|| Arc::from("www.example.com")),
        name_source: even.then(|| "sni".into()),
        app_source: None,
        ja4: None,
        alpn: if even { vec!["h2".into(), "http/1.1".into()] } else { vec![] },
        alpn_selected: even.then(|| "h2".into()),
        dpi_packets: Some(1),
        details: Default::default(),
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

/// Session `id` with the application-layer details of an SSH, TLS, HTTP or DHCP flow (id % 4).
pub fn detailed_session(id: u64) -> Record {
    let Record::Flow(mut f) = session(id) else { unreachable!() };
    match id % 4 {
        0 => {
            f.protocol = Arc::from("SSH");
            f.details.client_banner = Some("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10".into());
            f.details.server_banner = Some("SSH-2.0-OpenSSH_8.4p1".into());
        }
        1 => {
            f.details.tls_version = Some("TLSv1.2".into());
            f.details.ech = true;
            f.details.cert_names = vec!["legacy.example-shop.test".into(), "*.example-shop.test".into()];
        }
        2 => {
            f.protocol = Arc::from("HTTP");
            f.details.http_method = Some("GET".into());
            f.details.http_path = Some("/index.html?q=1".into());
            f.details.user_agent = Some("curl/7.88.1".into());
            f.details.server_banner = Some("SimpleHTTP/0.6 Python/3.11.7".into());
        }
        _ => {
            f.protocol = Arc::from("DHCP");
            f.details.dhcp_hostname = Some("Lucas-iMac".into());
            f.details.dhcp_vendor_class = Some("MSFT 5.0".into());
        }
    }
    Record::Flow(f)
}

pub fn config(url: String, spool: PathBuf) -> ClickHouseConfig {
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

/// Rows, distinct `(batch_id, batch_row)` and distinct `key` of a table, as "rows\tpairs\tkeys".
pub fn counts(client: &Client, table: &str, key: &str) -> String {
    client
        .query(&format!("SELECT count(), uniqExact(batch_id, batch_row), uniqExact({key}) FROM vigil.{table}"))
        .unwrap()
}

/// Waits until `vigil.sessions` holds `n` rows (or the deadline); returns its counts.
pub fn wait_for_sessions(client: &Client, n: u64, within: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let out = client.query("SELECT count() FROM vigil.sessions").unwrap_or_default();
        if out.parse::<u64>().unwrap_or(0) >= n || t0.elapsed() > within {
            return counts(client, "sessions", "id");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` sessions to the running `ch`, which is stopped at row `stop_at` and started again at row
/// `start_at`: every row lands exactly once, each batch under one batch_id, and nothing is left
/// in the spool.
pub fn every_row_exactly_once_across_a_restart(ch: &mut Instance, n: u64, stop_at: u64, start_at: u64) {
    let spool = ch.dir.join("spool");
    let h = ClickHouseSink::start(config(ch.url(), spool.clone())).unwrap();
    let mut down_at = None;
    for id in 0..n {
        // A 64k queue never fills here; retry anyway so the count below is exact by construction.
        while !h.try_send(session(id)) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if id % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if id == stop_at {
            let took = ch.stop();
            down_at = Some(Instant::now());
            eprintln!("stopped at row {id} (SIGTERM to exit: {took:.2?}); {:?}", h.stats());
        }
        if id == start_at {
            let took = ch.start();
            eprintln!(
                "restarted at row {id} after {:.2?} down (up in {took:.2?}); {:?}",
                down_at.unwrap().elapsed(),
                h.stats()
            );
        }
    }
    let client = ch.client();
    let out = wait_for_sessions(&client, n, Duration::from_secs(60));
    let st = h.close();
    eprintln!("final {st:?}");
    assert_eq!(out, format!("{n}\t{n}\t{n}"));
    // Nothing more may arrive after close, and no row twice.
    assert_eq!(
        client.query("SELECT count(), uniqExact(id), min(id), max(id) FROM vigil.sessions").unwrap(),
        format!("{n}\t{n}\t0\t{}", n - 1),
        "nothing more after close"
    );
    assert_eq!((st.received, st.dropped_full, st.rows_spooled, st.rows_sent), (n, 0, n, n), "{st:?}");
    assert_eq!((st.spool_files, st.rows_lost, st.spool_evicted_rows, st.rejected_rows), (0, 0, 0, 0), "{st:?}");
    assert!(st.send_failures > 0, "the server was down: some attempts must have failed");
    // Each batch's rows all landed under one batch_id.
    let per_batch = client
        .query("SELECT count() FROM (SELECT batch_id, count() AS c, uniqExact(batch_row) AS r FROM vigil.sessions GROUP BY batch_id HAVING c != r)")
        .unwrap();
    assert_eq!(per_batch, "0");
    assert_eq!(std::fs::read_dir(&spool).unwrap().filter(|e| e.as_ref().unwrap().path().is_file()).count(), 0);
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

/// On the running `ch`, a sessions table as an older vigil made it, with a row: the sink adds the
/// new columns (the old row reads them as NULL / 0 / []), stores the details, and a second run
/// finds the columns there.
pub fn a_table_made_by_an_older_vigil_gets_the_new_columns(ch: &Instance) {
    let client = ch.client();
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
    let spool = ch.dir.join("spool");
    let h = ClickHouseSink::start(config(ch.url(), spool.clone())).unwrap();
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
    let h = ClickHouseSink::start(config(ch.url(), spool)).unwrap();
    assert!(h.try_send(detailed_session(N)));
    let st = h.close();
    assert_eq!((st.rows_sent, st.send_failures), (1, 0), "{st:?}");
    assert_eq!(q("SELECT count() FROM vigil.sessions"), format!("{}", N + 2));
}
