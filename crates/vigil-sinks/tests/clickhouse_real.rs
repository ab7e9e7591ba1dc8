//! The ClickHouse sink against a real clickhouse-server: a private instance on free ports with a
//! temporary data directory, stopped and restarted mid-stream, and behind a proxy that loses
//! responses. Every row must land exactly once.
//!
//! Skipped (with a message) when no clickhouse-server is installed, except under CI (`CI` set),
//! where scripts/deps.sh installs it and a missing server is a failure.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use vigil_sinks::ClickHouseSink;

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
    or_skip(
        test,
        server_command(),
        "no clickhouse-server",
        "scripts/deps.sh installs it",
        "apt-get install clickhouse-server",
    )
}

/// A private clickhouse-server: its config (HTTP on the instance's port, TCP on another free
/// one, the data in its directory, the test user) written, not started.
fn server(cmd: (PathBuf, Vec<&'static str>), name: &str) -> Instance {
    let srv = Instance::new("clickhouse-server", "real", name, move |srv| {
        let mut c = Command::new(&cmd.0);
        c.args(&cmd.1).arg(format!("--config-file={}", srv.dir.join("config.xml").display())).current_dir(&srv.dir);
        c
    });
    let (dir, http_port, tcp_port) = (&srv.dir, srv.port, free_port());
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
    srv
}

#[test]
fn every_row_exactly_once_across_a_server_restart() {
    let Some(cmd) = server_or_skip("every_row_exactly_once_across_a_server_restart") else { return };
    let t_test = Instant::now();
    let mut srv = server(cmd, "restart");
    let up = srv.start();
    let version = srv.client().query("SELECT version()").unwrap();
    eprintln!("clickhouse-server {version}: up in {up:.2?}");
    every_row_exactly_once_across_a_restart(&mut srv, 10_000, 3_000, 7_000);
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
    let mut srv = server(cmd, "lossy");
    srv.start();
    let (proxy_port, lost, stop) = lossy_proxy(srv.port, 3);
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

#[test]
fn a_table_made_by_an_older_vigil_gets_the_new_columns() {
    let Some(cmd) = server_or_skip("a_table_made_by_an_older_vigil_gets_the_new_columns") else { return };
    let mut srv = server(cmd, "upgrade");
    srv.start();
    common::a_table_made_by_an_older_vigil_gets_the_new_columns(&srv);
}
