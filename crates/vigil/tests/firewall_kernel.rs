//! Kernel tests of `vigil::firewall`: each test works in its own network namespace(s), removed by a
//! Drop guard. They need root; without it they print a skip line, except under CI where not being
//! root is a failure.

mod common;

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::root_or_skip;
use vigil::firewall::{self, Family, FirewallError, FirewallSpec, Hook};
use vigil::lab::Lab;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace removed (with vigil's rules and state) on drop.
struct Ns(String);

impl Ns {
    fn new() -> Ns {
        let name = format!("vfwt{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        sh(&["ip", "netns", "add", &name]);
        sh(&["ip", "-n", &name, "link", "set", "lo", "up"]);
        Ns(name)
    }
    fn name(&self) -> Option<&str> {
        Some(&self.0)
    }
    fn exec(&self, args: &[&str]) -> String {
        let mut v = vec!["ip", "netns", "exec", &self.0];
        v.extend_from_slice(args);
        sh(&v)
    }
    fn restore(&self, family: Family, script: &str) {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.0, family.restore_tool(), "--noflush"])
            .stdin(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success(), "admin rules failed to load");
    }
    /// `*tables-save` without comments and counters.
    fn saved(&self, family: Family) -> String {
        normalize(&self.exec(&[family.save_tool()]))
    }
    fn acct(&self) -> String {
        self.exec(&["sysctl", "-n", "net.netfilter.nf_conntrack_acct"]).trim().to_string()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = firewall::remove(Some(&self.0));
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
        let _ = std::fs::remove_file(format!("{}/netns-{}.state", firewall::STATE_DIR, self.0));
    }
}

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn normalize(save: &str) -> String {
    save.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let l = if l.starts_with('[') { l.split_once("] ").map(|x| x.1).unwrap_or(l) } else { l };
            if l.starts_with(':') {
                // ":CHAIN POLICY [p:b]" -> ":CHAIN POLICY"
                l.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const ADMIN_V4: &str = "\
*mangle
-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
COMMIT
*filter
:INPUT ACCEPT [0:0]
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -s 10.9.0.0/16 -j DROP
COMMIT
";
const ADMIN_V6: &str = "\
*mangle
-A FORWARD -p tcp -m tcp --tcp-flags SYN,RST SYN -j TCPMSS --clamp-mss-to-pmtu
COMMIT
*filter
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
COMMIT
";

fn spec_for(ns: &Ns) -> FirewallSpec {
    FirewallSpec { netns: ns.name().map(String::from), queue_packets: 20, ..Default::default() }
}

fn vigil_lines(saved: &str) -> Vec<&str> {
    saved.lines().filter(|l| l.contains("VIGIL_")).collect()
}

#[test]
fn install_twice_then_remove_restores_everything() {
    if !root_or_skip() {
        return;
    }
    let ns = Ns::new();
    ns.restore(Family::Ipv4, ADMIN_V4);
    ns.restore(Family::Ipv6, ADMIN_V6);
    let before4 = ns.saved(Family::Ipv4);
    let before6 = ns.saved(Family::Ipv6);
    assert_eq!(ns.acct(), "0", "fresh namespace has conntrack accounting off");

    let spec = spec_for(&ns);
    let report = firewall::install(&spec).expect("install");
    println!("install report:\n{report}");
    assert_eq!(report.families, vec![Family::Ipv4, Family::Ipv6]);
    assert!(!report.replaced_existing);
    assert_eq!(report.conntrack_acct, Some(("0".into(), "1".into())));
    assert_eq!(ns.acct(), "1");

    let once4 = ns.saved(Family::Ipv4);
    let once6 = ns.saved(Family::Ipv6);
    println!("iptables-save after install:\n{}", ns.exec(&["iptables-save"]));
    let expected = [
        "-A FORWARD -j VIGIL_FORWARD",
        "-A VIGIL_FORWARD -m connmark --mark 0x20000000/0x20000000 -j RETURN",
        "-A VIGIL_FORWARD -m connbytes ! --connbytes 0:20 --connbytes-mode packets --connbytes-dir both -j RETURN",
        "-A VIGIL_FORWARD -j NFQUEUE --queue-num 0 --queue-bypass",
        "-A FORWARD -j VIGIL_SAVE_FORWARD",
        "-A VIGIL_SAVE_FORWARD -m mark --mark 0x20000000/0x20000000 -j CONNMARK --save-mark --nfmask 0x20000000 --ctmask 0x20000000",
    ];
    for saved in [&once4, &once6] {
        for line in expected {
            assert_eq!(saved.lines().filter(|l| *l == line).count(), 1, "missing {line:?} in\n{saved}");
        }
        assert!(saved.contains(":VIGIL_FORWARD -\n") && saved.contains(":VIGIL_SAVE_FORWARD -\n"));
        // Appended after the admin's TCPMSS rule.
        let tcpmss = saved.find("TCPMSS").unwrap();
        assert!(saved.find("-A FORWARD -j VIGIL_FORWARD").unwrap() > tcpmss);
    }

    let shown = firewall::show(ns.name()).unwrap();
    println!("show():\n{shown}");
    assert!(shown.contains("# IPv4") && shown.contains("# IPv6"));
    assert!(shown.contains("[0:0] -A FORWARD -j VIGIL_FORWARD"), "{shown}");
    assert!(!shown.contains("TCPMSS") && !shown.contains("--dport 22"), "show() lists only vigil: {shown}");

    let report2 = firewall::install(&spec).expect("second install");
    assert!(report2.replaced_existing);
    assert_eq!(report2.conntrack_acct, None, "already 1");
    assert_eq!(ns.saved(Family::Ipv4), once4, "install twice == install once (IPv4)");
    assert_eq!(ns.saved(Family::Ipv6), once6, "install twice == install once (IPv6)");

    // Reconfigure: other hooks, interfaces, queue balance; the old forward rules must go.
    let spec3 = FirewallSpec {
        chains: vec![Hook::Input],
        interfaces_in: vec!["lan0".into(), "lan1".into()],
        queues: firewall::QueueRange { first: 0, last: 3 },
        ..spec.clone()
    };
    firewall::install(&spec3).expect("reconfigure");
    let re4 = ns.saved(Family::Ipv4);
    assert!(!re4.contains("VIGIL_FORWARD") && !re4.contains("VIGIL_SAVE_FORWARD"), "{re4}");
    assert!(re4.contains("-A INPUT -i lan1 -j VIGIL_INPUT"), "{re4}");
    assert!(re4.contains("--queue-balance 0:3 --queue-bypass"), "{re4}");
    assert_eq!(vigil_lines(&re4).len(), 9, "{re4}");

    firewall::remove(ns.name()).expect("remove");
    assert_eq!(ns.saved(Family::Ipv4), before4, "remove leaves iptables-save as before install");
    assert_eq!(ns.saved(Family::Ipv6), before6, "remove leaves ip6tables-save as before install");
    assert_eq!(ns.acct(), "0", "remove restores nf_conntrack_acct");
    assert!(firewall::show(ns.name()).unwrap().contains("no vigil rules installed"));
    firewall::remove(ns.name()).expect("second remove is a no-op");
    assert_eq!(ns.saved(Family::Ipv4), before4);
}

#[test]
fn remove_when_nothing_installed_is_ok() {
    if !root_or_skip() {
        return;
    }
    let ns = Ns::new();
    let before4 = ns.saved(Family::Ipv4);
    let before6 = ns.saved(Family::Ipv6);
    firewall::remove(ns.name()).expect("remove on empty ruleset");
    assert_eq!(ns.saved(Family::Ipv4), before4);
    assert_eq!(ns.saved(Family::Ipv6), before6);
    assert_eq!(ns.acct(), "0");
}

#[test]
fn queue_packets_zero_keeps_acct_and_has_no_connbytes() {
    if !root_or_skip() {
        return;
    }
    let ns = Ns::new();
    let spec = FirewallSpec { queue_packets: 0, ipv6: false, ..spec_for(&ns) };
    let report = firewall::install(&spec).unwrap();
    assert_eq!(report.families, vec![Family::Ipv4]);
    assert!(!ns.saved(Family::Ipv4).contains("connbytes"));
    assert!(!ns.saved(Family::Ipv6).contains("VIGIL"));
    firewall::remove(ns.name()).unwrap();
    assert_eq!(ns.saved(Family::Ipv4), "");
}

#[test]
fn bad_spec_and_failed_restore_leave_nothing_behind() {
    if !root_or_skip() {
        return;
    }
    let ns = Ns::new();
    ns.restore(Family::Ipv4, ADMIN_V4);
    let before4 = ns.saved(Family::Ipv4);
    let before6 = ns.saved(Family::Ipv6);

    // Invalid interface name: rejected before touching anything.
    let bad = FirewallSpec { interfaces_in: vec!["lan0".into(), "this-is-not-an-interface".into()], ..spec_for(&ns) };
    match firewall::install(&bad) {
        Err(FirewallError::InvalidSpec(m)) => println!("expected error: {m}"),
        other => panic!("expected InvalidSpec, got {other:?}"),
    }
    assert_eq!(ns.saved(Family::Ipv4), before4);
    assert_eq!(ns.saved(Family::Ipv6), before6);
    assert_eq!(ns.acct(), "0");

    // IPv6 restore rejected after IPv4 succeeded: IPv4 is rolled back, sysctl restored.
    let spec = spec_for(&ns);
    match firewall::install_with_injected_failure(&spec, Family::Ipv6) {
        Err(e @ FirewallError::Restore { family: Family::Ipv6, .. }) => {
            println!("expected error: {e}");
            if let FirewallError::Restore { script_line, .. } = &e {
                assert_eq!(script_line.as_deref(), Some("-A VIGIL_INJECTED_FAILURE -j ACCEPT"));
            }
        }
        other => panic!("expected IPv6 Restore error, got {other:?}"),
    }
    assert_eq!(ns.saved(Family::Ipv4), before4, "IPv4 rolled back");
    assert_eq!(ns.saved(Family::Ipv6), before6, "IPv6 transaction not applied");
    assert_eq!(ns.acct(), "0");

    // With a previous install: a failed re-install keeps the previous vigil rules.
    firewall::install(&spec).unwrap();
    let installed4 = ns.saved(Family::Ipv4);
    let installed6 = ns.saved(Family::Ipv6);
    let other = FirewallSpec { chains: vec![Hook::Output], ..spec.clone() };
    assert!(firewall::install_with_injected_failure(&other, Family::Ipv6).is_err());
    assert_eq!(ns.saved(Family::Ipv4), installed4, "IPv4 back to the previous vigil rules");
    assert_eq!(ns.saved(Family::Ipv6), installed6);
    assert!(firewall::install_with_injected_failure(&other, Family::Ipv4).is_err());
    assert_eq!(ns.saved(Family::Ipv4), installed4);
    assert_eq!(ns.acct(), "1");
    firewall::remove(ns.name()).unwrap();
    assert_eq!(ns.saved(Family::Ipv4), before4);
    assert_eq!(ns.saved(Family::Ipv6), before6);
    assert_eq!(ns.acct(), "0");
}

#[test]
fn missing_namespace_is_a_clear_error() {
    if !root_or_skip() {
        return;
    }
    let spec = FirewallSpec { netns: Some(format!("vfwt-missing-{}", std::process::id())), ..Default::default() };
    let err = firewall::install(&spec).unwrap_err();
    println!("expected error: {err}");
    assert!(matches!(err, FirewallError::Command { .. }), "{err:?}");
}

#[test]
fn detect_runs() {
    if !root_or_skip() {
        return;
    }
    let ns = Ns::new();
    let before = ns.exec(&["nft", "list", "ruleset"]);
    let caps = firewall::detect(ns.name()).expect("detect");
    println!("detect(): {caps:?}");
    assert!(caps.iptables.is_some());
    assert_eq!(ns.exec(&["nft", "list", "ruleset"]), before, "probes leave nothing behind");
    let host = firewall::detect(None).expect("detect on the host");
    println!("detect() on host: {host:?}");
}

/// Traffic through a real gateway: only the first N packets of a connection hit NFQUEUE, later ones
/// return via connbytes; a flow with the offload connmark is never queued. No vigil is listening,
/// so --queue-bypass lets the queued packets through.
#[test]
fn connbytes_limits_queueing_and_connmark_offloads() {
    if !root_or_skip() {
        return;
    }
    let lab = Lab::create("vfwl").expect("lab");
    let gw = lab.gateway_ns().to_string();
    let spec = FirewallSpec {
        netns: Some(gw.clone()),
        queue_packets: 5,
        // Both directions must pass the jump for "first 5 packets of the connection" to be
        // exactly 5 queued packets: with only `-i lan0` the server's replies are not queued.
        interfaces_in: vec![lab.gw_client_if().into(), lab.gw_server_if().into()],
        ..Default::default()
    };
    struct Cleanup(String);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = firewall::remove(Some(&self.0));
        }
    }
    let _cleanup = Cleanup(gw.clone());
    firewall::install(&spec).expect("install in gateway");

    let zero = |family: Family| {
        let st = Command::new("ip")
            .args(["netns", "exec", &gw, family.tool(), "-t", "mangle", "-Z", "VIGIL_FORWARD"])
            .status()
            .unwrap();
        assert!(st.success());
    };
    // Starts a server, waits until it listens (a connect before that would be an extra, refused
    // connection whose packets are queued too), zeroes the counters, then makes ONE connection.
    let fetch = |port: u16, server: &str, family: Family| -> usize {
        let srv = lab
            .spawn_in(
                lab.server_ns(),
                ["socat", &format!("TCP6-LISTEN:{port},reuseaddr,ipv6only=0"), "SYSTEM:head -c 300000 /dev/zero"],
            )
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ss = lab.exec(lab.server_ns(), ["ss", "-Hltn", &format!("sport = :{port}")]).output().unwrap();
            if !ss.stdout.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "server on port {port} never listened");
            std::thread::sleep(Duration::from_millis(20));
        }
        zero(family);
        let out = lab
            .exec(lab.client_ns(), ["socat", "-T", "5", "-u", &format!("TCP:{server}:{port}"), "-"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        srv.kill().unwrap();
        out.stdout.len()
    };
    let counter = |family: Family, needle: &str| -> u64 {
        let save =
            Command::new("ip").args(["netns", "exec", &gw, family.save_tool(), "-c", "-t", "mangle"]).output().unwrap();
        let text = String::from_utf8_lossy(&save.stdout).into_owned();
        let line = text.lines().find(|l| l.contains(needle)).unwrap_or_else(|| panic!("{needle} in {text}"));
        line[1..line.find(':').unwrap()].parse().unwrap()
    };

    assert_eq!(fetch(7001, "198.18.2.2", Family::Ipv4), 300000);
    let queued = counter(Family::Ipv4, "-j NFQUEUE");
    let returned = counter(Family::Ipv4, "connbytes");
    println!("IPv4: queued {queued}, returned by connbytes {returned}");
    println!("{}", firewall::show(Some(&gw)).unwrap());
    assert_eq!(queued, 5, "exactly the first 5 packets of the connection are queued");
    assert!(returned > 0);

    assert_eq!(fetch(7002, "[fd76:2::2]", Family::Ipv6), 300000);
    let q6 = counter(Family::Ipv6, "-j NFQUEUE");
    println!("IPv6: queued {q6}, returned {}", counter(Family::Ipv6, "connbytes"));
    assert_eq!(q6, 5);

    // A flow whose connmark carries the offload bit is never queued.
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &gw,
            "iptables",
            "-t",
            "mangle",
            "-I",
            "PREROUTING",
            "-j",
            "CONNMARK",
            "--set-xmark",
            "0x20000000/0x20000000",
        ])
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(fetch(7003, "198.18.2.2", Family::Ipv4), 300000);
    assert_eq!(counter(Family::Ipv4, "-j NFQUEUE"), 0, "offloaded flow not queued");
    assert!(counter(Family::Ipv4, "connmark --mark") > 0);
    firewall::remove(Some(&gw)).unwrap();
    assert!(!std::path::Path::new(&format!("{}/netns-{gw}.state", firewall::STATE_DIR)).exists());
    lab.destroy();
}
