//! `vigil replay` and `vigil check-config` as a user runs them: the real binary on real captures.
//! No root needed. Expected packet counts were taken independently with tcpdump filters.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn vigil() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn jsonl(args: &[&str]) -> (Vec<Value>, std::process::Output) {
    let out = vigil().args(["replay", "--format", "jsonl"]).args(args).output().unwrap();
    let flows = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (flows, out)
}

fn find<'a>(flows: &'a [Value], l4: &str, port: u64) -> &'a Value {
    flows
        .iter()
        .find(|f| f["proto"] == l4 && (f["sport"] == port || f["dport"] == port))
        .unwrap_or_else(|| panic!("no {l4} flow with port {port} in {flows:#?}"))
}

#[test]
fn replay_counts_each_direction_like_tcpdump() {
    let (flows, out) = jsonl(&[fixture("ftp.pcap").to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(flows.len(), 3);
    // tcpdump -r ftp.pcap 'tcp and src port 50694' | wc -l  -> 41, 'dst port 50694' -> 27, ...
    for (port, c2s, s2c) in [(50694, 41, 27), (50695, 5, 4), (50696, 54, 78)] {
        let f = find(&flows, "tcp", port);
        assert_eq!(f["src"], "192.168.1.212", "the client is the side that opened the connection");
        assert_eq!(f["sport"], port);
        assert_eq!((f["packets_c2s"].as_u64(), f["packets_s2c"].as_u64()), (Some(c2s), Some(s2c)), "port {port}");
        assert_eq!(f["verdict"], "allow");
        assert!(f["rule"].is_null());
    }
    let ctrl = find(&flows, "tcp", 50694);
    assert_eq!(ctrl["dport"], 21);
    // Stable field names (issue 2, item 8).
    for key in [
        "proto",
        "src",
        "sport",
        "dst",
        "dport",
        "protocol",
        "app",
        "category",
        "hostname",
        "ja4",
        "packets_c2s",
        "packets_s2c",
        "bytes_c2s",
        "bytes_s2c",
        "first_seen",
        "last_seen",
        "verdict",
        "rule",
    ] {
        assert!(ctrl.get(key).is_some(), "missing field {key}");
    }
    assert!(ctrl["first_seen"].as_f64().unwrap() <= ctrl["last_seen"].as_f64().unwrap());
    assert!(ctrl["bytes_s2c"].as_u64().unwrap() > 27 * 40, "at least headers");
}

#[test]
fn replay_reads_ipv6_and_udp() {
    let (flows, out) = jsonl(&[fixture("http_ipv6.pcap").to_str().unwrap()]);
    assert!(out.status.success());
    let quic = find(&flows, "udp", 45931);
    assert_eq!(quic["src"], "2a00:d40:1:3:7aac:c0ff:fea7:d4c");
    assert_eq!(quic["dport"], 443);
    assert_eq!((quic["packets_c2s"].as_u64(), quic["packets_s2c"].as_u64()), (Some(33), Some(29)));
}

#[test]
fn replay_applies_the_policy_first_match_wins() {
    let dir = tempdir();
    let cfg = dir.join("policy.toml");
    std::fs::write(
        &cfg,
        r#"
[[policy.rules]]
name = "ftp-data-ok"
action = "allow"
dst_ports = ["20000-30000"]

[[policy.rules]]
name = "no-ftp"
action = "block"
l4 = "tcp"
dst = ["90.130.70.73/32"]
"#,
    )
    .unwrap();
    let (flows, out) = jsonl(&["--config", cfg.to_str().unwrap(), fixture("ftp.pcap").to_str().unwrap()]);
    assert!(out.status.success());
    let ctrl = find(&flows, "tcp", 50694);
    assert_eq!((ctrl["verdict"].as_str(), ctrl["rule"].as_str()), (Some("block"), Some("no-ftp")));
    let data = find(&flows, "tcp", 50695);
    assert_eq!((data["verdict"].as_str(), data["rule"].as_str()), (Some("allow"), Some("ftp-data-ok")));
}

#[test]
fn table_format_is_aligned_and_complete() {
    let out = vigil().args(["replay", fixture("ftp.pcap").to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("PROTO") && lines[0].contains("VERDICT"));
    assert_eq!(lines.len(), 4);
    assert!(lines[1].contains("192.168.1.212:50694") && lines[1].contains("41/27"));
}

#[test]
fn a_damaged_capture_prints_what_it_read_then_fails() {
    let dir = tempdir();
    let bytes = std::fs::read(fixture("ftp.pcap")).unwrap();
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() / 2 + 7]).unwrap();
    let (flows, out) = jsonl(&[cut.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(!flows.is_empty(), "flows read before the damage are not lost");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cut.pcap") && err.contains("damaged"), "{err}");

    let garbage = dir.join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture at all").unwrap();
    let (_, out) = jsonl(&[garbage.to_str().unwrap()]);
    assert!(!out.status.success());
    let missing = vigil().args(["replay", "/nonexistent/x.pcap"]).output().unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/x.pcap"));
}

#[test]
fn check_config_reports_line_and_column() {
    let dir = tempdir();
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "[engine]\nqueues = \"0-1\"\n\n[firewall]\nchains = [\"forward\"]\n\n[[policy.rules]]\nname = \"no-telnet\"\naction = \"block\"\ndst_ports = [23]\n\n[report]\nsqlite = \"/var/lib/vigil/vigil.db\"\n",
    )
    .unwrap();
    let out = vigil().args(["check-config", good.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        "[engine]\nqueues = \"0-1\"\n\n[[policy.rules]]\nname = \"x\"\naction = \"block\"\ndst = [\"10.1.2.3/33\"]\n",
    )
    .unwrap();
    let out = vigil().args(["check-config", bad.to_str().unwrap()]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 7, column 7") && err.contains("10.1.2.3/33"), "{err}");
}

fn tempdir() -> PathBuf {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "vigil-cli-test-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn policy_test_shows_each_flow_and_totals_by_rule() {
    let dir = tempdir();
    let cfg = dir.join("policy.toml");
    std::fs::write(
        &cfg,
        "[[policy.rules]]\nname = \"no-ftp-control\"\naction = \"reject\"\ndst_ports = [21]\n\
         [[policy.rules]]\nname = \"data-ok\"\naction = \"allow\"\ndst_ports = [\"20000-30000\"]\n",
    )
    .unwrap();
    let out = vigil()
        .args(["policy", "test", "--config", cfg.to_str().unwrap(), "--format", "jsonl"])
        .arg(fixture("ftp.pcap"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let flows: Vec<&Value> = lines.iter().filter(|l| l.get("summary").is_none()).collect();
    let sums: Vec<&Value> = lines.iter().filter(|l| l["summary"] == "rule").collect();
    assert_eq!(flows.len(), 3);
    let ctrl = flows.iter().find(|f| f["dport"] == 21).unwrap();
    assert_eq!((ctrl["verdict"].as_str(), ctrl["rule"].as_str()), (Some("reject"), Some("no-ftp-control")));
    let reject = sums.iter().find(|s| s["rule"] == "no-ftp-control").expect("a total for the rule");
    assert_eq!((reject["flows"].as_u64(), reject["verdict"].as_str()), (Some(1), Some("reject")));
    assert_eq!(reject["packets"].as_u64(), Some(41 + 27));
    let data = sums.iter().find(|s| s["rule"] == "data-ok").unwrap();
    assert_eq!(data["flows"].as_u64(), Some(2));

    // A policy naming an unknown application is refused with the rule's name.
    std::fs::write(&cfg, "[[policy.rules]]\nname = \"x\"\naction = \"block\"\napps = [\"NoSuchApp\"]\n").unwrap();
    let out =
        vigil().args(["policy", "test", "--config", cfg.to_str().unwrap()]).arg(fixture("ftp.pcap")).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NoSuchApp") && err.contains("`x`"), "{err}");
}
