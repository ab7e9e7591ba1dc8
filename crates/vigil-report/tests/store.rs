//! The store end to end: schema and migrations, the writer's upsert and rollups, retention, and
//! the queries over a known dataset.

mod common;

use common::*;
use rusqlite::Connection;
use std::collections::HashMap;
use std::time::Duration;
use vigil_report::query::TopBy;
use vigil_report::schema::{self, DAY_US, HOUR_US};
use vigil_report::{
    Cidr, Dim, DnsFilter, Error, Reader, Record, Retention, SessionFilter, SinkOptions, SqliteSink, TopRow,
};

fn quick() -> SinkOptions {
    SinkOptions { flush_interval: Duration::from_millis(5), ..Default::default() }
}

fn store(path: &std::path::Path, opts: SinkOptions, records: Vec<Record>) {
    let (sink, writer) = SqliteSink::open(path, opts).unwrap();
    let n = records.len() as u64;
    for r in records {
        assert!(sink.try_send(r));
    }
    let probe = sink.clone();
    assert!(sink.flush_and_close());
    writer.join().unwrap();
    assert_eq!(probe.stats().committed, n);
    assert_eq!(probe.stats().failed, 0);
}

#[test]
fn schema_is_created_in_an_empty_file() {
    let dir = temp_dir("schema");
    let path = dir.join("r.db");
    std::fs::write(&path, b"").unwrap(); // an empty file is a valid, empty database
    store(&path, quick(), vec![]);
    let c = Connection::open(&path).unwrap();
    assert_eq!(schema::user_version(&c).unwrap(), schema::LATEST);
    let av: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
    assert_eq!(av, 2, "auto_vacuum = INCREMENTAL");
    let jm: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(jm, "wal");
    let mut names: Vec<String> = c
        .prepare("SELECT name FROM sqlite_master WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    names.sort();
    for want in [
        "blocks",
        "blocks_ts_rule",
        "dns",
        "dns_ts",
        "rollup_daily",
        "rollup_hourly",
        "rollup_late",
        "rollup_packed",
        "sessions",
        "sessions_app",
        "sessions_first_seen",
        "sessions_live",
        "sessions_src",
        "sessions_verdict",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    // Opening again is a no-op; a reader opens it.
    store(&path, quick(), vec![]);
    Reader::open(&path).unwrap();
}

#[test]
fn migration_from_version_1_backfills_rollups_and_newer_is_refused() {
    let dir = temp_dir("migrate");
    let path = dir.join("r.db");
    {
        let mut c = Connection::open(&path).unwrap();
        schema::migrate_to(&mut c, 1).unwrap();
        assert_eq!(schema::user_version(&c).unwrap(), 1);
        for (i, app) in ["A", "A", "B"].iter().enumerate() {
            c.execute(
                "INSERT INTO sessions (proto, src, sport, dst, dport, protocol, packets_c2s, packets_s2c, bytes_c2s, \
                 bytes_s2c, first_seen, last_seen, verdict, app) \
                 VALUES ('tcp', '10.0.0.1', 1, '10.0.0.2', 2, 'TLS', 1, 1, 100, 0, ?1, ?1, 'allow', ?2)",
                rusqlite::params![1_700_000_000 * S + i as i64 * HOUR_US, app],
            )
            .unwrap();
        }
        assert!(Reader::open(&path).is_err_and(|e| matches!(e, Error::TooOld { found: 1, .. })));
    }
    store(&path, quick(), vec![]);
    let r = Reader::open(&path).unwrap();
    let top = r.top(Dim::Apps, 0, i64::MAX / 2, 10).unwrap();
    assert_eq!(
        top,
        vec![
            TopRow { key: Some("A".into()), sessions: 2, bytes: 200 },
            TopRow { key: Some("B".into()), sessions: 1, bytes: 100 },
        ]
    );
    drop(r);
    Connection::open(&path).unwrap().execute_batch("PRAGMA user_version = 99").unwrap();
    assert!(matches!(SqliteSink::open(&path, quick()), Err(Error::TooNew { found: 99, .. })));
    assert!(matches!(Reader::open(&path), Err(Error::TooNew { found: 99, .. })));
}

/// Version 6 adds the application-layer details: a version 5 database keeps its sessions (read
/// back without details), and new sessions store and read back theirs, through the interim upsert
/// too.
#[test]
fn migration_to_version_6_keeps_old_sessions_and_stores_the_details() {
    let dir = temp_dir("migrate6");
    let path = dir.join("r.db");
    let old = session(1, "10.0.0.1", Some("A"), Some("a.example"), 1_700_000_000 * S, 1000);
    {
        let mut c = Connection::open(&path).unwrap();
        schema::migrate_to(&mut c, 5).unwrap();
        c.execute(
            "INSERT INTO sessions (id, proto, src, sport, dst, dport, protocol, app, hostname, alpn, packets_c2s, \
             packets_s2c, bytes_c2s, bytes_s2c, first_seen, last_seen, verdict) \
             VALUES (1, 'tcp', '10.0.0.1', 1, '10.0.0.2', 22, 'SSH', 'A', 'a.example', '[]', 1, 1, 100, 0, ?1, ?1, \
             'allow')",
            [old.first_seen.micros() as i64],
        )
        .unwrap();
        assert!(Reader::open(&path).is_err_and(|e| matches!(e, Error::TooOld { found: 5, .. })));
    }
    let mut ssh = session(2, "10.0.0.3", Some("SSH"), None, 1_700_000_000 * S + 1000, 2000);
    ssh.protocol = "SSH".into();
    ssh.details.client_banner = Some("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10".into());
    ssh.details.server_banner = Some("SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10".into());
    let mut tls = session(3, "10.0.0.4", Some("Web"), Some("legacy.example"), 1_700_000_000 * S + 2000, 3000);
    tls.details.tls_version = Some("TLSv1.2".into());
    tls.details.ech = true;
    tls.details.cert_names = vec!["*.example".into(), "legacy.example".into()];
    let mut http = session(4, "10.0.0.5", Some("Web"), Some("plain.example"), 1_700_000_000 * S + 3000, 4000);
    http.details.http_method = Some("GET".into());
    http.details.http_path = Some("/index.html?q=a,b".into());
    http.details.user_agent = Some("curl/7.88.1".into());
    http.details.server_banner = Some("SimpleHTTP/0.6 Python/3.11.7".into());
    let mut dhcp = session(5, "10.0.0.6", None, Some("lucas-imac"), 1_700_000_000 * S + 4000, 500);
    dhcp.details.dhcp_hostname = Some("Lucas-iMac".into());
    dhcp.details.dhcp_vendor_class = Some("MSFT 5.0".into());
    // The HTTP session first as an interim row without its details, then the final with them.
    let mut interim = http.clone();
    interim.interim = true;
    interim.end_reason = None;
    interim.details.http_method = None;
    interim.details.user_agent = None;
    store(
        &path,
        quick(),
        vec![ssh.clone().into(), tls.clone().into(), interim.into(), http.clone().into(), dhcp.clone().into()],
    );
    let r = Reader::open(&path).unwrap();
    let mut got = r.sessions(&SessionFilter { limit: 10, ..Default::default() }).unwrap();
    got.sort_by_key(|s| s.id);
    assert_eq!(got.len(), 5);
    let o = &got[0];
    assert_eq!((o.id, o.protocol.as_str(), o.app.as_deref()), (Some(1), "SSH", Some("A")));
    assert_eq!(
        (&o.details.tls_version, o.details.ech, o.details.cert_names.len(), &o.details.client_banner),
        (&None, false, 0, &None)
    );
    assert_eq!(got[1..], [ssh, tls, http, dhcp]);
    let (empty_certs, null_certs): (i64, i64) = r
        .connection()
        .query_row(
            "SELECT count(*) FILTER (WHERE cert_names = '[]'), count(*) FILTER (WHERE cert_names IS NULL) \
                    FROM sessions",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((empty_certs, null_certs), (0, 4), "no certificate names stored as NULL");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn interim_updates_are_replaced_by_the_final_record() {
    let dir = temp_dir("upsert");
    let path = dir.join("r.db");
    let t0 = 1_700_000_000 * S;
    let mut a = session(7, "10.0.0.5", None, None, t0, 100);
    a.interim = true;
    a.end_reason = None;
    let mut b = session(7, "10.0.0.5", Some("YouTube"), Some("www.youtube.com"), t0, 5000);
    b.interim = true;
    b.end_reason = None;
    let c = session(7, "10.0.0.5", Some("YouTube"), Some("www.youtube.com"), t0, 9000);
    // The same id from an earlier run of the engine (another first_seen) is another session.
    let other = session(7, "10.0.0.6", Some("Zoom"), None, t0 - HOUR_US, 10);
    // Interim in one batch, its update and final in later ones.
    store(&path, quick(), vec![a.clone().into(), other.clone().into()]);
    store(&path, quick(), vec![b.into()]);
    {
        let r = Reader::open(&path).unwrap();
        let s = r.sessions(&SessionFilter { app: Some("YouTube".into()), ..Default::default() }).unwrap();
        assert_eq!(s.len(), 1);
        assert!(s[0].interim);
    }
    store(&path, quick(), vec![c.clone().into()]);
    let r = Reader::open(&path).unwrap();
    let all = r.sessions(&SessionFilter::default()).unwrap();
    assert_eq!(all, vec![c, other], "one row per session, the final record's fields");
    let top = r.top(Dim::Apps, t0 - DAY_US, t0 + DAY_US, 10).unwrap();
    assert_eq!(
        top,
        vec![
            TopRow { key: Some("YouTube".into()), sessions: 1, bytes: 9000 },
            TopRow { key: Some("Zoom".into()), sessions: 1, bytes: 10 },
        ],
        "the interim's unidentified app moved to YouTube, bytes not counted twice"
    );
    let live: i64 =
        r.connection().query_row("SELECT COUNT(*) FROM sessions WHERE interim = 1", [], |x| x.get(0)).unwrap();
    assert_eq!(live, 0);
}

/// A small deterministic generator.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn rollups_match_the_raw_sessions() {
    let dir = temp_dir("rollups");
    let path = dir.join("r.db");
    let t0 = 1_700_000_000 * S;
    let apps = [None, Some("A"), Some("B"), Some("Youtube"), Some("C")];
    let hosts = [None, Some("a.example.com"), Some("b.example.org"), Some("c.example.net")];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut recs = Vec::new();
    let mut later = Vec::new();
    for id in 0..3000u64 {
        let first = t0 + rng.below(3 * DAY_US as u64) as i64;
        let src = format!("10.0.{}.{}", rng.below(3), rng.below(20));
        let mut s =
            session(id, &src, apps[rng.below(5) as usize], hosts[rng.below(4) as usize], first, rng.below(1 << 20));
        // A third of them get interim updates first, some with another app/hostname than the final.
        if id % 3 == 0 {
            for k in 0..rng.below(3) + 1 {
                let mut i = s.clone();
                i.interim = true;
                i.end_reason = None;
                i.bytes_s2c = k * 1000;
                if rng.below(2) == 0 {
                    i.app = apps[rng.below(5) as usize].map(String::from);
                    i.hostname = hosts[rng.below(4) as usize].map(String::from);
                }
                recs.push(i.into());
            }
        }
        // Some stay running (their last record is an interim) until after their buckets are
        // packed; a third of those end with another app and hostname.
        if id % 10 == 0 {
            let mut last = s.clone();
            last.bytes_s2c += 5000;
            if id % 30 == 0 {
                last.app = apps[rng.below(5) as usize].map(String::from);
                last.hostname = hosts[rng.below(4) as usize].map(String::from);
            }
            later.push(Record::from(last));
            s.interim = true;
        }
        recs.push(s.into());
    }
    // Small batches so updates span batches too.
    store(&path, SinkOptions { batch_max: 97, ..quick() }, recs);
    // Every bucket is long closed: packing takes them all; the final records then reach packed
    // buckets and go to rollup_late as well.
    let (sink, writer) = SqliteSink::open(&path, SinkOptions { batch_max: 97, ..quick() }).unwrap();
    sink.pack_now().unwrap();
    for rec in later {
        assert!(sink.try_send(rec));
    }
    assert!(sink.flush_and_close());
    writer.join().unwrap();
    let r = Reader::open(&path).unwrap();
    let count = |sql: &str| -> i64 { r.connection().query_row(sql, [], |x| x.get(0)).unwrap() };
    assert_eq!(count("SELECT COUNT(*) FROM sessions"), 3000);
    assert_eq!(count("SELECT COUNT(*) FROM sessions WHERE interim = 1"), 0);
    assert_eq!(
        count("SELECT COUNT(DISTINCT span || '/' || start) FROM rollup_packed"),
        count("SELECT COUNT(DISTINCT hour) FROM rollup_hourly") + count("SELECT COUNT(DISTINCT day) FROM rollup_daily"),
        "every bucket packed"
    );
    assert!(count("SELECT COUNT(*) FROM rollup_late") > 100, "late deltas recorded");
    let ranges = [
        (t0, t0 + 3 * DAY_US),                         // everything, via days and hours
        (t0 - 7 * DAY_US, t0 + 7 * DAY_US),            // wider than the data
        (t0 + 1234 * S, t0 + DAY_US + 17 * S),         // ragged ends: raw + hourly + daily
        (t0 + HOUR_US / 3, t0 + HOUR_US / 2),          // inside one hour: raw only
        (t0 + 2 * HOUR_US + 5, t0 + 30 * HOUR_US + 7), // hours and a day
    ];
    for dim in [Dim::Apps, Dim::Categories, Dim::Clients, Dim::Domains] {
        let expr = match dim {
            Dim::Apps => "COALESCE(app, '')",
            Dim::Categories => "COALESCE(category, '')",
            Dim::Clients => "src",
            Dim::Domains => "COALESCE(hostname, '')",
        };
        for (lo, hi) in ranges {
            let mut want: HashMap<String, (u64, u64)> = HashMap::new();
            let mut st = r
                .connection()
                .prepare(&format!(
                    "SELECT {expr}, COUNT(*), SUM(bytes_c2s + bytes_s2c) FROM sessions \
                     WHERE first_seen >= ?1 AND first_seen < ?2 GROUP BY 1"
                ))
                .unwrap();
            let rows =
                st.query_map([lo, hi], |x| Ok((x.get::<_, String>(0)?, x.get::<_, i64>(1)?, x.get::<_, i64>(2)?)));
            for row in rows.unwrap() {
                let (k, s, b) = row.unwrap();
                want.insert(k, (s as u64, b as u64));
            }
            let got: HashMap<String, (u64, u64)> = r
                .top(dim, lo, hi, 100_000)
                .unwrap()
                .into_iter()
                .map(|t| (t.key.unwrap_or_default(), (t.sessions, t.bytes)))
                .collect();
            assert_eq!(got, want, "{dim:?} over [{lo}, {hi})");
        }
    }
    // Ranked by sessions: the counts are in order.
    let by_s = r.top_by(Dim::Clients, t0, t0 + 3 * DAY_US, 5, TopBy::Sessions).unwrap();
    assert_eq!(by_s.len(), 5);
    assert!(by_s.windows(2).all(|w| w[0].sessions >= w[1].sessions));
    // Hourly and daily rollups hold the same totals.
    let sum = |t: &str| -> (i64, i64) {
        r.connection()
            .query_row(&format!("SELECT SUM(sessions), SUM(bytes) FROM {t}"), [], |x| Ok((x.get(0)?, x.get(1)?)))
            .unwrap()
    };
    assert_eq!(sum("rollup_hourly"), sum("rollup_daily"));
}

#[test]
fn retention_by_age() {
    let dir = temp_dir("age");
    let path = dir.join("r.db");
    let now = now_us();
    let old = now - 10 * DAY_US;
    let recent = now - DAY_US;
    let mut long_running = session(3, "10.0.0.3", Some("A"), None, old, 100);
    long_running.last_seen = vigil_engine::Timestamp::from_micros(recent as u64);
    store(
        &path,
        quick(),
        vec![
            session(1, "10.0.0.1", Some("A"), None, old, 100).into(),
            session(2, "10.0.0.2", Some("A"), None, recent, 100).into(),
            long_running.into(),
            dns(old, "10.0.0.1", "old.example.com").into(),
            dns(recent, "10.0.0.1", "new.example.com").into(),
            block(old, "10.0.0.1", Some("r1"), None).into(),
            block(recent, "10.0.0.1", Some("r1"), None).into(),
        ],
    );
    let opts = SinkOptions { retention: Retention { max_age_days: Some(7), ..Default::default() }, ..quick() };
    let (sink, writer) = SqliteSink::open(&path, opts).unwrap();
    // Retention also ran at open; running it again finds nothing more.
    assert!(!sink.run_retention().unwrap().deleted_anything());
    sink.flush_and_close();
    writer.join().unwrap();
    let r = Reader::open(&path).unwrap();
    let ids: Vec<u64> = r.sessions(&SessionFilter::default()).unwrap().iter().map(|s| s.id.unwrap()).collect();
    assert_eq!(ids, vec![2, 3], "the 10-day-old session went, the one still active 1 day ago stayed");
    let q: Vec<String> =
        r.dns(&DnsFilter { limit: 10, ..Default::default() }).unwrap().into_iter().map(|d| d.query).collect();
    assert_eq!(q, vec!["new.example.com"]);
    assert_eq!(r.blocked(0, i64::MAX, 10).unwrap().len(), 1);
    let old_rollups: i64 = r
        .connection()
        .query_row("SELECT COUNT(*) FROM rollup_hourly WHERE hour < ?1", [now - 8 * DAY_US], |x| x.get(0))
        .unwrap();
    assert_eq!(old_rollups, 0);
    assert_eq!(r.top(Dim::Apps, recent - HOUR_US, now, 5).unwrap()[0].sessions, 1);
}

#[test]
fn packed_keys_go_with_their_buckets_and_their_ids_are_reused() {
    let dir = temp_dir("keys");
    let path = dir.join("r.db");
    let now = now_us();
    let old = now - 10 * DAY_US;
    let recent = now - DAY_US;
    let (sink, writer) = SqliteSink::open(&path, quick()).unwrap();
    for (id, src, t) in [(1, "10.0.0.1", old), (2, "10.0.0.3", old), (3, "10.0.0.2", recent)] {
        assert!(sink.try_send(session(id, src, Some("A"), None, t, 100)));
    }
    sink.flush();
    sink.pack_now().unwrap();
    sink.flush_and_close();
    writer.join().unwrap();
    let keys = |path: &std::path::Path| -> Vec<(i64, String)> {
        let c = Connection::open(path).unwrap();
        let mut st = c.prepare("SELECT id, key FROM rollup_keys WHERE dim = 'client' ORDER BY id").unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
    };
    let before = keys(&path);
    assert_eq!(before.len(), 3, "all three buckets packed: {before:?}");
    let opts = SinkOptions { retention: Retention { max_age_days: Some(7), ..Default::default() }, ..quick() };
    let (sink, writer) = SqliteSink::open(&path, opts).unwrap();
    sink.flush();
    let after: Vec<String> = keys(&path).into_iter().map(|k| k.1).collect();
    assert_eq!(after, vec!["10.0.0.2"], "the old buckets' keys are forgotten with them");
    // A new key in a bucket not packed yet takes a freed id: the ids stay dense.
    assert!(sink.try_send(session(4, "10.0.0.9", Some("B"), None, recent + 2 * HOUR_US, 7)));
    sink.flush();
    sink.pack_now().unwrap();
    sink.flush_and_close();
    writer.join().unwrap();
    let ids = keys(&path);
    let freed: Vec<i64> = before.iter().filter(|k| k.1 != "10.0.0.2").map(|k| k.0).collect();
    let new_id = ids.iter().find(|k| k.1 == "10.0.0.9").expect("packed").0;
    assert!(freed.contains(&new_id), "{new_id} is one of the freed ids {freed:?}");
    let r = Reader::open(&path).unwrap();
    let top: Vec<(Option<String>, u64)> =
        r.top(Dim::Clients, recent - HOUR_US, now, 10).unwrap().into_iter().map(|t| (t.key, t.bytes)).collect();
    assert_eq!(top, vec![(Some("10.0.0.2".into()), 100), (Some("10.0.0.9".into()), 7)]);
}

#[test]
fn retention_by_size_cap() {
    let dir = temp_dir("size");
    let path = dir.join("r.db");
    let t0 = now_us() - DAY_US;
    let recs: Vec<Record> = (0..6000u64)
        .map(|i| {
            let host = format!("host-{}.example.com", i % 50);
            session(i, &format!("10.0.0.{}", i % 200), Some("A"), Some(&host), t0 + i as i64 * S, 1000).into()
        })
        .chain((0..2000u64).map(|i| dns(t0 + i as i64 * 3 * S, "10.0.0.1", &format!("q{i}.example.com")).into()))
        .collect();
    store(&path, quick(), recs);
    let before = std::fs::metadata(&path).unwrap().len();
    let cap = 400_000u64;
    assert!(before > 3 * cap, "the dataset is larger than the cap ({before} bytes)");
    let opts = SinkOptions { retention: Retention { max_bytes: Some(cap), ..Default::default() }, ..quick() };
    let (sink, writer) = SqliteSink::open(&path, opts).unwrap();
    let rep = sink.run_retention().unwrap();
    assert!(rep.used_bytes <= cap, "{rep:?}");
    sink.flush_and_close();
    writer.join().unwrap();
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after <= cap, "file shrank to {after} bytes (cap {cap}, was {before})");
    let r = Reader::open(&path).unwrap();
    let c = r.connection();
    let (n, min_id, max_id): (i64, i64, i64) = c
        .query_row("SELECT COUNT(*), MIN(id), MAX(id) FROM sessions", [], |x| Ok((x.get(0)?, x.get(1)?, x.get(2)?)))
        .unwrap();
    assert!(n > 100 && n < 6000, "{n} sessions kept");
    assert_eq!(max_id, 5999, "the newest stay");
    assert_eq!(max_id - min_id + 1, n, "the oldest went, in order");
    // DNS trimmed to the same horizon.
    let oldest_dns: i64 = c.query_row("SELECT MIN(ts) FROM dns", [], |x| x.get(0)).unwrap();
    let oldest_session: i64 = c.query_row("SELECT MIN(first_seen) FROM sessions", [], |x| x.get(0)).unwrap();
    assert!(oldest_dns >= oldest_session - 3 * S, "dns from {oldest_dns}, sessions from {oldest_session}");
}

#[test]
fn queries_over_a_known_dataset() {
    let dir = temp_dir("queries");
    let path = dir.join("r.db");
    let t0 = 1_700_000_000 * S; // 2023-11-14T22:13:20Z
    let mut blocked = session(5, "10.1.2.3", Some("TikTok"), Some("www.tiktok.com"), t0 + 50 * S, 10);
    blocked.verdict = "block".into();
    blocked.rule = Some("no-social".into());
    let recs: Vec<Record> = vec![
        session(1, "10.1.0.1", Some("YouTube"), Some("www.youtube.com"), t0, 5_000_000).into(),
        session(2, "10.1.0.1", Some("YouTube"), Some("i.ytimg.com"), t0 + 10 * S, 1_000_000).into(),
        session(3, "10.1.1.9", Some("Netflix"), Some("nflxvideo.net"), t0 + 20 * S, 9_000_000).into(),
        session(4, "10.2.0.1", Some("YouTube"), Some("youtube.com"), t0 + 30 * S, 100).into(),
        session(6, "2001:db8::1", None, None, t0 + 60 * S, 7).into(),
        session(7, "10.1.3.1", Some("Example"), Some("a_b.example.com"), t0 + 70 * S, 1).into(),
        session(8, "10.1.3.1", Some("Example"), Some("axb.example.com"), t0 + 80 * S, 1).into(),
        blocked.into(),
        dns(t0, "10.1.0.1", "www.youtube.com").into(),
        dns(t0 + S, "10.1.0.1", "youtube.com").into(),
        dns(t0 + 2 * S, "10.2.0.1", "notyoutube.com").into(),
        dns(t0 + 3 * S, "10.1.1.9", "nflxvideo.net").into(),
        block(t0, "10.1.2.3", Some("no-social"), Some("www.tiktok.com")).into(),
        block(t0 + S, "10.1.2.4", Some("no-social"), Some("www.tiktok.com")).into(),
        block(t0 + 2 * S, "10.1.2.3", Some("no-social"), None).into(),
        block(t0 + 3 * S, "10.1.2.3", None, None).into(),
    ];
    store(&path, quick(), recs);
    let r = Reader::open(&path).unwrap();
    let ids = |f: SessionFilter| -> Vec<u64> { r.sessions(&f).unwrap().iter().map(|s| s.id.unwrap()).collect() };
    assert_eq!(ids(SessionFilter::default()), vec![8, 7, 6, 5, 4, 3, 2, 1], "newest first");
    assert_eq!(ids(SessionFilter { limit: 2, ..Default::default() }), vec![8, 7]);
    assert_eq!(
        ids(SessionFilter { since: Some(t0 + 10 * S), until: Some(t0 + 30 * S), ..Default::default() }),
        vec![3, 2]
    );
    let client = |s: &str| Some(s.parse::<Cidr>().unwrap());
    assert_eq!(ids(SessionFilter { client: client("10.1.0.1"), ..Default::default() }), vec![2, 1]);
    assert_eq!(ids(SessionFilter { client: client("10.1.0.0/16"), ..Default::default() }), vec![8, 7, 5, 3, 2, 1]);
    assert_eq!(ids(SessionFilter { client: client("10.1.0.0/23"), ..Default::default() }), vec![3, 2, 1]);
    assert_eq!(ids(SessionFilter { client: client("10.0.0.0/8"), limit: 3, ..Default::default() }), vec![8, 7, 5]);
    assert_eq!(ids(SessionFilter { client: client("2001:db8::/32"), ..Default::default() }), vec![6]);
    assert_eq!(ids(SessionFilter { app: Some("YouTube".into()), ..Default::default() }), vec![4, 2, 1]);
    assert_eq!(ids(SessionFilter { category: Some("Streaming".into()), ..Default::default() }), vec![4, 2, 1]);
    assert_eq!(ids(SessionFilter { verdict: Some("block".into()), ..Default::default() }), vec![5]);
    assert_eq!(ids(SessionFilter { hostname: Some("youtube.com".into()), ..Default::default() }), vec![4]);
    assert_eq!(ids(SessionFilter { hostname: Some("*.youtube.com".into()), ..Default::default() }), vec![4, 1]);
    // LIKE wildcards in the name are literal.
    assert_eq!(ids(SessionFilter { hostname: Some("*.example.com".into()), ..Default::default() }), vec![8, 7]);
    assert_eq!(ids(SessionFilter { hostname: Some("*.example_com".into()), ..Default::default() }), Vec::<u64>::new());
    assert_eq!(
        ids(SessionFilter { app: Some("YouTube".into()), client: client("10.1.0.0/16"), ..Default::default() }),
        vec![2, 1]
    );

    let (lo, hi) = (t0 - HOUR_US, t0 + HOUR_US);
    let top = |d| r.top(d, lo, hi, 3).unwrap();
    let keys = |v: Vec<TopRow>| -> Vec<(Option<String>, u64, u64)> {
        v.into_iter().map(|t| (t.key, t.sessions, t.bytes)).collect()
    };
    assert_eq!(
        keys(top(Dim::Apps)),
        vec![
            (Some("Netflix".into()), 1, 9_000_000),
            (Some("YouTube".into()), 3, 6_000_100),
            (Some("TikTok".into()), 1, 10)
        ]
    );
    assert_eq!(keys(top(Dim::Clients))[0], (Some("10.1.1.9".into()), 1, 9_000_000));
    assert_eq!(keys(top(Dim::Clients))[1], (Some("10.1.0.1".into()), 2, 6_000_000));
    assert_eq!(
        keys(top(Dim::Categories)),
        vec![(Some("Web".into()), 4, 9_000_012), (Some("Streaming".into()), 3, 6_000_100), (None, 1, 7)]
    );
    assert_eq!(
        keys(r.top_by(Dim::Domains, lo, hi, 1, TopBy::Sessions).unwrap()),
        vec![(Some("nflxvideo.net".into()), 1, 9_000_000)]
    );
    assert!(r.top(Dim::Apps, t0 + DAY_US, t0 + 2 * DAY_US, 3).unwrap().is_empty());

    let b = r.blocked(t0, t0 + 10 * S, 10).unwrap();
    assert_eq!(b.iter().map(|b| b.ts.micros() as i64 - t0).collect::<Vec<_>>(), vec![3 * S, 2 * S, S, 0]);
    let by_rule = r.blocked_by_rule(t0, t0 + 10 * S, 10).unwrap();
    assert_eq!(by_rule.len(), 2);
    assert_eq!((by_rule[0].rule.as_deref(), by_rule[0].blocks, by_rule[0].clients), (Some("no-social"), 3, 2));
    assert_eq!(by_rule[0].last.micros() as i64, t0 + 2 * S);
    assert_eq!((by_rule[1].rule.as_deref(), by_rule[1].blocks), (None, 1));

    let q = |f: DnsFilter| -> Vec<String> { r.dns(&f).unwrap().into_iter().map(|d| d.query).collect() };
    assert_eq!(q(DnsFilter { limit: 10, ..Default::default() }).len(), 4);
    assert_eq!(
        q(DnsFilter { query_suffix: Some("youtube.com".into()), limit: 10, ..Default::default() }),
        vec!["youtube.com", "www.youtube.com"]
    );
    assert_eq!(
        q(DnsFilter { client: client("10.1.0.0/16"), since: Some(t0 + S), limit: 10, ..Default::default() }),
        vec!["nflxvideo.net", "youtube.com"]
    );
    let d = r.dns(&DnsFilter { limit: 1, ..Default::default() }).unwrap();
    assert_eq!(d[0], dns(t0 + 3 * S, "10.1.1.9", "nflxvideo.net"), "a DNS row reads back whole");
}

#[test]
fn a_full_queue_drops_and_never_blocks() {
    let dir = temp_dir("full");
    let path = dir.join("r.db");
    let opts = SinkOptions { queue_capacity: 8, batch_max: 4, ..quick() };
    let (sink, writer) = SqliteSink::open(&path, opts).unwrap();
    let t0 = 1_700_000_000 * S;
    let mut slowest = Duration::ZERO;
    let mut ok = 0;
    for i in 0..20_000u64 {
        let rec = session(i, "10.0.0.1", Some("A"), None, t0 + i as i64, 1);
        let start = std::time::Instant::now();
        ok += sink.try_send(rec) as u64;
        slowest = slowest.max(start.elapsed());
    }
    let probe = sink.clone();
    assert!(sink.flush_and_close());
    writer.join().unwrap();
    let st = probe.stats();
    assert!(st.dropped > 0, "{st:?}");
    assert_eq!(st.accepted, ok);
    assert_eq!(st.accepted + st.dropped, 20_000);
    assert_eq!(st.committed, st.accepted);
    assert!(slowest < Duration::from_millis(100), "try_send took {slowest:?}");
    // After close, sends fail rather than block.
    assert!(!probe.try_send(session(1, "10.0.0.1", None, None, t0, 1)));
}
