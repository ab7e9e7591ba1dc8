use super::*;
use crate::testutil;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;

/// One request the fake server received.
#[derive(Debug, Clone)]
struct Req {
    line: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    fn header(&self, k: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str())
    }
    fn is_insert(&self) -> bool {
        self.line.contains("INSERT%20INTO")
    }
}

type Responder = dyn Fn(&Req) -> (u16, String) + Send + Sync;

/// A stand-in for ClickHouse's HTTP interface: answers with `respond`, records the requests.
struct FakeServer {
    port: u16,
    reqs: Arc<Mutex<Vec<Req>>>,
    stop: Arc<AtomicBool>,
}

impl FakeServer {
    fn start(respond: Box<Responder>) -> FakeServer {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let reqs = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, s) = (reqs.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((sock, _)) = l.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                sock.set_nonblocking(false).unwrap();
                let mut rd = BufReader::new(sock.try_clone().unwrap());
                let mut line = String::new();
                rd.read_line(&mut line).unwrap();
                let mut headers = Vec::new();
                let mut len = 0;
                loop {
                    let mut h = String::new();
                    rd.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap();
                    }
                    headers.push((k.to_string(), v.trim().to_string()));
                }
                let mut body = vec![0; len];
                rd.read_exact(&mut body).unwrap();
                let req = Req { line: line.trim().into(), headers, body: String::from_utf8(body).unwrap() };
                let (code, text) = respond(&req);
                r.lock().unwrap().push(req);
                let mut w = sock;
                let _ =
                    write!(w, "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len());
            }
        });
        FakeServer { port, reqs, stop }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    fn requests(&self) -> Vec<Req> {
        self.reqs.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn ok_server() -> FakeServer {
    FakeServer::start(Box::new(|_| (200, String::new())))
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vigil-ch-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

fn config(url: String, spool: &Path) -> ClickHouseConfig {
    ClickHouseConfig {
        url,
        user: "vigil".into(),
        password: "s3cret".into(),
        gateway_id: "gw1".into(),
        batch_max: 3,
        flush_interval: Duration::from_millis(20),
        spool_dir: spool.to_path_buf(),
        close_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_millis(500),
        timeout: Duration::from_secs(5),
        ..ClickHouseConfig::default()
    }
}

fn spool_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jsonl"))
        .collect();
    v.sort();
    v
}

fn flow(id: u64) -> Record {
    let mut f = testutil::tls_flow();
    f.id = id;
    Record::from(f)
}

/// A port nothing listens on.
fn closed_port() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    drop(l);
    url
}

/// A previous run's leftover: the flows `ids` spooled in `dir` while no server answered. Returns
/// the configuration to start again with.
fn spooled(dir: &Path, ids: std::ops::Range<u64>) -> ClickHouseConfig {
    let mut cfg = config(closed_port(), dir);
    cfg.close_timeout = Duration::ZERO;
    let h = ClickHouseSink::start(cfg.clone()).unwrap();
    for i in ids {
        h.try_send(flow(i));
    }
    assert_eq!(h.close().spool_files, 1);
    cfg
}

/// Starts again with `cfg` against `srv` and closes once the spool is worked off.
fn resume(mut cfg: ClickHouseConfig, srv: &FakeServer) -> SinkStats {
    cfg.url = srv.url();
    cfg.close_timeout = Duration::from_secs(5);
    ClickHouseSink::start(cfg).unwrap().close()
}

