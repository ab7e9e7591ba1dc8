//! The ClickHouse sink's SQL against a current ClickHouse release: scripts/chdb_http.py, a small
//! HTTP front end over chdb (ClickHouse 26.9's engine as a Python library, from PyPI's
//! chdb-core), on a free port with a temporary data directory. The DDL, the JSONEachRow inserts
//! and the presence queries must work on it, every row must land exactly once, values must
//! round-trip, and a restart of the front end on the same data must lose and duplicate nothing.
//! The HTTP layer of a real server is covered by tests/clickhouse_real.rs (Debian's 18.16).
//!
//! The Python comes from `VIGIL_CHDB_PYTHON`, else `target/chdb-venv/bin/python` (scripts/deps.sh
//! makes it), else `python3`, whichever can `import chdb`. Skipped (with a message) when none
//! can, except under CI (`CI` set), where that is a failure.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_engine::{EndReason, FlowRecord, FlowVerdict, TcpState, Timestamp};
use vigil_sinks::clickhouse::{Client, Table};
use vigil_sinks::{BlockRecord, ClickHouseConfig, ClickHouseSink, DnsRecord, Record};

const USER: &str = "vigil";
const PASSWORD: &str = "t3st-pw";
/// 2026-11-26T18:31:45Z.
const T0: u64 = 1_795_717_905_000_000;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn imports_chdb(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import chdb"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A Python that can `import chdb`.
fn chdb_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("VIGIL_CHDB_PYTHON") {
        let p = PathBuf::from(p);
        return imports_chdb(&p).then_some(p);
    }
    [workspace_root().join("target/chdb-venv/bin/python"), PathBuf::from("python3")]
        .into_iter()
        .find(|p| imports_chdb(p))
}

