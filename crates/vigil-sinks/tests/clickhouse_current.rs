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

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_engine::{FlowVerdict, Timestamp};
use vigil_sinks::clickhouse::Table;
use vigil_sinks::{BlockRecord, ClickHouseSink, DnsRecord, Record};

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
    let which = match std::env::var("VIGIL_CHDB_PYTHON") {
        Ok(p) => format!("VIGIL_CHDB_PYTHON={p} cannot import chdb"),
        Err(_) => "no python with chdb".into(),
    };
    or_skip(
        test,
        chdb_python(),
        &which,
        "scripts/deps.sh makes target/chdb-venv",
        "run scripts/deps.sh as root, or set VIGIL_CHDB_PYTHON to a python where \
         `pip install --no-deps chdb-core==26.9.0` was done",
    )
}

/// scripts/chdb_http.py on the instance's port, its data in the instance's directory.
fn shim(python: PathBuf, name: &str) -> Instance {
    Instance::new("chdb_http.py", "current", name, move |shim| {
        let mut c = Command::new(&python);
        c.arg(workspace_root().join("scripts/chdb_http.py"))
            .args(["--port", &shim.port.to_string(), "--user", USER, "--password", PASSWORD, "--data"])
            .arg(shim.dir.join("data"));
        c
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
    let mut shim = shim(python, "values");
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
    let mut shim = shim(python, "restart");
    shim.start();
    every_row_exactly_once_across_a_restart(&mut shim, 6_000, 2_000, 4_000);
}

/// Batches left in the spool by a run that could not deliver are checked before being sent: one
/// found whole on the server, one in part, one not at all. This runs the presence queries
/// (system.processes, count() by primary key range, DISTINCT batch_row) on 26.9.
#[test]
fn leftover_batches_are_checked_then_completed() {
    let Some(python) = python_or_skip("leftover_batches_are_checked_then_completed") else { return };
    let mut shim = shim(python, "leftover");
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
    let mut shim = shim(python, "dropped");
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

#[test]
fn a_table_made_by_an_older_vigil_gets_the_new_columns_on_clickhouse_26() {
    let Some(python) = python_or_skip("a_table_made_by_an_older_vigil_gets_the_new_columns_on_clickhouse_26") else {
        return;
    };
    let mut shim = shim(python, "upgrade");
    shim.start();
    a_table_made_by_an_older_vigil_gets_the_new_columns(&shim);
}