/// The `column` of every row the INSERTs among `reqs` carried, in order.
fn inserted(reqs: &[Req], column: &str) -> Vec<u64> {
    reqs.iter()
        .filter(|r| r.is_insert())
        .flat_map(|r| {
            r.body.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()[column].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn ddl_is_clickhouse_18_16_compatible() {
    for t in Table::ALL {
        let sql = t.create_sql("vigil");
        assert!(sql.starts_with(&format!("CREATE TABLE IF NOT EXISTS vigil.{} (gateway_id String,", t.name())));
        assert!(sql.contains("ENGINE = MergeTree() PARTITION BY toYYYYMMDD("));
        assert!(sql.contains("ORDER BY (gateway_id, "));
        for newer in ["DateTime64", "LowCardinality", "IPv6", "IPv4", "Bool", "UUID"] {
            assert!(!sql.contains(newer), "{newer} in {sql}");
        }
    }
}

#[test]
fn names_and_quoting() {
    assert_eq!(parse_spool_name(&spool_name(17, Table::Dns)), Some((17, Table::Dns)));
    assert_eq!(parse_spool_name("00000000000000000017-dns.jsonl.tmp"), None);
    assert_eq!(parse_spool_name("17-dns.jsonl"), None);
    assert_eq!(sql_str(r"a'b\c"), r"'a\'b\\c'");
    let cfg = ClickHouseConfig { password: "hunter2".into(), ..ClickHouseConfig::default() };
    assert!(!format!("{cfg:?}").contains("hunter2"));
    let mut b = Backoff::new();
    let waits: Vec<Duration> = (0..12).map(|_| b.next_wait()).collect();
    assert!(waits[0] >= Duration::from_millis(50) && waits[0] <= Duration::from_millis(100));
    assert!(waits.iter().all(|w| *w <= Backoff::MAX));
    assert!(waits[11] >= Backoff::MAX / 2);
}

#[test]
fn delivers_batches_with_ids_and_header_auth() {
    let srv = ok_server();
    let dir = tmpdir("deliver");
    let h = ClickHouseSink::start(config(srv.url(), &dir)).unwrap();
    for i in 0..7 {
        assert!(h.try_send(flow(i)));
    }
    assert!(h.try_send(Record::from(testutil::dns())));
    assert!(h.try_send(Record::from(testutil::block())));
    let st = h.close();
    assert_eq!((st.rows_spooled, st.rows_sent, st.batches_sent), (9, 9, 5), "{st:?}");
    assert_eq!((st.spool_files, st.spool_bytes), (0, 0));
    assert!(spool_files(&dir).is_empty());

    let reqs = srv.requests();
    assert!(reqs[0].body.starts_with("CREATE DATABASE IF NOT EXISTS vigil"));
    assert!(reqs[1..4].iter().all(|r| r.body.starts_with("CREATE TABLE IF NOT EXISTS vigil.")));
    let inserts: Vec<&Req> = reqs.iter().filter(|r| r.is_insert()).collect();
    assert_eq!(inserts.len(), 5);
    for r in &reqs {
        assert_eq!(r.header("X-ClickHouse-User"), Some("vigil"));
        assert_eq!(r.header("X-ClickHouse-Key"), Some("s3cret"));
        assert!(!r.line.contains("s3cret"));
    }
    let mut ids = Vec::new();
    let mut batches = HashSet::new();
    for r in inserts.iter().filter(|r| r.line.contains("vigil.sessions")) {
        assert!(r.line.contains("FORMAT%20JSONEachRow"));
        for (i, line) in r.body.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["gateway_id"], "gw1");
            assert_eq!(v["batch_row"], i);
            assert_eq!(v["first_seen"], 1_795_717_905u32);
            assert_eq!(v["first_seen_us"], 1_795_717_905_123_456u64);
            ids.push(v["id"].as_u64().unwrap());
            let bid = v["batch_id"].as_str().unwrap().to_string();
            assert!(bid.starts_with("gw1-"));
            assert!(r.line.contains(&format!("query_id={}", http::encode(&bid))));
            batches.insert(bid);
        }
    }
    assert_eq!(ids, (0..7).collect::<Vec<_>>(), "in order, each once");
    assert_eq!(batches.len(), 3);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn spools_while_down_and_replays_in_order_at_next_start_checking_first() {
    let dir = tmpdir("replay");
    let mut cfg = config(closed_port(), &dir);
    cfg.close_timeout = Duration::from_millis(200);
    let h = ClickHouseSink::start(cfg.clone()).unwrap();
    for i in 0..9 {
        assert!(h.try_send(flow(i)));
    }
    let st = h.close();
    assert_eq!((st.rows_spooled, st.rows_sent, st.spool_files), (9, 0, 3), "{st:?}");
    assert!(st.send_failures >= 1);
    assert_eq!(spool_files(&dir).len(), 3);

    // Next run: ClickHouse is back. Leftovers are checked (not present), then sent in order.
    let srv = FakeServer::start(Box::new(|_| (200, "0".into())));
    cfg.url = srv.url();
    let h = ClickHouseSink::start(cfg).unwrap();
    let st = h.close();
    assert_eq!((st.rows_sent, st.batches_sent, st.batches_found_present, st.spool_files), (9, 3, 0, 0), "{st:?}");
    let reqs = srv.requests();
    let checks = reqs.iter().filter(|r| r.body.contains("WHERE gateway_id = 'gw1'")).count();
    assert_eq!(checks, 3);
    assert!(reqs.iter().filter(|r| r.body.contains("system.processes")).count() == 3);
    assert_eq!(inserted(&reqs, "id"), (0..9).collect::<Vec<_>>());
    assert!(spool_files(&dir).is_empty());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_batch_found_present_is_not_sent_again() {
    let dir = tmpdir("present");
    let cfg = spooled(&dir, 0..3);
    // The server has the batch (the previous run's response was lost): count() says 3.
    let srv = FakeServer::start(Box::new(|r| {
        if r.body.contains("system.processes") {
            (200, "0\n".into())
        } else if r.body.starts_with("SELECT count()") {
            (200, "3\n".into())
        } else {
            (200, String::new())
        }
    }));
    let st = resume(cfg, &srv);
    assert_eq!((st.batches_found_present, st.rows_sent, st.spool_files), (1, 3, 0), "{st:?}");
    assert!(!srv.requests().iter().any(Req::is_insert));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_partly_present_batch_sends_only_missing_rows() {
    let dir = tmpdir("partial");
    let cfg = spooled(&dir, 0..3);
    let srv = FakeServer::start(Box::new(|r| {
        if r.body.contains("system.processes") {
            (200, "0\n".into())
        } else if r.body.starts_with("SELECT count()") || r.body.starts_with("SELECT DISTINCT batch_row") {
            // One row present: batch_row 1.
            (200, "1\n".into())
        } else {
            (200, String::new())
        }
    }));
    let st = resume(cfg, &srv);
    assert_eq!((st.batches_partial, st.spool_files), (1, 0), "{st:?}");
    let reqs = srv.requests();
    assert_eq!(reqs.iter().filter(|r| r.is_insert()).count(), 1);
    assert_eq!(inserted(&reqs, "batch_row"), [0, 2]);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn an_insert_still_running_is_waited_for() {
    let dir = tmpdir("running");
    let cfg = spooled(&dir, 1..2);
    let polls = Arc::new(AtomicU64::new(0));
    let p = polls.clone();
    let srv = FakeServer::start(Box::new(move |r| {
        if r.body.contains("system.processes") {
            // Running for the first two checks.
            (200, if p.fetch_add(1, Ordering::Relaxed) < 2 { "1\n".into() } else { "0\n".into() })
        } else if r.body.starts_with("SELECT count()") {
            (200, "1\n".into())
        } else {
            (200, String::new())
        }
    }));
    let st = resume(cfg, &srv);
    assert_eq!((st.batches_found_present, st.send_failures, st.spool_files), (1, 2, 0), "{st:?}");
    assert_eq!(polls.load(Ordering::Relaxed), 3);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn spool_cap_drops_the_oldest_files() {
    let dir = tmpdir("cap");
    let mut cfg = config(closed_port(), &dir);
    cfg.close_timeout = Duration::ZERO;
    cfg.batch_max = 1;
    // Room for about two one-row files.
    cfg.spool_max_bytes = 2500;
    let h = ClickHouseSink::start(cfg).unwrap();
    for i in 0..6 {
        h.try_send(flow(i));
        std::thread::sleep(Duration::from_millis(30));
    }
    let st = h.close();
    assert!(st.spool_evicted_files >= 3, "{st:?}");
    assert_eq!(st.spool_evicted_rows, st.spool_evicted_files);
    assert!(st.spool_bytes <= 2500);
    let left = spool_files(&dir);
    assert_eq!(left.len() as u64, 6 - st.spool_evicted_files);
    // The newest stay.
    assert!(left.last().unwrap().starts_with("00000000000000000005-"));
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn malformed_batches_are_set_aside_after_three_refusals() {
    let dir = tmpdir("rejected");
    let srv = FakeServer::start(Box::new(|r| {
        if r.is_insert() {
            (400, "Code: 27, e.displayText() = DB::Exception: Cannot parse input".into())
        } else {
            (200, "0".into())
        }
    }));
    let h = ClickHouseSink::start(config(srv.url(), &dir)).unwrap();
    h.try_send(flow(1));
    let st = h.close();
    assert_eq!((st.rejected_batches, st.rejected_rows, st.spool_files), (1, 1, 0), "{st:?}");
    assert_eq!(spool_files(&dir.join("rejected")).len(), 1);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn leftover_temporary_files_are_removed_and_sequence_continues() {
    let dir = tmpdir("scan");
    fs::write(dir.join("00000000000000000004-dns.jsonl.tmp"), "partial").unwrap();
    let header = Header { v: 1, table: Table::Blocks, batch_id: "x".into(), rows: 1, min_ts: 0, max_ts: 0 };
    write_spool_file(&dir, &spool_name(9, Table::Blocks), &header, b"{}\n").unwrap();
    fs::write(dir.join(spool_name(10, Table::Dns)), "garbage").unwrap();
    let (files, bytes, next) = scan_spool(&dir).unwrap();
    assert_eq!(files.keys().copied().collect::<Vec<_>>(), [9]);
    assert!(files[&9].ambiguous);
    assert_eq!(bytes, fs::metadata(dir.join(spool_name(9, Table::Blocks))).unwrap().len());
    assert_eq!(next, 11);
    assert!(!dir.join("00000000000000000004-dns.jsonl.tmp").exists());
    assert!(dir.join("rejected").join(spool_name(10, Table::Dns)).exists());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn try_send_never_blocks_and_counts_a_full_queue() {
    let dir = tmpdir("full");
    let mut cfg = config(closed_port(), &dir);
    cfg.queue_capacity = 4;
    cfg.batch_max = 5000;
    cfg.flush_interval = Duration::from_secs(60);
    cfg.close_timeout = Duration::ZERO;
    let h = ClickHouseSink::start(cfg).unwrap();
    let t0 = Instant::now();
    let accepted = (0..10_000).filter(|&i| h.try_send(flow(i))).count() as u64;
    assert!(t0.elapsed() < Duration::from_secs(2));
    let st = h.close();
    assert_eq!(st.received, 10_000);
    assert_eq!(st.dropped_full, 10_000 - accepted);
    assert_eq!(st.rows_spooled, accepted);
    let _ = fs::remove_dir_all(&dir);
}

/// The sessions columns an older vigil created (before the application-layer details).
const OLD_SESSION_COLUMNS: &str = "gateway_id\nbatch_id\nbatch_row\nid\ninterim\nfirst_seen\nfirst_seen_us\nlast_seen\n\
    last_seen_us\nproto\nsrc\nsport\ndst\ndport\nprotocol\nprotocol_guessed\napp\ncategory\nhostname\nname_source\nja4\n\
    alpn\nalpn_selected\ndpi_packets\npackets_c2s\npackets_s2c\nbytes_c2s\nbytes_s2c\nverdict\nrule\ntcp_state\n\
    end_reason\noffloaded\nmidstream\ncommunity_id\nin_if\nout_if\nclient_mac\n";

#[test]
fn the_added_columns_end_the_ddl_and_the_rows_have_them() {
    let sql = Table::Sessions.create_sql("vigil");
    let tail: Vec<String> = Table::Sessions.added_columns().iter().map(|(n, t)| format!("{n} {t}")).collect();
    assert!(sql.contains(&format!("client_mac Nullable(String), {})", tail.join(", "))), "{sql}");
    assert!(Table::Dns.added_columns().is_empty() && Table::Blocks.added_columns().is_empty());
    // Every column of a row is in the DDL, and the other way round.
    let mut f = testutil::tls_flow();
    f.details.tls_version = Some("TLSv1.3".into());
    f.details.cert_names = vec!["a.example".into()];
    let mut row = Vec::new();
    write_row(&mut row, Common { gateway_id: "gw", batch_id: "b", batch_row: 0 }, &Record::from(f));
    let v: serde_json::Value = serde_json::from_slice(&row).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    let cols = sql.split_once(" (").unwrap().1.split_once(") ENGINE").unwrap().0;
    let mut names: Vec<&str> = cols.split(", ").map(|c| c.split(' ').next().unwrap()).collect();
    names.sort();
    assert_eq!(keys, names);
    assert_eq!(
        (&v["tls_version"], &v["ech"], &v["cert_names"]),
        (&"TLSv1.3".into(), &0.into(), &serde_json::json!(["a.example"]))
    );
    // Only the missing ones are added.
    let old: HashSet<&str> = OLD_SESSION_COLUMNS.lines().collect();
    let alter = Table::Sessions.add_columns_sql("vigil", &old).unwrap();
    assert_eq!(alter, format!("ALTER TABLE vigil.sessions ADD COLUMN {}", tail.join(", ADD COLUMN ")));
    let mut partly = old.clone();
    partly.extend(["tls_version", "ech"]);
    assert!(Table::Sessions
        .add_columns_sql("vigil", &partly)
        .unwrap()
        .starts_with("ALTER TABLE vigil.sessions ADD COLUMN cert_names Array(String), "));
    let all: HashSet<&str> = names.into_iter().collect();
    assert_eq!(Table::Sessions.add_columns_sql("vigil", &all), None);
}

#[test]
fn an_old_sessions_table_gets_the_missing_columns_before_the_first_insert() {
    // The server's sessions table is an older vigil's: the sink adds the new columns, once.
    let altered = Arc::new(AtomicBool::new(false));
    let a = altered.clone();
    let srv = FakeServer::start(Box::new(move |r| {
        if r.body.contains("FROM system.columns") {
            let table = if r.body.contains("table = 'sessions'") { "sessions" } else { "other" };
            let mut cols = if table == "sessions" { OLD_SESSION_COLUMNS.to_string() } else { "ts\n".into() };
            if table == "sessions" && a.load(Ordering::Relaxed) {
                for (n, _) in Table::Sessions.added_columns() {
                    cols.push_str(&format!("{n}\n"));
                }
            }
            (200, cols)
        } else if r.body.starts_with("ALTER TABLE") {
            a.store(true, Ordering::Relaxed);
            (200, String::new())
        } else {
            (200, String::new())
        }
    }));
    let dir = tmpdir("alter");
    let h = ClickHouseSink::start(config(srv.url(), &dir)).unwrap();
    for i in 0..4 {
        assert!(h.try_send(flow(i)));
    }
    let st = h.close();
    assert_eq!((st.rows_sent, st.send_failures), (4, 0), "{st:?}");
    let reqs = srv.requests();
    let bodies: Vec<&str> = reqs.iter().map(|r| r.body.as_str()).collect();
    let alters: Vec<&str> = bodies.iter().copied().filter(|b| b.starts_with("ALTER TABLE")).collect();
    assert_eq!(alters.len(), 1, "{bodies:#?}");
    assert!(alters[0]
        .starts_with("ALTER TABLE vigil.sessions ADD COLUMN tls_version Nullable(String), ADD COLUMN ech UInt8,"));
    let first_insert = reqs.iter().position(Req::is_insert).unwrap();
    let alter_at = reqs.iter().position(|r| r.body.starts_with("ALTER TABLE")).unwrap();
    assert!(alter_at < first_insert, "columns added before the first insert");
    // The dns and blocks tables have nothing to add: their columns are not even asked for.
    assert_eq!(bodies.iter().filter(|b| b.contains("FROM system.columns")).count(), 1);
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn a_failed_alter_is_retried_unless_the_columns_appeared_meanwhile() {
    // Another gateway adds the columns between our check and our ALTER: ours fails
    // ("column with this name already exists"), the re-check finds them, delivery goes on.
    let checks = Arc::new(AtomicU64::new(0));
    let c = checks.clone();
    let srv = FakeServer::start(Box::new(move |r| {
        if r.body.contains("FROM system.columns") {
            let mut cols = OLD_SESSION_COLUMNS.to_string();
            if c.fetch_add(1, Ordering::Relaxed) > 0 {
                for (n, _) in Table::Sessions.added_columns() {
                    cols.push_str(&format!("{n}\n"));
                }
            }
            (200, cols)
        } else if r.body.starts_with("ALTER TABLE") {
            (500, "Code: 44, e.displayText() = DB::Exception: Cannot add column tls_version: column with this name already exists".into())
        } else {
            (200, String::new())
        }
    }));
    let dir = tmpdir("alter-race");
    let h = ClickHouseSink::start(config(srv.url(), &dir)).unwrap();
    assert!(h.try_send(flow(1)));
    let st = h.close();
    assert_eq!((st.rows_sent, st.send_failures), (1, 0), "{st:?}");
    assert_eq!(checks.load(Ordering::Relaxed), 2);
    let _ = fs::remove_dir_all(&dir);

    // Still missing after a failed ALTER (no right to alter): the delivery fails and is retried.
    let srv = FakeServer::start(Box::new(|r| {
        if r.body.contains("FROM system.columns") {
            (200, OLD_SESSION_COLUMNS.into())
        } else if r.body.starts_with("ALTER TABLE") {
            (500, "Code: 497, e.displayText() = DB::Exception: Not enough privileges".into())
        } else {
            (200, String::new())
        }
    }));
    let dir = tmpdir("alter-denied");
    let mut cfg = config(srv.url(), &dir);
    cfg.close_timeout = Duration::from_millis(300);
    let h = ClickHouseSink::start(cfg).unwrap();
    assert!(h.try_send(flow(1)));
    let st = h.close();
    assert_eq!((st.rows_sent, st.spool_files), (0, 1), "{st:?}");
    assert!(st.send_failures >= 1, "{st:?}");
    assert!(!srv.requests().iter().any(Req::is_insert), "no insert into a table without the columns");
    let _ = fs::remove_dir_all(&dir);
}
