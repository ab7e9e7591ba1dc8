//! List files as shipped by public blocklists (fixtures under tests/fixtures/lists/), and the load
//! and lookup speed of large lists (printed, not asserted: timings depend on the machine).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;
use vigil_engine::policy::lists::{load_list, DomainSet, ListError, ListStats, NamedList};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lists").join(name)
}

fn load_domains(name: &str) -> (DomainSet, ListStats) {
    match load_list(&fixture(name)).unwrap() {
        (NamedList::Domains(d), st) => (d, st),
        (other, _) => panic!("{name}: expected domains, got {other:?}"),
    }
}

fn load_err(name: &str) -> String {
    let e = load_list(&fixture(name)).unwrap_err();
    let text = e.to_string();
    // Errors name the file.
    assert!(text.contains(name), "{text}");
    text
}

#[test]
fn hosts_file() {
    let (d, st) = load_domains("hosts.txt");
    assert_eq!(st.entries, 6);
    // `bad!name.example.com` (line 19) is skipped; the special names are not counted as skipped.
    assert_eq!((st.skipped, st.first_skipped_lines.clone()), (1, vec![19]));
    for yes in ["ads.example.com", "x.tracker.example.net", "b.badsite.org", "c.badsite.org", "metrics.example.io"] {
        assert!(d.contains(yes), "{yes}");
    }
    for no in ["localhost", "broadcasthost", "ip6-localhost", "local", "0.0.0.0", "badsite.org", "example.com"] {
        assert!(!d.contains(no), "{no}");
    }
}

#[test]
fn plain_list() {
    let (d, st) = load_domains("plain.txt");
    assert_eq!((st.entries, st.skipped, st.first_skipped_lines.clone()), (4, 1, vec![7]));
    assert!(d.contains("www.example.com") && d.contains("example.com"));
    assert!(d.contains("a.wild.example.org") && !d.contains("wild.example.org"));
    assert!(d.contains("XN--BCHER-KVA.example") && d.contains("_dmarc.example.net"));
    assert!(st.warning("plain.txt").unwrap().contains("line 7"));
}

#[test]
fn adblock_list() {
    let (d, st) = load_domains("adblock.txt");
    assert_eq!(d.len(), 2);
    assert!(d.contains("ads.example.com") && d.contains("t.tracker.example.net"));
    // Options, exceptions, cosmetic and path rules are skipped and counted.
    assert!(!d.contains("cdn.example.org") && !d.contains("good.example.com") && !d.contains("paths.example.com"));
    assert_eq!((st.skipped, st.first_skipped_lines.clone()), (5, vec![6, 7, 8, 9, 10]));
}

#[test]
fn crlf_list() {
    let (d, st) = load_domains("crlf.txt");
    assert_eq!((st.entries, st.skipped), (3, 0));
    assert!(d.contains("example.com") && d.contains("ads.example.net") && d.contains("tracker.example.org"));
}

#[test]
fn cidr_list() {
    let (list, st) = load_list(&fixture("cidr.txt")).unwrap();
    let NamedList::Addrs(a) = list else { panic!("expected addresses") };
    assert_eq!((a.len(), st.skipped), (6, 0));
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    for yes in ["1.10.16.1", "2.56.195.255", "10.0.0.1", "192.168.200.1", "2001:db8:1::1", "fd00::1"] {
        assert!(a.contains(ip(yes)), "{yes}");
    }
    for no in ["1.10.32.0", "10.0.0.2", "fd00::2", "8.8.8.8"] {
        assert!(!a.contains(ip(no)), "{no}");
    }
}

#[test]
fn file_errors() {
    let e = load_err("mixed.txt");
    assert!(e.ends_with("mixed.txt:4: `10.0.0.0/8` is an address, but this list holds domains (first at line 2); a list holds either domains or addresses"), "{e}");
    let e = load_err("bad_cidr.txt");
    assert!(e.contains("bad_cidr.txt:3: `10.0.0.300/33` is not a valid IP address"), "{e}");
    let e = load_err("only_junk.txt");
    assert!(e.ends_with("only_junk.txt: no domain or address in the list (2 lines skipped as invalid)"), "{e}");
    let e = load_list(&fixture("does-not-exist.txt")).unwrap_err();
    assert!(matches!(e, ListError::Io { .. }) && e.to_string().contains("does-not-exist.txt"), "{e}");
}

/// A deterministic xorshift, so the lookups are reproducible without a rand dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn name(rng: &mut Rng) -> String {
    const WORDS: [&str; 8] = ["ads", "track", "cdn", "metrics", "pixel", "beacon", "stats", "img"];
    const TLDS: [&str; 5] = ["com", "net", "org", "io", "de"];
    let r = rng.next();
    format!(
        "{}{}.{}-{:x}.{}",
        WORDS[(r % 8) as usize],
        (r >> 3) % 100,
        WORDS[((r >> 10) % 8) as usize],
        (r >> 16) & 0xfffff,
        TLDS[((r >> 40) % 5) as usize]
    )
}

#[test]
fn large_domain_list_load_and_lookup_speed() {
    const N: usize = 100_000;
    const LOOKUPS: usize = 1_000_000;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let names: Vec<String> = (0..N).map(|_| name(&mut rng)).collect();
    let mut text = String::with_capacity(N * 40);
    text.push_str("# generated hosts-format blocklist\n127.0.0.1 localhost\n");
    for n in &names {
        text.push_str("0.0.0.0 ");
        text.push_str(n);
        text.push('\n');
    }
    let path = std::env::temp_dir().join(format!("vigil-lists-100k-{}.txt", std::process::id()));
    std::fs::write(&path, &text).unwrap();

    let t = Instant::now();
    let loaded = load_list(&path);
    let load_time = t.elapsed();
    let _ = std::fs::remove_file(&path);
    let (NamedList::Domains(set), st) = loaded.unwrap() else { panic!("expected domains") };
    assert_eq!((st.entries, st.skipped), (N, 0));
    eprintln!(
        "lists: loaded {N} hosts-file lines ({} distinct, {:.1} MB) in {:.1} ms",
        set.len(),
        text.len() as f64 / 1e6,
        load_time.as_secs_f64() * 1e3
    );

    // Half the lookups are below a listed name (hits), half are random names (mostly misses).
    let queries: Vec<String> = (0..LOOKUPS)
        .map(|i| if i % 2 == 0 { format!("www.{}", names[(rng.next() % N as u64) as usize]) } else { name(&mut rng) })
        .collect();
    let t = Instant::now();
    let hits = queries.iter().filter(|q| set.contains(q)).count();
    let dt = t.elapsed();
    assert!(hits >= LOOKUPS / 2);
    eprintln!(
        "lists: {LOOKUPS} lookups ({hits} hits) in {:.1} ms: {:.1} M lookups/s, {:.0} ns each",
        dt.as_secs_f64() * 1e3,
        LOOKUPS as f64 / dt.as_secs_f64() / 1e6,
        dt.as_nanos() as f64 / LOOKUPS as f64
    );
}