fn python_or_skip(test: &str) -> Option<PathBuf> {
    let found = chdb_python();
    if found.is_none() {
        let which = match std::env::var("VIGIL_CHDB_PYTHON") {
            Ok(p) => format!("VIGIL_CHDB_PYTHON={p} cannot import chdb"),
            Err(_) => "no python with chdb".into(),
        };
        if std::env::var_os("CI").is_some() {
            panic!("{test}: {which} (scripts/deps.sh makes target/chdb-venv)");
        }
        eprintln!(
            "{test}: SKIPPED: {which} (run scripts/deps.sh as root, or set VIGIL_CHDB_PYTHON to a python \
             where `pip install --no-deps chdb-core==26.9.0` was done)"
        );
    }
    found
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// scripts/chdb_http.py on a free port, its data in a private directory.
struct Shim {
    python: PathBuf,
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl Shim {
    fn new(python: PathBuf, name: &str) -> Shim {
        let dir = std::env::temp_dir().join(format!("vigil-ch-current-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Shim { python, dir, port: free_port(), child: None }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
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

    /// Starts it on its port and data directory and waits for `/ping`; returns how long that took.
    fn start(&mut self) -> Duration {
        let t0 = Instant::now();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("shim.log")).unwrap();
        let child = Command::new(&self.python)
            .arg(workspace_root().join("scripts/chdb_http.py"))
            .args(["--port", &self.port.to_string(), "--user", USER, "--password", PASSWORD, "--data"])
            .arg(self.dir.join("data"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start scripts/chdb_http.py");
        self.child = Some(child);
        let client = self.client();
        while !client.ping() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.join("shim.log")).unwrap_or_default();
                panic!("chdb_http.py exited with {status}:\n{log}");
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "chdb_http.py not up after 60 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        t0.elapsed()
    }

    /// SIGTERM (it finishes the running query and exits), and waits for the exit.
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

impl Drop for Shim {
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
fn session(id: u64) -> Record {
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
        ja4: None,
        alpn: if even { vec!["h2".into(), "http/1.1".into()] } else { vec![] },
        alpn_selected: even.then(|| "h2".into()),
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

/// DNS answer `i`: every third one has no latency (the query was not seen).
fn dns(i: u64) -> Record {
    Record::from(DnsRecord {
        ts: Timestamp(T0 + i * 1000 + 1),
        proto: "udp".into(),
        client: "192.168.1.10".parse().unwrap(),
        sport: 40000 + (i % 1000) as u16,
        server: "192.168.1.1".parse().unwrap(),
        dport: 53,
        query: format!("host{i}.example.com"),
        qtype: if i.is_multiple_of(2) { 1 } else { 28 },
        rcode: 0,
        answers: vec!["example.com".into(), "93.184.216.34".into()],
        latency_us: (!i.is_multiple_of(3)).then_some(1500 + i),
        flow_id: i,
    })
}

fn block(i: u64) -> Record {
    Record::from(BlockRecord {
        ts: Timestamp(T0 + i * 1000 + 2),
        flow_id: 100_000 + i,
        proto: "tcp".into(),
        client: "192.168.1.10".parse().unwrap(),
        sport: 50000 + (i % 1000) as u16,
        server: "203.0.113.5".parse().unwrap(),
        dport: 443,
        rule: Some(Arc::from("no-social")),
        action: FlowVerdict::Block,
        reason: "policy".into(),
        protocol: Some(Arc::from("TLS")),
        hostname: Some(Arc::from("social.example")),
        app: None,
        category: Some(Arc::from("social")),
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

/// Rows, distinct `(batch_id, batch_row)` and distinct `key` of a table, as "rows\tpairs\tkeys".
fn counts(client: &Client, table: &str, key: &str) -> String {
    client
        .query(&format!("SELECT count(), uniqExact(batch_id, batch_row), uniqExact({key}) FROM vigil.{table}"))
        .unwrap()
}

/// Waits until `vigil.sessions` holds `n` rows (or the deadline); returns its counts.
fn wait_for_sessions(client: &Client, n: u64, within: Duration) -> String {
    let t0 = Instant::now();
    loop {
        let out = client.query("SELECT count() FROM vigil.sessions").unwrap_or_default();
        if out.parse::<u64>().unwrap_or(0) >= n || t0.elapsed() > within {
            return counts(client, "sessions", "id");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn spool_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    v.sort();
    v
}

#[test]
fn tables_rows_and_values_on_clickhouse_26() {
    let Some(python) = python_or_skip("tables_rows_and_values_on_clickhouse_26") else { return };
    let mut shim = Shim::new(python, "values");
    let up = shim.start();
    let client = shim.client();
    let version = client.query("SELECT version()").unwrap();
    eprintln!("ClickHouse {version} (chdb, through scripts/chdb_http.py): up in {up:.2?}");
    assert!(version.starts_with("26."), "version {version}");

    let spool = shim.dir.join("spool");
    let h = ClickHouseSink::start(config(shim.url(), spool.clone())).unwrap();
    const N: u64 = 2_000;
    for i in 0..N {
        assert!(h.try_send(session(i)));
        assert!(h.try_send(dns(i)));
        assert!(h.try_send(block(i)));
        if i % 100 == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let st = h.close();
    eprintln!("{st:?}");
    assert_eq!((st.received, st.rows_spooled, st.rows_sent), (3 * N, 3 * N, 3 * N), "{st:?}");
    assert_eq!((st.send_failures, st.rejected_rows, st.spool_files), (0, 0, 0), "{st:?}");

    // The tables, as the DDL made them.
    let tables = client
        .query(
            "SELECT name, engine, partition_key, sorting_key FROM system.tables WHERE database = 'vigil' ORDER BY name",
        )
        .unwrap();
    assert_eq!(
        tables,
        "blocks\tMergeTree\ttoYYYYMMDD(ts)\tgateway_id, ts, client\n\
         dns\tMergeTree\ttoYYYYMMDD(ts)\tgateway_id, ts, client\n\
         sessions\tMergeTree\ttoYYYYMMDD(first_seen)\tgateway_id, first_seen, id"
    );

    // Every row exactly once.
    let all = format!("{N}\t{N}\t{N}");
    assert_eq!(counts(&client, "sessions", "id"), all);
    assert_eq!(counts(&client, "dns", "query"), all);
    assert_eq!(counts(&client, "blocks", "flow_id"), all);

    // Values: Nullable, Array, DateTime (seconds and the microsecond column), addresses as text.
    let q = |sql: &str| client.query(sql).unwrap();
    assert_eq!(
        q("SELECT id, hostname, alpn, alpn_selected, toUnixTimestamp(first_seen), first_seen_us, \
           toUnixTimestamp(last_seen), dst, dport, bytes_c2s, tcp_state, end_reason, verdict, category \
           FROM vigil.sessions WHERE id IN (10, 11) ORDER BY id"),
        "10\twww.example.com\t['h2','http/1.1']\th2\t1795717905\t1795717905010000\t1795717907\t2001:db8::34\t443\t1010\tclosed\tfin\tallow\t\\N\n\
         11\t\\N\t[]\t\\N\t1795717905\t1795717905011000\t1795717907\t2001:db8::34\t443\t1011\tclosed\tfin\tallow\t\\N"
    );
    assert_eq!(
        q("SELECT countIf(hostname IS NULL), countIf(empty(alpn)), countIf(category IS NULL), \
           toString(min(first_seen)), max(last_seen_us) FROM vigil.sessions"),
        format!("{}\t{}\t{N}\t2026-11-26 18:31:45\t{}", N / 2, N / 2, T0 + (N - 1) * 1000 + 2_000_000)
    );
    assert_eq!(
        q("SELECT query, qtype, qtype_name, rcode_name, answers, latency_us, ts_us FROM vigil.dns \
           WHERE flow_id IN (3, 4) ORDER BY flow_id"),
        "host3.example.com\t28\tAAAA\tNOERROR\t['example.com','93.184.216.34']\t\\N\t1795717905003001\n\
         host4.example.com\t1\tA\tNOERROR\t['example.com','93.184.216.34']\t1504\t1795717905004001"
    );
    assert_eq!(
        q("SELECT rule, action, reason, hostname, app, category, toUnixTimestamp(ts) FROM vigil.blocks \
           WHERE flow_id = 100007"),
        "no-social\tblock\tpolicy\tsocial.example\t\\N\tsocial\t1795717905"
    );
    // Each batch's rows all under one batch_id, numbered from 0.
    assert_eq!(
        q("SELECT count() FROM (SELECT batch_id, count() AS c, uniqExact(batch_row) AS r, max(batch_row) AS m \
           FROM vigil.sessions GROUP BY batch_id HAVING c != r OR m != c - 1)"),
        "0"
    );
}

#[test]
fn every_row_exactly_once_across_a_restart_of_the_front_end() {
    let Some(python) = python_or_skip("every_row_exactly_once_across_a_restart_of_the_front_end") else { return };
    let mut shim = Shim::new(python, "restart");
    shim.start();
    let spool = shim.dir.join("spool");
    let h = ClickHouseSink::start(config(shim.url(), spool.clone())).unwrap();
    const N: u64 = 6_000;
    let mut down_at = None;
    for id in 0..N {
        while !h.try_send(session(id)) {
            std::thread::sleep(Duration::from_millis(1));
        }
        if id % 20 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
        if id == 2_000 {
            let took = shim.stop();
            down_at = Some(Instant::now());
            eprintln!("stopped at row {id} (SIGTERM to exit: {took:.2?}); {:?}", h.stats());
        }
        if id == 4_000 {
            let took = shim.start();
            eprintln!(
                "restarted at row {id} after {:.2?} down (up in {took:.2?}); {:?}",
                down_at.unwrap().elapsed(),
                h.stats()
            );
        }
    }
    let client = shim.client();
    let out = wait_for_sessions(&client, N, Duration::from_secs(60));
    let st = h.close();
    eprintln!("final {st:?}");
    assert_eq!(out, format!("{N}\t{N}\t{N}"));
    assert_eq!(counts(&client, "sessions", "id"), format!("{N}\t{N}\t{N}"), "nothing more after close");
    assert_eq!((st.received, st.dropped_full, st.rows_spooled, st.rows_sent), (N, 0, N, N), "{st:?}");
    assert_eq!((st.spool_files, st.rows_lost, st.spool_evicted_rows, st.rejected_rows), (0, 0, 0, 0), "{st:?}");
    assert!(st.send_failures > 0, "the front end was down: some attempts must have failed");
    assert!(spool_files(&spool).is_empty());
}

/// Batches left in the spool by a run that could not deliver are checked before being sent: one
/// found whole on the server, one in part, one not at all. This runs the presence queries
/// (system.processes, count() by primary key range, DISTINCT batch_row) on 26.9.
#[test]
fn leftover_batches_are_checked_then_completed() {
    let Some(python) = python_or_skip("leftover_batches_are_checked_then_completed") else { return };
    let mut shim = Shim::new(python, "leftover");
    let spool = shim.dir.join("spool");
    // A first run with nothing listening: three batches of 100 stay in the spool.
    let mut cfg = config(shim.url(), spool.clone());
    cfg.batch_max = 100;
    cfg.close_timeout = Duration::ZERO;
    cfg.connect_timeout = Duration::from_millis(200);
    let h = ClickHouseSink::start(cfg.clone()).unwrap();
    for id in 0..300 {
        assert!(h.try_send(session(id)));
    }
    assert_eq!(h.close().spool_files, 3);
    let files = spool_files(&spool);
    assert_eq!(files.len(), 3);

    // The server got the first batch whole and rows 0, 2 and 99 of the second (as if the answers
    // had been lost), none of the third.
    shim.start();
    let client = shim.client();
    client.query("CREATE DATABASE IF NOT EXISTS vigil").unwrap();
    client.query(&Table::Sessions.create_sql("vigil")).unwrap();
    let rows = |f: &Path| -> Vec<String> {
        std::fs::read_to_string(f).unwrap().lines().skip(1).map(|l| format!("{l}\n")).collect()
    };
    let first = rows(&files[0]);
    client.insert("vigil.sessions", "pre-1", first.concat().as_bytes()).unwrap();
    let second = rows(&files[1]);
    let some: String = [0, 2, 99].iter().map(|&i| second[i].as_str()).collect();
    client.insert("vigil.sessions", "pre-2", some.as_bytes()).unwrap();
    assert_eq!(client.query("SELECT count() FROM vigil.sessions").unwrap(), "103");

    cfg.close_timeout = Duration::from_secs(30);
    let st = ClickHouseSink::start(cfg).unwrap().close();
    eprintln!("{st:?}");
    assert_eq!((st.batches_found_present, st.batches_partial, st.batches_sent), (1, 1, 3), "{st:?}");
    assert_eq!((st.rows_sent, st.send_failures, st.spool_files), (300, 0, 0), "{st:?}");
    assert_eq!(counts(&client, "sessions", "id"), "300\t300\t300");
    assert!(spool_files(&spool).is_empty());
}

/// A table dropped under a running sink: the insert fails with UNKNOWN_TABLE in a current
/// release's wording, the sink makes the schema again and delivers.
#[test]
fn a_dropped_table_is_created_again() {
    let Some(python) = python_or_skip("a_dropped_table_is_created_again") else { return };
    let mut shim = Shim::new(python, "dropped");
    shim.start();
    let client = shim.client();
    let mut cfg = config(shim.url(), shim.dir.join("spool"));
    cfg.close_timeout = Duration::from_secs(10);
    let h = ClickHouseSink::start(cfg).unwrap();
    for i in 0..100 {
        assert!(h.try_send(dns(i)));
    }
    let t0 = Instant::now();
    while client.query("SELECT count() FROM vigil.dns").ok().as_deref() != Some("100") {
        assert!(t0.elapsed() < Duration::from_secs(10), "first 100 not delivered");
        std::thread::sleep(Duration::from_millis(20));
    }
    client.query("DROP TABLE vigil.dns").unwrap();
    for i in 100..200 {
        assert!(h.try_send(dns(i)));
    }
    let st = h.close();
    eprintln!("{st:?}");
    assert_eq!((st.rows_sent, st.spool_files), (200, 0), "{st:?}");
    assert!(st.send_failures >= 1, "{st:?}");
    assert_eq!(client.query("SELECT count(), min(flow_id) FROM vigil.dns").unwrap(), "100\t100");
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
fn a_table_made_by_an_older_vigil_gets_the_new_columns_on_clickhouse_26() {
    let Some(python) = python_or_skip("a_table_made_by_an_older_vigil_gets_the_new_columns_on_clickhouse_26") else {
        return;
    };
    let mut shim = Shim::new(python, "upgrade");
    shim.start();
    let client = shim.client();
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
    let spool = shim.dir.join("spool");
    let h = ClickHouseSink::start(config(shim.url(), spool.clone())).unwrap();
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
    let h = ClickHouseSink::start(config(shim.url(), spool)).unwrap();
    assert!(h.try_send(detailed_session(N)));
    let st = h.close();
    assert_eq!((st.rows_sent, st.send_failures), (1, 0), "{st:?}");
    assert_eq!(q("SELECT count() FROM vigil.sessions"), format!("{}", N + 2));
}
